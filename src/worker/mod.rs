//! The worker: connects to the broker, announces its slots, runs assigned jobs in their own
//! directories and process groups, and reports each attempt.
//!
//! Data path: the main loop reads the broker's messages and keeps a local queue (the broker
//! prefetches a little beyond our slots); each started attempt is a task (`attempt`) that
//! fetches layers, assembles the job directory, runs the command and publishes outputs.

mod attempt;
pub mod exec;
pub mod output;
pub mod outputs_pack;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::layer::LayerCache;
use crate::proto::{
    self, BrokerToWorker, Hello, JobId, JobOutcome, JobSpec, JobStatus, PROTOCOL_VERSION, WorkerMsg,
};
use crate::store::ArtifactStore;
use crate::stream::{self, Namespace, StreamConfig, StreamError, StreamSender};

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
    /// No broker appeared within `--broker-wait`.
    #[error(
        "no broker for cluster '{cluster}' appeared within {secs}s (start one with `cluster-action broker`, or raise --broker-wait)"
    )]
    NoBroker {
        /// The cluster id.
        cluster: String,
        /// The wait in seconds.
        secs: u64,
    },
    /// The broker stopped answering or closed without telling us to exit.
    #[error("lost the broker: {0}")]
    BrokerLost(String),
    /// The broker refused us.
    #[error("the broker refused this worker: {0}")]
    Refused(String),
    /// The stream failed.
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
    pub tx: StreamSender,
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
}

/// Runs a worker until the broker tells it to exit, `shutdown` completes, or it fails.
pub async fn run(
    store: ArtifactStore,
    cfg: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerEnd, WorkerError> {
    let cache = LayerCache::open(&cfg.cache_dir)?;
    tokio::pin!(shutdown);
    let connect = stream::connect(
        store.clone(),
        cfg.ns.clone(),
        cfg.stream.clone(),
        cfg.broker_wait,
    );
    let connected = match tokio::select! {
        connected = connect => connected,
        () = &mut shutdown => return Ok(WorkerEnd::Interrupted),
    } {
        Err(StreamError::ListenerClosed { .. }) => {
            // Started after the run was over (a slow matrix job): nothing left to do.
            warn!(cluster = %cfg.ns.cluster, "the cluster was already stopped: exiting");
            return Ok(WorkerEnd::Exited);
        }
        other => other,
    };
    let conn = connected.map_err(|e| match e {
        StreamError::NoListener { .. } => WorkerError::NoBroker {
            cluster: cfg.ns.cluster.clone(),
            secs: cfg.broker_wait.as_secs(),
        },
        other => WorkerError::Stream(other),
    })?;
    let mut rx = conn.rx;
    let hello = Hello::Worker {
        version: PROTOCOL_VERSION,
        name: cfg.name.clone(),
        slots: cfg.slots,
    };
    conn.tx
        .send(proto::encode(&WorkerMsg::Hello(hello)))
        .await?;
    info!(name = %cfg.name, slots = cfg.slots, "worker connected");

    let shared = Arc::new(Shared {
        outputs: outputs_pack::OutputsPacker::new(store.clone(), &cfg.work_dir, cfg.slots)
            .map_err(|e| {
                crate::layer::LayerError::io(
                    format!(
                        "creating an outputs staging directory in '{}'",
                        cfg.work_dir.display()
                    ),
                    e,
                )
            })?,
        store,
        cache,
        cfg,
        tx: conn.tx.clone(),
    });
    let mut queue: VecDeque<(JobSpec, u32)> = VecDeque::new();
    let mut running: JoinSet<JobOutcome> = JoinSet::new();
    let mut cancels: HashMap<JobId, watch::Sender<bool>> = HashMap::new();
    let result = loop {
        while running.len() < shared.cfg.slots as usize {
            let Some((spec, attempt)) = queue.pop_front() else {
                break;
            };
            let (cancel_tx, cancel_rx) = watch::channel(false);
            cancels.insert(spec.id, cancel_tx);
            running.spawn(attempt::run(shared.clone(), spec, attempt, cancel_rx));
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(frame)) => match proto::decode::<BrokerToWorker>("broker", &frame) {
                    Ok(BrokerToWorker::Welcome) => {}
                    Ok(BrokerToWorker::Assign { job, attempt }) => queue.push_back((job, attempt)),
                    Ok(BrokerToWorker::Cancel { id }) => {
                        if let Some(pos) = queue.iter().position(|(j, _)| j.id == id) {
                            if let Some((spec, attempt)) = queue.remove(pos) {
                                let outcome = attempt::not_run(&shared.cfg.name, &spec, attempt, JobStatus::Cancelled, None);
                                send(&shared.tx, &WorkerMsg::Finished(outcome)).await?;
                            }
                        } else if let Some(c) = cancels.get(&id) {
                            let _ = c.send(true);
                        }
                    }
                    Ok(BrokerToWorker::Exit) => break Ok(WorkerEnd::Exited),
                    Ok(BrokerToWorker::Refused { reason }) => break Err(WorkerError::Refused(reason)),
                    Err(e) => break Err(WorkerError::BrokerLost(e.to_string())),
                },
                Ok(None) => break Err(WorkerError::BrokerLost("it closed the stream without telling this worker to exit".into())),
                Err(e) => break Err(WorkerError::BrokerLost(e.to_string())),
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok(outcome) => {
                        cancels.remove(&outcome.id);
                        send(&shared.tx, &WorkerMsg::Finished(outcome)).await?;
                    }
                    Err(e) => warn!("a job task failed: {e}"),
                }
            }
            () = &mut shutdown => break Ok(WorkerEnd::Interrupted),
        }
    };
    // Exit, interruption or failure: nothing may keep running. Dropping the tasks kills their
    // process groups. Their attempts are not reported: closing the stream tells the broker
    // this worker is gone, and it requeues them.
    running.shutdown().await;
    let close = shared.tx.close();
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
        Err(WorkerError::BrokerLost(reason))
            if stream::listener_closed(&shared.store, &shared.cfg.ns)
                .await
                .unwrap_or(false) =>
        {
            warn!("the cluster was stopped ({reason}): exiting");
            Ok(WorkerEnd::Exited)
        }
        other => other,
    }
}

async fn send(tx: &StreamSender, msg: &WorkerMsg) -> Result<(), WorkerError> {
    Ok(tx.send(proto::encode(msg)).await?)
}
