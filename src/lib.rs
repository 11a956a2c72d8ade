//! cluster-action: the jobs of one GitHub Actions workflow run as a compute cluster that talks
//! only through the run's artifact store.
//!
//! Maintainer's map, bottom up:
//! - [`token`]: backend ids from the runtime token's `scp` claim.
//! - [`store`]: the artifact v4 client (Twirp + blob on signed URLs); the only HTTP code.
//! - [`stream`]: duplex message streams built from append-blob artifacts.
//! - [`layer`]: content-addressed tar.gz layers: pack, publish, fetch, verify, extract.
//! - [`proto`]: the messages between runner, broker and worker.
//! - [`serve`]: a local artifact service (both halves) for tests, benchmarks and `local`.

pub mod broker;
pub mod layer;
pub mod local;
pub mod proto;
pub mod runner;
pub mod serve;
pub mod store;
pub mod stream;
pub mod token;
pub mod worker;
