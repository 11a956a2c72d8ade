//! What a run keeps for later runs: the timing history that estimates come from, the results
//! a re-run selects from, and how both travel, in the run's own artifacts (no service).
//!
//! Pure parts first: [`timings`] is the `ca-timings` history format and its merge rules,
//! [`results`] the per-attempt results that a re-run selects from, [`document`] how both
//! documents travel (versioned JSON in a zip) and [`seal`] how a sealed cluster keeps them.
//! [`github`] is the one part that does I/O: it finds and downloads them through GitHub's REST
//! API.

pub mod document;
pub mod github;
pub mod results;
mod seal;
pub mod timings;

pub use document::ArtifactDocument;
pub use seal::{HISTORY_ARTIFACT, HistorySeal, SEALED_FILE};
