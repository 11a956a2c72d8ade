//! `cluster-action local` run as a user runs it on a directory of suites.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::report::read_report_of;
use super::suite::tools_path;

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
