//! Errors of the artifact store client.

/// A failed artifact-store operation. Every variant names the operation and, where there is
/// one, the artifact, so a user can tell which request failed and why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `ACTIONS_RESULTS_URL` / `ACTIONS_RUNTIME_TOKEN` missing or malformed.
    #[error("{0}")]
    Config(String),
    /// The server answered with an error status (after retries, where retrying made sense).
    #[error("{op}{} failed: HTTP {status}: {message}", of_artifact(.artifact))]
    Http {
        /// The operation, e.g. `CreateArtifact` or `append block`.
        op: &'static str,
        /// The artifact name ("" where none applies).
        artifact: String,
        /// The HTTP status code.
        status: u16,
        /// The server's message (Twirp `msg`, Azure `<Message>`, or the body).
        message: String,
    },
    /// The request did not get an answer (connection refused, reset, timed out), after retries.
    #[error("{op}{} failed: {message}", of_artifact(.artifact))]
    Transport {
        /// The operation.
        op: &'static str,
        /// The artifact name ("" where none applies).
        artifact: String,
        /// What went wrong.
        message: String,
    },
    /// A create of a name that already exists in this run.
    #[error("artifact '{0}' already exists in this workflow run")]
    AlreadyExists(String),
    /// The artifact is not there (or belongs to another job than the ids given).
    #[error("artifact '{0}' was not found")]
    NotFound(String),
    /// The server answered with something that is not what the protocol says.
    #[error("{op}{}: unexpected answer: {message}", of_artifact(.artifact))]
    Protocol {
        /// The operation.
        op: &'static str,
        /// The artifact name ("" where none applies).
        artifact: String,
        /// What was wrong with it.
        message: String,
    },
    /// Local file I/O around an upload or download.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// [`StoreError::Http`] from an error answer, with the server's message taken from a Twirp
    /// JSON body (`msg`), an Azure XML body (`<Message>`), or the body itself.
    pub(super) async fn from_response(
        op: &'static str,
        artifact: &str,
        response: reqwest::Response,
    ) -> Self {
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.unwrap_or_default();
        let mut message = server_message(&body);
        if let Some(code) = code.filter(|c| !message.contains(c.as_str())) {
            message = format!("{code}: {message}");
        }
        StoreError::Http {
            op,
            artifact: artifact.to_string(),
            status,
            message,
        }
    }

    /// The HTTP status of an [`StoreError::Http`], if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            StoreError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the store failed in a way that may pass (no answer, 5xx, 408, 429, after the
    /// request's own retries): a long-lived user such as a stream tries again later instead
    /// of giving up, and lets its peer timeout decide when the store is gone for good.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Transport { .. } => true,
            StoreError::Http { status, .. } => {
                reqwest::StatusCode::from_u16(*status).is_ok_and(super::retry::retryable)
            }
            _ => false,
        }
    }

    /// Whether the server refused the request for good: an answer in 4xx other than 408 and
    /// 429 (a limit reached, a bad or unauthorised request), which asking again only repeats.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Http { status, .. } => {
                (400..500).contains(status) && !matches!(status, 408 | 429)
            }
            StoreError::Config(_) => true,
            _ => false,
        }
    }

    /// Whether a write through a signed upload URL failed because the URL no longer writes
    /// (expired signature, blob gone, append limit or size reached: 401, 403, 404, 409, 410,
    /// 412, 413), so a fresh artifact with a fresh URL is the cure rather than a retry.
    pub fn upload_url_is_spent(&self) -> bool {
        match self {
            StoreError::Http { status, .. } => {
                matches!(status, 401 | 403 | 404 | 409 | 410 | 412 | 413)
            }
            StoreError::NotFound(_) => true,
            _ => false,
        }
    }
}

/// ` of artifact 'NAME'`, or nothing for an operation on no one artifact (a listing), so no
/// message ever shows an empty name.
fn of_artifact(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" of artifact '{name}'")
    }
}

/// The human part of an error body: Twirp's `msg`, Azure's `<Message>`, or the trimmed body.
fn server_message(body: &str) -> String {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(msg) = json.get("msg").and_then(|m| m.as_str())
    {
        return msg.to_string();
    }
    if let Some(start) = body.find("<Message>")
        && let Some(len) = body[start + 9..].find("</Message>")
    {
        return body[start + 9..start + 9 + len].trim().to_string();
    }
    let trimmed = body.trim();
    match trimmed {
        "" => "(empty body)".to_string(),
        t if t.len() > 300 => format!("{}…", &t[..t.floor_char_boundary(300)]),
        t => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{StoreError, server_message};

    #[test]
    fn messages_name_the_artifact_only_where_there_is_one() {
        let http = |artifact: &str| StoreError::Http {
            op: "ListArtifacts",
            artifact: artifact.into(),
            status: 500,
            message: "boom".into(),
        };
        assert_eq!(http("").to_string(), "ListArtifacts failed: HTTP 500: boom");
        assert_eq!(
            http("a").to_string(),
            "ListArtifacts of artifact 'a' failed: HTTP 500: boom"
        );
        let transport = StoreError::Transport {
            op: "ListArtifacts",
            artifact: String::new(),
            message: "connection refused".into(),
        };
        assert_eq!(
            transport.to_string(),
            "ListArtifacts failed: connection refused"
        );
    }

    #[test]
    fn refusals_are_4xx_answers_other_than_timeouts_and_throttling() {
        let http = |status| StoreError::Http {
            op: "CreateArtifact",
            artifact: "a".into(),
            status,
            message: String::new(),
        };
        assert!(http(412).is_refusal());
        assert!(http(403).is_refusal());
        assert!(!http(429).is_refusal());
        assert!(!http(408).is_refusal());
        assert!(!http(503).is_refusal());
        let cut = StoreError::Transport {
            op: "CreateArtifact",
            artifact: "a".into(),
            message: "reset".into(),
        };
        assert!(!cut.is_refusal());
    }

    #[test]
    fn only_spent_url_errors_call_for_a_new_artifact() {
        let http = |status| StoreError::Http {
            op: "append block",
            artifact: "a".into(),
            status,
            message: String::new(),
        };
        assert!(http(403).upload_url_is_spent());
        assert!(http(409).upload_url_is_spent());
        assert!(!http(500).upload_url_is_spent());
        assert!(!http(400).upload_url_is_spent());
        assert!(StoreError::NotFound("a".into()).upload_url_is_spent());
        assert!(
            !StoreError::Transport {
                op: "append block",
                artifact: "a".into(),
                message: "reset".into()
            }
            .upload_url_is_spent()
        );
    }

    #[test]
    fn messages_come_from_twirp_azure_or_plain_bodies() {
        assert_eq!(
            server_message(r#"{"code":"not_found","msg":"artifact x not found"}"#),
            "artifact x not found"
        );
        assert_eq!(
            server_message(
                "<?xml version=\"1.0\"?><Error><Code>InvalidRange</Code><Message>The range specified is invalid.\nRequestId:1</Message></Error>"
            ),
            "The range specified is invalid.\nRequestId:1"
        );
        assert_eq!(server_message("  plain  "), "plain");
        assert_eq!(server_message(""), "(empty body)");
    }
}
