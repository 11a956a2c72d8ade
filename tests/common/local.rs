//! `cluster-action local` run as a user runs it on a directory of suites, and whether a test
//! framework it needs is installed.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::report::read_report_of;

/// PATH with the test tools first: the directories of `CLUSTER_TEST_TOOLS` (colon-separated;
/// scripts/test.sh sets it to the test virtualenv's `bin`).
pub fn tools_path() -> String {
    let tools = std::env::var("CLUSTER_TEST_TOOLS").unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{tools}:{path}")
}

/// Whether `program` (with `probe` arguments) runs, with `path` as PATH if given. A missing
/// tool fails the test under `CI=true`; elsewhere the test says it is skipped.
pub fn tool_runs(program: &str, probe: &[&str], path: Option<&str>) -> bool {
    let mut command = Command::new(program);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let ok = command
        .args(probe)
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

/// Runs `local --workers 1` with `args` in `dir`, with the test tools on PATH and outside any
/// GitHub run; returns its exit code, its standard error and its JSON report's `tests`.
pub fn local_tests(dir: &Path, args: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let report = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_cluster-action"))
        .args(["local", "--workers", "1", "--report-json"])
        .arg(&report)
        .args(args)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("GITHUB_RUN_ID")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (report, _) = read_report_of(&report, &stderr);
    let tests = report["tests"].as_array().unwrap().clone();
    (out.status.code(), stderr, tests)
}
