//! Flaky tests across runs, through `cluster-action local` with a `--timings` file that each
//! run reads and writes (`--write-timings` on the same file): a test flaky one run in three is
//! quarantined once ten runs are recorded and its failure no longer fails the run, twenty
//! clean runs release it, a test quarantined by hand fails no run, and a new test failing one
//! run in two is flaky on its first run (`--detect-new-flakes`), and the command line's
//! settings (`--quarantine auto,min-runs=3,...`, `--detect-new-flakes=runs=5,...`) replace the
//! defaults. A tiny `command` suite
//! on one worker keeps the runs fast; the test's outcome is driven by the run's number (the
//! manifest's `RUN`), so every run is deterministic.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::local::{LocalRun, local};

/// Writes JUnit for the ids it is given: `flaky` fails its first attempt in runs whose number
/// is a multiple of `FAIL_EVERY`, `broken` always fails, `newbie` fails every second attempt,
/// any other passes.
const RUN_SCRIPT: &str = r#"{
  echo '<testsuite name="c">'
  for id in "$@"; do
    fail=
    case "$id" in
      flaky) [ $((RUN % FAIL_EVERY)) -eq 0 ] && [ "$CLUSTER_ATTEMPT" = 1 ] && fail=1 ;;
      broken) fail=1 ;;
      newbie) [ $((CLUSTER_ATTEMPT % 2)) -eq 0 ] && fail=1 ;;
    esac
    if [ -n "$fail" ]; then
      echo "<testcase classname=\"c\" name=\"$id\"><failure message=\"boom in run $RUN\"/></testcase>"
    else
      echo "<testcase classname=\"c\" name=\"$id\"/>"
    fi
  done
  echo '</testsuite>'
} > "$CLUSTER_JUNIT"
"#;

/// A project whose suite `c` lists `ids`, with `quarantine` (YAML) as its quarantine setting.
fn project(ids: &[&str], quarantine: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.sh"), RUN_SCRIPT).unwrap();
    std::fs::write(dir.path().join("ids.txt"), ids.join("\n") + "\n").unwrap();
    let manifest = format!(
        "layers:\n  checkout: {{ paths: [run.sh] }}\nsuites:\n  - name: c\n    framework: command\n    \
         list: cat ids.txt\n    run: bash run.sh \"$@\"\n    layers: [checkout]\n    retries: 1\n    \
         env: {{ RUN: '0', FAIL_EVERY: '3' }}\n    quarantine: {quarantine}\n"
    );
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    dir
}

/// Run number `run` of the project in `dir` (the test flaky when `run` is a multiple of
/// `fail_every`), with `args` and the job summary.
fn run(dir: &Path, run: u32, fail_every: u32, args: &[&str]) -> LocalRun {
    let manifest = std::fs::read_to_string(dir.join("cluster.yml")).unwrap();
    let start = manifest.find("env: {").unwrap();
    let end = start + manifest[start..].find('}').unwrap() + 1;
    let env = format!("env: {{ RUN: '{run}', FAIL_EVERY: '{fail_every}' }}");
    std::fs::write(
        dir.join("cluster.yml"),
        format!("{}{env}{}", &manifest[..start], &manifest[end..]),
    )
    .unwrap();
    local(dir)
        .args(&["--timings", "t.json", "--write-timings", "t.json"])
        .args(args)
        .args(&["cluster.yml"])
        .summary()
        .run()
}

/// The JSON entry of test `id`.
fn entry<'a>(run: &'a LocalRun, id: &str) -> &'a serde_json::Value {
    run.tests()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {}", run.report))
}

