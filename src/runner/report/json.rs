//! The JSON report: the stable, machine-readable record of a run, for scripts and dashboards.

use serde_json::{Value, json};

use super::{RunReport, status_name};

impl RunReport {
    /// `{"summary": {"total", "passed", "failed", "timed_out", "errors", "cancelled",
    /// "wall_ms"}, "jobs": [{"name", "status", "exit_code", "attempts", "duration_ms",
    /// "worker", "outputs", "error"}]}`, jobs in manifest order; `status` is one of `passed`,
    /// `failed`, `timed_out`, `error`, `cancelled`; `exit_code` is null when the process did
    /// not exit; `error` is why a job with status `error` could not run (null otherwise).
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
                    "error": job.error,
                })
            })
            .collect();
        json!({
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
        })
    }
}
