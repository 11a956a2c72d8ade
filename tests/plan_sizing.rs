//! `cluster-action plan`: how many machines, from the timing history of a measured suite. A
//! `command` suite of sleeps (quick, and its durations hold on a loaded machine) runs once on
//! `local` keeping its history; the plan then names a number of machines and its matrix, and a
//! second run on that many lands within 15 % of the wall time it predicted. Without history
//! the plan answers `--max-workers`; bad input is exit 2 with the words needed.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;

mod common;
use common::cluster::Scratch;
use common::local::local;

/// The suite: 16 tests sleeping 0.75 to 3 s (30 s in all), each id saying how long; a batch
/// runs its tests one after another and writes their measured times as JUnit.
const SLEEPS: &str = r#"suites:
  - name: sleeps
    framework: command
    list: |
      for i in $(seq 1 16); do echo "t$i-$(( i % 4 + 1 ))"; done
    run: |
      { echo '<testsuite>'; for t in "$@"; do s=$(date +%s%N); sleep "$(( ${t#*-} * 75 ))e-2"; e=$(date +%s%N); echo "<testcase name='$t' time='$(( (e - s) / 1000000 ))e-3'/>"; done; echo '</testsuite>'; } > "$CLUSTER_JUNIT"
"#;

/// Asserts that `text` holds `words`.
fn says(text: &str, words: impl AsRef<str>) {
    let words = words.as_ref();
    assert!(text.contains(words), "expected {words:?} in:\n{text}");
}

/// What a `plan` run left.
struct Planned {
    code: i32,
    stdout: String,
    stderr: String,
    /// The step outputs it wrote.
    outputs: String,
    /// The job summary it wrote.
    summary: String,
}

/// `cluster-action plan ARGS` in `dir`, with `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY` in
/// scratch files.
fn plan(dir: &Path, args: &[&str]) -> Planned {
    let scratch = Scratch::new();
    let outputs = scratch.path().join("outputs");
    let summary = scratch.path().join("summary.md");
    let mut argv = vec!["plan"];
    argv.extend_from_slice(args);
    let env = [
        ("GITHUB_OUTPUT", outputs.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];
    let mut proc = scratch.spawn_args(dir, "plan", &argv, &env);
    let code = proc.wait().code().unwrap_or(-1);
    Planned {
        code,
        stdout: proc.stdout(),
        stderr: proc.stderr(),
        outputs: std::fs::read_to_string(&outputs).unwrap_or_default(),
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

/// The step output `name` of `planned` (written as `name<<DELIMITER`, its value, the
/// delimiter).
fn output<'a>(planned: &'a Planned, name: &str) -> &'a str {
    let prefix = format!("{name}<<");
    let mut lines = planned.outputs.lines();
    lines
        .find(|line| line.starts_with(&prefix))
        .and_then(|_| lines.next())
        .unwrap_or_else(|| panic!("no output {name}: {}", planned.outputs))
}

/// Seconds in a duration as the plan prints it (`850ms`, `6.1s`, `12s`).
fn seconds(text: &str) -> f64 {
    match text.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().unwrap() / 1000.0,
        None => text.strip_suffix('s').unwrap().parse().unwrap(),
    }
}

/// The wall time the plan's table predicts for `machines`, as it prints it.
fn predicted(planned: &Planned, machines: u32) -> String {
    let row = planned
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.len() >= 3 && cells[0] == machines.to_string())
        .unwrap_or_else(|| panic!("no row for {machines} machines:\n{}", planned.stdout));
    row[2].to_owned()
}

