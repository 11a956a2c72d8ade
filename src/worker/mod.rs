//! The worker: joins the broker, announces its slots, runs assigned jobs in their own
//! directories and process groups, and reports each attempt.
//!
//! Shape: the decisions live in [`machine`] (a pure state machine: slots, queue, cancel,
//! stop, uploading); `run` is its async shell, which only moves messages between the
//! [`WorkerLink`] and the machine, starts and kills attempt tasks (`attempt`: layers → job
//! directory → launch, asked of the machine → [`exec`] → staged outputs), runs the outputs
//! uploads of attempts that gave their slot back, and watches for signals. It keeps one
//! record per attempt (running, staged or uploading), from its start until its last task
//! ended.

mod attempt;
pub mod contain;
pub mod exec;
pub mod machine;
pub mod output;
pub mod outputs_pack;
mod progress;
pub mod sandbox;
mod session;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{self, JoinSet};
use tracing::{info, warn};

use crate::in_process::InProcess;
use crate::layer::Digest;
use crate::layer::LayerCache;
use crate::link::{JoinError, Joined, LinkError, Target, WorkerLink};
use crate::proto::{AttemptRef, Hello, JobId, PROTOCOL_VERSION, WorkerMsg};
use crate::store::ArtifactStore;
use crate::stream::{self, Namespace, StreamConfig, StreamError};
use attempt::Ran;
use machine::{Effect, Ending, Machine};
use outputs_pack::Staged;

/// How long an interrupted worker tries to tell the broker it is leaving: CI systems follow
/// their SIGINT with a SIGKILL within seconds (GitHub Actions: 7.5 s).
const INTERRUPTED_CLOSE: Duration = Duration::from_secs(5);

/// How to run a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The cluster's stream names.
    pub ns: Namespace,
    /// Stream timings (the peer timeout declares the broker lost).
    pub stream: StreamConfig,
    /// Jobs run at once.
    pub slots: u32,
    /// Where extracted layers are kept (shared by all jobs of this worker).
    pub cache_dir: PathBuf,
    /// Where job directories are made.
    pub work_dir: PathBuf,
    /// How long to wait for a broker to appear.
    pub broker_wait: Duration,
    /// The name jobs see as `CLUSTER_WORKER` and reports show.
    pub name: String,
    /// Output and kill limits of each job.
    pub limits: exec::ExecLimits,
}

/// Why a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No broker appeared within `--broker-wait`, or connecting failed.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The broker stopped answering, or sent something that is not a message for workers.
    #[error("lost the broker: {0}")]
    BrokerLost(#[source] LinkError),
    /// The broker closed its stream without telling this worker to exit.
    #[error("lost the broker: it closed the stream without telling this worker to exit")]
    BrokerClosed,
    /// The broker refused us.
    #[error("the broker refused this worker: {0}")]
    Refused(String),
    /// Sending to the broker failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The layer cache could not be opened.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
}

/// What every attempt of this worker shares.
pub(crate) struct Shared {
    pub store: ArtifactStore,
    pub cache: LayerCache,
    pub cfg: WorkerConfig,
    /// Publishes the outputs of several attempts in one layer.
    pub outputs: outputs_pack::OutputsPacker,
    /// The warm framework sessions suite batches are handed to.
    pub sessions: session::Sessions,
    /// Where running attempts' progress lines go (to the shell, which sends them).
    pub progress: progress::Sender,
}

/// How a worker's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The broker told it to exit (the cluster stopped).
    Exited,
    /// `shutdown` completed (SIGINT/SIGTERM): its running jobs were killed, and it closed its
    /// stream so that the broker gives them to other workers at once.
    Interrupted,
    /// The cluster had stopped before this worker joined it: a slow matrix job started after
    /// the run was over, or the run that started this worker ended before it joined. Who
    /// started it knows which, and whether that is worth a word.
    ClusterStopped,
}

/// A worker inside another process (`run --slots`): it joins the cluster like any other
/// worker (its own link, cache, process groups and reports) and leaves when stopped.
pub struct InProcessWorker(InProcess<Result<WorkerEnd, WorkerError>>);

impl InProcessWorker {
    /// Starts a worker task.
    pub fn start(store: ArtifactStore, cfg: WorkerConfig) -> Self {
        Self(InProcess::start(|stopped| run(store, cfg, stopped)))
    }

    /// Stops the worker if it still runs (it kills what it runs and leaves the cluster, whose
    /// broker gives that work to others) and waits until it has.
    pub async fn stop(self) -> Result<WorkerEnd, WorkerError> {
        self.0
            .stop("in-process worker", Ok(WorkerEnd::Interrupted))
            .await
    }
}