#[test]
fn a_test_flaky_one_run_in_three_is_quarantined_after_ten_runs_and_released_after_twenty_clean() {
    let dir = project(&["steady", "flaky"], "{ auto: true }");
    let strict = ["--flaky-result", "fail"];
    for n in 1..=10 {
        let done = run(dir.path(), n, 3, &strict);
        let flaky = entry(&done, "flaky");
        if n % 3 == 0 {
            assert_eq!(flaky["status"], "flaky", "run {n}: {}", done.report);
            assert_eq!(
                done.code, 1,
                "run {n}: a flaky test fails the run\n{}",
                done.stderr
            );
        } else {
            assert_eq!(flaky["status"], "passed", "run {n}: {}", done.report);
            assert_eq!(done.code, 0, "run {n}: {}", done.stderr);
        }
        assert_eq!(
            flaky["runs_seen"].as_u64(),
            Some(u64::from(n)).filter(|_| n > 1)
        );
    }
    let history = std::fs::read_to_string(dir.path().join("t.json")).unwrap();
    assert!(history.contains("quarantined_since"), "{history}");
    // Run 11 passes; run 12 is flaky again, quarantined: it fails no run.
    assert_eq!(run(dir.path(), 11, 3, &strict).code, 0);
    let done = run(dir.path(), 12, 3, &strict);
    assert_eq!(done.code, 0, "{}\n{}", done.stderr, done.summary);
    let flaky = entry(&done, "flaky");
    assert_eq!(flaky["status"], "quarantined", "{}", done.report);
    assert_eq!(flaky["outcome"], "flaky");
    assert_eq!(flaky["runs_seen"], 12);
    assert_eq!(flaky["flake_rate"], 0.333, "4 of 12");
    assert_eq!(entry(&done, "steady")["flake_rate"], 0.0);
    assert_eq!(done.report["test_summary"]["quarantined"], 1);
    assert!(
        done.summary.contains("#### Quarantined tests")
            && done
                .summary
                .contains("| c | flaky | flaky | 33 % | 12 | local run #10 |"),
        "{}",
        done.summary
    );
    assert!(
        done.summary.contains("#### Flakiest tests"),
        "{}",
        done.summary
    );
    assert!(done.summary.contains("| trend |"), "{}", done.summary);
    // Twenty clean runs release it: a flaky run after them fails the run again.
    for n in 13..=31 {
        let done = run(dir.path(), n, 1_000, &strict);
        assert_eq!(entry(&done, "flaky")["status"], "quarantined", "run {n}");
    }
    let done = run(dir.path(), 32, 1_000, &strict);
    assert_eq!(
        entry(&done, "flaky")["status"],
        "quarantined",
        "still in run 32"
    );
    let history = std::fs::read_to_string(dir.path().join("t.json")).unwrap();
    assert!(
        !history.contains("quarantined_since"),
        "released: {history}"
    );
    let done = run(dir.path(), 33, 3, &strict);
    assert_eq!(entry(&done, "flaky")["status"], "flaky", "{}", done.report);
    assert_eq!(done.code, 1, "{}", done.stderr);
}