#[test]
fn a_plan_for_a_measured_suite_names_n_and_a_run_on_n_lands_within_15_percent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sleeps.yml"), SLEEPS).unwrap();
    let timings = dir.path().join("timings.json");
    let timings = timings.to_str().unwrap();
    let first = local(dir.path())
        .args(&["--slots", "2", "--write-timings", timings, "sleeps.yml"])
        .run();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("no prediction (no test of this run was measured before)"),
        "{}",
        first.stderr
    );

    let args = ["--timings", timings, "--slots", "2", "--max-workers", "4"];
    let planned = plan(
        dir.path(),
        &[
            &args[..],
            &["--target", "10s", "--step-outputs", "sleeps.yml"],
        ]
        .concat(),
    );
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    says(&planned.stdout, "16 of 16 tests measured");
    // The first run measured what its batches cost beyond their tests.
    says(&planned.stdout, "(measured from earlier batches)");
    assert!(
        planned
            .stdout
            .contains("(measured: the median of the last 1 run(s))"),
        "{}",
        planned.stdout
    );
    let workers: u32 = output(&planned, "workers").parse().unwrap();
    let matrix: Vec<u32> = serde_json::from_str(output(&planned, "matrix")).unwrap();
    assert_eq!(matrix, (0..workers).collect::<Vec<_>>());
    // 30 s of tests on one machine of 2 slots take over 10 s: the plan needs more than one,
    // and the number it names is predicted to meet the target where one fewer is not.
    assert!(workers >= 2, "{}", planned.stdout);
    let shown = predicted(&planned, workers);
    let wall = seconds(&shown);
    assert!(wall <= 10.0, "{}", planned.stdout);
    assert!(
        seconds(&predicted(&planned, workers - 1)) > 10.0,
        "{}",
        planned.stdout
    );
    says(
        &planned.stdout,
        format!("workers: {workers} (the fewest predicted to meet --target 10s"),
    );

    says(&planned.summary, "### How many machines");
    says(&planned.summary, format!("workers: {workers} (the fewest"));

    // The run on that many machines, from the same history: within 15 % of the prediction,
    // and its own check says the same prediction, kept in the history for the next plan.
    let second = local(dir.path())
        .workers(workers)
        .args(&[
            "--slots",
            "2",
            "--timings",
            timings,
            "--write-timings",
            timings,
            "sleeps.yml",
        ])
        .summary()
        .run();
    assert_eq!(second.code, 0, "{}", second.stderr);
    let took = second.report["summary"]["wall_ms"].as_u64().unwrap() as f64 / 1000.0;
    let error = (took - wall).abs() / wall;
    eprintln!("predicted {wall}s on {workers} machines, took {took}s");
    assert!(
        error <= 0.15,
        "predicted {wall}s on {workers} machines, took {took}s\n{}",
        planned.stdout
    );
    let check =
        format!("How many machines: predicted {shown} on {workers} machine(s) of 2 slot(s)");
    assert!(second.stderr.contains(&check), "{check}\n{}", second.stderr);
    says(&second.summary, &check);
    let again = plan(dir.path(), &[&args[..], &["sleeps.yml"]].concat());
    says(
        &again.stdout,
        format!("last run: predicted {shown} on {workers} machine(s) of 2 slot(s), took"),
    );
    assert!(
        again
            .stdout
            .contains("(measured: the median of the last 2 run(s))"),
        "{}",
        again.stdout
    );
    assert_eq!(again.outputs, "", "no --step-outputs, no outputs");
}

#[test]
fn without_history_the_plan_says_so_and_answers_the_maximum_or_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sleeps.yml"), SLEEPS).unwrap();
    let missing = ["--timings", "none.json", "--step-outputs", "sleeps.yml"];
    let four = plan(
        dir.path(),
        &[&["--max-workers", "4"], &missing[..]].concat(),
    );
    assert_eq!(four.code, 0, "{}", four.stderr);
    says(
        &four.stdout,
        "no timing history of these tests: nothing to predict from; 4 machine(s) (--max-workers)",
    );
    assert_eq!(output(&four, "workers"), "4");
    assert_eq!(output(&four, "matrix"), "[0,1,2,3]");
    let one = plan(dir.path(), &missing);
    assert_eq!(one.code, 0, "{}", one.stderr);
    says(&one.stdout, "1 machine(s) (no --max-workers)");
    assert_eq!(
        (output(&one, "workers"), output(&one, "matrix")),
        ("1", "[0]")
    );
    std::fs::write(dir.path().join("jobs.txt"), "true\n").unwrap();
    let jobs = plan(
        dir.path(),
        &["--commands", "jobs.txt", "--max-workers", "2"],
    );
    assert_eq!(jobs.code, 0, "{}", jobs.stderr);
    says(
        &jobs.stdout,
        "the work has no test suite: nothing to predict from; 2 machine(s)",
    );
}

#[test]
fn a_plan_without_work_or_with_a_bad_target_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sleeps.yml"), SLEEPS).unwrap();
    let refused = |args: &[&str], words: &str| {
        let planned = plan(dir.path(), args);
        assert_eq!(planned.code, 2, "{args:?}: {}", planned.stderr);
        assert!(
            planned.stderr.contains(words),
            "{args:?}: {}",
            planned.stderr
        );
        assert_eq!(planned.outputs, "", "{args:?}: no outputs");
    };
    refused(&["--step-outputs"], "<MANIFEST>");
    refused(
        &["--target", "soon", "sleeps.yml"],
        "invalid duration 'soon'",
    );
    refused(&["--target", "0", "sleeps.yml"], "no run takes 0s");
    refused(&["--max-workers", "0", "sleeps.yml"], "--max-workers");
    refused(
        &["--write-timings", "t.json", "sleeps.yml"],
        "`plan` keeps no history",
    );
    refused(&["--tests", "nope"], "'nope' is not a test framework");
}
