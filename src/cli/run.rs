//! `cluster-action run` and `cluster-action local`: run a manifest and report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use cluster_action::broker::{BrokerConfig, EmbeddedBroker};
use cluster_action::duration::parse_duration;
use cluster_action::link::Target;
use cluster_action::local::{self, LocalConfig};
use cluster_action::runner::machine::RunEnd;
use cluster_action::runner::manifest::{self, Manifest};
use cluster_action::runner::progress::{Mode, Progress};
use cluster_action::runner::report;
use cluster_action::runner::session::{self, RunConfig, RunError, RunResult};
use cluster_action::store::ArtifactStore;
use cluster_action::worker::{InProcessWorker, WorkerConfig, exec::ExecLimits};

use super::cluster::worker_dirs;
use super::common::{
    BrokerWaitArg, ClusterArgs, EMBEDDED_BROKER_IDLE_TIMEOUT, LOCAL_BROKER_WAIT,
    LOCAL_PEER_TIMEOUT, LOCAL_POLL_MAX, PrefetchArg, broker_config, cpus, default_name,
    shutdown_signal, warn_if_readable,
};
use super::exit::{self, Failure};
use super::history::{load_history, quarantine_policies, save_history};
use super::plan;
use super::suites::SuiteArgs;
use cluster_action::history::RunHistory;
use cluster_action::history::quarantine::QuarantinePolicy;

/// What names the work beside the suite shorthands: a manifest or a file of commands (shared
/// by `run`, `local` and `plan`, each with [`SuiteArgs`] beside it).
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// The job manifest (YAML). See the README for its format.
    #[arg(
        value_name = "MANIFEST",
        required_unless_present_any = ["commands", "tests", "nextest", "pytest", "go_test"],
        conflicts_with_all = ["commands", "tests", "nextest", "pytest", "go_test"]
    )]
    manifest: Option<PathBuf>,
    /// Instead of a manifest: a file with one shell command per line, each a job.
    #[arg(long, value_name = "FILE")]
    commands: Option<PathBuf>,
}

impl WorkArgs {
    /// The manifest these flags and `suites` name (loaded and checked, nothing else).
    pub fn manifest(&self, suites: &SuiteArgs) -> Result<Manifest, Failure> {
        match (&self.manifest, &self.commands) {
            (Some(path), _) => manifest::load(path).map_err(Failure::from),
            (None, Some(path)) => manifest::from_commands(path).map_err(Failure::from),
            (None, None) => suites.manifest(),
        }
    }
}

/// What to run and where the reports go (shared by `run` and `local`).
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    work: WorkArgs,
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
    #[command(flatten)]
    broker_wait: BrokerWaitArg,
    #[command(flatten)]
    prefetch: PrefetchArg,
    /// How many workers the cluster is to have (a workflow's matrix size, e.g. `${{
    /// strategy.job-total }}`), when known: the suites are planned for that many, not for the
    /// few that joined first (a plan for 2 slots makes too few batches for 8), and with
    /// --embed-broker no worker gets work beyond its slots until that many joined.
    #[arg(long, default_value_t = 0, value_name = "N")]
    expect_workers: u32,
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
    /// Worker processes to start, 1 to 64 (for more parallelism give each more --slots).
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(local::MAX_WORKERS))
    )]
    workers: u32,
    /// Slots per worker (default: CPUs divided among the workers, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    slots: Option<u32>,
    #[command(flatten)]
    prefetch: PrefetchArg,
    /// Longest pause between polls of an idle stream.
    #[arg(long, default_value = LOCAL_POLL_MAX, value_parser = parse_duration, value_name = "DURATION")]
    poll_max: Duration,
    /// Declare a silent worker lost (its jobs are requeued) after this long.
    #[arg(long, default_value = LOCAL_PEER_TIMEOUT, value_parser = parse_duration, value_name = "DURATION")]
    peer_timeout: Duration,
}

