//! cluster-action: the jobs of one GitHub Actions workflow run as a compute cluster that talks
//! only through the run's artifact store.
//!
//! # Map, bottom up
//!
//! Each module depends only on the ones above it in this list.
//!
//! - [`token`], [`credentials`], [`duration`], [`dir_name`], [`xml`], [`retry`], [`notice`],
//!   [`budget`], [`in_process`], [`input_file`]: small shared rules: the runtime token's ids, the
//!   credential variables (one list), durations as people write them, names as directories, XML
//!   text, the one retry schedule, warnings as data, GitHub's 500 artifacts per job, a task
//!   beside a runner, the one bounded reader of the files a user hands in.
//! - [`seal`]: with a cluster secret, keys per purpose, sealed frames and layers, keyed names.
//! - [`store`]: the artifact v4 client (Twirp + blobs on signed URLs); the only code that speaks
//!   HTTP to the store, absorbing the differences between github.com, Azurite and act.
//! - [`stream`]: duplex message streams made of append-blob artifacts: listen/connect, frames,
//!   adaptive polling, rotation, peer timeouts.
//! - [`layer`]: content-addressed tar.gz layers: pack, publish, fetch, verify, extract, cache.
//! - [`proto`] and [`link`]: the messages between runner, broker and worker, and the typed link
//!   over one stream that is the only code encoding them.
//! - [`suite`]: test suites: one file per framework (list, batch command, read its report), the
//!   per-test result model (`suite::result`), the merged JUnit, the planner (`suite::plan`).
//! - [`history`]: what a run keeps for later runs: timings and results documents, their seal,
//!   the `--timings` files, GitHub's REST API (`history::github`), load before and save after;
//!   each test's record across runs and the quarantine it decides.
//! - [`cleanup`]: which artifacts are the cluster's, and what a stopped cluster deletes.
//! - [`broker`]: the pure scheduler (`broker::scheduler`) in an async shell: queue, leases,
//!   pipelining, requeue of lost work, the clean stop.
//! - [`worker`]: the pure slot machine (`worker::machine`) in an async shell that fetches
//!   layers and runs each attempt (`worker::exec`, `contain`, `sandbox`), then uploads outputs;
//!   it keeps warm framework sessions that suite batches are handed to (`worker::session`).
//! - [`runner`]: the manifest, the run as a pure machine (`runner::machine`, with the suites'
//!   part in `runner::suite_run`) in an async shell (`runner::session`), the sessions' warm-up
//!   while suites are listed (`runner::warm_up`), progress and reports.
//! - [`sizing`]: how many machines a run is worth: the wall time predicted for 1…N machines
//!   from the measured durations, a per-batch cost and the set-up runs measured.
//! - [`serve`]: a local artifact service (both halves, fault injection) for tests and `local`.
//! - [`selftest`], [`local`]: the transport check the act tests run; the whole cluster on one
//!   machine (`serve`, an embedded broker, worker processes, the runner).
//!
//! The binary (`src/main.rs`, `src/cli/`) resolves flags once into these modules'
//! configurations and maps every failure onto an exit code in one exhaustive table
//! (`cli/exit.rs`). `dist/index.js` is the GitHub Action around it.
//!
//! Every rule lives in a state machine (`broker::scheduler`, `worker::machine`,
//! `runner::machine` with `runner::suite_run`): events in, effects out (warnings too, as
//! [`notice::Notice`]), unit-tested without a network. The shells move messages, timers and
//! signals, and log the notices.
//!
//! # The data path of one job
//!
//! 1. The runner publishes the manifest's layers, sends its shared `Defaults` once, then
//!    `Submit` (each job carrying only what it sets itself).
//! 2. The broker queues jobs longest first and sends `Assign` to workers with free slots (plus
//!    a pipeline sized from the measured round trip), under a `Lease` it renews.
//! 3. The worker merges the defaults in, fetches layers into its cache, runs `bash -c` in the
//!    job's own directory, gives the slot back, publishes declared outputs, sends `Finished`.
//! 4. The broker forwards the outcome; the runner fetches the outputs and reports.
//!
//! A suite's batch is such a job: its command runs exactly its tests, its one output is the
//! framework's report, from which the runner decides each test (never from the exit code).
//! A pytest, Jest or Vitest batch may carry a session command: the worker then hands it a warm
//! framework process of its suite (one per slot) instead of starting the framework for it. The runner joins the cluster while
//! it lists the suites and, meanwhile, submits one warm-up job per slot (`runner::warm_up`):
//! each starts its slot's session and has it collect the suite, so that the batches find
//! their files imported.

pub mod broker;
pub mod budget;
pub mod cleanup;
pub mod credentials;
pub mod dir_name;
pub mod duration;
pub mod history;
pub mod in_process;
pub mod input_file;
pub mod layer;
pub mod link;
pub mod local;
pub mod notice;
pub mod proto;
pub mod retry;
pub mod runner;
pub mod seal;
pub mod selftest;
pub mod serve;
pub mod sizing;
pub mod store;
pub mod stream;
pub mod suite;
pub mod token;
pub mod worker;
pub mod xml;
