//! What a batch costs beyond its tests' own time: the framework's start, and the collection
//! (for pytest, the import) of every file the batch touches. Learned per suite from the batches
//! of earlier runs (each batch's wall time minus its tests' durations, against the number of
//! files it touched) so the planner can weigh a batch's start against the balance more batches
//! give: fewer, larger batches where starts are costly, more where they are cheap.

use serde::{Deserialize, Serialize};

/// What one finished batch cost beyond its tests: measured by the runner, kept in the timing
/// history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSample {
    /// The distinct files its tests came from (0 when the framework names none).
    pub files: u32,
    /// Its wall time minus the durations of its tests, in milliseconds.
    pub overhead_ms: u64,
}

/// A batch's cost beyond its tests: `start_ms`, and `per_file_ms` for each file it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCost {
    /// The framework's start (and everything else a batch pays once).
    pub start_ms: u64,
    /// Collecting one file.
    pub per_file_ms: u64,
}

impl BatchCost {
    /// The cost assumed for a suite no batch of which was measured: a framework start of half a
    /// second, collection included.
    pub const UNMEASURED: BatchCost = BatchCost {
        start_ms: 500,
        per_file_ms: 0,
    };

    /// The cost of a batch touching `files` files.
    pub fn ms(self, files: usize) -> u64 {
        self.start_ms
            .saturating_add(self.per_file_ms.saturating_mul(files as u64))
    }

    /// The cost that fits `samples` best (least squares of overhead against files, neither
    /// part negative), or none without samples. Batches that all touched the same number of
    /// files say nothing of the per-file part: it is 0 then, and the start their mean.
    pub fn fit(samples: &[BatchSample]) -> Option<BatchCost> {
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        let mean_files = samples.iter().map(|s| f64::from(s.files)).sum::<f64>() / n;
        let mean_ms = samples.iter().map(|s| s.overhead_ms as f64).sum::<f64>() / n;
        let (mut covariance, mut variance) = (0.0, 0.0);
        for s in samples {
            let df = f64::from(s.files) - mean_files;
            covariance += df * (s.overhead_ms as f64 - mean_ms);
            variance += df * df;
        }
        let mut per_file = if variance > 0.0 {
            (covariance / variance).max(0.0)
        } else {
            0.0
        };
        let mut start = mean_ms - per_file * mean_files;
        if start < 0.0 {
            // The line through the origin instead: all of it is per file.
            start = 0.0;
            per_file = mean_ms / mean_files.max(1.0);
        }
        Some(BatchCost {
            start_ms: start.round() as u64,
            per_file_ms: per_file.round() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(files: u32, overhead_ms: u64) -> BatchSample {
        BatchSample { files, overhead_ms }
    }

    #[test]
    fn the_fit_splits_the_start_from_the_collection_of_each_file() {
        // 400 ms to start, 250 ms a file, measured with some noise.
        let samples = [
            sample(1, 660),
            sample(2, 890),
            sample(4, 1_410),
            sample(3, 1_150),
        ];
        let cost = BatchCost::fit(&samples).unwrap();
        assert!((350..=450).contains(&cost.start_ms), "{cost:?}");
        assert!((230..=270).contains(&cost.per_file_ms), "{cost:?}");
        assert_eq!(cost.ms(2), cost.start_ms + 2 * cost.per_file_ms);
    }

    #[test]
    fn batches_of_one_file_count_give_only_a_start() {
        let cost = BatchCost::fit(&[sample(2, 900), sample(2, 1_100)]).unwrap();
        assert_eq!(
            cost,
            BatchCost {
                start_ms: 1_000,
                per_file_ms: 0
            }
        );
        assert_eq!(BatchCost::fit(&[]), None);
    }

    #[test]
    fn neither_part_is_negative() {
        // Overhead falling with files (noise): no per-file part.
        let falling = BatchCost::fit(&[sample(1, 900), sample(5, 700)]).unwrap();
        assert_eq!(falling.per_file_ms, 0);
        assert_eq!(falling.start_ms, 800);
        // A steep rise would put the start below 0: all of it is per file.
        let steep = BatchCost::fit(&[sample(1, 0), sample(3, 1_000)]).unwrap();
        assert_eq!(steep.start_ms, 0);
        assert_eq!(steep.per_file_ms, 250);
    }
}
