//! Progress shows tests as they finish: a running batch's tests reach the runner's output
//! while the batch still runs, for the frameworks whose report grows a test at a time (pytest
//! with and without a session, Jest), so that a user watching a long batch sees it move.
//!
//! Each suite's second test waits for a file the test creates only once the run's output
//! named the first test: a runner that showed tests only when their batch ended would never
//! name it, and the run would not end.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;

mod common;
use common::local::{LocalRun, have_pytest, js_fixture_with_only, local_manifest};

/// `local` on one slot in `dir` with `manifest` (the suite's env naming `GO_FILE`, the file
/// the waiting test waits for): creates the file once the output named `first` (a line of
/// `suite: first`), and returns the run.
fn run_until_shown(dir: &Path, manifest: &str, suite: &str, first: &str) -> LocalRun {
    let running = local_manifest(dir, manifest).start();
    running.await_stdout(&format!("{suite}: {first}"));
    std::fs::write(dir.join("go"), "").unwrap();
    running.finish()
}

/// The pytest project: a quick test, and one that waits (a minute at most) for `go`.
fn pytest_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("test_a.py"),
        "import os, time\n\n\ndef test_quick():\n    pass\n\n\n\
         def test_waits():\n    deadline = time.time() + 60\n\
         \x20   while not os.path.exists(os.environ['GO_FILE']):\n\
         \x20       assert time.time() < deadline, 'the quick test was never shown'\n\
         \x20       time.sleep(0.05)\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_pytest_batch_shows_each_test_as_it_finishes_with_or_without_a_session() {
    if !have_pytest() {
        return;
    }
    for session in [true, false] {
        let dir = pytest_project();
        let go = dir.path().join("go");
        let manifest = format!(
            "layers:\n  checkout: {{paths: [.]}}\nsuites:\n  - name: py\n    framework: pytest\n\
             \x20   layers: [checkout]\n    session: {session}\n    env: {{GO_FILE: \"{}\"}}\n",
            go.display()
        );
        let run = run_until_shown(dir.path(), &manifest, "py", "test_a.py::test_quick");
        assert_eq!(run.code, 0, "session {session}: {}", run.stderr);
        let quick = run.stdout.find("py: test_a.py::test_quick").unwrap();
        let waits = run.stdout.find("py: test_a.py::test_waits").unwrap();
        assert!(quick < waits, "{}", run.stdout);
        assert!(
            run.stdout
                .lines()
                .any(|l| l.trim_start().starts_with("PASS")
                    && l.ends_with("py: test_a.py::test_quick")),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn a_jest_batch_shows_each_test_as_it_finishes() {
    let Some(dir) = js_fixture_with_only("suite-jest", "jest") else {
        return;
    };
    let tests = dir.path().join("tests/progress");
    std::fs::create_dir_all(&tests).unwrap();
    let go = dir.path().join("go");
    std::fs::write(
        tests.join("a.test.js"),
        format!(
            "const fs = require('node:fs');\n\
             test('quick', () => {{}});\n\
             test('waits', async () => {{\n\
             \x20 while (!fs.existsSync({go:?})) await new Promise(r => setTimeout(r, 50));\n\
             }}, 60000);\n"
        ),
    )
    .unwrap();
    let manifest = "layers:\n  checkout: {paths: [.]}\nsuites:\n  - name: js\n    \
                    framework: jest\n    layers: [checkout]\n    args: [tests/progress]\n";
    let run = run_until_shown(
        dir.path(),
        manifest,
        "js",
        "tests/progress/a.test.js › quick",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let quick = run
        .stdout
        .find("js: tests/progress/a.test.js › quick")
        .unwrap();
    let waits = run
        .stdout
        .find("js: tests/progress/a.test.js › waits")
        .unwrap();
    assert!(quick < waits, "{}", run.stdout);
}
