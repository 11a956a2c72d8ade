//! pytest suites for the tests: whether pytest runs, and a run of a manifest through
//! `cluster-action local` in a directory that returns its exit code, JSON report and stderr.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::await_within;
use super::report::read_report_of;
use super::suite::{available, tools_path};

/// Whether `python -m pytest` runs; under `CI=true` a missing pytest fails the test.
pub fn have_pytest() -> bool {
    available("python", &["-m", "pytest", "--version"])
}

/// `cluster-action local --workers 1 ARGS` in `dir` with `env` added, writing `report.json`
/// and `report.xml` there: its exit code, its JSON report and its standard error. A run
/// that outlasts `patience` fails the test.
pub fn run_local_within(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    patience: Duration,
) -> (i32, serde_json::Value, String) {
    let stderr_path = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-action"))
        .args(["local", "--workers", "1", "--report-json", "report.json"])
        .args(["--report-junit", "report.xml"])
        .args(args)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let status = await_within("the local run to end", patience, || {
        child.try_wait().unwrap()
    });
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let (report, _) = read_report_of(&dir.join("report.json"), &stderr);
    (status.code().unwrap_or(-1), report, stderr)
}

/// [`run_local_within`] two minutes.
pub fn run_local(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value, String) {
    run_local_within(dir, args, env, Duration::from_secs(120))
}
