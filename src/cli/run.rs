//! `cluster-action run` and `cluster-action local`: run a manifest and report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use cluster_action::local::{self, LocalConfig};
use cluster_action::runner::duration::parse_duration;
use cluster_action::runner::manifest::{self, Manifest};
use cluster_action::runner::progress::{Mode, Progress};
use cluster_action::runner::session::{self, RunConfig, RunEnd, RunResult};

use super::cluster::BrokerArgs;
use super::common::{ClusterArgs, default_name, shutdown_signal};
use super::exit::{self, ExitError};

/// What to run and where the reports go (shared by `run` and `local`).
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The job manifest (YAML). See the README for its format.
    #[arg(
        value_name = "MANIFEST",
        required_unless_present = "commands",
        conflicts_with = "commands"
    )]
    manifest: Option<PathBuf>,
    /// Instead of a manifest: a file with one shell command per line, each a job.
    #[arg(long, value_name = "FILE")]
    commands: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    report_json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "PATH")]
    report_junit: Option<PathBuf>,
    /// Bring each job's declared outputs back under DIR/<job name>/.
    #[arg(long, value_name = "DIR")]
    outputs_dir: Option<PathBuf>,
    /// Give up (exit 3) when no worker is connected for this long while jobs wait.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    worker_wait: Duration,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    jobs: JobsArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Run the broker inside this process ("instance 0 is the broker" pattern); the cluster
    /// stops when the run ends.
    #[arg(long)]
    embed_broker: bool,
    /// Stop the cluster (every worker exits 0) when this run is done.
    #[arg(long)]
    stop_cluster: bool,
    /// Wait this long for the broker to appear.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    broker_wait: Duration,
    /// With --embed-broker: jobs given to a worker beyond its slots.
    #[arg(long, default_value_t = 2)]
    prefetch: u32,
}

/// Flags of `local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    jobs: JobsArgs,
    /// Worker processes to start.
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Slots per worker (default: CPUs divided among the workers, at least 1).
    #[arg(long)]
    slots: Option<u32>,
    /// Jobs given to a worker beyond its slots.
    #[arg(long, default_value_t = 2)]
    prefetch: u32,
    /// Longest pause between polls of an idle stream.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    poll_max: Duration,
    /// Declare a silent worker lost (its jobs are requeued) after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    peer_timeout: Duration,
}

/// Runs a manifest on an existing cluster (or one it embeds).
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let manifest = load(&args.jobs)?;
    let cluster = args.cluster;
    let embed_broker = if args.embed_broker {
        Some(BrokerArgs::config(
            &cluster,
            Duration::from_secs(3600),
            args.prefetch,
        )?)
    } else {
        None
    };
    let cfg = RunConfig {
        ns: cluster.namespace()?,
        stream: cluster.stream()?,
        embed_broker,
        stop_cluster: args.stop_cluster,
        broker_wait: args.broker_wait,
        worker_wait: args.jobs.worker_wait,
        outputs_dir: args.jobs.outputs_dir.clone(),
        name: default_name("runner"),
    };
    let store = cluster.cleanup.store()?;
    let mut progress = Progress::new(Mode::detect());
    let result = session::run(store, &manifest, &cfg, &mut progress, shutdown_signal()).await;
    progress.end();
    finish(result?, &args.jobs)
}

/// Runs a manifest on a fresh cluster on this machine.
pub async fn local(args: LocalArgs) -> anyhow::Result<i32> {
    let manifest = load(&args.jobs)?;
    if args.workers == 0 {
        return Err(ExitError::bad_input(
            "--workers 0: the local cluster needs at least one worker",
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let slots = args.slots.unwrap_or_else(|| (cpus / args.workers).max(1));
    if slots == 0 {
        return Err(ExitError::bad_input(
            "--slots 0: a worker needs at least one slot",
        ));
    }
    let cluster = ClusterArgs {
        cluster: "local".into(),
        poll_max: args.poll_max,
        keepalive: (args.peer_timeout / 4).max(Duration::from_millis(100)),
        peer_timeout: args.peer_timeout,
        cleanup: super::cleanup::CleanupArgs::default(),
    };
    let binary = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find this program's path to start workers: {e}"))?;
    let cfg = LocalConfig {
        workers: args.workers,
        slots,
        binary,
        worker_args: cluster.to_worker_args(),
        run: RunConfig {
            ns: cluster.namespace()?,
            stream: cluster.stream()?,
            embed_broker: Some(BrokerArgs::config(
                &cluster,
                Duration::from_secs(3600),
                args.prefetch,
            )?),
            stop_cluster: true,
            broker_wait: Duration::from_secs(30),
            worker_wait: args.jobs.worker_wait,
            outputs_dir: args.jobs.outputs_dir.clone(),
            name: "local-runner".into(),
        },
    };
    let mut progress = Progress::new(Mode::detect());
    let result = local::run(&manifest, &cfg, &mut progress, shutdown_signal()).await;
    progress.end();
    finish(result?, &args.jobs)
}

fn load(args: &JobsArgs) -> anyhow::Result<Manifest> {
    let loaded = match (&args.manifest, &args.commands) {
        (Some(path), _) => manifest::load(path),
        (None, Some(path)) => manifest::from_commands(path),
        (None, None) => return Err(ExitError::bad_input("give a MANIFEST or --commands FILE")),
    };
    let manifest = loaded.map_err(|e| ExitError::bad_input(e.to_string()))?;
    cluster_action::budget::check_manifest(&manifest)
        .map_err(|e| ExitError::bad_input(e.to_string()))?;
    Ok(manifest)
}

/// Writes the reports, prints the summary line and picks the exit code.
fn finish(result: RunResult, args: &JobsArgs) -> anyhow::Result<i32> {
    let report = &result.report;
    if let Some(path) = &args.report_json {
        let json = serde_json::to_string_pretty(&report.to_json())?;
        write(path, &json)?;
    }
    if let Some(path) = &args.report_junit {
        write(path, &report.to_junit())?;
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.write_all(report.to_markdown().as_bytes())?;
    }
    let s = report.to_json();
    let s = &s["summary"];
    eprintln!(
        "{} jobs: {} passed, {} failed, {} timed out, {} errors, {} cancelled in {:.1}s",
        s["total"],
        s["passed"],
        s["failed"],
        s["timed_out"],
        s["errors"],
        s["cancelled"],
        report.wall_ms as f64 / 1000.0
    );
    Ok(match result.end {
        RunEnd::Cancelled => exit::CANCELLED,
        RunEnd::NoWorkers { not_run } => {
            eprintln!(
                "error: no worker joined the cluster within --worker-wait; {not_run} of {} job(s) did not run",
                report.jobs.len()
            );
            exit::INFRA
        }
        RunEnd::Completed if report.has_failures() => exit::JOBS_FAILED,
        RunEnd::Completed => exit::OK,
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