/// What sets one runner apart from another beside the flags `run` and `local` share: the parts
/// of [`RunConfig`] each command decides for itself.
struct Runner {
    name: String,
    stop_cluster: bool,
    broker_wait: Duration,
    own_slots: u32,
    slots_hint: usize,
    expected_workers: u32,
}

/// What `run` and `local` both start from: the manifest and its history.
struct Work {
    manifest: Manifest,
    history: RunHistory,
    /// Each suite's quarantine policy, kept for after the run (the manifest goes to it).
    quarantine: BTreeMap<String, QuarantinePolicy>,
}

impl JobsArgs {
    /// The manifest (checked, and its reports' destinations) and its suites' history.
    async fn work(&self, cluster: &str) -> Result<Work, Failure> {
        let manifest = load(self)?;
        let history = load_history(&self.suites, &manifest, cluster).await?;
        let quarantine = quarantine_policies(&manifest);
        Ok(Work {
            manifest,
            history,
            quarantine,
        })
    }

    /// The run's configuration: the one place a [`RunConfig`] is built.
    fn run_config(
        &self,
        cluster: &ClusterArgs,
        history: &RunHistory,
        runner: Runner,
    ) -> Result<RunConfig, Failure> {
        Ok(RunConfig {
            ns: cluster.namespace()?,
            stream: cluster.stream()?,
            stop_cluster: runner.stop_cluster,
            broker_wait: runner.broker_wait,
            worker_wait: self.worker_wait,
            outputs_dir: self.outputs_dir.clone(),
            name: runner.name,
            own_slots: runner.own_slots,
            slots_hint: runner.slots_hint,
            expected_workers: runner.expected_workers,
            timings: history.timings.clone(),
            rerun: history.rerun(self.suites.rerun),
        })
    }
}

/// `run` resolved from its flags and the environment, before anything starts.
struct RunPlan {
    work: Work,
    store: ArtifactStore,
    run: RunConfig,
    /// With --embed-broker.
    broker: Option<BrokerConfig>,
    /// With slots: the worker inside this process, and the temporary directory of its cache.
    own_worker: Option<(WorkerConfig, Option<tempfile::TempDir>)>,
}

impl RunPlan {
    async fn resolve(args: &RunArgs) -> Result<Self, Failure> {
        let cluster = &args.cluster;
        let work = args.jobs.work(&cluster.cluster).await?;
        let broker = match args.embed_broker {
            true => Some(BrokerConfig {
                expected_workers: args.expect_workers,
                ..broker_config(cluster, EMBEDDED_BROKER_IDLE_TIMEOUT, &args.prefetch)?
            }),
            false => None,
        };
        let own_slots = args
            .slots
            .unwrap_or(if args.embed_broker { cpus() } else { 0 });
        let runner = Runner {
            name: default_name("runner"),
            // An embedded broker stops with the run: its workers exit then.
            stop_cluster: args.stop_cluster || args.embed_broker,
            broker_wait: args.broker_wait.broker_wait,
            own_slots,
            slots_hint: 0,
            expected_workers: args.expect_workers,
        };
        let run = args.jobs.run_config(cluster, &work.history, runner)?;
        let own_worker = match own_slots {
            0 => None,
            slots => Some(own_worker(args, &run, slots)?),
        };
        Ok(Self {
            work,
            store: cluster.cleanup.store()?,
            run,
            broker,
            own_worker,
        })
    }
}

/// The worker a runner with `slots` runs inside its process.
fn own_worker(
    args: &RunArgs,
    run: &RunConfig,
    slots: u32,
) -> Result<(WorkerConfig, Option<tempfile::TempDir>), Failure> {
    let (scratch, cache_dir, work_dir) = worker_dirs(args.cache_dir.clone(), None)?;
    let cfg = WorkerConfig {
        ns: run.ns.clone(),
        stream: run.stream.clone(),
        slots,
        cache_dir,
        work_dir,
        broker_wait: run.broker_wait,
        name: format!("{}-runner", run.name),
        limits: ExecLimits::default(),
    };
    Ok((cfg, scratch))
}

