//! The worker: joins the broker, announces its slots, runs assigned jobs in their own
//! directories and process groups, and reports each attempt.
//!
//! Shape: the decisions live in [`machine`] (a pure state machine: slots, queue, cancel,
//! stop, uploading); `run` is its async shell, which only moves messages between the
//! [`WorkerLink`] and the machine, starts and kills attempt tasks (`attempt`: layers → job
//! directory → launch, asked of the machine → [`exec`] → staged outputs), runs the outputs
//! uploads of attempts that gave their slot back, and watches for signals.

mod attempt;
pub mod contain;
pub mod exec;
pub mod machine;
pub mod output;
pub mod outputs_pack;
pub mod sandbox;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::in_process::InProcess;
use crate::layer::Digest;
use crate::layer::LayerCache;
use crate::link::{JoinError, Joined, LinkError, Target, WorkerLink};
use crate::proto::{Hello, JobId, PROTOCOL_VERSION};
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
    let mut shell = Shell {
        machine: Machine::new(cfg.name.clone(), cfg.slots, hello_sent),
        shared: Arc::new(Shared {
            store,
            cache,
            cfg,
            outputs,
        }),
        link,
        running: JoinSet::new(),
        tasks: HashMap::new(),
        kills: HashMap::new(),
        ask_launch,
        launch_asked,
        launches: HashMap::new(),
        staged: HashMap::new(),
        uploads: JoinSet::new(),
        upload_tasks: HashMap::new(),
    };
    let result = shell.serve(&mut shutdown).await;
    shell.wind_down(result).await
}

/// The async shell around the [`Machine`]: the link, the attempt tasks and their kill switches.
struct Shell {
    machine: Machine,
    shared: Arc<Shared>,
    link: WorkerLink,
    running: JoinSet<Ran>,
    /// The job of each attempt task.
    tasks: HashMap<tokio::task::Id, JobId>,
    kills: HashMap<JobId, watch::Sender<bool>>,
    /// Given to each attempt task: it asks here before it spawns its job's process.
    ask_launch: mpsc::UnboundedSender<attempt::LaunchRequest>,
    launch_asked: mpsc::UnboundedReceiver<attempt::LaunchRequest>,
    /// Where to answer each attempt that asked to launch (with the end of the lease).
    launches: HashMap<JobId, oneshot::Sender<std::time::Instant>>,
    /// Staged outputs of attempts that ran, until the machine says to upload them.
    staged: HashMap<JobId, (u32, Staged)>,
    /// Outputs uploads, each answering with its job, attempt and result.
    uploads: JoinSet<Uploaded>,
    /// The job and attempt of each upload task.
    upload_tasks: HashMap<tokio::task::Id, (JobId, u32)>,
}

/// What an upload task returns: its job, attempt, and the layer and directory or why not.
type Uploaded = (JobId, u32, Result<(Digest, String), String>);

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
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.attempt_done(done)
                }
                Some((id, answer)) = self.launch_asked.recv() => {
                    self.launches.insert(id, answer);
                    self.machine.ready(id, std::time::Instant::now())
                }
                Some(done) = self.uploads.join_next_with_id(), if !self.uploads.is_empty() => {
                    self.upload_done(done)
                }
                () = renewal(self.machine.renewal_due()) => {
                    self.machine.tick(std::time::Instant::now())
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

    /// The machine's event for an attempt task that returned (or panicked).
    fn attempt_done(
        &mut self,
        done: Result<(tokio::task::Id, Ran), tokio::task::JoinError>,
    ) -> Vec<Effect> {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        let Some(id) = self.tasks.remove(&task) else {
            return Vec::new();
        };
        self.kills.remove(&id);
        self.launches.remove(&id);
        let now = std::time::Instant::now();
        match done {
            Ok((_, Ran { outcome, staged })) => match staged {
                None => self.machine.attempt_ended(id, outcome, now),
                Some(staged) => {
                    self.staged.insert(id, (outcome.attempt, staged));
                    let fx = self.machine.attempt_ran(id, outcome, now);
                    // A stale attempt's staged files go now (dropping them removes them).
                    if !fx.contains(&Effect::Upload(id)) {
                        self.staged.remove(&id);
                    }
                    fx
                }
            },
            Err(e) => {
                warn!("a job task failed: {e}");
                self.machine.attempt_failed(id, &e.to_string(), now)
            }
        }
    }

    /// The machine's event for an upload task that returned (or panicked).
    fn upload_done(
        &mut self,
        done: Result<(tokio::task::Id, Uploaded), tokio::task::JoinError>,
    ) -> Vec<Effect> {
        let now = std::time::Instant::now();
        match done {
            Ok((task, (id, attempt, result))) => {
                self.upload_tasks.remove(&task);
                self.machine.upload_ended(id, attempt, result, now)
            }
            Err(e) => {
                let Some((id, attempt)) = self.upload_tasks.remove(&e.id()) else {
                    return Vec::new();
                };
                warn!("an outputs upload task failed: {e}");
                let why = format!("the worker's upload task failed: {e}");
                self.machine.upload_ended(id, attempt, Err(why), now)
            }
        }
    }

    /// Carries out one effect; `Some` when the worker ends.
    async fn apply(&mut self, effect: Effect) -> Result<Option<Ending>, WorkerError> {
        match effect {
            Effect::Send(msg) => self.link.send(&msg).await?,
            Effect::Start(assignment) => {
                let (kill_tx, kill_rx) = watch::channel(false);
                let id = assignment.id;
                self.kills.insert(id, kill_tx);
                let gate = attempt::Gate::new(id, self.ask_launch.clone());
                let task = attempt::run(self.shared.clone(), assignment, gate, kill_rx);
                let handle = self.running.spawn(task);
                self.tasks.insert(handle.id(), id);
            }
            Effect::Launch { id, until } => {
                if let Some(answer) = self.launches.remove(&id) {
                    let _ = answer.send(until);
                }
            }
            Effect::Upload(id) => {
                if let Some((attempt, staged)) = self.staged.remove(&id) {
                    let shared = self.shared.clone();
                    let handle = self.uploads.spawn(async move {
                        (id, attempt, attempt::upload(shared, id, staged).await)
                    });
                    self.upload_tasks.insert(handle.id(), (id, attempt));
                }
            }
            Effect::Kill(id) => {
                if let Some(kill) = self.kills.get(&id) {
                    let _ = kill.send(true);
                }
            }
            Effect::End(ending) => return Ok(Some(ending)),
            Effect::Notice(notice) => notice.log(),
        }
        Ok(None)
    }

    /// Exit, interruption or failure: nothing may keep running. Dropping the tasks kills their
    /// process groups. Their attempts are not reported: closing the stream tells the broker
    /// this worker is gone, and it requeues them.
    async fn wind_down(
        mut self,
        result: Result<WorkerEnd, WorkerError>,
    ) -> Result<WorkerEnd, WorkerError> {
        self.running.shutdown().await;
        self.uploads.shutdown().await;
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
            warn!("closing the stream to the broker: {e}");
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

/// Waits until `due` (the machine's next lease renewal), or forever when there is none.
async fn renewal(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
        None => std::future::pending().await,
    }
}
