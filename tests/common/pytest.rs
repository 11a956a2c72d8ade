//! Test frameworks for the tests: whether pytest (or another tool) runs with the directories
//! of `CLUSTER_TEST_TOOLS` first on PATH, and a run of a manifest through `cluster-action
//! local` in a directory that returns its exit code, JSON report and standard error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::await_within;
use super::report::read_report_of;

/// PATH with the directories of `CLUSTER_TEST_TOOLS` first.
pub fn tools_path() -> String {
    let tools = std::env::var("CLUSTER_TEST_TOOLS").unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{tools}:{path}")
}

/// Whether `python -m pytest` runs; under `CI=true` a missing pytest fails the test.
pub fn have_pytest() -> bool {
    have("python", &["-m", "pytest", "--version"])
}

/// Whether `program` (with `probe` arguments) runs with [`tools_path`]; a missing tool fails
/// the test under `CI=true`, and is skipped with a message outside CI.
pub fn have(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .env("PATH", tools_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{program} {}` does not run: scripts/test.sh installs it",
            probe.join(" ")
        );
        eprintln!("skipped: `{program}` is not available (scripts/test.sh installs it)");
    }
    ok
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
