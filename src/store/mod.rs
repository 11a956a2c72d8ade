//! GitHub Actions artifact v4 client: the Results Twirp API plus blob operations on signed URLs.
//!
//! This is the only module that builds HTTP requests to the artifact store. Everything above it
//! (streams, layers) speaks in artifact names and bytes. It works against three servers:
//! github.com (Azure blob semantics, only finalized artifacts listed), act's artifact server
//! (lists unfinalized artifacts, ignores `Range`/`If-None-Match`, only `comp=block` and
//! `comp=appendBlock` write data) and our own `serve` (github.com's behaviour).
//!
//! - [`StoreConfig`] (`config`): base URL + token (+ parsed backend ids), validated up front.
//! - [`ArtifactStore`] (`twirp`): the Twirp calls; and (`transfer`) the composite operations
//!   streams and layers need: [`ArtifactStore::create_append`] → [`AppendWriter`] (or
//!   [`AppendCreation`], which finishes a creation the store failed part-way),
//!   [`ArtifactStore::upload_file`] (upload-if-absent) and [`ArtifactStore::upload_new`],
//!   [`ArtifactStore::download_to`], [`ArtifactStore::read_to`] (a streamed download, big
//!   blobs in parallel ranges), [`ArtifactStore::wait_for`], [`ArtifactStore::tail`] →
//!   [`BlobTail`].
//! - [`blob::BlobClient`]: raw blob operations on a signed URL (used by the above, and by the
//!   Azurite interop test).
//! - `retry`: every request retried on the crate's [`RetryPolicy`], with jitter.

pub mod blob;
mod config;
mod error;
mod retry;
mod transfer;
mod twirp;

pub use crate::retry::RetryPolicy;
pub use config::StoreConfig;
pub use error::StoreError;
pub use transfer::{AppendCreation, AppendWriter, BlobTail, UploadOutcome};
pub use twirp::{ArtifactInfo, ArtifactStore, DEFAULT_RETENTION};
