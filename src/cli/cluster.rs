//! `cluster-action broker`, `worker` and `stop`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use cluster_action::broker::{self, BrokerEnd};
use cluster_action::duration::parse_duration;
use cluster_action::link::Target;
use cluster_action::runner::session;
use cluster_action::worker::{self, WorkerConfig, WorkerEnd, exec::ExecLimits};

use super::common::{
    BrokerWaitArg, ClusterArgs, PrefetchArg, broker_config, cpus, default_name, shutdown_signal,
};
use super::exit;

/// Flags of `broker`.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Stop when no runner is connected and no work is queued for this long.
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    idle_timeout: Duration,
    #[command(flatten)]
    prefetch: PrefetchArg,
}

/// Flags of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Jobs run at once (default: the number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    slots: Option<u32>,
    /// Where extracted layers are cached (default: a temporary directory, removed on exit).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Where job directories are made (default: next to the cache).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    broker_wait: BrokerWaitArg,
    /// The name jobs see as CLUSTER_WORKER (default: $GITHUB_JOB or the host name, and a random suffix).
    #[arg(long)]
    name: Option<String>,
    /// Bytes of each job's output kept (the tail; the rest is cut with a marker); at most
    /// 8 MiB.
    #[arg(
        long,
        default_value_t = 1024 * 1024,
        value_name = "BYTES",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(..=MAX_OUTPUT_LIMIT as u64)
    )]
    output_limit: usize,
    /// No warning when the cluster was stopped before this worker joined: `local` gives it
    /// to its workers, which start while its run lists and find the cluster stopped when the
    /// run ended early (its error says why).
    #[arg(long, hide = true)]
    quiet_if_stopped: bool,
}

/// The largest `--output-limit`. A job's result travels to the runner as one stream message
/// (at most 64 MiB), and JSON escaping makes a control character up to six bytes long; a
/// larger result would make the worker fail instead of reporting the job.
const MAX_OUTPUT_LIMIT: usize = 8 << 20;

/// Flags of `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Wait this long for the broker to appear.
    #[arg(long, default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    broker_wait: Duration,
}

/// Runs a broker until the cluster is stopped, it idles out, or a signal arrives.
pub async fn broker(args: BrokerArgs) -> Result<i32, exit::Failure> {
    let cfg = broker_config(&args.cluster, args.idle_timeout, &args.prefetch)?;
    let store = args.cluster.cleanup.store()?;
    match broker::run(store, cfg, shutdown_signal()).await? {
        BrokerEnd::Stopped => eprintln!("cluster '{}' stopped", args.cluster.cluster),
        BrokerEnd::Idle => eprintln!(
            "cluster '{}' stopped: no runner and no work for {:?} (--idle-timeout)",
            args.cluster.cluster, args.idle_timeout
        ),
    }
    Ok(exit::OK)
}

/// Runs a worker until the broker tells it to exit.
pub async fn worker(args: WorkerArgs) -> Result<i32, exit::Failure> {
    let slots = args.slots.unwrap_or_else(cpus);
    let name = args.name.unwrap_or_else(|| default_name("worker"));
    let (_scratch, cache_dir, work_dir) = worker_dirs(args.cache_dir, args.work_dir)?;
    let cfg = WorkerConfig {
        ns: args.cluster.namespace()?,
        stream: args.cluster.stream()?,
        slots,
        cache_dir,
        work_dir,
        broker_wait: args.broker_wait.broker_wait,
        name,
        limits: ExecLimits {
            output_limit: args.output_limit,
            ..ExecLimits::default()
        },
    };
    let store = args.cluster.cleanup.store()?;
    worker::contain::start_guard();
    let end = worker::run(store, cfg, shutdown_signal()).await?;
    match end {
        WorkerEnd::Interrupted => eprintln!(
            "worker interrupted: its running jobs were killed and handed back to the broker"
        ),
        // Started after the run was over (a slow matrix job): nothing left to do.
        WorkerEnd::ClusterStopped if !args.quiet_if_stopped => tracing::warn!(
            cluster = %args.cluster.cluster,
            "the cluster was already stopped: exiting"
        ),
        WorkerEnd::ClusterStopped | WorkerEnd::Exited => {}
    }
    Ok(exit::worker_ended(end))
}

/// A worker's cache and work directories. Without a cache directory, the cache (and the job
/// directories next to it) live in a temporary directory removed when the returned guard is
/// dropped.
pub fn worker_dirs(
    cache_dir: Option<PathBuf>,
    work_dir: Option<PathBuf>,
) -> Result<(Option<tempfile::TempDir>, PathBuf, PathBuf), exit::Failure> {
    let (scratch, cache_dir) = match cache_dir {
        Some(dir) => (None, dir),
        None => {
            let scratch = tempfile::Builder::new()
                .prefix("cluster-action-worker-")
                .tempdir()
                .map_err(exit::Failure::io("cannot create a temporary directory"))?;
            let dir = scratch.path().join("cache");
            (Some(scratch), dir)
        }
    };
    let work_dir = work_dir.unwrap_or_else(|| cache_dir.with_file_name("work"));
    Ok((scratch, cache_dir, work_dir))
}

/// Tells the cluster's broker to stop.
pub async fn stop(args: StopArgs) -> Result<i32, exit::Failure> {
    let store = args.cluster.cleanup.store()?;
    let ns = args.cluster.namespace()?;
    let target = Target {
        ns: ns.clone(),
        stream: args.cluster.stream()?,
        wait: args.broker_wait,
    };
    session::stop_cluster(store, &target, &default_name("stop")).await?;
    eprintln!("cluster '{}' stopped", ns.cluster);
    Ok(exit::OK)
}
