//! Bad input given to the binary is refused with exit 2 and a message naming it, before
//! anything starts: no artifact service, broker or worker is needed to find it, so none is
//! started here (a `local` run that got past validation would start one and hang the test).

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_cluster-action");

/// Exit code for bad input.
const BAD_INPUT: i32 = 2;

/// A valid manifest of one job in `dir`, returned as its path.
fn manifest(dir: &Path, layers: &str) -> std::path::PathBuf {
    let path = dir.join("cluster.yml");
    fs::write(
        &path,
        format!("{layers}jobs:\n  - name: a\n    run: 'true'\n"),
    )
    .unwrap();
    path
}

/// Runs the binary with `args` and `env` in `dir`, without the caller's cluster settings.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("ACTIONS_RESULTS_URL")
        .env_remove("ACTIONS_RUNTIME_TOKEN")
        .env_remove("GITHUB_RUN_ATTEMPT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts that `output` is a refusal of bad input saying `expected`, said once.
fn assert_refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(BAD_INPUT), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert_eq!(stderr.matches(expected).count(), 1, "said twice:\n{stderr}");
}

#[test]
fn a_run_attempt_that_is_not_a_number_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "");
    let path = path.to_str().unwrap();
    let out = run(
        dir.path(),
        &["run", path],
        &[("GITHUB_RUN_ATTEMPT", "../1")],
    );
    assert_refused(&out, "GITHUB_RUN_ATTEMPT \"../1\" is not a run attempt");
}

#[test]
fn serve_refuses_a_non_loopback_address_as_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["serve", "--addr", "0.0.0.0:0"], &[]);
    assert_refused(&out, "--addr 0.0.0.0:0: the service trusts unsigned tokens");
}

#[test]
fn an_outputs_dir_that_is_a_file_is_refused_before_the_cluster_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "");
    fs::write(dir.path().join("out"), "a file").unwrap();
    let args = ["local", path.to_str().unwrap(), "--outputs-dir", "out"];
    assert_refused(&run(dir.path(), &args, &[]), "--outputs-dir out is a file");
}

#[test]
fn report_paths_that_cannot_be_created_are_refused_before_the_cluster_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "");
    fs::write(dir.path().join("file"), "a file").unwrap();
    let args = [
        "local",
        path.to_str().unwrap(),
        "--report-json",
        "reports/report.json",
        "--report-junit",
        "file/junit.xml",
    ];
    let out = run(dir.path(), &args, &[]);
    assert_refused(&out, "cannot create the directory of report file/junit.xml");
    // The good path was checked, not written: reports appear only after a run.
    assert!(dir.path().join("reports").is_dir());
    assert!(!dir.path().join("reports/report.json").exists());
}

#[test]
fn a_layer_symlink_leaving_the_manifest_directory_is_refused_before_workers_start() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("data/host")).unwrap();
    let path = manifest(
        dir.path(),
        "layers:\n  data: {paths: [data]}\ndefaults: {layers: [data]}\n",
    );
    let out = run(dir.path(), &["local", path.to_str().unwrap()], &[]);
    assert_refused(&out, "the symlink target '/etc/hostname' is absolute");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cluster.yml:2:17: layer 'data'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn local_refuses_more_workers_than_its_limit_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    // No manifest: the limit is checked before anything is read, and a binary without the
    // limit fails here on the missing file instead of starting 100000 processes.
    let out = run(
        dir.path(),
        &["local", "--workers", "100000", "missing.yml"],
        &[],
    );
    assert_refused(&out, "--workers");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("64"), "the limit is named: {stderr}");
}

#[test]
fn tests_naming_no_framework_is_refused_naming_the_frameworks() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["local", "--tests", "mocha", "spec/"], &[]);
    assert_refused(
        &out,
        "--tests: 'mocha' is not a test framework: give one of nextest",
    );
    let out = run(dir.path(), &["local", "--tests", "command"], &[]);
    assert_refused(
        &out,
        "a `command` suite needs its `list` and `run` commands",
    );
}
