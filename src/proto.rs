//! The messages between runner, broker and worker, as they travel over artifact streams.
//!
//! Every message is one JSON document in one stream frame. The stream layer guarantees order
//! and exactly-once delivery per direction; these types only say what is said, and
//! [`crate::link`] is the only code that encodes and decodes them.
//!
//! Jobs have two names: a runner's [`JobIndex`] (runner ↔ broker) and the broker's
//! [`JobId`] (broker ↔ worker); the broker maps one onto the other.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::layer::Digest;

/// The version of this message set; a peer with another version is refused at hello.
pub const PROTOCOL_VERSION: u32 = 5;

/// A job as its runner knows it: its index in the manifest. Runner ↔ broker messages name
/// jobs by it; it is unique only within one runner's submission.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct JobIndex(pub u64);

/// A job as the broker knows it: unique over every runner of the cluster. Broker ↔ worker
/// messages name jobs by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One unit of work as the runner submits it and a worker runs it (who names it how is up to
/// the message that carries it: [`Submission`], [`BrokerToWorker::Assign`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Unique name from the manifest.
    pub name: String,
    /// Shell command, run by `bash -c` in the job's directory.
    pub run: String,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Layers assembled into the job's directory, in order (later layers win).
    pub layers: Vec<Digest>,
    /// Time limit of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Extra attempts after a failure or a lost worker.
    pub retries: u32,
    /// Globs (relative to the job directory) of files brought back to the runner.
    pub outputs: Vec<String>,
    /// Expected duration in milliseconds, if known; orders the queue.
    pub estimate_ms: Option<u64>,
    /// Expected duration in milliseconds, if known, where the queue's order is the runner's
    /// own (a suite's batches, in the plan's order): the broker prefetches such a job to the
    /// worker where it is expected to start soonest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ms: Option<u64>,
    /// How far the job is kept apart from its worker and the other jobs.
    #[serde(default)]
    pub isolation: Isolation,
    /// Variables passed from the runner's environment (`secret-env`): set like `env`, and
    /// their values masked in the captured output.
    #[serde(default, skip_serializing_if = "SecretEnv::is_empty")]
    pub secret_env: SecretEnv,
    /// The job takes its runner's [`JobDefaults`] under its own `env` and `secret_env`
    /// (which then hold only what it sets itself): the defaults travel once per run, not
    /// once per job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherits: bool,
    /// The workers (by name) earlier attempts of this work ran on, as a failed test's retry
    /// names them: the broker gives it to another worker when one is connected, and to one of
    /// these only when no other is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid_workers: Vec<String>,
    /// For a batch of a suite whose framework keeps warm sessions (pytest): the `bash -c`
    /// command that starts one in a directory holding the job's layers. A worker that can
    /// (`isolation: process` or `none`) keeps one per slot for the jobs of the same command,
    /// layers and environment, and names its control directory to the job in
    /// `CLUSTER_SESSION`; the job's `run` hands its tests to it, or runs them itself when the
    /// variable is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// A file in the job's directory (a suite batch's report, which most frameworks write a
    /// test at a time) whose lines the worker sends back while the job runs
    /// ([`WorkerMsg::Progress`]), so that the runner shows tests as they finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

impl JobSpec {
    /// A job named `name` running `run` with a time limit of `timeout_ms` and nothing else: no
    /// environment, layers, outputs, retries or estimate, process isolation, inheriting no
    /// defaults. Callers set the rest with struct update syntax (`JobSpec { retries: 2,
    /// ..JobSpec::new(..) }`), so that a new field needs no change where it does not matter.
    pub fn new(name: impl Into<String>, run: impl Into<String>, timeout_ms: u64) -> Self {
        Self {
            name: name.into(),
            run: run.into(),
            env: BTreeMap::new(),
            layers: Vec::new(),
            timeout_ms,
            retries: 0,
            outputs: Vec::new(),
            estimate_ms: None,
            expected_ms: None,
            isolation: Isolation::default(),
            secret_env: SecretEnv::default(),
            inherits: false,
            avoid_workers: Vec::new(),
            session: None,
            progress: None,
        }
    }