#[test]
fn a_test_quarantined_by_hand_fails_no_run_and_keeps_its_failure_in_junit() {
    let dir = project(&["steady", "broken"], "{ tests: [broken] }");
    let done = run(dir.path(), 1, 3, &[]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let broken = entry(&done, "broken");
    assert_eq!(broken["status"], "quarantined", "{}", done.report);
    assert_eq!(broken["outcome"], "failed");
    assert!(
        done.summary
            .contains("| c | broken | failed | 0 % | 1 | by hand |"),
        "{}",
        done.summary
    );
    let junit = roxmltree::Document::parse(&done.junit).unwrap();
    let case = junit
        .descendants()
        .find(|n| n.attribute("name") == Some("broken"))
        .unwrap();
    assert!(
        case.children().any(|n| n.has_tag_name("failure")),
        "{}",
        done.junit
    );
    assert!(
        case.descendants()
            .any(|n| n.attribute("name") == Some("quarantined")),
        "{}",
        done.junit
    );
    assert!(
        done.stderr.contains("1 quarantined"),
        "the counts say so: {}",
        done.stderr
    );
    // `--quarantine off` lets the failure fail the run; `--quarantine-file` quarantines again.
    let off = run(dir.path(), 2, 3, &["--quarantine", "off"]);
    assert_eq!(off.code, 1, "{}", off.stderr);
    assert_eq!(entry(&off, "broken")["status"], "failed");
    let plain = project(&["steady", "broken"], "{}");
    std::fs::write(plain.path().join("q.txt"), "# known broken\nbroken\n").unwrap();
    assert_eq!(run(plain.path(), 1, 3, &[]).code, 1);
    let by_file = run(plain.path(), 2, 3, &["--quarantine-file", "q.txt"]);
    assert_eq!(by_file.code, 0, "{}", by_file.stderr);
    assert_eq!(entry(&by_file, "broken")["status"], "quarantined");
}

/// The second run of a project of 20 tests, which adds `newbie` to them; both runs with `args`.
fn a_new_test_run(args: &[&str]) -> LocalRun {
    let old: Vec<String> = (0..20).map(|i| format!("old{i}")).collect();
    let mut ids: Vec<&str> = old.iter().map(String::as_str).collect();
    let dir = project(&ids, "{}");
    let first = run(dir.path(), 1, 3, args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    ids.push("newbie");
    std::fs::write(dir.path().join("ids.txt"), ids.join("\n") + "\n").unwrap();
    run(dir.path(), 2, 3, args)
}

#[test]
fn a_new_test_failing_one_run_in_two_is_flaky_on_its_first_run() {
    let second = a_new_test_run(&["--flaky-result", "fail", "--detect-new-flakes"]);
    let newbie = entry(&second, "newbie");
    assert_eq!(newbie["status"], "flaky", "{}", second.report);
    assert_eq!(newbie["attempts"], 3);
    // Each repeat avoids the workers of the runs before it where another is connected (the
    // unit tests of SuiteRun check the batches say so); one worker runs all three here.
    assert_eq!(
        newbie["workers"],
        serde_json::json!(["worker-0", "worker-0", "worker-0"])
    );
    assert_eq!(
        entry(&second, "old3")["attempts"],
        1,
        "known tests run once"
    );
    assert_eq!(second.code, 1, "--flaky-result fail: {}", second.stderr);
    assert!(
        second
            .summary
            .contains("- c: 1 new tests ran 3 times each, on different workers where there were; 1 of them flaky."),
        "{}",
        second.summary
    );
}

#[test]
fn quarantine_settings_on_the_command_line_replace_the_defaults() {
    // A test flaky in run 3 has a rate of 1 in 3 once 3 runs are recorded: (the flag, its
    // status in runs 4 and 5).
    let cases = [
        ("auto", ["passed", "passed"]), // rates count after 10 runs
        ("auto,min-runs=3,flake-rate=40%", ["passed", "passed"]), // 33 % is under the rate
        (
            "auto,min-runs=3,flake-rate=30%,release-after=1",
            ["quarantined", "passed"], // run 4 is clean: it is released
        ),
    ];
    for (flag, statuses) in cases {
        let dir = project(&["steady", "flaky"], "{}");
        let args = ["--flaky-result", "fail", "--quarantine", flag];
        for n in 1..=3 {
            assert_eq!(
                run(dir.path(), n, 3, &args).code,
                i32::from(n == 3),
                "{flag}"
            );
        }
        for (n, status) in (4..).zip(statuses) {
            let done = run(dir.path(), n, 3, &args);
            let flaky = entry(&done, "flaky");
            assert_eq!(flaky["status"], status, "{flag}, run {n}: {}", done.report);
            assert_eq!(flaky["runs_seen"], n, "{flag}");
        }
    }
}

#[test]
fn new_test_settings_on_the_command_line_set_its_runs_within_the_share() {
    let strict = [
        "--flaky-result",
        "fail",
        "--detect-new-flakes=runs=5,share=50%",
    ];
    let second = a_new_test_run(&strict);
    let newbie = entry(&second, "newbie");
    assert_eq!(newbie["status"], "flaky", "{}", second.report);
    assert_eq!(newbie["attempts"], 5);
    assert!(
        second.summary.contains("- c: 1 new tests ran 5 times each"),
        "{}",
        second.summary
    );
    // Four repeats of one test in 21 do not fit in the default 10 % of the suite's time.
    let second = a_new_test_run(&["--detect-new-flakes=runs=5"]);
    assert_eq!(entry(&second, "newbie")["attempts"], 1, "{}", second.report);
}
