//! Quarantine: tests whose failure does not fail the run, though they still run (and are
//! retried as any test). A test is quarantined by hand (its id in a suite's list) or, with
//! `auto`, by its record: once it has been seen in `min-runs` runs, a flake rate at or above
//! `flake-rate` puts it in quarantine, and `release-after` clean runs in a row take it out.
//! The history keeps since when a test is in ([`super::timings::Timings::update_quarantine`]);
//! [`Quarantined`] is what one run knows before it starts.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{RECORD_RUNS, Record, RunRef};
use super::timings::Timings;
use crate::suite::TestKey;

/// A suite's quarantine settings (`quarantine:` in a manifest's `defaults` or suite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Quarantine by flake rate.
    pub auto: bool,
    /// Runs a test must have been seen in before its rate counts.
    pub min_runs: usize,
    /// The flake rate (flaky runs per run seen) at or above which it is quarantined, in
    /// hundredths of a percent (1000: 10 %).
    pub flake_rate_bp: u32,
    /// Clean runs in a row that take it out of quarantine (at most [`RECORD_RUNS`]).
    pub release_after: usize,
    /// Ids quarantined by hand, whatever their record.
    pub tests: BTreeSet<String>,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self {
            auto: false,
            min_runs: 10,
            flake_rate_bp: 1_000,
            release_after: 20,
            tests: BTreeSet::new(),
        }
    }
}

impl QuarantinePolicy {
    /// Whether a test not in quarantine with `record` goes in: seen in enough runs, flaky in
    /// enough of them, and not already clean for long enough to be let out again.
    pub fn enters(&self, record: &Record) -> bool {
        self.auto
            && record.runs_seen() >= self.min_runs.max(1)
            && record.rate_at_least(self.flake_rate_bp)
            && record.clean_streak() < self.release_after
    }

    /// Whether a test in quarantine with `record` comes out: clean in its newest
    /// `release-after` runs seen.
    pub fn releases(&self, record: &Record) -> bool {
        record.clean_streak() >= self.release_after.clamp(1, RECORD_RUNS)
    }
}

/// Why a test is quarantined in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineReason {
    /// Listed by hand.
    pub by_hand: bool,
    /// The run its record put it in quarantine, when it did.
    pub since: Option<RunRef>,
}

/// The tests quarantined in one run: by hand, or by their record in the history the run
/// starts from (in a suite with `auto`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantined {
    tests: BTreeMap<TestKey, QuarantineReason>,
}

impl Quarantined {
    /// The quarantined tests of the suites `policies` names, from `timings`.
    pub fn of<'a>(
        timings: &Timings,
        policies: impl IntoIterator<Item = (&'a str, &'a QuarantinePolicy)>,
    ) -> Self {
        let mut tests = BTreeMap::new();
        for (suite, policy) in policies {
            for id in &policy.tests {
                let key = TestKey::new(suite, id);
                let since = timings.quarantined_since(&key);
                tests.insert(
                    key,
                    QuarantineReason {
                        by_hand: true,
                        since,
                    },
                );
            }
            if policy.auto {
                for (key, since) in timings.quarantine_marks(suite) {
                    tests
                        .entry(key)
                        .or_insert(QuarantineReason {
                            by_hand: false,
                            since: Some(since),
                        })
                        .since = Some(since);
                }
            }
        }
        Self { tests }
    }

    /// Why `key` is quarantined, when it is.
    pub fn get(&self, key: &TestKey) -> Option<&QuarantineReason> {
        self.tests.get(key)
    }

    /// The tests quarantined by hand.
    pub fn by_hand(&self) -> impl Iterator<Item = &TestKey> {
        (self.tests.iter())
            .filter(|(_, reason)| reason.by_hand)
            .map(|(key, _)| key)
    }

    /// Whether no test is quarantined.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> QuarantinePolicy {
        QuarantinePolicy {
            auto: true,
            ..QuarantinePolicy::default()
        }
    }

    #[test]
    fn a_test_enters_at_the_rate_once_seen_in_enough_runs() {
        let policy = auto();
        // Flaky in 1 run of 10: 10 %, at the rate.
        assert!(policy.enters(&Record::from_letters("ppppkppppp")));
        // Seen in 9 runs only (one absent): not yet, whatever its rate.
        assert!(!policy.enters(&Record::from_letters("pp.pkkpppp")));
        // Below the rate.
        assert!(!policy.enters(&Record::from_letters(&format!("k{}", "p".repeat(10)))));
        // Failures alone are not flakiness.
        assert!(!policy.enters(&Record::from_letters("ffffffffff")));
        // Without `auto`, nothing enters by its record.
        let by_hand = QuarantinePolicy::default();
        assert!(!by_hand.enters(&Record::from_letters("kkkkkkkkkk")));
    }

    #[test]
    fn a_test_leaves_after_release_after_clean_runs_and_does_not_reenter_at_once() {
        let policy = auto();
        let record = format!("kkk{}", "p".repeat(19));
        assert!(!policy.releases(&Record::from_letters(&record)));
        let record = Record::from_letters(&format!("{record}p"));
        assert!(policy.releases(&record));
        assert!(
            record.rate_at_least(policy.flake_rate_bp),
            "still above the rate"
        );
        assert!(!policy.enters(&record), "yet clean long enough to stay out");
        let record = Record::from_letters(&format!("kkk{}k", "p".repeat(20)));
        assert!(policy.enters(&record), "a new flaky run puts it back");
        let never = QuarantinePolicy {
            release_after: 1_000,
            ..auto()
        };
        assert!(
            never.releases(&Record::from_letters(&"p".repeat(RECORD_RUNS))),
            "capped at what a record holds"
        );
    }
}
