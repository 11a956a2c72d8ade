//! `cluster-action local`: the whole cluster on one machine, speaking the real protocol over
//! loopback: an in-process artifact service, an embedded broker beside the runner, and N
//! worker *processes*, each with its own cache directory, as separate CI runners would have.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::broker::{BrokerConfig, BrokerError, EmbeddedBroker};
use crate::runner::manifest::Manifest;
use crate::runner::progress::Progress;
use crate::runner::session::{self, RunConfig, RunError, RunResult};
use crate::serve::{self, ServeConfig};
use crate::store::{ArtifactStore, StoreConfig};
use crate::token::{BackendIds, make_token};
use crate::worker::contain;

/// How long workers get to exit after the cluster stopped before they are killed.
const WORKER_EXIT_GRACE: Duration = Duration::from_secs(10);

/// The most worker processes `local` starts: each is a process with its own cache, and on one
/// machine more of them than this only compete for the same CPUs (give them slots instead).
pub const MAX_WORKERS: u32 = 64;

/// What `local` runs.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Worker processes.
    pub workers: u32,
    /// Slots per worker.
    pub slots: u32,
    /// The `cluster-action` binary to start workers with.
    pub binary: PathBuf,
    /// Extra flags for every worker (stream timings, log level).
    pub worker_args: Vec<String>,
    /// The embedded broker.
    pub broker: BrokerConfig,
    /// The run (it should stop the cluster, so that the workers exit).
    pub run: RunConfig,
}

