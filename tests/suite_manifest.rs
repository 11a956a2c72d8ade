//! The manifest's `suites:` section as a user writes it: what is accepted, how defaults
//! apply, and each mistake named with file, line and column before anything runs.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use cluster_action::runner::manifest::{self, Manifest, ManifestError};
use cluster_action::suite::{Framework, Split};

fn parse(yaml: &str) -> Result<Manifest, ManifestError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("app")).unwrap();
    manifest::parse(yaml, Path::new("ci.yml"), dir.path())
}

/// Checks that `yaml` is refused with every line of `expected` in the message.
fn refuse(yaml: &str, expected: &[&str]) {
    let message = parse(yaml)
        .map(|m| format!("accepted: {m:?}"))
        .unwrap_or_else(|e| e.to_string());
    let missing: Vec<&&str> = expected.iter().filter(|e| !message.contains(**e)).collect();
    assert!(missing.is_empty(), "{missing:?} not in:\n{message}");
}

#[test]
fn the_issue_example_is_accepted_as_written() {
    let m = parse(
        "\
defaults:
  retries: 1
layers:
  workspace: {paths: [.]}
suites:
  - name: rust
    framework: nextest
    args: [--workspace]
    layers: [workspace]
    batch: 30s
    retries: 2
  - name: py
    framework: pytest
    args: [tests/]
    split: file
  - name: anything
    framework: command
    list: ./list-tests.sh
    run: ./run-tests.sh \"$@\"
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(m.jobs.is_empty());
    let [rust, py, any] = &m.suites[..] else {
        panic!("{:?}", m.suites)
    };
    assert_eq!(rust.suite.framework, Framework::Nextest);
    assert_eq!(rust.suite.args, ["--workspace"]);
    assert_eq!(rust.layers, ["workspace"]);
    assert_eq!(rust.batch, Some(Duration::from_secs(30)));
    assert_eq!((rust.retries, rust.split), (2, Split::Test));
    assert_eq!((py.retries, py.split, py.batch), (1, Split::File, None));
    assert_eq!(
        any.suite.framework,
        Framework::Command {
            list: "./list-tests.sh".into(),
            run: "./run-tests.sh \"$@\"".into()
        }
    );
}

#[test]
fn jobs_and_suites_live_side_by_side() {
    let m = parse("jobs:\n  - {name: a, run: 'true'}\nsuites:\n  - {name: s, framework: go}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((m.jobs.len(), m.suites.len()), (1, 1));
}

#[test]
fn a_bad_batch_time_is_named_with_its_line() {
    refuse(
        "suites:\n  - name: rust\n    framework: nextest\n    batch: abc\n",
        &["ci.yml:4:12: suite 'rust' has a bad batch: invalid duration 'abc'"],
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    refuse(
        "\
suites:
  - name: a
    framework: mocha
  - name: a
    framework: pytest
    split: module
    layers: [nope]
    list: ./x
  - framework: command
    list: ./list
",
        &[
            "ci.yml:3:16: suite 'a' has an unknown framework 'mocha'",
            "hint: use one of nextest, pytest, go, jest, command",
            "ci.yml:4:11: suite 'a' is defined twice (first at line 2)",
            "ci.yml:6:12: suite 'a' has an unknown split 'module'",
            "ci.yml:7:14: suite 'a' uses layer 'nope', which is not defined",
            "ci.yml:8:11: suite 'a' sets `list`, which only `framework: command` uses",
            "ci.yml:9:5: suite #3 has no name",
            "suite '#3' has no `run` command",
        ],
    );
}

#[test]
fn unknown_keys_and_missing_frameworks_are_refused() {
    refuse(
        "suites:\n  - name: a\n    framwork: go\n",
        &["ci.yml:3:5: suites[0]: unknown field `framwork`"],
    );
    refuse(
        "suites:\n  - name: a\n",
        &["ci.yml:2:5: suite 'a' has no framework"],
    );
}

#[test]
fn a_suite_may_not_take_a_jobs_name() {
    refuse(
        "jobs:\n  - {name: a, run: 'true'}\nsuites:\n  - {name: a, framework: go}\n",
        &["ci.yml:4:12: suite 'a' has the name of a job"],
    );
}

#[test]
fn the_binary_refuses_a_bad_suite_with_exit_2_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ci.yml");
    std::fs::write(
        &path,
        "suites:\n  - name: rust\n    framework: nextest\n    batch: abc\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cluster-action"))
        .arg("run")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = format!("{}:4:12: suite 'rust' has a bad batch", path.display());
    assert!(stderr.contains(&expected), "{expected:?} not in {stderr}");
}
