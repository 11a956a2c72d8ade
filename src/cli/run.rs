//! `cluster-action run` and `cluster-action local`: run a manifest and report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use cluster_action::broker::EmbeddedBroker;
use cluster_action::link::Target;
use cluster_action::local::{self, LocalConfig};
use cluster_action::runner::duration::parse_duration;
use cluster_action::runner::machine::RunEnd;
use cluster_action::runner::manifest::{self, Manifest};
use cluster_action::runner::progress::{Mode, Progress};
use cluster_action::runner::report;
use cluster_action::runner::session::{self, RunConfig, RunError, RunResult};

use cluster_action::worker::{InProcessWorker, WorkerConfig, exec::ExecLimits};

use super::cluster::{BrokerArgs, worker_dirs};
use super::common::{
    ClusterArgs, EMBEDDED_BROKER_IDLE_TIMEOUT, LOCAL_BROKER_WAIT, LOCAL_PEER_TIMEOUT,
    LOCAL_POLL_MAX, default_name, shutdown_signal, warn_if_readable,
};
use super::exit::{self, Failure};
use super::history::RunHistory;
use super::suites::SuiteArgs;

/// What to run and where the reports go (shared by `run` and `local`).
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The job manifest (YAML). See the README for its format.
    #[arg(
        value_name = "MANIFEST",
        required_unless_present_any = ["commands", "nextest", "pytest", "go_test"],
        conflicts_with_all = ["commands", "nextest", "pytest", "go_test"]
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
    /// Also write the run's counts and report paths as the step outputs of the action
    /// (passed, failed, total, report-json, report-junit) to the file $GITHUB_OUTPUT names.
    #[arg(long)]
    step_outputs: bool,
    /// Bring each job's declared outputs back under DIR/<job name>/.
    #[arg(long, value_name = "DIR")]
    outputs_dir: Option<PathBuf>,
    /// Give up (exit 3) when no worker is connected for this long while jobs wait; a runner
    /// with --slots goes on alone instead.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    worker_wait: Duration,
    #[command(flatten)]
    suites: SuiteArgs,
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
    /// With --embed-broker: jobs given to a worker beyond its slots until its round trip is
    /// measured (then sized from it); 0 turns prefetching off.
    #[arg(long, default_value_t = 2)]
    prefetch: u32,
    /// Jobs this runner runs itself, as a worker of the cluster inside this process (0: none;
    /// default: the number of CPUs with --embed-broker, else 0).
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// With --slots: where the runner's worker caches layers (default: a temporary directory,
    /// removed on exit).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// Flags of `local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    jobs: JobsArgs,
    /// Worker processes to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// Slots per worker (default: CPUs divided among the workers, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    slots: Option<u32>,
    /// Jobs given to a worker beyond its slots until its round trip is measured; 0: none.
    #[arg(long, default_value_t = 2)]
    prefetch: u32,
    /// Longest pause between polls of an idle stream.
    #[arg(long, default_value = LOCAL_POLL_MAX, value_parser = parse_duration, value_name = "DURATION")]
    poll_max: Duration,
    /// Declare a silent worker lost (its jobs are requeued) after this long.
    #[arg(long, default_value = LOCAL_PEER_TIMEOUT, value_parser = parse_duration, value_name = "DURATION")]
    peer_timeout: Duration,
}

/// Runs a manifest on an existing cluster (or one it embeds), with a worker of its own when it
/// has slots. A run with `--stop-cluster` refused for bad input before it joined still stops
/// the cluster it names, if it can reach it (see [`stop_unused_cluster`]).
pub async fn run(args: RunArgs) -> Result<i32, Failure> {
    match run_manifest(&args).await {
        Err(failure)
            if args.stop_cluster && !args.embed_broker && refused_before_joining(&failure) =>
        {
            stop_unused_cluster(&args).await;
            Err(failure)
        }
        other => other,
    }
}

/// Whether `failure` is bad input found before the run joined its cluster: the manifest, the
/// flags, a suite that cannot be listed. (A refusal at hello, such as another cluster secret,
/// is not: this runner cannot speak to that broker.)
fn refused_before_joining(failure: &Failure) -> bool {
    matches!(
        failure,
        Failure::BadInput(_) | Failure::Manifest(_) | Failure::Run(RunError::Suite(_))
    )
}

