//! Jest suites through `cluster-action local --tests jest`, as a user runs them in a project
//! with its own node_modules (tests/fixtures/suite-jest, with the packages of
//! tests/frameworks): every test listed by its file and full name, run exactly once (plus its
//! retries, each alone), statuses and counts as Jest's own, a lost worker's tests run again (a
//! killed batch keeps what Jest finished), a second run planned from the first one's timings,
//! and the user's mistakes refused with the words that fix them.
//!
//! The fixture's setup file logs each test that ran to the file `JEST_RAN_LOG` names (its
//! file and full name, a line each, and with `JEST_LOG_PID` the process it ran in).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::local::{
    LocalRun, alone, js_fixture_with_only, junit_counts, local, local_manifest, spawn_batch_held,
    tools_path,
};

/// The fixture's tests, by id, and how each ends with one retry.
const EXPECTED: [(&str, &str); 10] = [
    (
        r#"tests/math.test.js › math › adding "numbers" [ints] › two and two make four"#,
        "passed",
    ),
    (
        r#"tests/math.test.js › math › adding "numbers" [ints] › inc(1) is 2"#,
        "passed",
    ),
    (
        r#"tests/math.test.js › math › adding "numbers" [ints] › inc(2) is 3"#,
        "passed",
    ),
    (
        "tests/math.test.js › math › two and two make five",
        "failed",
    ),
    ("tests/math.test.js › math › not today", "skipped"),
    ("tests/math.test.js › math › divides by zero", "skipped"),
    (
        "tests/nested/names.test.js › it's $HOME #1 (a|b) * › ünïcödé ✓ — 日本",
        "passed",
    ),
    (
        "tests/nested/names.test.js › it's $HOME #1 (a|b) * › back\\slash and `ticks` [x]",
        "passed",
    ),
    (
        "tests/nested/names.test.js › flaky › fails on the first attempt",
        "flaky",
    ),
    ("tests/slow.test.js › slow: about a second", "passed"),
];

/// The id of the slow test.
const SLOW: &str = "tests/slow.test.js › slow: about a second";

/// The fixture with node_modules holding Jest and its dependencies alone.
fn jest_fixture() -> Option<tempfile::TempDir> {
    js_fixture_with_only("suite-jest", "jest")
}

/// What the fixture's setup file logs for the test `id`: its file and its titles, joined by
/// spaces as Jest joins a full name.
fn logged(id: &str) -> String {
    let (file, name) = id.split_once(" › ").unwrap();
    format!("{file} {}", name.replace(" › ", " "))
}

/// The lines of the log at `path` (none when no test wrote it).
fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `(tests, failures, errors, skipped)` of Jest alone on the fixture with `CLUSTER_ATTEMPT=2`,
/// from its own `--json` report: errors are files that failed to run, skipped the pending
/// and todo tests.
fn jest_alone() -> (usize, usize, usize, usize) {
    let dir = jest_fixture().unwrap();
    let out = dir.path().join("alone.json");
    let output = format!("--outputFile={}", out.display());
    alone(
        dir.path(),
        "node",
        &["node_modules/.bin/jest", "--json", &output],
        &[("CLUSTER_ATTEMPT", "2")],
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let count = |key: &str| usize::try_from(report[key].as_u64().unwrap()).unwrap();
    (
        count("numTotalTests"),
        count("numFailedTests"),
        count("numRuntimeErrorTestSuites"),
        count("numPendingTests") + count("numTodoTests"),
    )
}

/// Checks that `run` reported each test of [`EXPECTED`] once with its status.
fn assert_statuses(run: &LocalRun) {
    let want: BTreeMap<String, String> = EXPECTED
        .iter()
        .map(|(id, status)| (id.to_string(), status.to_string()))
        .collect();
    assert_eq!(run.statuses(), want, "{}", run.stderr);
}

#[test]
fn jest_through_local_runs_every_test_once_plus_retries_and_plans_from_its_timings() {
    let Some(dir) = jest_fixture() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (log, timings) = (
        scratch.path().join("ran"),
        scratch.path().join("timings.json"),
    );
    let timings = timings.to_str().unwrap();
    let run = local(dir.path())
        .workers(2)
        .env("JEST_RAN_LOG", log.to_str().unwrap())
        .args(&["--test-retries", "1", "--write-timings", timings])
        .args(&["--tests", "jest"])
        .run();
    assert_statuses(&run);
    // Attempts: one for a pass or a skip, two for a failure and the flaky test.
    for (id, (status, attempts)) in run.outcomes() {
        let want = if ["failed", "flaky"].contains(&status) {
            2
        } else {
            1
        };
        assert_eq!(attempts, want, "{id}: {}", run.report);
    }
    // Each test ran exactly that often, its retry alone: no neighbour ran again with it.
    let ran = log_lines(&log);
    for (id, status) in EXPECTED {
        let times = ran.iter().filter(|line| **line == logged(id)).count();
        let want = match status {
            "skipped" => 0,
            "failed" | "flaky" => 2,
            _ => 1,
        };
        assert_eq!(times, want, "{id} ran {times} times: {ran:#?}");
    }
    assert_eq!(ran.len(), 10, "{ran:#?}");
    assert_eq!(junit_counts(&run.junit), jest_alone(), "{}", run.junit);
    assert_eq!(run.report["test_summary"]["flaky"], 1);
    let failure = "tests/math.test.js › math › two and two make five";
    assert_eq!(
        run.message(failure),
        "Error: expect(received).toBe(expected) // Object.is equality"
    );
    assert!(
        run.junit.contains("Expected: 5\nReceived: 4"),
        "Jest's failure message: {}",
        run.junit
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);

    // The second run, of tests that all have timings now (the suite's own name pattern picks
    // them), on one slot, plans from them: the slow test, last without them (its file is
    // listed last, its one test guessed like each of the two in tests/math.test.js), now
    // runs first.
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(timings).unwrap()).unwrap();
    let slow = history["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == SLOW);
    let measured = slow.and_then(|t| t["durations_ms"][0].as_u64());
    assert!(measured.is_some_and(|ms| ms >= 1000), "{history}");
    std::fs::remove_file(&log).unwrap();
    let second = local(dir.path())
        .env("JEST_RAN_LOG", log.to_str().unwrap())
        .args(&["--slots", "1", "--timings", timings, "--tests", "jest"])
        .args(&["-t", "slow|ünïcödé|inc"])
        .run();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.statuses().len(), 4, "{}", second.report);
    let ran = log_lines(&log);
    assert_eq!(ran.first(), Some(&logged(SLOW)), "{ran:#?}");
}