    /// How long the job is expected to take, in milliseconds, if known: its
    /// [`JobSpec::expected_ms`], else its [`JobSpec::estimate_ms`].
    pub fn expected_ms(&self) -> Option<u64> {
        self.expected_ms.or(self.estimate_ms)
    }
}

/// What the jobs of one runner share: the manifest's `defaults:` environment. A runner sends
/// it once ([`RunnerMsg::Defaults`]), the broker hands it to each worker once
/// ([`BrokerToWorker::Defaults`]), and a worker merges it into every job that
/// [`JobSpec::inherits`] before the job starts. (The scalar defaults, such as `timeout` and
/// `retries`, are resolved into each job: the broker schedules by them, and they are small.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDefaults {
    /// Variables every job gets unless it sets them itself.
    pub env: BTreeMap<String, String>,
    /// Secret variables every job gets unless it sets them itself.
    #[serde(default, skip_serializing_if = "SecretEnv::is_empty")]
    pub secret_env: SecretEnv,
}

impl JobDefaults {
    /// Whether there is nothing to share.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.secret_env.is_empty()
    }

    /// Puts these defaults under a job's own `env` and `secret_env`: a variable the job sets
    /// keeps the job's value. The one merge of the manifest's rule ("`env` merged over
    /// `defaults.env`, `secret-env` added to `defaults.secret-env`"): the manifest resolves
    /// its jobs with it, and a worker applies a runner's shared defaults with it.
    pub fn merge_into(&self, env: &mut BTreeMap<String, String>, secret_env: &mut SecretEnv) {
        for (name, value) in &self.env {
            env.entry(name.clone()).or_insert_with(|| value.clone());
        }
        for (name, value) in &self.secret_env.0 {
            secret_env
                .0
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
    }

    /// `spec` as it travels when it inherits these defaults: its `env` and `secret_env` keep
    /// only what differs from them, so that [`JobDefaults::merge_into`] gives back what it
    /// had (every variable of the defaults is in a resolved job's environment).
    pub fn factor_out(&self, spec: &mut JobSpec) {
        spec.env
            .retain(|name, value| self.env.get(name) != Some(value));
        let secrets = &self.secret_env.0;
        spec.secret_env
            .0
            .retain(|name, value| secrets.get(name) != Some(value));
        spec.inherits = true;
    }
}

/// Names one runner's [`JobDefaults`] between the broker and its workers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct DefaultsId(pub u64);

/// Secret environment variables of a job; `Debug` shows their names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretEnv(pub BTreeMap<String, String>);

impl SecretEnv {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// How far a job is kept apart from its worker and the other jobs (manifest `isolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Its own process group, killed when the job ends; what leaves the group may stay.
    None,
    /// Every process the job starts dies with the job and with its worker (the default).
    #[default]
    Process,
    /// Own PID and mount namespaces: only its own processes, private `/tmp`, read-only
    /// everywhere but its directory.
    Sandbox,
    /// [`Isolation::Sandbox`] with a network namespace of its own (loopback only).
    SandboxNoNetwork,
}

/// A job as the runner submits it: its index and what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The runner's index of the job.
    pub index: JobIndex,
    /// What to run.
    pub spec: JobSpec,
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Exit code 0.
    Passed,
    /// Non-zero exit code or killed by a signal.
    Failed,
    /// Killed at its time limit.
    TimedOut,
    /// Could not be run (layer fetch failed, worker lost with no attempts left, ...).
    Error,
    /// Cancelled before it finished.
    Cancelled,
}

