//! Request counters by operation, so tests and benchmarks can see how many calls a client made.
//!
//! Every request that reaches a Twirp or blob route is counted when it arrives, before fault
//! injection and before authentication: a request answered with an injected 500/503/429 or a
//! 401/403 counts like one that succeeded. `GET /_stats` itself is not counted.

use std::sync::{Mutex, PoisonError};

use super::StatsSnapshot;

/// The shared counters.
#[derive(Debug, Default)]
pub(super) struct Stats {
    counts: Mutex<StatsSnapshot>,
}

impl Stats {
    /// Counts one Twirp call of `method`.
    pub(super) fn count_twirp(&self, method: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.twirp.entry(method.to_string()).or_default() += 1;
        counts.twirp_total += 1;
    }

    /// Counts one blob request of operation `op` (`put_block`, `get`, ...).
    pub(super) fn count_blob(&self, op: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.blob.entry(op.to_string()).or_default() += 1;
        counts.blob_total += 1;
    }

    /// Adds the body sizes of one blob request and its answer.
    pub(super) fn count_blob_bytes(&self, received: u64, sent: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.blob_bytes_in += received;
        counts.blob_bytes_out += sent;
    }

    /// The counters now.
    pub(super) fn snapshot(&self) -> StatsSnapshot {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
