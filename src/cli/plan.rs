//! `cluster-action plan`: how many machines to give a run, from its history
//! ([`cluster_action::sizing`]), as step outputs a workflow's matrix reads; and after each
//! run, the set-up it measured and how far its prediction was, kept in the history.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;

use cluster_action::duration::{format_duration, parse_duration};
use cluster_action::history::RunHistory;
use cluster_action::history::sizing::PredictionCheck;
use cluster_action::runner::machine::RunEnd;
use cluster_action::runner::manifest::{Manifest, SuiteDef};
use cluster_action::runner::session::{RunError, RunResult};
use cluster_action::sizing::{
    self, Choice, DEFAULT_BATCH_COST_MS, DEFAULT_SETUP_MS, Prediction, Reason, SuiteWork,
};
use cluster_action::suite::TestCase;

use super::common::cpus;
use super::exit::{self, Failure};
use super::history::load_history;
use super::run::{WorkArgs, append_summary, set_step_outputs};
use super::suites::SuiteArgs;

/// How many machines the table goes up to without `--max-workers`.
pub const DEFAULT_MAX_WORKERS: u32 = 20;

/// Flags of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    work: WorkArgs,
    /// Slots of each machine, as the workers will have (default: this machine's CPUs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    slots: Option<u32>,
    /// The wall time to meet: the answer is the fewest machines predicted to meet it (the
    /// fastest when none does). Without it: the knee, where one more machine saves less than
    /// its set-up.
    #[arg(long, value_parser = target_duration, value_name = "DURATION")]
    target: Option<Duration>,
    /// The most machines to consider (the table goes up to it; default 20); with no history,
    /// the answer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N")]
    max_workers: Option<u32>,
    /// Also write the answer as the step outputs of the action: `workers` (the number) and
    /// `matrix` (the JSON list 0 to workers-1) to the file $GITHUB_OUTPUT names.
    #[arg(long)]
    step_outputs: bool,
    /// Cluster id whose history is read (as `run --cluster`).
    #[arg(long, default_value = "default", env = "CLUSTER_ACTION_CLUSTER")]
    cluster: String,
    #[command(flatten)]
    suites: SuiteArgs,
}

/// `--target`: a wall time longer than zero, which no cluster meets.
fn target_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("no run takes 0s: give the wall time to aim for, e.g. 10m".into()),
        d => Ok(d),
    }
}

/// Prints the predicted wall time of 1 to `--max-workers` machines and the number to ask for;
/// with `--step-outputs` writes it for the workflow.
pub async fn plan(args: PlanArgs) -> Result<i32, Failure> {
    if args.suites.write_timings.is_some() {
        return Err(Failure::bad_input(
            "--write-timings: `plan` keeps no history (a run does): leave it out",
        ));
    }
    let manifest = args.work.manifest(&args.suites)?;
    let history = load_history(&args.suites, &manifest, &args.cluster).await?;
    let slots = args.slots.unwrap_or_else(cpus);
    let work = list(&manifest, &history)?;
    let measured: usize = work.iter().map(SuiteWork::measured_count).sum();
    let (machines, text) = match (work.is_empty(), measured) {
        (true, _) => unplanned(args.max_workers, "the work has no test suite"),
        (false, 0) => unplanned(args.max_workers, "no timing history of these tests"),
        _ => planned(&args, &history, &work, slots),
    };
    print!("{text}");
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let markdown = format!("### How many machines\n\n```\n{text}```\n");
        append_summary(Path::new(&path), &markdown)?;
    }
    if args.step_outputs {
        let matrix: Vec<String> = (0..machines).map(|i| i.to_string()).collect();
        set_step_outputs(&[
            ("workers", machines.to_string()),
            ("matrix", format!("[{}]", matrix.join(","))),
        ])?;
    }
    Ok(exit::OK)
}