/// The result of one attempt, as a worker reports it (the message carrying it names the job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// 1-based attempt number.
    pub attempt: u32,
    /// How it ended.
    pub status: JobStatus,
    /// The exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// Wall time of the attempt in milliseconds.
    pub duration_ms: u64,
    /// The worker that ran it.
    pub worker: String,
    /// Captured stdout+stderr (tail, with a marker of what was cut).
    pub output: String,
    /// The layer holding the job's declared outputs, if it produced any.
    pub outputs_layer: Option<Digest>,
    /// The directory of [`JobOutcome::outputs_layer`] holding this attempt's outputs (a worker
    /// packs several jobs' outputs into one layer); the whole layer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_path: Option<String>,
    /// Why the job could not run, for `Error`.
    pub error: Option<String>,
}

/// Who is saying hello to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Hello {
    /// A worker offering `slots` concurrent jobs.
    Worker {
        /// Protocol version.
        version: u32,
        /// A human-readable worker name (host/job/index).
        name: String,
        /// Concurrent jobs it runs.
        slots: u32,
    },
    /// A runner that will submit work or control the cluster.
    Runner {
        /// Protocol version.
        version: u32,
        /// A human-readable name.
        name: String,
    },
}

/// Runner → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerMsg {
    /// First message.
    Hello(Hello),
    /// What the jobs of this run that [`JobSpec::inherits`] share; sent once, before them.
    Defaults(JobDefaults),
    /// Jobs to queue (a large manifest is sent in several batches).
    Submit {
        /// The jobs.
        jobs: Vec<Submission>,
    },
    /// All jobs are submitted; the broker reports `AllDone` when they have finished.
    EndOfSubmission,
    /// Cancel every queued and running job of this runner.
    Cancel,
    /// Stop the whole cluster once this runner's work is done (or now, if it has none).
    StopCluster,
}

/// Broker → runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrokerToRunner {
    /// The hello was accepted.
    Welcome {
        /// Workers connected now, and their total slots.
        workers: u32,
        /// Total slots.
        slots: u32,
    },
    /// An attempt started on a worker.
    Started {
        /// The job.
        index: JobIndex,
        /// Attempt number.
        attempt: u32,
        /// The worker.
        worker: String,
    },
    /// A job's final outcome (after retries).
    Finished {
        /// The job.
        index: JobIndex,
        /// Its last attempt.
        outcome: JobOutcome,
    },
    /// Lines a running attempt's [`JobSpec::progress`] file gained (see
    /// [`WorkerMsg::Progress`]).
    Progress {
        /// The job.
        index: JobIndex,
        /// Attempt number.
        attempt: u32,
        /// The lines, each with its newline.
        lines: String,
    },
    /// Every submitted job has a final outcome.
    AllDone,
    /// Workers connected changed (for progress and `--worker-wait`).
    Workers {
        /// Workers connected now.
        workers: u32,
        /// Their total slots.
        slots: u32,
    },
    /// The broker refuses this runner (e.g. protocol version).
    Refused {
        /// Why.
        reason: String,
    },
}

/// Broker → worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrokerToWorker {
    /// The hello was accepted.
    Welcome,
    /// Run this attempt.
    Assign {
        /// The job.
        id: JobId,
        /// What to run (shared with the broker's queue, not copied per attempt).
        job: Arc<JobSpec>,
        /// Attempt number.
        attempt: u32,
        /// The defaults the job inherits (sent to this worker before, once), if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        defaults: Option<DefaultsId>,
    },
    /// The shared defaults `id` of one runner's jobs, sent to a worker once, before the first
    /// [`BrokerToWorker::Assign`] that names them.
    Defaults {
        /// Their name in later assignments.
        id: DefaultsId,
        /// The defaults (shared by the broker's copies for each worker).
        defaults: Arc<JobDefaults>,
    },
    /// Kill this job if it is running (or drop it if queued).
    Cancel {
        /// The job.
        id: JobId,
    },
    /// Give these attempts back unless they have started (another worker idles): the worker
    /// answers [`WorkerMsg::Released`] with the ones it gave up; the others run here.
    TakeBack {
        /// The attempts asked back.
        jobs: Vec<AttemptRef>,
    },
    /// The answer to [`WorkerMsg::Renew`] (request 0 is the hello): the broker still counts
    /// this worker as alive. The worker may start assigned attempts until `valid_ms` after it
    /// *sent* request `seq`; the broker declares a worker lost only after a longer silence, so
    /// a worker it has declared lost holds no lease.
    Lease {
        /// The request answered.
        seq: u64,
        /// How long the lease lasts, from when the request was sent.
        valid_ms: u64,
    },
    /// The cluster is stopping: finish nothing more and exit 0.
    Exit,
    /// The broker refuses this worker.
    Refused {
        /// Why.
        reason: String,
    },
}

