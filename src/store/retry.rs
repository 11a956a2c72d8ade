//! Retry with exponential backoff and full jitter, for every request the store sends.
//!
//! Retried: requests that got no answer (connection refused or reset, timeouts), 5xx answers,
//! 408 and 429 (honouring `Retry-After`, capped by [`RetryPolicy::max_delay`]), and reads whose
//! body was cut off. Everything else is returned to the caller, which knows what the status
//! means for its operation.

use std::future::Future;
use std::time::Duration;

use rand::RngExt;
use reqwest::{RequestBuilder, Response, StatusCode};
use tracing::debug;

use super::StoreError;

/// How often and how patiently to retry connection errors, 5xx and 429.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff; doubled each attempt, with full jitter.
    pub base_delay: Duration,
    /// The largest backoff (also caps a server's `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry): a random duration up to
    /// `base_delay * 2^(retry-1)`, capped at `max_delay`; a server's `Retry-After` wins.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Sends the request built by `make` until it gets an answer that is not worth retrying,
    /// or attempts run out. Returns the last answer whatever its status; a request that never
    /// got an answer becomes [`StoreError::Transport`] naming `op` and `artifact`.
    pub(super) async fn send(
        &self,
        op: &'static str,
        artifact: &str,
        mut make: impl FnMut() -> RequestBuilder,
    ) -> Result<Response, StoreError> {
        let mut attempt = 1;
        loop {
            let last = attempt >= self.max_attempts.max(1);
            let wait = match make().send().await {
                Ok(response) if last || !retryable(response.status()) => return Ok(response),
                Ok(response) => {
                    debug!(op, artifact, status = %response.status(), attempt, "retrying");
                    self.delay(attempt, retry_after(&response))
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
                    self.delay(attempt, None)
                }
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Runs `fetch` (one read: a request sent with [`RetryPolicy::send`], then its body read)
    /// again while its body is cut off, up to `max_attempts` reads; a cut on the last one
    /// becomes [`StoreError::Transport`] naming `op` and `artifact`.
    pub(super) async fn fetch<T, F>(
        &self,
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
                Err(FetchError::Cut(e)) if attempt >= self.max_attempts => {
                    return Err(StoreError::Transport {
                        op,
                        artifact: artifact.to_string(),
                        message: format!("{} (after {attempt} attempts)", error_chain(&e)),
                    });
                }
                Err(FetchError::Cut(e)) => {
                    let error = error_chain(&e);
                    debug!(op, artifact, error, attempt, "body cut off; retrying");
                    tokio::time::sleep(self.delay(attempt, None)).await;
                    attempt += 1;
                }
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
    fn delays_grow_within_their_ceiling_and_honour_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        for _ in 0..100 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(2, None) <= Duration::from_millis(200));
            assert!(policy.delay(9, None) <= Duration::from_millis(350));
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(350)
        );
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