/// Lists every suite of `manifest` as a run would, and estimates its tests from `history`.
fn list(manifest: &Manifest, history: &RunHistory) -> Result<Vec<SuiteWork>, Failure> {
    let builds = tempfile::Builder::new()
        .prefix("cluster-action-plan-")
        .tempdir()
        .map_err(Failure::io("cannot create a temporary directory"))?;
    let mut work = Vec::new();
    for def in &manifest.suites {
        let started = Instant::now();
        let listing = def
            .suite
            .list(&manifest.base_dir, builds.path())
            .map_err(|e| Failure::Run(RunError::Suite(e)))?;
        eprintln!(
            "suite '{}': {} tests listed in {}",
            def.suite.name,
            listing.tests.len(),
            format_duration(started.elapsed())
        );
        work.push(SuiteWork::estimated(def, &listing.tests, &history.timings));
    }
    Ok(work)
}

/// The answer without a prediction (`why` there is none): `--max-workers`, else 1.
fn unplanned(max_workers: Option<u32>, why: &str) -> (u32, String) {
    let (machines, which) = match max_workers {
        Some(n) => (n, "--max-workers"),
        None => (1, "no --max-workers"),
    };
    let text = format!(
        "{why}: nothing to predict from; {machines} machine(s) ({which}). A run of test suites \
         with the history kept (on GitHub, by default; else --write-timings) gives the next \
         plan their durations.\n"
    );
    (machines, text)
}

/// The suites, the costs, the table and the answer, as text; and the answer.
fn planned(args: &PlanArgs, history: &RunHistory, work: &[SuiteWork], slots: u32) -> (u32, String) {
    let ms = |ms: u64| format_duration(Duration::from_millis(ms));
    let tests: usize = work.iter().map(|s| s.tests.len()).sum();
    let measured: usize = work.iter().map(SuiteWork::measured_count).sum();
    let total = (work.iter()).fold(0u64, |sum, s| sum.saturating_add(s.total_ms()));
    let mut lines = vec![
        format!(
            "{measured} of {tests} tests measured; {} of tests in all (the others at their \
             suite's median)",
            ms(total)
        ),
        match work.iter().find(|s| s.cost_measured) {
            Some(suite) => format!(
                "per-batch cost: {} to start and {} a file (measured from earlier batches)",
                ms(suite.batch_cost.start_ms),
                ms(suite.batch_cost.per_file_ms)
            ),
            None => format!(
                "per-batch cost: {} (a default: the history has no measured cost)",
                ms(DEFAULT_BATCH_COST_MS)
            ),
        },
    ];
    let sizing_history = &history.timings.sizing;
    let setup_ms = sizing_history.setup_ms().unwrap_or(DEFAULT_SETUP_MS);
    lines.push(match sizing_history.setup_ms() {
        Some(_) => format!(
            "set-up of a run: {} (measured: the median of the last {} run(s))",
            ms(setup_ms),
            sizing_history.setups_measured()
        ),
        None => format!(
            "set-up of a run: {} (a default: no run measured it yet)",
            ms(setup_ms)
        ),
    });
    if let Some(check) = sizing_history.last_check() {
        lines.push(format!("last run: {}", describe_check(check)));
    }
    let max = args.max_workers.unwrap_or(DEFAULT_MAX_WORKERS);
    let predictions = sizing::predict(work, setup_ms, slots, max);
    let row =
        |machines: &dyn std::fmt::Display,
         slots: &dyn std::fmt::Display,
         wall: &str,
         saves: &str| { format!("{machines:>8}  {slots:>5}  {wall:>9}  {saves:>7}") };
    lines.push(row(&"machines", &"slots", "predicted", "saves"));
    let mut previous: Option<u64> = None;
    for p in &predictions {
        let saves = previous.map_or(String::new(), |before| ms(before.saturating_sub(p.wall_ms)));
        lines.push(row(
            &p.machines,
            &(p.machines * slots),
            &ms(p.wall_ms),
            &saves,
        ));
        previous = Some(p.wall_ms);
    }
    let target = args.target.map(cluster_action::duration::millis);
    let choice = sizing::choose(&predictions, target, setup_ms);
    lines.push(describe_choice(&choice, &predictions, target, setup_ms));
    let mut text = lines.join("\n");
    text.push('\n');
    (choice.machines, text)
}

