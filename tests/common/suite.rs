//! A test suite fixture run the way a user runs it: `cluster-action local` with a shorthand
//! (`--go-test`, `--pytest`) in a copy of the fixture, its JSON report read back per test, and
//! the framework alone on the same copy for comparison.
//!
//! Tools come from `CLUSTER_TEST_TOOLS` (colon-separated directories, put first on PATH; see
//! tests/suite.rs). Outside CI a missing tool skips the test with a message; under `CI=true`
//! it fails it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::cluster::{BIN, SCRUBBED_ENV};

/// PATH with the directories of `CLUSTER_TEST_TOOLS` first.
pub fn tools_path() -> OsString {
    let tools = std::env::var_os("CLUSTER_TEST_TOOLS").unwrap_or_default();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let mut path = tools;
    path.push(":");
    path.push(rest);
    path
}

/// Whether `program probe…` runs with [`tools_path`]; a missing tool fails the test under CI.
pub fn available(program: &str, probe: &[&str]) -> bool {
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

/// A copy of the fixture directory `name` (tests/fixtures/NAME) in a fresh temporary
/// directory, so that nothing a run writes lands in the source tree.
pub fn fixture_copy(name: &str) -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-R")
        .arg(source.join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "copying {}", source.display());
    dir
}

/// `program args` in `dir` with the tools on PATH, as a user would run the framework alone.
pub fn alone(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What a `local` run of a suite left: its exit code, its JSON report and its stderr.
pub struct LocalRun {
    /// The exit code.
    pub code: i32,
    /// The `--report-json` document.
    pub report: Value,
    /// Its standard error, for messages.
    pub stderr: String,
}

impl LocalRun {
    /// Each reported test's final status by id; a test reported twice fails the test.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        let tests = self.report["tests"].as_array().unwrap();
        let statuses: BTreeMap<String, String> = tests
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            statuses.len(),
            tests.len(),
            "each test once: {}",
            self.report
        );
        statuses
    }

    /// The message of test `id`.
    pub fn message(&self, id: &str) -> String {
        let tests = self.report["tests"].as_array().unwrap();
        let test = tests.iter().find(|t| t["id"] == id).unwrap();
        test["message"].as_str().unwrap_or_default().to_owned()
    }
}

/// `cluster-action local --workers 1 ARGS` in `dir` (a fixture copy), with the tools on PATH
/// and none of the caller's CI variables.
pub fn local(dir: &Path, args: &[&str]) -> LocalRun {
    local_with(dir, args, &[])
}

/// [`local`] with the variables `env` added.
pub fn local_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> LocalRun {
    let reports = tempfile::tempdir().unwrap();
    let json: PathBuf = reports.path().join("report.json");
    let mut command = Command::new(BIN);
    command
        .args(["local", "--workers", "1", "--report-json"])
        .arg(&json)
        .args(args)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = std::fs::read(&json).unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    LocalRun {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&report).unwrap(),
        stderr,
    }
}

/// `(tests, failures, errors, skipped)` of a JUnit XML, counted from its test cases.
pub fn junit_counts(xml: &str) -> (usize, usize, usize, usize) {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let with = |tag: &str| {
        cases
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name(tag)))
            .count()
    };
    (cases.len(), with("failure"), with("error"), with("skipped"))
}
