//! cluster-action: the jobs of one GitHub Actions workflow run as a compute cluster that talks
//! only through the run's artifact store.
//!
//! Maintainer's map, bottom up:
//! - [`token`]: backend ids from the runtime token's `scp` claim.
//! - [`retry`]: the one retry schedule (attempts, doubling pauses) of every retrying caller.
//! - [`store`]: the artifact v4 client (Twirp + blob on signed URLs, retries); the only code
//!   that speaks HTTP to the store. Absorbs the differences between github.com and act.
//! - [`stream`]: duplex message streams built from append-blob artifacts (listen/connect,
//!   frames, adaptive polling that slows on idle streams (not while the layer above says a
//!   message is owed: `stream::Expecting`, set by the broker and the runner) and speeds up when a new peer is
//!   discovered, rotation, peer timeout, the closed marker of a stopped broker, a listener
//!   that notices its listen artifact vanishing; store failures that outlast a request's
//!   retries are tried again until the peer timeout, a segment whose creation failed part-way
//!   finished rather than created again: `store::AppendCreation`).
//! - [`seal`]: with a cluster secret (`CLUSTER_SECRET`), keys per purpose and direction
//!   (HKDF-SHA256), sealed frames (XChaCha20-Poly1305), chunked sealed layers and keyed
//!   (HMAC) layer names; `history::HistorySeal`, the timing history and results a sealed cluster
//!   keeps for later runs, under keys from the secret alone. Hooked in at the frame codec (`stream::frame` encode/decode, keys in
//!   [`stream::StreamConfig::seal`]), at [`layer::publish`] and at [`layer::LayerCache`]'s
//!   insert; a frame it refuses ends its stream, a layer it refuses fails the job.
//! - [`layer`]: content-addressed tar.gz layers: pack, publish, fetch, verify, extract.
//! - [`proto`]: the messages between runner, broker and worker (JSON in stream frames); jobs
//!   are named by the runner's [`proto::JobIndex`] towards runners and by the broker's
//!   [`proto::JobId`] towards workers.
//! - [`link`]: a typed link over one stream (`send`, `recv`, `close`) and `Link::join`, the one
//!   way a runner or worker reaches its broker (no broker, closed cluster, hello); the only code
//!   that encodes or decodes `proto`.
//! - [`broker`]: a pure scheduler (`broker::scheduler`) inside an async shell that owns the
//!   listener and one link per peer, and at a stop cleans up once every runner has left (it
//!   may still be fetching outputs layers); `broker::EmbeddedBroker` runs one beside a runner.
//! - [`worker`]: a pure state machine (`worker::machine`: slots, queue, cancel, stop, attempts
//!   uploading their outputs after giving their slot back, bounded, the lease renewed at half
//!   time while work waits) inside an async shell that
//!   joins the broker and runs each attempt as a task (layers → directory → launch, asked of
//!   the machine, which checks the lease again → `worker::exec` → staged outputs), then its
//!   upload (`worker::outputs_pack` packs many jobs per layer); `worker::contain` makes every
//!   process a job starts die with the job and with its worker (a guard process for a worker
//!   that dies), `worker::sandbox` gives a job its own namespaces (`isolation: sandbox`);
//!   `worker::InProcessWorker` runs one inside a runner (`run --slots`), joining the cluster
//!   like any other.
//! - [`runner`]: the manifest, and the run as a pure state machine (`runner::machine`:
//!   submission in batches sized by bytes, progress, worker wait or going on alone on its own
//!   slots, cancel, lost broker (a report of what finished), outputs fetches tried again,
//!   compact report entries, the report) inside an
//!   async shell (`runner::session`) that lists suites, publishes layers, joins the broker and
//!   fetches outputs and batch reports; `runner::suite_run`, the suites' part of the machine
//!   (plan batches once the slots are known, each test's result from its batch's report,
//!   requeue what a batch never finished, retry failures alone and away from the workers
//!   they ran on, flaky); progress and reports
//!   (per job, and per test: `runner::report`).
//! - [`suite`]: test suites: frameworks (nextest, pytest, go test, a command pair) listing a
//!   suite on the runner, the command a worker runs for a batch, per-test results from the
//!   framework's own report (`suite::result`), the merged JUnit, and the plan
//!   (`suite::plan`: batches from estimates, longest and unknown first, none over total /
//!   slots; a fully measured suite dealt onto two batches per slot).
//! - [`history`]: what a run keeps for later runs: the `ca-timings` and `ca-results`
//!   documents (sealed as `ca-history-…` with a secret), re-run selection, the `--timings`
//!   files, `history::github`, which reads them back through GitHub's REST API (octocrab),
//!   and `history::RunHistory`, loaded before a run and saved after it.
//! - [`in_process`]: a broker or worker run as a task beside a runner, stopped by it
//!   (`broker::EmbeddedBroker`, `worker::InProcessWorker`).
//! - [`local`]: `cluster-action local`: [`serve`] in-process, an embedded broker, worker
//!   processes and the runner.
//! - [`serve`]: a local artifact service (both halves) for tests, benchmarks and `local`.
//! - [`selftest`]: the transport check of two jobs (`selftest transport`): streams both ways
//!   and a layer, through the run's artifact store.
//! - [`budget`]: GitHub's 500 artifacts per job: the runner's up-front check of a manifest, the
//!   workers' outputs flush pacing.
//! - [`credentials`]: the names of the credential variables, and the list hidden from jobs
//!   and from `/proc`.
//! - [`duration`], [`dir_name`], [`xml`]: durations as people write them, a free-text name as
//!   a directory name (a job's outputs, a suite's shipped files), XML text for JUnit.
//! - [`input_file`]: the one way a file handed to the runner is read (regular files only,
//!   bounded: a manifest, a commands or timings file, a batch's report).
//! - [`cleanup`]: what a cluster leaves behind: the broker's clean-stop deletion, `gc`'s
//!   leftovers, the `keep` rule (artifacts' retention is the store's `expiresAt`).
//!
//! Every rule of the cluster lives in one of the state machines (`broker::scheduler`,
//! `worker::machine`, `runner::machine` with `runner::suite_run`): each takes events (messages, timers, signals, task
//! results) and returns effects (its warnings too: [`notice::Notice`]), and is unit-tested
//! without a network; the shells only move messages, timers and signals, and log notices.
//!
//! The data path of one job: the runner packs and publishes the manifest's layers, then sends
//! the manifest's shared defaults once (`Defaults`: the environment every job inherits) and
//! `Submit` on its stream (each job carrying only what it sets itself); the broker queues the
//! jobs (longest estimate first) and sends `Assign` to a worker with a free slot (plus a
//! pipeline sized from the measured round trip, taken back for an idle worker when the queue
//! runs dry), the runner's defaults going to each worker once, before its first such job;
//! under a lease the broker renews (`Lease`, fencing a worker declared lost), the worker
//! merges the defaults in (`proto::JobDefaults::merge_into`, the manifest's own rule), fetches
//! the layers into its cache, assembles the job's directory from private copies, runs
//! `bash -c`, gives the slot back (`Uploading`), publishes declared outputs in a layer
//! shared with other jobs and sends `Finished`; the broker forwards the outcome to the runner,
//! which
//! fetches the outputs and reports. A suite's batch is such a job: its command is the
//! framework's run of exactly its tests, its one output the framework's report, which the
//! runner reads back to decide each test. The binary (`src/main.rs`, `src/cli/`) maps flags onto
//! these modules, composes the embedded broker for `run --embed-broker` and `local`, and maps
//! every failure and every run's end onto an exit code in one exhaustive table
//! (`cli/exit.rs`); `dist/index.js` is the GitHub Action around it, which replaces itself with
//! the binary where Node has `process.execve` (the binary keeps the step's `--timeout` and
//! writes its outputs, `run --step-outputs`).

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
pub mod store;
pub mod stream;
pub mod suite;
pub mod token;
pub mod worker;
pub mod xml;