/// Why `local` failed before or around the run.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The artifact service did not start.
    #[error("cannot start the local artifact service: {0:#}")]
    Serve(anyhow::Error),
    /// A worker process did not start.
    #[error("cannot start worker process {index} ({binary}): {source}")]
    Spawn {
        /// Its index.
        index: u32,
        /// The binary.
        binary: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store client could not be set up.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The embedded broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Local files.
    #[error("cannot create a temporary directory: {0}")]
    Io(#[source] std::io::Error),
}

/// Runs `manifest` on a fresh local cluster; `cancel` completing cancels the run. The workers
/// start first: `cancel` must already be listening for what ends the run (its signals
/// registered), or a signal in the run's first moments would end the process before the
/// workers are told. However this process ends, its workers end with it: on a cancel or
/// error they are stopped or killed before `run` returns, and a worker whose `local` dies
/// gets SIGTERM.
pub async fn run(
    manifest: Manifest,
    cfg: &LocalConfig,
    progress: &mut Progress,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<RunResult, LocalError> {
    let service = serve::start(ServeConfig::default())
        .await
        .map_err(LocalError::Serve)?;
    let scratch = tempfile::Builder::new()
        .prefix("cluster-action-local-")
        .tempdir()
        .map_err(LocalError::Io)?;
    let run_id = format!("local-{}", std::process::id());
    let mut children = Vec::new();
    for index in 0..cfg.workers {
        children.push(spawn_worker(
            cfg,
            index,
            service.url(),
            &run_id,
            scratch.path(),
        )?);
    }
    info!(
        workers = cfg.workers,
        url = service.url(),
        "local cluster started"
    );
    let store_cfg = StoreConfig::new(
        service.url(),
        &make_token(&BackendIds {
            run: run_id.clone(),
            job: "runner".into(),
        }),
    )?;
    let store = ArtifactStore::new(store_cfg)?;
    let broker = EmbeddedBroker::start(store.clone(), cfg.broker.clone());
    let result = session::run(store, manifest, &cfg.run, progress, cancel).await;
    let stopped = broker.stop().await;
    // The run stopped the cluster (its broker told the workers to exit); give them a moment.
    for (index, worker) in children.into_iter().enumerate() {
        worker.finish(index).await;
    }
    service.shutdown().await;
    let result = result?;
    stopped?;
    Ok(result)
}

/// A worker process, watched from the moment it starts: when it exits, for whatever reason,
/// the processes its jobs left running are killed at once (a SIGKILLed worker could not).
/// Dropped before it exited (`local` ending early), it kills the worker.
struct WorkerProcess {
    exited: tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>,
    kill: tokio::sync::oneshot::Sender<()>,
}

impl WorkerProcess {
    fn watch(child: Child, index: u32) -> WorkerProcess {
        let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let exited = tokio::spawn(watched(child, index, kill_rx));
        WorkerProcess { exited, kill }
    }

    /// Waits for the worker to exit after the cluster stopped, killing it after the grace;
    /// warns unless it exited 0.
    async fn finish(self, index: usize) {
        match self.exited_or_killed(index).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => warn!("worker {index} exited with {status}"),
            Ok(Err(e)) => warn!("worker {index}: {e}"),
            Err(e) => warn!("worker {index}: its watch task failed: {e}"),
        }
    }

    /// How the worker exited, killed if it did not within [`WORKER_EXIT_GRACE`].
    async fn exited_or_killed(self, index: usize) -> WatchResult {
        let WorkerProcess { mut exited, kill } = self;
        if let Ok(status) = tokio::time::timeout(WORKER_EXIT_GRACE, &mut exited).await {
            return status;
        }
        warn!("worker {index} did not exit within {WORKER_EXIT_GRACE:?}: killing it");
        let _ = kill.send(());
        exited.await
    }
}

/// What the watch of a worker process ends with.
type WatchResult = Result<std::io::Result<std::process::ExitStatus>, tokio::task::JoinError>;

/// Waits for worker `index` to exit, killing it when `kill` is sent or dropped, then kills what
/// its jobs left running.
async fn watched(
    mut child: Child,
    index: u32,
    kill: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<std::process::ExitStatus> {
    let pid = child.id();
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    if let Some(pid) = pid {
        kill_leftovers_of(pid, index).await;
    }
    status
}

/// Kills what the jobs of worker `index` (process `pid`, exited) left running.
async fn kill_leftovers_of(pid: u32, index: u32) {
    let killed = tokio::task::spawn_blocking(move || contain::kill_marked_by(pid))
        .await
        .unwrap_or(0);
    if killed > 0 {
        warn!("killed {killed} process(es) that jobs of worker {index} left running");
    }
}

fn spawn_worker(
    cfg: &LocalConfig,
    index: u32,
    url: &str,
    run_id: &str,
    scratch: &Path,
) -> Result<WorkerProcess, LocalError> {
    let dir = scratch.join(format!("worker-{index}"));
    let token = make_token(&BackendIds {
        run: run_id.to_string(),
        job: format!("worker-{index}"),
    });
    let mut command = Command::new(&cfg.binary);
    command
        .arg("worker")
        .args(["--cluster", &cfg.run.ns.cluster])
        .args(["--slots", &cfg.slots.to_string()])
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .args(["--name", &format!("worker-{index}")])
        // A run that ends before a worker joined (bad input found while listing) stops the
        // cluster under it: the run's error says why, the worker need not add a warning.
        .arg("--quiet-if-stopped")
        .args(&cfg.worker_args)
        .env("ACTIONS_RESULTS_URL", url)
        .env("ACTIONS_RUNTIME_TOKEN", token)
        .env("GITHUB_RUN_ATTEMPT", &cfg.run.ns.attempt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group) then
        // reaches only this process, which cancels the run through the broker, so jobs end
        // reported as cancelled and workers exit 0 instead of dying with the signal.
        .process_group(0)
        .kill_on_drop(true);
    // SIGTERM when this thread ends, however `local` ends (SIGKILL, a crash): the worker then
    // stops as when it is interrupted, and its jobs end with it.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure makes only the async-signal-safe calls of `signalled_when_parent_dies`.
    unsafe {
        command.pre_exec(move || contain::signalled_when_parent_dies(libc::SIGTERM, parent));
    }
    command
        .spawn()
        .map(|child| WorkerProcess::watch(child, index))
        .map_err(|source| LocalError::Spawn {
            index,
            binary: cfg.binary.display().to_string(),
            source,
        })
}