/// Tells the broker of a run that will not happen to stop once it has no work, so that it and
/// its workers exit now rather than after their idle timeout (other jobs of the workflow
/// would wait for them until then). It waits for the broker as long as the run would have
/// (`--broker-wait`). Without the store's credentials, a namespace or stream settings it
/// cannot reach the broker, which then stops at its idle timeout; without `--stop-cluster`
/// the cluster is not this runner's to stop (other runners may use it).
async fn stop_unused_cluster(args: &RunArgs) {
    let cluster = &args.cluster;
    let reach = || -> Result<_, Failure> {
        let target = Target {
            ns: cluster.namespace()?,
            stream: cluster.stream()?,
            wait: args.broker_wait,
        };
        Ok((cluster.cleanup.store()?, target))
    };
    let Ok((store, target)) = reach() else {
        return;
    };
    eprintln!(
        "this run cannot start: telling cluster '{}' to stop (--stop-cluster)",
        target.ns.cluster
    );
    match session::ask_to_stop(store, &target, &default_name("runner")).await {
        Ok(Some(link)) => {
            if let Err(e) = link.close().await {
                tracing::warn!("telling the cluster to stop: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "could not tell the cluster to stop ({e}): it stops after its idle timeout"
        ),
    }
}

/// [`run`] itself.
async fn run_manifest(args: &RunArgs) -> Result<i32, Failure> {
    let manifest = load(&args.jobs)?;
    let cluster = &args.cluster;
    let history = RunHistory::load(&args.jobs.suites, &manifest, &cluster.cluster).await?;
    let embed_broker = if args.embed_broker {
        Some(BrokerArgs::config(
            cluster,
            EMBEDDED_BROKER_IDLE_TIMEOUT,
            args.prefetch,
        )?)
    } else {
        None
    };
    let own_slots = args.slots.unwrap_or(match embed_broker {
        Some(_) => cpus(),
        None => 0,
    });
    let name = default_name("runner");
    let cfg = RunConfig {
        ns: cluster.namespace()?,
        stream: cluster.stream()?,
        // An embedded broker stops with the run: its workers exit then.
        stop_cluster: args.stop_cluster || embed_broker.is_some(),
        broker_wait: args.broker_wait,
        worker_wait: args.jobs.worker_wait,
        outputs_dir: args.jobs.outputs_dir.clone(),
        name: name.clone(),
        own_slots,
        slots_hint: 0,
        timings: history.timings.clone(),
        rerun: history.rerun(args.jobs.suites.rerun),
    };
    let store = cluster.cleanup.store()?;
    let broker = embed_broker.map(|bcfg| EmbeddedBroker::start(store.clone(), bcfg));
    let (_scratch, own_worker) = match own_slots {
        0 => (None, None),
        slots => {
            let (scratch, cache_dir, work_dir) = worker_dirs(args.cache_dir.clone(), None)?;
            cluster_action::worker::contain::start_guard();
            let wcfg = WorkerConfig {
                ns: cfg.ns.clone(),
                stream: cfg.stream.clone(),
                slots,
                cache_dir,
                work_dir,
                broker_wait: cfg.broker_wait,
                name: format!("{name}-runner"),
                limits: ExecLimits::default(),
            };
            (scratch, Some(InProcessWorker::start(store.clone(), wcfg)))
        }
    };
    let mut progress = Progress::new(Mode::detect());
    let result = session::run(
        store.clone(),
        manifest,
        &cfg,
        &mut progress,
        shutdown_signal(),
    )
    .await;
    progress.end();
    // The broker first: stopping, it tells the runner's worker to exit too.
    let stopped = match broker {
        Some(broker) => broker.stop().await.map(drop),
        None => Ok(()),
    };
    if let Some(worker) = own_worker
        && let Err(e) = worker.stop().await
    {
        tracing::warn!("this runner's worker: {e}");
    }
    let result = result?;
    let saved = history
        .save(
            &args.jobs.suites,
            Some(&store),
            &cluster.cluster,
            &result.report,
        )
        .await;
    let code = finish(result, &args.jobs)?;
    saved?;
    stopped?;
    Ok(code)
}

/// The CPUs of this machine (at least 1).
fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Runs a manifest on a fresh cluster on this machine.
pub async fn local(args: LocalArgs) -> Result<i32, Failure> {
    let manifest = load(&args.jobs)?;
    let slots = args.slots.unwrap_or_else(|| (cpus() / args.workers).max(1));
    let cluster = ClusterArgs::local(args.poll_max, args.peer_timeout);
    let history = RunHistory::load(&args.jobs.suites, &manifest, &cluster.cluster).await?;
    let binary = std::env::current_exe().map_err(Failure::io(
        "cannot find this program's path to start workers",
    ))?;
    let cfg = LocalConfig {
        workers: args.workers,
        slots,
        binary,
        worker_args: cluster.to_worker_args(),
        broker: BrokerArgs::config(&cluster, EMBEDDED_BROKER_IDLE_TIMEOUT, args.prefetch)?,
        run: RunConfig {
            ns: cluster.namespace()?,
            stream: cluster.stream()?,
            stop_cluster: true,
            broker_wait: LOCAL_BROKER_WAIT,
            worker_wait: args.jobs.worker_wait,
            outputs_dir: args.jobs.outputs_dir.clone(),
            name: "local-runner".into(),
            own_slots: 0,
            slots_hint: (args.workers * slots) as usize,
            timings: history.timings.clone(),
            rerun: history.rerun(args.jobs.suites.rerun),
        },
    };
    let mut progress = Progress::new(Mode::detect());
    let result = local::run(manifest, &cfg, &mut progress, shutdown_signal()).await;
    progress.end();
    let result = result?;
    // The local artifact service ends with the run: only the file keeps history.
    (history.save(&args.jobs.suites, None, &cluster.cluster, &result.report)).await?;
    finish(result, &args.jobs)
}

fn load(args: &JobsArgs) -> Result<Manifest, Failure> {
    let loaded = match (&args.manifest, &args.commands) {
        (Some(path), _) => manifest::load(path).map_err(Failure::from),
        (None, Some(path)) => manifest::from_commands(path).map_err(Failure::from),
        (None, None) => args.suites.manifest(),
    };
    let reports = [args.report_json.as_deref(), args.report_junit.as_deref()];
    report::check_destinations(&reports, args.outputs_dir.as_deref())
        .map_err(Failure::bad_input)?;
    let manifest = loaded?;
    warn_if_readable();
    if matches!(Mode::detect(), Mode::Lines { github: true }) {
        for line in cluster_action::runner::report::add_masks(&manifest) {
            println!("{line}");
        }
    }
    cluster_action::budget::check_manifest(&manifest)
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    Ok(manifest)
}

/// Writes every report it can, prints the summary line and picks the exit code; a report
/// that cannot be written fails the command after the others and the summary.
fn finish(result: RunResult, args: &JobsArgs) -> Result<i32, Failure> {
    let report = &result.report;
    let mut failures = Vec::new();
    let json = written(args.report_json.as_deref(), &mut failures, |out| {
        serde_json::to_writer_pretty(out, &report.json()).map_err(std::io::Error::from)
    });
    let junit = written(args.report_junit.as_deref(), &mut failures, |out| {
        out.write_all(report.to_junit().as_bytes())
    });
    if args.step_outputs {
        let outputs = report::step_outputs(&report.summary(), &report.test_summary(), json, junit);
        failures.extend(set_step_outputs(&outputs).err());
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        failures.extend(append_summary(Path::new(&path), &report.to_markdown()).err());
    }
    let s = report.summary();
    if !report.jobs.is_empty() || report.tests.is_empty() {
        eprintln!(
            "{} jobs: {} passed, {} failed, {} timed out, {} errors, {} cancelled in {:.1}s",
            s.total,
            s.passed,
            s.failed,
            s.timed_out,
            s.errors,
            s.cancelled,
            report.wall_ms as f64 / 1000.0
        );
    }
    let mut failing_tests = 0;
    if !report.tests.is_empty() {
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        match report.failed_tests_text() {
            Some(failed) if github => print!("{}", report::fenced(&failed)),
            Some(failed) => print!("{failed}"),
            None => {}
        }
        let t = report.test_summary();
        eprintln!(
            "{} tests: {} passed, {} failed, {} flaky, {} skipped, {} errors",
            t.total, t.passed, t.failed, t.flaky, t.skipped, t.errors
        );
        if github {
            for line in report.test_annotations() {
                println!("{line}");
            }
        }
        failing_tests = t.failing(args.suites.flaky());
    }
    match &result.end {
        RunEnd::NoWorkers { .. } => eprintln!(
            "error: no worker joined the cluster within --worker-wait; {} did not run",
            report.unfinished_counts()
        ),
        RunEnd::BrokerLost { reason, .. } => eprintln!(
            "error: lost the broker: {reason}; {} did not finish",
            report.unfinished_counts()
        ),
        RunEnd::Completed | RunEnd::Cancelled => {}
    }
    let mut failures = failures.into_iter();
    match failures.next() {
        Some(first) => {
            for other in failures {
                eprintln!("error: {other}");
            }
            Err(first)
        }
        None => Ok(exit::run_ended(&result.end, &s, failing_tests)),
    }
}

/// Appends the step outputs to the file `$GITHUB_OUTPUT` names; without one (not a GitHub
/// step) prints them instead.
fn set_step_outputs(outputs: &[(&str, String)]) -> Result<(), Failure> {
    use std::io::Write;
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) else {
        let shown: Vec<String> = outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "GITHUB_OUTPUT is not set; step outputs: {}",
            shown.join(" ")
        );
        return Ok(());
    };
    let path = Path::new(&path);
    let what = format!("cannot write the step outputs to {}", path.display());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(report::output_file_text(outputs).as_bytes()))
        .map_err(Failure::io(what))
}

/// Appends the markdown report to the job summary.
fn append_summary(path: &Path, markdown: &str) -> Result<(), Failure> {
    use std::io::Write;
    let what = format!("cannot write the job summary {}", path.display());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(markdown.as_bytes()))
        .map_err(Failure::io(what))
}

/// The report at `path` (if one was asked for) written with `fill`; None, with the failure
/// kept, when it could not be.
fn written<'a>(
    path: Option<&'a Path>,
    failures: &mut Vec<Failure>,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Option<&'a Path> {
    let path = path?;
    match write(path, fill) {
        Ok(()) => Some(path),
        Err(e) => {
            failures.push(e);
            None
        }
    }
}

/// Writes a report file (and its directory) with `fill`, buffered.
fn write(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), Failure> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(Failure::io(format!("cannot create {}", dir.display())))?;
    }
    std::fs::File::create(path)
        .and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            fill(&mut out)?;
            out.flush()
        })
        .map_err(Failure::io(format!("cannot write {}", path.display())))
}
