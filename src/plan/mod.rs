//! Planning a test suite's run: which tests to run (re-runs of what failed), in which order and
//! in which batches, from timing history kept in the run's own artifacts (no service).
//!
//! Pure parts first: [`batch`] packs tests into batches from their estimates, [`timings`] is the
//! `ca-timings` history format and its merge rules, [`results`] the per-attempt results that a
//! re-run selects from, [`makespan`] the measure benchmarks compare plans with, and
//! [`document`] how both documents travel (versioned JSON in a zip). [`github`] is the one part
//! that does I/O: it finds and downloads them through GitHub's REST API.

pub mod batch;
pub mod document;
pub mod github;
pub mod makespan;
pub mod results;
pub mod timings;

pub use document::ArtifactDocument;
use serde::{Deserialize, Serialize};

/// One test of one suite: what every plan, history and result is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TestKey {
    /// The suite's name in the manifest.
    pub suite: String,
    /// The framework's own id of the test (nextest name, pytest node id, go test name).
    pub id: String,
}

impl TestKey {
    /// A key from its two parts.
    pub fn new(suite: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            suite: suite.into(),
            id: id.into(),
        }
    }
}

impl std::fmt::Display for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.suite, self.id)
    }
}