#[test]
fn a_jest_worker_killed_mid_batch_loses_no_test_and_a_broken_file_is_an_error() {
    let Some(dir) = jest_fixture() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("killed");
    // A file that fails to load is a test of its own, an error with Jest's message.
    let broken = "tests/broken.test.js";
    std::fs::write(dir.path().join(broken), "test('never', () => {\n").unwrap();
    // The slow test, on its first run, SIGKILLs the worker running it.
    let run = local(dir.path())
        .workers(2)
        .env("JEST_KILL_ONCE", marker.to_str().unwrap())
        .args(&[
            "--peer-timeout",
            "3s",
            "--test-retries",
            "1",
            "--tests",
            "jest",
        ])
        .run();
    assert!(marker.exists(), "a worker was killed: {}", run.stderr);
    let statuses = run.statuses();
    assert_eq!(statuses.get(SLOW).map(String::as_str), Some("passed"));
    assert_eq!(statuses.get(broken).map(String::as_str), Some("error"));
    let message = run.message(broken);
    assert!(message.contains("Unexpected token"), "{message}");
    assert_eq!(statuses.len(), EXPECTED.len() + 1, "{}", run.report);
    for (id, status) in EXPECTED {
        // A lost batch's tests run again as the same attempt or the next: the flaky test may
        // pass at once.
        let allowed: &[&str] = match status {
            "flaky" => &["flaky", "passed"],
            other => &[other],
        };
        assert!(
            allowed.contains(&statuses[id].as_str()),
            "{id}: {statuses:?}"
        );
    }
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
}

/// `cluster-action local --tests jest ARGS` in `dir` with PATH `path`: its exit code and
/// standard error, which must say every one of `words`, the first one once.
fn assert_refused(dir: &Path, path: &str, args: &[&str], words: &[&str]) {
    let run = local(dir)
        .env("PATH", path)
        .args(&["--tests", "jest"])
        .args(args)
        .run();
    common::framework::assert_refused(&run, words);
    assert_eq!(run.stderr.matches(words[0]).count(), 1, "{}", run.stderr);
}

#[test]
fn jest_missing_failing_or_selecting_nothing_exits_2_with_what_to_do() {
    let Some(dir) = jest_fixture() else {
        return;
    };
    let path = tools_path();
    assert_refused(
        dir.path(),
        "/nonexistent",
        &[],
        &[
            "`node` is not installed",
            "actions/setup-node",
            "npm install --save-dev jest",
        ],
    );
    // A project without Jest in its node_modules (nor in any directory above it).
    let bare = tempfile::tempdir().unwrap();
    std::fs::write(bare.path().join("package.json"), "{}\n").unwrap();
    std::fs::write(bare.path().join("a.test.js"), "test('a', () => {});\n").unwrap();
    assert_refused(
        bare.path(),
        &path,
        &[],
        &[
            "`jest` is not installed",
            "no `jest` package found from",
            "npm install --save-dev jest",
        ],
    );
    // Jest refuses the project's configuration: its own words, at the end of its output.
    let config = dir.path().join("package.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"node\"", "\"no-such-environment\"")).unwrap();
    assert_refused(
        dir.path(),
        &path,
        &[],
        &[
            "suite 'jest': `jest` failed",
            "Test environment no-such-environment cannot be found",
        ],
    );
    std::fs::write(&config, text).unwrap();
    assert_refused(
        dir.path(),
        &path,
        &["-t", "no_test_is_called_this"],
        &["suite 'jest': no tests match", "no_test_is_called_this"],
    );
}

