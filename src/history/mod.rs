//! What a run keeps for later runs: the timing history that estimates come from, the results
//! a re-run selects from, and how both travel, in the run's own artifacts (no service) or a
//! local file.
//!
//! Pure parts first: [`timings`] is the `ca-timings` history format and its merge rules (with
//! [`sizing`], what runs' wall times taught `cluster-action plan`), [`record`] a test's
//! outcomes across runs (its flake rate), [`quarantine`] which tests fail no run,
//! [`results`] the per-attempt results that a re-run selects from, [`document`] how both
//! documents travel (versioned JSON in a zip) and [`HistorySeal`] how a sealed cluster keeps
//! them. [`github`] finds and downloads them through GitHub's REST API, [`local_file`] reads
//! and writes the `--timings` files, and [`RunHistory`] is the whole step around a run: load
//! before it, save after it.

pub mod document;
pub mod github;
mod load;
pub mod local_file;
pub mod quarantine;
pub mod record;
pub mod results;
mod seal;
pub mod sizing;
pub mod timings;

pub use document::ArtifactDocument;
pub use load::{HistoryError, HistorySource, RunHistory};
pub use seal::{HISTORY_ARTIFACT, HistorySeal, SEALED_FILE, is_history_artifact};
