//! cluster-action: the jobs of one GitHub Actions workflow run as a compute cluster that talks
//! only through the run's artifact store.
//!
//! Maintainer's map, bottom up:
//! - [`token`]: backend ids from the runtime token's `scp` claim.
//! - [`store`]: the artifact v4 client (Twirp + blob on signed URLs, retries); the only code
//!   that speaks HTTP to the store. Absorbs the differences between github.com and act.
//! - [`stream`]: duplex message streams built from append-blob artifacts (listen/connect,
//!   frames, adaptive polling, rotation, peer timeout, the closed marker of a stopped broker).
//! - [`layer`]: content-addressed tar.gz layers: pack, publish (with a copy under a second
//!   name when a dead upload holds the first), streamed fetch (download, verify and extract at
//!   once), a cache that notices jobs writing into it, job directories of private copies.
//! - [`proto`]: the messages between runner, broker and worker (JSON in stream frames).
//! - [`broker`]: a pure scheduler (`broker::scheduler`) inside an async shell that owns the
//!   listener and one stream per peer.
//! - [`worker`]: connects, runs assigned jobs (attempt: layers → directory →
//!   `worker::exec` → outputs layer), reports outcomes.
//! - [`runner`]: the manifest, the submission session, progress and reports.
//! - [`local`]: `cluster-action local`: [`serve`] in-process, an embedded broker, worker
//!   processes and the runner.
//! - [`serve`]: a local artifact service (both halves) for tests, benchmarks and `local`.
//!
//! The data path of one job: the runner packs and publishes the manifest's layers, then sends
//! `Submit` on its stream; the broker queues the jobs (longest estimate first) and sends
//! `Assign` to a worker with a free slot (plus a small prefetch); the worker fetches the layers
//! into its cache, assembles the job's directory from private copies, runs `bash -c`, publishes declared outputs
//! as a layer and sends `Finished`; the broker forwards the outcome to the runner, which
//! fetches the outputs and reports. The binary (`src/main.rs`, `src/cli/`) maps flags onto
//! these modules and errors onto exit codes; `dist/index.js` is the GitHub Action around it.

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
