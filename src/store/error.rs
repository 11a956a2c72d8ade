//! Errors of the artifact store client.

/// A failed artifact-store operation. Every variant names the operation and, where there is
/// one, the artifact, so a user can tell which request failed and why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `ACTIONS_RESULTS_URL` / `ACTIONS_RUNTIME_TOKEN` missing or malformed.
    #[error("{0}")]
    Config(String),
    /// The server answered with an error status (after retries, where retrying made sense).
    #[error("{op} of artifact '{artifact}' failed: HTTP {status}: {message}")]
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
    #[error("{op} of artifact '{artifact}' failed: {message}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// The artifact name.
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
    #[error("{op} of artifact '{artifact}': unexpected answer: {message}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// The artifact name.
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