/// Runs a worker until the broker tells it to exit, `shutdown` completes, or it fails.
pub async fn run(
    store: ArtifactStore,
    cfg: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerEnd, WorkerError> {
    let layer_seal = cfg
        .stream
        .seal
        .as_ref()
        .map(crate::seal::ClusterKeys::layers);
    let cache = LayerCache::open(&cfg.cache_dir)?.with_seal(layer_seal.clone());
    let outputs =
        outputs_pack::OutputsPacker::new(store.clone(), layer_seal, &cfg.work_dir, cfg.slots)
            .map_err(|e| {
                crate::layer::LayerError::io(
                    format!(
                        "creating an outputs staging directory in '{}'",
                        cfg.work_dir.display()
                    ),
                    e,
                )
            })?;
    tokio::pin!(shutdown);
    let target = Target {
        ns: cfg.ns.clone(),
        stream: cfg.stream.clone(),
        wait: cfg.broker_wait,
    };
    let hello = Hello::Worker {
        version: PROTOCOL_VERSION,
        name: cfg.name.clone(),
        slots: cfg.slots,
    };
    // Request 0 of the lease is the hello: its lease counts from before it was sent.
    let hello_sent = std::time::Instant::now();
    let joined = tokio::select! {
        joined = WorkerLink::join(store.clone(), &target, hello) => joined?,
        () = &mut shutdown => return Ok(WorkerEnd::Interrupted),
    };
    let link = match joined {
        Joined::Linked(link) => link,
        Joined::ClusterClosed => return Ok(WorkerEnd::ClusterStopped),
    };
    info!(name = %cfg.name, slots = cfg.slots, "worker connected");
    let (ask_launch, launch_asked) = mpsc::unbounded_channel();
    let (progress, progress_lines) = mpsc::unbounded_channel();
    let mut shell = Shell {
        machine: Machine::new(cfg.name.clone(), cfg.slots, hello_sent),
        shared: Arc::new(Shared {
            store,
            cache,
            sessions: session::Sessions::new(cfg.work_dir.join("sessions"), cfg.slots),
            cfg,
            outputs,
            progress,
        }),
        link,
        tasks: JoinSet::new(),
        attempts: BTreeMap::new(),
        ask_launch,
        launch_asked,
        progress_lines,
    };
    let result = shell.serve(&mut shutdown).await;
    shell.wind_down(result).await
}

/// The async shell around the [`Machine`]: the link, and each attempt's tasks.
struct Shell {
    machine: Machine,
    shared: Arc<Shared>,
    link: WorkerLink,
    /// The tasks of the attempts: each attempt's run, then its outputs upload.
    tasks: JoinSet<TaskEnd>,
    /// Every attempt started and not yet over, by job and attempt number.
    attempts: BTreeMap<AttemptRef, Attempt>,
    /// Given to each attempt task: it asks here before it spawns its job's process.
    ask_launch: mpsc::UnboundedSender<attempt::LaunchRequest>,
    launch_asked: mpsc::UnboundedReceiver<attempt::LaunchRequest>,
    /// The progress lines of running attempts ([`Shared::progress`]).
    progress_lines: mpsc::UnboundedReceiver<(AttemptRef, String)>,
}

/// The shell's record of one attempt, from its start until its last task ended: what it
/// holds in each stage, so that no part of an attempt outlives the rest.
enum Attempt {
    /// Its task runs it (layers, directory, process, staged outputs).
    Running(Running),
    /// Its process ran; its outputs are staged until the machine says to upload them.
    Staged(Staged),
    /// Its outputs are being uploaded by this task.
    Uploading(task::Id),
}

/// A running attempt: its task, and the two ways the shell reaches into it.
struct Running {
    task: task::Id,
    /// Kills its process.
    kill: watch::Sender<bool>,
    /// Where to answer once it asked to launch (with the end of the lease).
    launch: Option<oneshot::Sender<std::time::Instant>>,
}

impl Attempt {
    /// The task working on it now.
    fn task(&self) -> Option<task::Id> {
        match self {
            Self::Running(Running { task, .. }) | Self::Uploading(task) => Some(*task),
            Self::Staged(_) => None,
        }
    }
}

/// What an attempt's task returns.
enum TaskEnd {
    /// Its run: the attempt's process ended (or never started).
    Ran(Ran),
    /// Its outputs upload: the layer and directory holding them, or why they are lost.
    Uploaded(Result<(Digest, String), String>),
}

/// Every attempt of job `id`, as a range of [`Shell::attempts`].
fn of_job(id: JobId) -> std::ops::RangeInclusive<AttemptRef> {
    AttemptRef { id, attempt: 0 }..=AttemptRef {
        id,
        attempt: u32::MAX,
    }
}

impl Shell {
    /// Feeds the machine until it ends (or the link fails).
    async fn serve(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<WorkerEnd, WorkerError> {
        loop {
            let effects = tokio::select! {
                msg = self.link.recv() => match msg {
                    Ok(Some(msg)) => self.machine.message(msg, std::time::Instant::now()),
                    Ok(None) => {
                        self.broker_gone();
                        return Err(WorkerError::BrokerClosed);
                    }
                    Err(e) => {
                        self.broker_gone();
                        return Err(WorkerError::BrokerLost(e));
                    }
                },
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.task_done(done)
                }
                Some((id, answer)) = self.launch_asked.recv() => self.launch_asked(id, answer),
                Some((key, lines)) = self.progress_lines.recv() => {
                    self.machine.progress(key.id, key.attempt, lines)
                }
                () = sleep_until(self.machine.renewal_due()) => {
                    self.machine.tick(std::time::Instant::now())
                }
                () = sleep_until(self.machine.awake_due()) => {
                    self.machine.awake(std::time::Instant::now())
                }
                () = &mut *shutdown => self.machine.interrupted(),
            };
            // Messages ready together (an outcome, the next start, a renewal) share an append.
            let mut msgs = Vec::new();
            let mut actions = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Send(msg) => msgs.push(msg),
                    other => actions.push(other),
                }
            }
            self.link.send_all(&msgs).await?;
            if msgs.iter().any(WorkerMsg::answered_at_once) {
                self.link.expecting().message_due();
            }
            for effect in actions {
                match self.apply(effect).await? {
                    None => {}
                    Some(Ending::Exited) => return Ok(WorkerEnd::Exited),
                    Some(Ending::Interrupted) => return Ok(WorkerEnd::Interrupted),
                    Some(Ending::Refused(reason)) => return Err(WorkerError::Refused(reason)),
                }
            }
        }
    }

    /// The broker is gone: nothing it gave this worker starts any more.
    fn broker_gone(&mut self) {
        let dropped = self.machine.broker_gone();
        if dropped > 0 {
            warn!("the broker is gone: {dropped} prefetched job(s) will not start here");
        }
    }

    /// The machine's event for an attempt's task that returned (or panicked): its run or
    /// its upload, as the attempt's record says.
    fn task_done(&mut self, done: Result<(task::Id, TaskEnd), task::JoinError>) -> Vec<Effect> {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        let Some((key, attempt)) = self.take_task(task) else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        match (done, attempt) {
            (Ok((_, TaskEnd::Ran(ran))), _) => self.ran(key, ran, now),
            (Ok((_, TaskEnd::Uploaded(result))), _) => {
                self.machine.upload_ended(key.id, key.attempt, result, now)
            }
            (Err(e), Attempt::Running(_)) => {
                warn!("a job task failed: {e}");
                self.machine.attempt_failed(key.id, &e.to_string(), now)
            }
            (Err(e), _) => {
                warn!("an outputs upload task failed: {e}");
                let why = format!("the worker's upload task failed: {e}");
                self.machine
                    .upload_ended(key.id, key.attempt, Err(why), now)
            }
        }
    }

    /// Removes the record of the attempt `task` works on.
    fn take_task(&mut self, task: task::Id) -> Option<(AttemptRef, Attempt)> {
        let key = *self
            .attempts
            .iter()
            .find(|(_, attempt)| attempt.task() == Some(task))?
            .0;
        self.attempts.remove_entry(&key)
    }

    /// The machine's event for attempt `key`, whose process ended: its outputs, if it has
    /// any, stay staged while the machine wants them uploaded.
    fn ran(&mut self, key: AttemptRef, ran: Ran, now: std::time::Instant) -> Vec<Effect> {
        let Ran { outcome, staged } = ran;
        let Some(staged) = staged else {
            return self.machine.attempt_ended(key.id, outcome, now);
        };
        let fx = self.machine.attempt_ran(key.id, outcome, now);
        // A stale attempt's staged files go now (dropping them removes them).
        if fx.contains(&Effect::Upload(key.id)) {
            self.attempts.insert(key, Attempt::Staged(staged));
        }
        fx
    }

    /// An attempt task of job `id` asks to launch its process: the machine answers with
    /// [`Effect::Launch`], to `answer`.
    fn launch_asked(
        &mut self,
        id: JobId,
        answer: oneshot::Sender<std::time::Instant>,
    ) -> Vec<Effect> {
        if let Some(running) = self.running_mut(id) {
            running.launch = Some(answer);
        }
        self.machine.ready(id, std::time::Instant::now())
    }

    /// Carries out one effect; `Some` when the worker ends.
    async fn apply(&mut self, effect: Effect) -> Result<Option<Ending>, WorkerError> {
        match effect {
            Effect::Send(msg) => self.link.send(&msg).await?,
            Effect::Start(assignment) => self.start(assignment),
            Effect::Launch { id, until } => {
                if let Some(answer) = self.running_mut(id).and_then(|r| r.launch.take()) {
                    let _ = answer.send(until);
                }
            }
            Effect::Upload(id) => self.upload(id),
            Effect::Kill(id) => {
                if let Some(running) = self.running_mut(id) {
                    let _ = running.kill.send(true);
                }
            }
            Effect::End(ending) => return Ok(Some(ending)),
            Effect::Notice(notice) => notice.log(),
        }
        Ok(None)
    }

    /// Starts the task running `assignment`.
    fn start(&mut self, assignment: machine::Assignment) {
        let (kill, kill_rx) = watch::channel(false);
        let key = AttemptRef {
            id: assignment.id,
            attempt: assignment.attempt,
        };
        let gate = attempt::Gate::new(key.id, self.ask_launch.clone());
        let run = attempt::run(self.shared.clone(), assignment, gate, kill_rx);
        let task = self.tasks.spawn(async { TaskEnd::Ran(run.await) }).id();
        let running = Running {
            task,
            kill,
            launch: None,
        };
        self.attempts.insert(key, Attempt::Running(running));
    }

    /// Starts the upload of the staged outputs of job `id`.
    fn upload(&mut self, id: JobId) {
        let Some(key) = self
            .attempts
            .range(of_job(id))
            .find(|(_, attempt)| matches!(attempt, Attempt::Staged(_)))
            .map(|(key, _)| *key)
        else {
            return;
        };
        let Some(Attempt::Staged(staged)) = self.attempts.remove(&key) else {
            return;
        };
        let shared = self.shared.clone();
        let upload = attempt::upload(shared, id, staged);
        let task = self
            .tasks
            .spawn(async { TaskEnd::Uploaded(upload.await) })
            .id();
        self.attempts.insert(key, Attempt::Uploading(task));
    }

    /// The running attempt of job `id`.
    fn running_mut(&mut self, id: JobId) -> Option<&mut Running> {
        self.attempts
            .range_mut(of_job(id))
            .find_map(|(_, attempt)| match attempt {
                Attempt::Running(running) => Some(running),
                _ => None,
            })
    }

    /// Exit, interruption or failure: nothing may keep running. Dropping the tasks kills their
    /// process groups. Their attempts are not reported: closing the stream tells the broker
    /// this worker is gone, and it requeues them.
    async fn wind_down(
        mut self,
        result: Result<WorkerEnd, WorkerError>,
    ) -> Result<WorkerEnd, WorkerError> {
        self.tasks.shutdown().await;
        let grace = self.shared.cfg.limits.kill_grace;
        self.shared.sessions.stop_all(grace).await;
        let close = self.link.close();
        let closed = match result {
            Ok(WorkerEnd::Interrupted) => tokio::time::timeout(INTERRUPTED_CLOSE, close)
                .await
                .unwrap_or_else(|_| {
                    warn!("could not tell the broker within {INTERRUPTED_CLOSE:?} that this worker is leaving");
                    Ok(())
                }),
            _ => close.await,
        };
        if let Err(e) = closed {
            crate::link::log_close_error(&e);
        }
        match result {
            // A broker that stopped the cluster before it knew this worker closes its stream
            // without an exit message; its closed listener says the cluster is over, not lost.
            Err(e @ (WorkerError::BrokerLost(_) | WorkerError::BrokerClosed))
                if stream::listener_closed(&self.shared.store, &self.shared.cfg.ns)
                    .await
                    .unwrap_or(false) =>
            {
                // The broker said so in its listener: an ordinary end, not a warning.
                info!("the cluster was stopped ({e}): exiting");
                Ok(WorkerEnd::Exited)
            }
            other => other,
        }
    }
}

/// Waits until `due` (the machine's next lease renewal or stall watch), or forever when there
/// is none.
async fn sleep_until(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
        None => std::future::pending().await,
    }
}
