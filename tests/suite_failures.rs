//! Suites that do not end the normal way, through `cluster-action local`: a framework failing
//! in every batch ends the run soon, every test an error in the framework's own words, said
//! once in the log and in the job summary; a nextest suite that could not start on workers is
//! refused up front; a cancelled run keeps what its tests did before the cancel.
//!
//! Tools (pytest, cargo-nextest) are looked up on PATH after the directories in
//! `CLUSTER_TEST_TOOLS`; a missing one skips its test outside CI and fails it under `CI=true`.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;

mod common;
use common::await_some;
use common::local::{LocalRun, available, fixture_copy, fixture_target_dir, have_pytest, local};

/// A copy of the fixture `name` in a new directory, with `manifest` as cluster.yml.
fn checkout(name: &str, manifest: &str) -> tempfile::TempDir {
    let dir = fixture_copy(name);
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    dir
}

/// `cluster-action local` on cluster.yml in `dir`, two workers of one slot each (so that two
/// batches run on two workers), writing the job summary.
fn run_manifest(dir: &Path) -> LocalRun {
    local(dir)
        .workers(2)
        .args(&["--slots", "1", "cluster.yml"])
        .env(
            "CARGO_TARGET_DIR",
            fixture_target_dir().display().to_string(),
        )
        .summary()
        .run()
}

/// The tests of a report: (id, status, message).
fn tests(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let text = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
            (text("id"), text("status"), text("message"))
        })
        .collect()
}

#[test]
fn a_pytest_suite_without_its_files_ends_in_pytests_own_words() {
    if !have_pytest() {
        return;
    }
    // No layers: the workers lack the test files, in every batch.
    let dir = checkout(
        "suite-pytest",
        "suites:\n  - name: py\n    framework: pytest\n    retries: 2\n",
    );
    let run = run_manifest(dir.path());
    let words = "file or directory not found";
    let tests = tests(&run.report);
    assert_eq!(tests.len(), 7, "{}", run.report);
    for (id, status, message) in &tests {
        assert_eq!(status, "error", "{id}: {message}");
        assert!(message.contains(words), "{id}: {message}");
    }
    assert_eq!(
        run.stderr.matches(words).count(),
        1,
        "the log says it once:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("suite 'py' stops"), "{}", run.stderr);
    assert!(
        run.summary.contains("#### Suite py stopped"),
        "{}",
        run.summary
    );
    assert!(run.summary.contains(words), "{}", run.summary);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn a_command_failing_in_every_batch_is_not_requeued_blindly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("given");
    let started = dir.path().join("started");
    // Every batch says why it cannot start and writes no report; each records the ids it got.
    // The first ones wait (up to 30 s) until two batches run at once, so that both workers
    // have joined: with one worker the suite cannot tell its failure from the worker's.
    let run = format!(
        "echo >> {started}; for _ in $(seq 300); do [ \"$(wc -l < {started})\" -ge 2 ] && break; \
         sleep 0.1; done; printf '%s\\n' \"$@\" >> {log}; \
         echo 'cannot start: the frobnicator is missing' >&2; exit 3",
        started = started.display(),
        log = log.display()
    );
    let manifest = serde_yaml::to_string(&serde_json::json!({
        "suites": [{
            "name": "k",
            "framework": "command",
            "list": "printf 't1\\nt2\\nt3\\nt4\\nt5\\nt6\\n'",
            "run": run,
        }]
    }))
    .unwrap();
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let run = run_manifest(dir.path());
    let words = "cannot start: the frobnicator is missing";
    for (id, status, message) in tests(&run.report) {
        assert_eq!(status, "error", "{id}: {message}");
        assert!(message.contains(words), "{id}: {message}");
    }
    // Blind requeues would give each test to 1 + 3 batches.
    let given = std::fs::read_to_string(&log).unwrap();
    for id in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        let times = given.lines().filter(|l| *l == id).count();
        assert!((1..=2).contains(&times), "{id} ran {times} times:\n{given}");
    }
    assert_eq!(run.stderr.matches(words).count(), 1, "{}", run.stderr);
    assert!(
        run.summary.contains("#### Suite k stopped"),
        "{}",
        run.summary
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn a_nextest_suite_needs_a_layer_holding_its_workspace() {
    if !available("cargo-nextest", &["nextest", "--version"]) {
        return;
    }
    let suite = "suites:\n  - name: rust\n    framework: nextest\n";
    let dir = checkout("suite-cargo", suite);
    let refused = run_manifest(dir.path());
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    for words in ["suite 'rust'", "Cargo.toml", "workspace: {paths: [.]}"] {
        assert!(
            refused.stderr.contains(words),
            "{words}:\n{}",
            refused.stderr
        );
    }
    // What the message says to add makes it run as `--nextest` does: every test reported.
    let fixed = format!("layers:\n  workspace: {{paths: [.]}}\n{suite}    layers: [workspace]\n");
    std::fs::write(dir.path().join("cluster.yml"), fixed).unwrap();
    let run = run_manifest(dir.path());
    let tests = tests(&run.report);
    assert!(!tests.is_empty(), "{}", run.stderr);
    assert!(
        tests.iter().any(|(_, status, _)| status == "passed"),
        "{tests:?}"
    );
    for (id, status, message) in &tests {
        assert_ne!(status, "error", "{id}: {message}");
    }
}

#[test]
fn a_cancelled_run_keeps_the_tests_that_passed_before_the_cancel() {
    if !have_pytest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("slow-started");
    // One batch (one slot): `fast` passes, then `slow` says it started (pytest has printed
    // `fast`'s PASSED by then) and waits far longer than the test.
    std::fs::write(
        dir.path().join("test_c.py"),
        format!(
            "import time\n\ndef test_fast():\n    pass\n\ndef test_slow():\n    \
             open({:?}, 'w').close()\n    time.sleep(300)\n",
            started.display().to_string()
        ),
    )
    .unwrap();
    let running = local(dir.path())
        .args(&["--slots", "1", "--pytest"])
        .start();
    await_some("the slow test to start", || started.exists().then_some(()));
    running.signal(libc::SIGTERM);
    let run = running.finish();
    let (report, stderr) = (&run.report, &run.stderr);
    assert_eq!(run.code, 130, "{stderr}");
    let tests: Vec<(String, String, u64)> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap().to_owned();
            let status = t["status"].as_str().unwrap().to_owned();
            (id, status, t["attempts"].as_u64().unwrap())
        })
        .collect();
    let want = [
        ("test_c.py::test_fast".to_owned(), "passed".to_owned(), 1),
        ("test_c.py::test_slow".to_owned(), "not_run".to_owned(), 0),
    ];
    assert_eq!(tests, want, "{report}");
}