/// Runs a manifest on an existing cluster (or one it embeds), with a worker of its own when it
/// has slots. A run with `--stop-cluster` refused for bad input before it joined still stops
/// the cluster it names, if it can reach it (see [`stop_unused_cluster`]).
pub async fn run(args: RunArgs) -> Result<i32, Failure> {
    let ran = match RunPlan::resolve(&args).await {
        Ok(plan) => run_manifest(plan, &args.jobs).await,
        Err(failure) => Err(failure),
    };
    match ran {
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
            wait: args.broker_wait.broker_wait,
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

/// [`run`] itself, on its resolved plan.
async fn run_manifest(plan: RunPlan, args: &JobsArgs) -> Result<i32, Failure> {
    let RunPlan {
        work,
        store,
        run,
        broker,
        own_worker,
    } = plan;
    let broker = broker.map(|cfg| EmbeddedBroker::start(store.clone(), cfg));
    let (own_worker, _scratch) = match own_worker {
        Some((cfg, scratch)) => {
            cluster_action::worker::contain::start_guard();
            (Some(InProcessWorker::start(store.clone(), cfg)), scratch)
        }
        None => (None, None),
    };
    let mut progress = Progress::new(Mode::detect());
    let suites = work.manifest.suites.clone();
    let result = session::run(
        store.clone(),
        work.manifest,
        &run,
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
    let mut result = result?;
    // The cluster as it was: the machines that ran tests, each with this runner's slots (the
    // action gives every instance the same); unknown for a runner without slots.
    let machines = run_machines(&result.report);
    let cluster = (run.own_slots > 0 && machines > 0).then_some((machines, run.own_slots));
    let mut history = work.history;
    let sizing = plan::after_run(&mut history, &suites, cluster, &result);
    let saved = save_history(
        &history,
        &work.quarantine,
        &args.suites,
        Some(&store),
        &run.ns.cluster,
        &mut result.report,
    )
    .await;
    let code = finish(result, args);
    ended(
        code,
        [saved, stopped.map_err(Failure::from), plan::say(sizing)],
    )
}

/// `local` resolved from its flags and the environment, before anything starts.
struct LocalPlan {
    work: Work,
    local: LocalConfig,
}

impl LocalPlan {
    async fn resolve(args: &LocalArgs) -> Result<Self, Failure> {
        let cluster = ClusterArgs::local(args.poll_max, args.peer_timeout);
        let work = args.jobs.work(&cluster.cluster).await?;
        let slots = args.slots.unwrap_or_else(|| (cpus() / args.workers).max(1));
        let runner = Runner {
            name: "local-runner".into(),
            stop_cluster: true,
            broker_wait: LOCAL_BROKER_WAIT,
            own_slots: 0,
            slots_hint: (args.workers * slots) as usize,
            expected_workers: args.workers,
        };
        let local = LocalConfig {
            workers: args.workers,
            slots,
            binary: std::env::current_exe().map_err(Failure::io(
                "cannot find this program's path to start workers",
            ))?,
            worker_args: cluster.to_worker_args(),
            broker: BrokerConfig {
                expected_workers: args.workers,
                ..broker_config(&cluster, EMBEDDED_BROKER_IDLE_TIMEOUT, &args.prefetch)?
            },
            run: args.jobs.run_config(&cluster, &work.history, runner)?,
        };
        Ok(Self { work, local })
    }
}

/// Runs a manifest on a fresh cluster on this machine.
pub async fn local(args: LocalArgs) -> Result<i32, Failure> {
    let LocalPlan { work, local } = LocalPlan::resolve(&args).await?;
    // Caught from here on, before the first worker starts (see `local::run`).
    let cancel = shutdown_signal();
    let mut progress = Progress::new(Mode::detect());
    let suites = work.manifest.suites.clone();
    let result = local::run(work.manifest, &local, &mut progress, cancel).await;
    progress.end();
    let mut result = result?;
    let mut history = work.history;
    let machines = Some((local.workers, local.slots));
    let sizing = plan::after_run(&mut history, &suites, machines, &result);
    // The local artifact service ends with the run: only the file keeps history.
    let cluster = &local.run.ns.cluster;
    let saved = save_history(
        &history,
        &work.quarantine,
        &args.jobs.suites,
        None,
        cluster,
        &mut result.report,
    )
    .await;
    // The reports are written whatever became of the history.
    let code = finish(result, &args.jobs);
    ended(code, [saved, plan::say(sizing)])
}

/// How many machines ran the tests of `report`: the workers its attempts name.
fn run_machines(report: &report::RunReport) -> u32 {
    let workers: std::collections::BTreeSet<&str> = (report.tests.iter())
        .flat_map(|test| &test.attempts)
        .filter_map(|attempt| attempt.worker.as_deref())
        .collect();
    u32::try_from(workers.len()).unwrap_or(u32::MAX)
}

/// How a run that ran ends: `code` (the reports' and the run's), unless a step after it
/// (keeping the history, stopping the broker) failed. The first failure is the command's; every
/// later one is printed, so a history that was not kept is said even when a report failed too.
fn ended(
    code: Result<i32, Failure>,
    after: impl IntoIterator<Item = Result<(), Failure>>,
) -> Result<i32, Failure> {
    let mut failures = after.into_iter().filter_map(Result::err);
    let first = match code {
        Ok(code) => match failures.next() {
            Some(failure) => failure,
            None => return Ok(code),
        },
        Err(failure) => failure,
    };
    for other in failures {
        exit::print(&other);
    }
    Err(first)
}

fn load(args: &JobsArgs) -> Result<Manifest, Failure> {
    let loaded = args.work.manifest(&args.suites);
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty());
    let outputs = std::env::var_os("GITHUB_OUTPUT").filter(|p| args.step_outputs && !p.is_empty());
    let reports = [
        ("--report-json", args.report_json.as_deref()),
        ("--report-junit", args.report_junit.as_deref()),
        ("GITHUB_STEP_SUMMARY", summary.as_deref().map(Path::new)),
        ("GITHUB_OUTPUT", outputs.as_deref().map(Path::new)),
    ];
    report::check_destinations(&reports, args.outputs_dir.as_deref())
        .map_err(Failure::bad_input)?;
    let mut manifest = loaded?;
    args.suites.apply_flaky_flags(&mut manifest)?;
    warn_if_readable();
    if matches!(Mode::detect(), Mode::Lines { github: true }) {
        for line in cluster_action::runner::report::add_masks(&manifest) {
            println!("{line}");
        }
    }
    cluster_action::budget::check_layers(&manifest.path, manifest.layers_used())
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
        let quarantined = match t.quarantined {
            0 => String::new(),
            n => format!(", {n} quarantined"),
        };
        eprintln!(
            "{} tests: {} passed, {} failed, {} flaky, {} skipped, {} errors{quarantined}",
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
pub(super) fn set_step_outputs(outputs: &[(&str, String)]) -> Result<(), Failure> {
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
pub(super) fn append_summary(path: &Path, markdown: &str) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::local::MAX_WORKERS;

    #[test]
    fn the_help_of_local_workers_names_the_limit_the_parser_keeps() {
        let cli = super::super::Cli::command();
        let local = cli.find_subcommand("local").expect("local");
        let workers = local
            .get_arguments()
            .find(|a| a.get_id() == "workers")
            .expect("--workers");
        let help = workers.get_help().expect("help").to_string();
        assert!(help.contains(&format!("1 to {MAX_WORKERS}")), "{help}");
        let parsed = |n: u32| {
            let workers = n.to_string();
            super::super::Cli::try_parse_from(["ca", "local", "--workers", &workers, "m.yml"])
        };
        assert!(parsed(MAX_WORKERS).is_ok());
        let refused = parsed(MAX_WORKERS + 1).expect_err("over the limit");
        assert_eq!(refused.exit_code(), super::super::exit::BAD_INPUT);
    }
}
