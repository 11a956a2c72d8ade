//! cluster-action: the jobs of one GitHub Actions workflow run as a compute cluster that talks
//! only through the run's artifact store.
//!
//! Maintainer's map, bottom up:
//! - [`token`]: backend ids from the runtime token's `scp` claim.
//! - [`store`]: the artifact v4 client (Twirp + blob on signed URLs); the only HTTP code.
//! - [`stream`]: duplex message streams built from append-blob artifacts.
//! - [`layer`]: content-addressed tar.gz layers: pack, publish, fetch, verify, extract.
//! - [`serve`]: a local artifact service (both halves) for tests, benchmarks and `local`.

pub mod layer;
pub mod serve;
pub mod store;
pub mod stream;
pub mod token;
