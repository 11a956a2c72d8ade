//! The JSON report: the stable, machine-readable record of a run, for scripts and dashboards.
//!
//! It is written straight from the [`RunReport`] through borrowed views, never built as a
//! `serde_json::Value` tree first: for 100,000 jobs such a tree alone is tens of megabytes.

use serde::Serialize;
use serde::ser::Serializer;
use serde_json::{Value, json};

use super::{JobReport, RunReport, quarantined_outcome, status_name};
use crate::dir_name::dir_name;
use crate::suite::{TestEntry, TestRecord};

/// The JSON report of a run, borrowing it (see [`RunReport::to_json`] for its shape).
#[derive(Serialize)]
pub struct JsonReport<'a> {
    summary: JsonSummary,
    #[serde(serialize_with = "jobs")]
    jobs: &'a [JobReport],
    #[serde(skip_serializing_if = "Option::is_none")]
    test_summary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tests: Option<Vec<JsonTest>>,
}

/// One test: its entry, with what quarantine and the history add.
#[derive(Serialize)]
struct JsonTest {
    #[serde(flatten)]
    entry: TestEntry,
    /// For a quarantined test (`status` is then `quarantined`): what it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    /// Flaky runs per run seen, 0 to 1, where history exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    flake_rate: Option<f64>,
    /// Runs the history saw it in, this one included, where history exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    runs_seen: Option<usize>,
}

#[derive(Serialize)]
struct JsonSummary {
    total: usize,
    passed: usize,
    failed: usize,
    timed_out: usize,
    errors: usize,
    cancelled: usize,
    wall_ms: u64,
}

#[derive(Serialize)]
struct JsonJob<'a> {
    name: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    attempts: u32,
    duration_ms: u64,
    worker: &'a str,
    outputs: &'a [String],
    outputs_dir: Option<String>,
    error: Option<&'a str>,
}

/// The jobs one by one, each as a [`JsonJob`].
fn jobs<S: Serializer>(jobs: &&[JobReport], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(jobs.iter().map(|job| JsonJob {
        name: &job.name,
        status: status_name(job.status),
        exit_code: job.exit_code,
        attempts: job.attempts,
        duration_ms: job.duration_ms,
        worker: &job.worker,
        outputs: &job.outputs,
        outputs_dir: (!job.outputs.is_empty()).then(|| dir_name(&job.name)),
        error: job.error.as_deref(),
    }))
}

impl RunReport {
    /// The JSON report, to serialize (for example with `serde_json::to_writer`).
    pub fn json(&self) -> JsonReport<'_> {
        let summary = self.summary();
        JsonReport {
            summary: JsonSummary {
                total: summary.total,
                passed: summary.passed,
                failed: summary.failed,
                timed_out: summary.timed_out,
                errors: summary.errors,
                cancelled: summary.cancelled,
                wall_ms: self.wall_ms,
            },
            jobs: &self.jobs,
            test_summary: (!self.tests.is_empty()).then(|| {
                let t = self.test_summary();
                json!({
                    "total": t.total,
                    "passed": t.passed,
                    "failed": t.failed,
                    "flaky": t.flaky,
                    "skipped": t.skipped,
                    "errors": t.errors,
                    "quarantined": t.quarantined,
                })
            }),
            tests: (!self.tests.is_empty())
                .then(|| self.tests.iter().map(|r| self.json_test(r)).collect()),
        }
    }

    /// The JSON entry of `record`.
    fn json_test(&self, record: &TestRecord) -> JsonTest {
        let mut entry = record.entry();
        let outcome = self.quarantine_of(record).map(|_| {
            entry.status = "quarantined";
            quarantined_outcome(record.status())
        });
        let view = self.record_view(record);
        JsonTest {
            entry,
            outcome,
            flake_rate: view.map(|v| (v.flake_rate * 1000.0).round() / 1000.0),
            runs_seen: view.map(|v| v.runs_seen),
        }
    }

    /// `{"summary": {"total", "passed", "failed", "timed_out", "errors", "cancelled",
    /// "wall_ms"}, "jobs": [{"name", "status", "exit_code", "attempts", "duration_ms",
    /// "worker", "outputs", "outputs_dir", "error"}]}`, jobs in manifest order; `status` is one
    /// of `passed`, `failed`, `timed_out`, `error`, `cancelled`; `exit_code` is null when the
    /// process did not exit; `outputs_dir` is where `outputs` are, relative to `--outputs-dir`
    /// (null when none were brought back); `error` is why a job with status `error` could not
    /// run (null otherwise). A run with suites adds `test_summary` (`total`, `passed`, `failed`
    /// (timed-out tests included), `flaky`, `skipped`, `errors`, `quarantined`) and `tests`:
    /// `[{"suite", "id", "status", "attempts", "duration_ms", "message", "workers"}]`, `status`
    /// one of `passed`, `failed`, `flaky`, `skipped`, `error`, `timed_out`, `not_run`,
    /// `quarantined` (with `"outcome"`: `passed`, `failed`, `flaky`, `skipped` or `error`);
    /// where history exists each test adds `flake_rate` (flaky runs per run seen, 0 to 1) and
    /// `runs_seen`.
    pub fn to_json(&self) -> Value {
        // Plain structs of strings and numbers always serialize.
        serde_json::to_value(self.json()).unwrap_or(Value::Null)
    }
}
