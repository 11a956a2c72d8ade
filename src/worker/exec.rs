//! Running one job attempt: a process group, a time limit, captured output.
//! (stub until the executor lands)
use std::path::Path;
use std::time::Duration;

use crate::proto::JobStatus;

/// Limits.
#[derive(Debug, Clone, Default)]
pub struct ExecLimits {
    /// Output bytes kept.
    pub output_limit: usize,
}
/// Result.
pub struct Execution {
    /// Status.
    pub status: JobStatus,
    /// Code.
    pub exit_code: Option<i32>,
    /// Duration.
    pub duration: Duration,
    /// Output.
    pub output: String,
}
/// Error.
#[derive(Debug, thiserror::Error)]
#[error("exec")]
pub struct ExecError;
/// Runs.
pub async fn run_job(
    _cmd: &str,
    _dir: &Path,
    _env: &[(String, String)],
    _timeout: Duration,
    _limits: &ExecLimits,
    _cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Execution, ExecError> {
    todo!()
}