impl BrokerToWorker {
    /// Whether the worker answers it at once: an assignment with `Started` when a slot is
    /// free, a take-back with `Released`. The broker's reader then looks for the answer at
    /// its fastest pace ([`Expecting::message_due`](crate::stream::Expecting::message_due)).
    pub fn answered_at_once(&self) -> bool {
        matches!(self, Self::Assign { .. } | Self::TakeBack { .. })
    }
}

/// Worker → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// First message.
    Hello(Hello),
    /// An assigned attempt started.
    Started {
        /// The job.
        id: JobId,
        /// Attempt number.
        attempt: u32,
    },
    /// An attempt's process ended and its outputs are being uploaded: it holds no slot of
    /// the worker any more, and its `Finished` follows once the outputs are in the store.
    Uploading {
        /// The job.
        id: JobId,
        /// Attempt number.
        attempt: u32,
    },
    /// An attempt ended.
    Finished {
        /// The job.
        id: JobId,
        /// How the attempt ended.
        outcome: JobOutcome,
    },
    /// Asks for a fresh [`BrokerToWorker::Lease`]: a worker starts nothing it was assigned
    /// without a lease, so a worker the broker declared lost (stalled, cut off) never starts
    /// work the broker has given to others since.
    Renew {
        /// Numbers the request (the hello is request 0).
        seq: u64,
    },
    /// The answer to [`BrokerToWorker::TakeBack`]: the attempts this worker gave up (never
    /// started, never will be); attempts asked back but not listed run here.
    Released {
        /// The attempts given up.
        jobs: Vec<AttemptRef>,
    },
    /// Lines a running attempt's [`JobSpec::progress`] file gained, whole lines only, in
    /// order: the broker passes them on to the job's runner.
    Progress {
        /// The job.
        id: JobId,
        /// Attempt number.
        attempt: u32,
        /// The lines, each with its newline.
        lines: String,
    },
}

impl WorkerMsg {
    /// Whether the broker answers it at once: a freed slot (`Uploading`, or `Finished` of a
    /// job without outputs) and a release get the next job when one waits, a renewal its
    /// lease. The worker's reader then looks for the answer at its fastest pace
    /// ([`Expecting::message_due`](crate::stream::Expecting::message_due)).
    pub fn answered_at_once(&self) -> bool {
        matches!(
            self,
            Self::Uploading { .. }
                | Self::Finished { .. }
                | Self::Released { .. }
                | Self::Renew { .. }
        )
    }
}

/// One attempt of one job, as take-back names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The job.
    pub id: JobId,
    /// The attempt number.
    pub attempt: u32,
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what} message: {source}")]
pub struct DecodeError {
    /// Which message type was expected.
    pub what: &'static str,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

/// Encodes a message for one stream frame.
pub(crate) fn encode<T: Serialize>(msg: &T) -> bytes::Bytes {
    // Serializing these plain data types to JSON cannot fail (no maps with non-string keys).
    bytes::Bytes::from(serde_json::to_vec(msg).unwrap_or_default())
}

/// Decodes one stream frame as message type `T` (`what` names it in errors).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    frame: &[u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(frame).map_err(|source| DecodeError { what, source })
}

/// The first message of any peer: `{"type": "hello", "role": ...}`.
pub(crate) fn decode_hello(frame: &[u8]) -> Result<Hello, DecodeError> {
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum First {
        Hello(Hello),
    }
    decode::<First>("hello", frame).map(|First::Hello(h)| h)
}
