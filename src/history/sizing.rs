//! What runs' wall times taught the plan (`cluster-action plan`): the set-up a run measured
//! (its wall time beyond its batches: starting the cluster, listing, shipping and fetching
//! layers, the first test starting) and how far each run's prediction was from what happened.
//! Kept in the timing history (an optional part of `ca-timings`, absent from files written
//! before it), the newest [`RUNS_KEPT`] runs of each.

use serde::{Deserialize, Serialize};

/// How many runs' set-ups and prediction checks are kept.
pub const RUNS_KEPT: usize = 5;

/// The set-ups measured and the predictions checked, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizingHistory {
    /// The set-ups measured by the newest runs, in milliseconds, oldest first.
    #[serde(default)]
    setup_ms: Vec<u64>,
    /// The newest runs' predictions against their wall times, oldest first.
    #[serde(default)]
    checks: Vec<PredictionCheck>,
}

/// One run's predicted wall time against the one it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictionCheck {
    /// The machines the run had.
    pub machines: u32,
    /// The slots of each.
    pub slots: u32,
    /// The wall time predicted, from the history before the run, in milliseconds.
    pub predicted_ms: u64,
    /// The wall time it took, in milliseconds.
    pub actual_ms: u64,
}

impl PredictionCheck {
    /// How far the run was from its prediction, in percent of the prediction (positive: it
    /// took longer than predicted).
    pub fn error_percent(&self) -> i64 {
        let predicted = self.predicted_ms.max(1) as f64;
        ((self.actual_ms as f64 - predicted) / predicted * 100.0).round() as i64
    }
}

impl SizingHistory {
    /// Whether no run measured anything yet (the file then leaves it out).
    pub fn is_empty(&self) -> bool {
        self.setup_ms.is_empty() && self.checks.is_empty()
    }

    /// The set-up to predict with: the median of the kept measurements (the lower of the
    /// middle two for an even count, as one slow start should not buy a machine), or none.
    pub fn setup_ms(&self) -> Option<u64> {
        let mut kept = self.setup_ms.clone();
        kept.sort_unstable();
        kept.get(kept.len().saturating_sub(1) / 2).copied()
    }

    /// How many runs measured the set-up.
    pub fn setups_measured(&self) -> usize {
        self.setup_ms.len()
    }

    /// The newest run's prediction check, if any run was predicted.
    pub fn last_check(&self) -> Option<&PredictionCheck> {
        self.checks.last()
    }

    /// Adds one run: the set-up it measured and, when it was predicted, its check; only the
    /// newest [`RUNS_KEPT`] of each are kept.
    pub fn record(&mut self, setup_ms: u64, check: Option<PredictionCheck>) {
        push_bounded(&mut self.setup_ms, setup_ms);
        if let Some(check) = check {
            push_bounded(&mut self.checks, check);
        }
    }
}

/// Appends `item`, dropping the oldest beyond [`RUNS_KEPT`].
fn push_bounded<T>(list: &mut Vec<T>, item: T) {
    list.push(item);
    if list.len() > RUNS_KEPT {
        list.drain(..list.len() - RUNS_KEPT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(predicted_ms: u64, actual_ms: u64) -> PredictionCheck {
        PredictionCheck {
            machines: 2,
            slots: 2,
            predicted_ms,
            actual_ms,
        }
    }

    #[test]
    fn the_setup_is_the_median_of_the_newest_runs() {
        let mut history = SizingHistory::default();
        assert!(history.is_empty());
        assert_eq!(history.setup_ms(), None);
        for ms in [9_000, 1_000, 2_000, 3_000] {
            history.record(ms, None);
        }
        assert_eq!(history.setup_ms(), Some(2_000), "the lower middle of four");
        for ms in [4_000, 5_000, 6_000] {
            history.record(ms, Some(check(1_000, 1_100)));
        }
        assert_eq!(history.setups_measured(), RUNS_KEPT);
        assert_eq!(history.setup_ms(), Some(4_000), "9s and 1s were dropped");
        assert_eq!(history.last_check(), Some(&check(1_000, 1_100)));
        assert!(!history.is_empty());
    }

    #[test]
    fn the_error_is_a_percentage_of_the_prediction() {
        assert_eq!(check(10_000, 11_500).error_percent(), 15);
        assert_eq!(check(10_000, 9_000).error_percent(), -10);
    }

    #[test]
    fn the_timings_file_keeps_it_and_an_older_file_reads_without_it() {
        use crate::history::ArtifactDocument;
        use crate::history::timings::Timings;
        let old = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[3]}]}"#;
        let old = Timings::from_json(old).unwrap();
        assert!(old.sizing.is_empty());
        assert!(!String::from_utf8_lossy(&old.to_json()).contains("sizing"));
        let mut timings = old;
        timings.sizing.record(1_500, Some(check(4_000, 4_200)));
        let back = Timings::from_json(&timings.to_json()).unwrap();
        assert_eq!(back.sizing, timings.sizing);
        assert_eq!(back.sizing.setup_ms(), Some(1_500));
    }
}
