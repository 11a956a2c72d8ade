//! Exit codes, the same for every subcommand, and how an error becomes one.

/// Every job passed (or the command did what it was asked).
pub const OK: i32 = 0;
/// Some job failed or timed out.
pub const JOBS_FAILED: i32 = 1;
/// Bad input: flags, manifest, environment.
pub const BAD_INPUT: i32 = 2;
/// The cluster or the infrastructure failed (artifact store, lost broker, no workers).
pub const INFRA: i32 = 3;
/// Cancelled by SIGINT or SIGTERM.
pub const CANCELLED: i32 = 130;

/// The exit code table shown at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    all jobs passed
  1    some job failed or timed out
  2    bad input (flags, manifest, environment; peers with different CLUSTER_SECRETs)
  3    cluster or infrastructure failure (artifact store, broker, workers)
  130  cancelled (SIGINT/SIGTERM)";

/// An error that carries its exit code; anything else is an infrastructure failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    /// The exit code.
    pub code: i32,
    /// The message for the user.
    pub message: String,
}

impl ExitError {
    /// A bad-input error (exit 2).
    pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
        ExitError {
            code: BAD_INPUT,
            message: message.into(),
        }
        .into()
    }
}

/// Prints `err` with its chain of causes and returns its exit code; peers that do not share
/// the cluster secret are a configuration error (exit 2).
pub fn report(err: &anyhow::Error) -> i32 {
    // Causes that the message before them already includes are not repeated.
    let mut message = String::new();
    for cause in err.chain().map(ToString::to_string) {
        if !message.ends_with(&cause) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&cause);
        }
    }
    eprintln!("error: {message}");
    let secrets_differ = err.chain().any(|e| {
        e.downcast_ref::<cluster_action::seal::SealError>()
            .is_some_and(cluster_action::seal::SealError::is_mismatch)
    });
    if secrets_differ {
        return BAD_INPUT;
    }
    err.downcast_ref::<ExitError>().map_or(INFRA, |e| e.code)
}
