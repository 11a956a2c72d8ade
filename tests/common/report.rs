//! The JSON report (`--report-json`) as the tests read it: parsed, checked against its
//! documented schema, and its jobs by name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::Value;

/// Reads a JSON report and checks its documented schema: the summary's keys and counts, each
/// job's keys and value types, each job appearing once, each test's keys. Returns it and its
/// jobs by name.
pub fn read_report(path: &Path) -> (Value, BTreeMap<String, Value>) {
    read_report_of(path, "")
}

/// [`read_report`] of the report a run was to write at `path`: a missing report fails the
/// test with the run's standard error `stderr`.
pub fn read_report_of(path: &Path, stderr: &str) -> (Value, BTreeMap<String, Value>) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read the report {}: {e}; stderr:\n{stderr}",
            path.display()
        )
    });
    let report: Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    // A run with suites adds its tests, each with its documented keys.
    match report.get("tests") {
        None => assert_eq!(keys(&report), ["jobs", "summary"]),
        Some(tests) => {
            assert_eq!(keys(&report), ["jobs", "summary", "test_summary", "tests"]);
            for test in tests.as_array().unwrap() {
                let want = [
                    "attempts",
                    "duration_ms",
                    "id",
                    "message",
                    "status",
                    "suite",
                    "workers",
                ];
                // A quarantined test adds its outcome; where history exists, each test its
                // record (flake rate and runs seen, together).
                let mut optional = Vec::new();
                if test["status"] == "quarantined" {
                    optional.push("outcome");
                }
                if test.get("runs_seen").is_some() {
                    optional.extend(["flake_rate", "runs_seen"]);
                    assert!(
                        test["flake_rate"].is_f64() && test["runs_seen"].is_u64(),
                        "{test}"
                    );
                }
                let mut want: Vec<&str> = want.into_iter().chain(optional).collect();
                want.sort_unstable();
                assert_eq!(keys(test), want, "{test}");
            }
        }
    }
    let summary = &report["summary"];
    let counts = ["passed", "failed", "timed_out", "errors", "cancelled"];
    let mut summary_keys = keys(summary);
    summary_keys.sort();
    let mut expected: Vec<&str> = counts.into_iter().chain(["total", "wall_ms"]).collect();
    expected.sort();
    assert_eq!(summary_keys, expected);
    assert!(summary.as_object().unwrap().values().all(Value::is_u64));

    let mut jobs = BTreeMap::new();
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    for job in report["jobs"].as_array().unwrap() {
        let mut job_keys = keys(job);
        job_keys.sort();
        let expected = [
            "attempts",
            "duration_ms",
            "error",
            "exit_code",
            "name",
            "outputs",
            "outputs_dir",
            "status",
            "worker",
        ];
        assert_eq!(job_keys, expected);
        let status = job["status"].as_str().unwrap();
        let count = match status {
            "error" => "errors",
            other => counts.into_iter().find(|c| *c == other).expect(other),
        };
        *tally.entry(count).or_default() += 1;
        assert!(
            job["exit_code"].is_null() || job["exit_code"].is_i64(),
            "{job}"
        );
        assert!(
            job["attempts"].is_u64() && job["duration_ms"].is_u64(),
            "{job}"
        );
        assert!(job["worker"].is_string(), "{job}");
        // Every error says why; nothing else has an error.
        assert_eq!(
            status == "error",
            job["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{job}"
        );
        let outputs = job["outputs"].as_array().unwrap();
        assert!(outputs.iter().all(Value::is_string), "{job}");
        let name = job["name"].as_str().unwrap().to_string();
        assert!(
            jobs.insert(name, job.clone()).is_none(),
            "{job} appears twice"
        );
    }
    assert_eq!(summary["total"], jobs.len());
    for count in counts {
        let n = tally.get(count).copied().unwrap_or(0);
        assert_eq!(summary[count], n, "summary.{count} against the jobs");
    }
    (report, jobs)
}

/// The names of the jobs with `status`.
pub fn with_status(jobs: &BTreeMap<String, Value>, status: &str) -> BTreeSet<String> {
    let named = jobs.iter().filter(|(_, j)| j["status"] == status);
    named.map(|(n, _)| n.clone()).collect()
}
