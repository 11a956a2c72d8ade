//! GitHub Actions artifact v4 client: the Results Twirp API plus blob operations on signed URLs.
//!
//! This is the only module that builds HTTP requests to the artifact store. Everything above it
//! (streams, layers) speaks in artifact names and bytes. It works against three servers:
//! github.com (Azure blob semantics, only finalized artifacts listed), act's artifact server
//! (lists unfinalized artifacts, ignores `Range`/`If-None-Match`, only `comp=block` and
//! `comp=appendBlock` write data) and our own `serve` (github.com's behaviour).
//!
//! API (implemented in the submodules):
//! - [`StoreConfig::from_env`] / [`StoreConfig::new`]: base URL + token (+ parsed backend ids).
//! - [`ArtifactStore`]: the Twirp calls, plus the composite operations streams and layers need:
//!   [`ArtifactStore::create_append`] → [`AppendWriter`], [`ArtifactStore::upload_file`],
//!   [`ArtifactStore::find`], [`ArtifactStore::list`], [`ArtifactStore::tail`] → [`BlobTail`],
//!   [`ArtifactStore::download_to`], [`ArtifactStore::delete`].
//! - [`blob::BlobClient`]: raw blob operations on a signed URL (used by the above, and by the
//!   Azurite interop test).

pub mod blob;
mod error;
mod retry;
mod twirp;

pub use error::StoreError;
pub use retry::RetryPolicy;
pub use twirp::{AppendWriter, ArtifactInfo, ArtifactStore, BlobTail, StoreConfig, UploadOutcome};
