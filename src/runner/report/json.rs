//! The JSON report: the stable, machine-readable record of a run, for scripts and dashboards.

use serde_json::{Value, json};

use super::{RunReport, status_name};
use crate::runner::outputs_dir::dir_name;
use crate::suite::TestRecord;

impl RunReport {
    /// `{"summary": {"total", "passed", "failed", "timed_out", "errors", "cancelled",
    /// "wall_ms"}, "jobs": [{"name", "status", "exit_code", "attempts", "duration_ms",
    /// "worker", "outputs", "outputs_dir"}]}`, jobs in manifest order; `status` is one of
    /// `passed`, `failed`, `timed_out`, `error`, `cancelled`; `exit_code` is null when the
    /// process did not exit; `outputs_dir` is where `outputs` are, relative to
    /// `--outputs-dir` (null when none were brought back).
    /// A run with suites adds `test_summary` (`total`, `passed`, `failed`, `flaky`, `skipped`,
    /// `errors`) and `tests`: `[{"suite", "id", "status", "attempts", "duration_ms",
    /// "message"}]`, `status` one of `passed`, `failed`, `flaky`, `skipped`, `error`, `not_run`.
    pub fn to_json(&self) -> Value {
        let summary = self.summary();
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|job| {
                json!({
                    "name": job.name,
                    "status": status_name(job.status),
                    "exit_code": job.exit_code,
                    "attempts": job.attempts,
                    "duration_ms": job.duration_ms,
                    "worker": job.worker,
                    "outputs": job.outputs,
                    "outputs_dir": (!job.outputs.is_empty()).then(|| dir_name(&job.name)),
                })
            })
            .collect();
        let mut report = json!({
            "summary": {
                "total": summary.total,
                "passed": summary.passed,
                "failed": summary.failed,
                "timed_out": summary.timed_out,
                "errors": summary.errors,
                "cancelled": summary.cancelled,
                "wall_ms": self.wall_ms,
            },
            "jobs": jobs,
        });
        if !self.tests.is_empty() {
            let t = self.test_summary();
            report["test_summary"] = json!({
                "total": t.total,
                "passed": t.passed,
                "failed": t.failed,
                "flaky": t.flaky,
                "skipped": t.skipped,
                "errors": t.errors,
            });
            report["tests"] = json!(self.tests.iter().map(TestRecord::entry).collect::<Vec<_>>());
        }
        report
    }
}
