//! Errors of layer operations.

/// Why a layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or writing local files.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The downloaded bytes do not hash to the layer's name.
    #[error("layer {expected} is corrupt: its bytes hash to {actual}")]
    HashMismatch {
        /// The digest in the name.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// An entry of the archive is refused (absolute path, `..`, escaping link, device...).
    #[error("layer {layer}: refused entry '{entry}': {reason}")]
    UnsafeEntry {
        /// The layer digest.
        layer: String,
        /// The entry path.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A local path cannot go into (or come out of) a layer: absolute, `..`, an escaping
    /// symlink, a special file...
    #[error("cannot use '{path}' in a layer: {reason}")]
    InvalidPath {
        /// The path as given (or found while walking a tree).
        path: String,
        /// Why.
        reason: String,
    },
    /// A digest that is not 64 lowercase hex digits (it names a cache directory, so it is
    /// checked before use).
    #[error("'{0}' is not a layer digest (64 lowercase hex digits)")]
    InvalidDigest(String),
    /// A sealed layer failed authentication (tampered with, truncated, or sealed under
    /// another secret), or could not be sealed or opened.
    #[error("layer {layer} refused: {source}")]
    Refused {
        /// The layer's digest.
        layer: String,
        /// Why.
        #[source]
        source: crate::seal::SealError,
    },
    /// The layer is not in the artifact store.
    #[error("layer {0} is not in the artifact store")]
    Missing(String),
    /// A cached layer changed under every attempt to copy it into a job directory.
    #[error(
        "a cached layer in '{cache}' changed every time a job directory was built from it: \
         some job keeps writing into the layer cache; jobs must write only in their own directory"
    )]
    KeptChanging {
        /// The cache directory.
        cache: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl LayerError {
    /// An I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