#[test]
fn a_jest_batch_killed_part_way_keeps_what_finished() {
    use cluster_action::suite::{Framework, Suite, TestStatus};
    // The listing runs the `node` on this process's PATH.
    if !common::local::available("node", &["--version"]) {
        return;
    }
    let Some(dir) = jest_fixture() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let suite = Suite {
        name: "jest".into(),
        framework: Framework::Jest,
        args: Vec::new(),
    };
    let listing = suite.list(dir.path(), work.path()).unwrap();
    for file in &listing.ship {
        let dest = dir.path().join(&file.dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file.source, dest).unwrap();
    }
    // A quick test, then the slow one: the batch is killed while the slow one runs.
    let first = EXPECTED[0].0;
    let batch: Vec<_> = [first, SLOW]
        .iter()
        .map(|id| listing.tests.iter().find(|t| t.id == *id).unwrap().clone())
        .collect();
    let report = work.path().join("report");
    let mut child = spawn_batch_held(dir.path(), &listing.batch_command(&batch), &report);
    common::await_some("the quick test's line in the report", || {
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        text.contains("two and two make four").then_some(())
    });
    let pgid = i32::try_from(child.id()).unwrap();
    // SAFETY: a plain syscall on the process group of the child started above.
    assert_eq!(unsafe { libc::killpg(pgid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let bytes = std::fs::read(&report).unwrap();
    let results = listing.parse_report(Some(&bytes), &batch);
    let got: Vec<TestStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(got, [TestStatus::Passed, TestStatus::NotRun]);
}

#[test]
fn a_jest_session_runs_its_slots_batches_in_one_node_and_a_crash_loses_only_its_test() {
    let Some(dir) = jest_fixture() else {
        return;
    };
    // Eight files of three tests, each file a batch of its own; the second test of the fifth
    // kills its process (SIGKILL, as a crash or the OOM killer) on its first run.
    let generated = dir.path().join("tests/gen");
    std::fs::create_dir_all(&generated).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let crashed = scratch.path().join("crashed");
    for f in 1..=8 {
        let mut body = format!("const fs = require('node:fs');\ndescribe('f{f}', () => {{\n");
        for t in 1..=3 {
            let code = if (f, t) == (5, 2) {
                format!(
                    "if (!fs.existsSync({crashed:?})) {{ fs.writeFileSync({crashed:?}, ''); \
                     process.kill(process.pid, 'SIGKILL'); }}"
                )
            } else {
                String::new()
            };
            body.push_str(&format!("  test('t{t}', () => {{ {code} }});\n"));
        }
        body.push_str("});\n");
        std::fs::write(generated.join(format!("f{f}.test.js")), body).unwrap();
    }
    let log = scratch.path().join("ran");
    let manifest = format!(
        "layers:\n  checkout: {{paths: [.]}}\nsuites:\n  - name: js\n    framework: jest\n\
         \x20   layers: [checkout]\n    args: [tests/gen]\n    batch: 2s\n\
         \x20   env: {{JEST_RAN_LOG: \"{}\", JEST_LOG_PID: \"1\"}}\n",
        log.display()
    );
    let run = local_manifest(dir.path(), &manifest).run();
    let want: BTreeMap<String, String> = (1..=8)
        .flat_map(|f| {
            (1..=3).map(move |t| {
                (
                    format!("tests/gen/f{f}.test.js › f{f} › t{t}"),
                    "passed".to_owned(),
                )
            })
        })
        .collect();
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Each test finished once (the crashed one, killed before its end, ran again); the tests
    // of its file before it kept their results.
    assert!(crashed.exists(), "the crashing test ran");
    let ran = log_lines(&log);
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    let mut pids = std::collections::BTreeSet::new();
    for line in &ran {
        let (test, pid) = line.rsplit_once(" pid=").unwrap();
        *runs.entry(test.to_owned()).or_default() += 1;
        pids.insert(pid.parse::<i32>().unwrap());
    }
    assert!(runs.values().all(|&n| n == 1), "{ran:#?}");
    assert_eq!(runs.len(), 24, "{ran:#?}");
    // Eight batches or more, two processes: the session the crash ended, and the next one.
    assert_eq!(pids.len(), 2, "{ran:#?}");
    for pid in pids {
        assert!(!common::alive(pid), "session {pid} outlived the run");
    }
}