/// The answer as one line: `workers: 3 (…why…)`.
fn describe_choice(
    choice: &Choice,
    predictions: &[Prediction],
    target: Option<u64>,
    setup_ms: u64,
) -> String {
    let ms = |ms: u64| format_duration(Duration::from_millis(ms));
    let wall = predictions
        .iter()
        .find(|p| p.machines == choice.machines)
        .map_or(0, |p| p.wall_ms);
    let target = ms(target.unwrap_or(0));
    let why = match choice.reason {
        Reason::MeetsTarget => {
            format!(
                "the fewest predicted to meet --target {target}: {}",
                ms(wall)
            )
        }
        Reason::MissesTarget => format!(
            "none up to --max-workers meets --target {target}: the fastest, {}",
            ms(wall)
        ),
        Reason::Knee { saves_ms } => format!(
            "the knee: one more would save {}, less than its set-up of {}; predicted {}",
            ms(saves_ms),
            ms(setup_ms),
            ms(wall)
        ),
        Reason::EveryMachinePays => format!(
            "each machine up to --max-workers saves more than its set-up; predicted {}",
            ms(wall)
        ),
    };
    format!("workers: {} ({why})", choice.machines)
}

/// A prediction's check as people read it.
fn describe_check(check: &PredictionCheck) -> String {
    let ms = |ms: u64| format_duration(Duration::from_millis(ms));
    format!(
        "predicted {} on {} machine(s) of {} slot(s), took {} ({:+}%)",
        ms(check.predicted_ms),
        check.machines,
        check.slots,
        ms(check.actual_ms),
        check.error_percent()
    )
}

/// After a run of `cluster` (machines, slots of each; none when unknown) that ran `suites`:
/// the set-up it measured and its prediction's check go into `history` (saved with it), and
/// the line saying so is returned for [`say`]. Only a complete run of suites alone measures
/// anything: jobs are not in the model, and a re-run runs only some tests.
pub fn after_run(
    history: &mut RunHistory,
    suites: &[SuiteDef],
    cluster: Option<(u32, u32)>,
    result: &RunResult,
) -> Option<String> {
    let report = &result.report;
    let complete = matches!(result.end, RunEnd::Completed)
        && report.jobs.is_empty()
        && !report.tests.is_empty()
        && history.previous.is_none();
    let cluster = cluster.filter(|_| complete)?;
    let before: Vec<SuiteWork> = (suites.iter())
        .map(|def| {
            let cases: Vec<TestCase> = (report.tests.iter())
                .filter(|r| r.suite == def.suite.name)
                .map(|r| r.case.clone())
                .collect();
            SuiteWork::estimated(def, &cases, &history.timings)
        })
        .collect();
    // The set-up is what this run's batches, at what they cost in this run, leave unexplained;
    // the check is of the prediction the history before it made.
    let with_this_run: Vec<SuiteWork> = (suites.iter().zip(&before))
        .map(
            |(def, work)| match report.batch_samples.get(&def.suite.name) {
                Some(samples) => {
                    work.at_cost(history.timings.batch_cost_with(&def.suite.name, samples))
                }
                None => work.clone(),
            },
        )
        .collect();
    let setup_before = history
        .timings
        .sizing
        .setup_ms()
        .unwrap_or(DEFAULT_SETUP_MS);
    let took = sizing::measured_durations(&report.tests);
    let wall_ms = report.wall_ms;
    let (setup, _) = sizing::check_run(&with_this_run, setup_before, &took, cluster, wall_ms);
    let (_, check) = sizing::check_run(&before, setup_before, &took, cluster, wall_ms);
    history.timings.sizing.record(setup, check);
    let setup = format_duration(Duration::from_millis(setup));
    Some(match check {
        Some(check) => format!(
            "How many machines: {}; this run's set-up: {setup}",
            describe_check(&check)
        ),
        None => format!(
            "How many machines: no prediction (no test of this run was measured before); this run's set-up: {setup}"
        ),
    })
}

/// Says what [`after_run`] found, on stderr and in the job summary.
pub fn say(line: Option<String>) -> Result<(), Failure> {
    let Some(line) = line else {
        return Ok(());
    };
    eprintln!("{line}");
    match std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        Some(path) => append_summary(Path::new(&path), &format!("\n{line}\n")),
        None => Ok(()),
    }
}
