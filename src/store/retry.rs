//! Retry on the crate's schedule ([`RetryPolicy`]) with full jitter, for every request the
//! store sends.
//!
//! Retried: requests that got no answer (connection refused or reset, timeouts), 5xx answers,
//! 408 and 429 (honouring `Retry-After`, capped by the policy's `max_delay`), and reads whose
//! body was cut off. Everything else is returned to the caller, which knows what the status
//! means for its operation.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use tracing::debug;

use super::StoreError;
use crate::retry::RetryPolicy;

/// The schedule of every store request unless its [`super::StoreConfig`] says otherwise.
pub const REQUEST_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 8,
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(10),
};

/// The wait before retry number `retry` (1 for the first retry): a jittered pause of
/// `policy`; a server's `Retry-After` wins, capped by `max_delay`.
pub(super) fn delay(policy: &RetryPolicy, retry: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(after) => after.min(policy.max_delay),
        None => policy.jittered_pause(retry),
    }
}

/// Sends the request built by `make` until it gets an answer that is not worth retrying, or
/// the attempts of `policy` run out. Returns the last answer whatever its status; a request
/// that never got an answer becomes [`StoreError::Transport`] naming `op` and `artifact`.
pub(super) async fn send(
    policy: &RetryPolicy,
    op: &'static str,
    artifact: &str,
    mut make: impl FnMut() -> RequestBuilder,
) -> Result<Response, StoreError> {
    let mut attempt = 1;
    loop {
        let last = !policy.retries_after(attempt);
        let wait = match make().send().await {
            Ok(response) if last || !retryable(response.status()) => return Ok(response),
            Ok(response) => {
                debug!(op, artifact, status = %response.status(), attempt, "retrying");
                delay(policy, attempt, retry_after(&response))
            }
            Err(e) if last => {
                return Err(StoreError::Transport {
                    op,
                    artifact: artifact.to_string(),
                    message: format!("{} (after {attempt} attempts)", error_chain(&e)),
                });
            }
            Err(e) => {
                debug!(op, artifact, error = %error_chain(&e), attempt, "retrying");
                delay(policy, attempt, None)
            }
        };
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Runs `fetch` (one read: a request sent with [`send`], then its body read) again while its
/// body is cut off, up to the attempts of `policy`; a cut on the last one becomes
/// [`StoreError::Transport`] naming `op` and `artifact`.
pub(super) async fn fetch<T, F>(
    policy: &RetryPolicy,
    op: &'static str,
    artifact: &str,
    mut fetch: impl FnMut() -> F,
) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, FetchError>>,
{
    let mut attempt = 1;
    loop {
        match fetch().await {
            Ok(value) => return Ok(value),
            Err(FetchError::Failed(e)) => return Err(e),
            Err(FetchError::Cut(e)) if !policy.retries_after(attempt) => {
                return Err(StoreError::Transport {
                    op,
                    artifact: artifact.to_string(),
                    message: format!("{} (after {attempt} attempts)", error_chain(&e)),
                });
            }
            Err(FetchError::Cut(e)) => {
                let error = error_chain(&e);
                debug!(op, artifact, error, attempt, "body cut off; retrying");
                tokio::time::sleep(delay(policy, attempt, None)).await;
                attempt += 1;
            }
        }
    }
}

/// Why one attempt at a read (a request and the reading of its body) failed.
pub(super) enum FetchError {
    /// The body was cut off (connection reset, read timeout): worth asking again.
    Cut(reqwest::Error),
    /// Anything else, final.
    Failed(StoreError),
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        FetchError::Failed(e)
    }
}

/// Whether an answer with this status may succeed when asked again.
pub(super) fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// `Retry-After` in seconds, if the server sent one.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// A reqwest error with its causes, which hold the useful part ("connection refused").
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_retry_after_wins_within_the_longest_pause() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        let after = |secs| delay(&policy, 1, Some(Duration::from_millis(secs)));
        assert_eq!(after(300), Duration::from_millis(300));
        assert_eq!(after(60_000), Duration::from_millis(350));
        for _ in 0..100 {
            assert!(delay(&policy, 2, None) <= Duration::from_millis(200));
        }
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for code in [500, 502, 503, 429, 408] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 412, 416] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
