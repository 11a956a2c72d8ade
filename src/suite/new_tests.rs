//! Early flake detection: a test the history has never seen runs several times in its first
//! run (on different workers where there are any), so a flaky test is caught before it
//! merges; outcomes that disagree make it flaky ([`super::FinalStatus::Flaky`]). The repeats
//! are bounded: at most a share of the suite's estimated time goes to them, and the new tests
//! past that run once.

use super::TestKey;
use super::plan::Estimated;

/// A suite's early flake detection (`detect-new-flakes`, `new-test-runs`, `new-test-share`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTestPolicy {
    /// Whether new tests are run several times.
    pub detect: bool,
    /// How many times a new test runs in all.
    pub runs: u32,
    /// The most of the suite's estimated time its repeats may take, in hundredths of a
    /// percent (1000: 10 %).
    pub share_bp: u32,
}

impl Default for NewTestPolicy {
    fn default() -> Self {
        Self {
            detect: false,
            runs: 3,
            share_bp: 1_000,
        }
    }
}

/// The new tests of a suite and which of them run several times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTestChecks {
    /// Its name.
    pub suite: String,
    /// The new tests that run [`NewTestPolicy::runs`] times, in listing order.
    pub checked: Vec<TestKey>,
    /// New tests that run once: their repeats would take more than the share.
    pub unchecked: usize,
    /// How many times a checked test runs.
    pub runs: u32,
    /// The share of the suite's time repeats may take, in hundredths of a percent.
    pub share_bp: u32,
}

/// The new tests (`is_new`) of one suite's `tests` that `policy` runs several times: in listing
/// order while their repeats (`runs - 1` times their estimate each) fit in the share of the
/// suite's estimated time; the rest are counted.
pub fn choose_new_tests(
    suite: &str,
    tests: &[Estimated],
    is_new: impl Fn(&TestKey) -> bool,
    policy: &NewTestPolicy,
) -> NewTestChecks {
    let mut checks = NewTestChecks {
        suite: suite.to_owned(),
        runs: policy.runs,
        share_bp: policy.share_bp,
        ..NewTestChecks::default()
    };
    if !policy.detect || policy.runs < 2 {
        return checks;
    }
    let total: u128 = tests.iter().map(|t| u128::from(t.estimate.ms())).sum();
    let budget = total * u128::from(policy.share_bp) / 10_000;
    let mut spent = 0u128;
    for test in tests.iter().filter(|t| is_new(&t.test.key)) {
        let cost = u128::from(test.estimate.ms()) * u128::from(policy.runs - 1);
        if spent + cost <= budget {
            spent += cost;
            checks.checked.push(test.test.key.clone());
        } else {
            checks.unchecked += 1;
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::plan::{Estimate, PlanTest};

    fn test(id: &str, ms: u64) -> Estimated {
        Estimated {
            test: PlanTest {
                key: TestKey::new("s", id),
                group: None,
                file: None,
            },
            estimate: Estimate::Measured(ms),
        }
    }

    fn on() -> NewTestPolicy {
        NewTestPolicy {
            detect: true,
            ..NewTestPolicy::default()
        }
    }

    #[test]
    fn new_tests_are_checked_while_their_repeats_fit_in_the_share() {
        // 1,000 ms in all: 10 % is 100 ms of repeats, two more runs of each new test.
        let mut tests: Vec<Estimated> = (0..9).map(|i| test(&format!("old{i}"), 100)).collect();
        tests.extend([test("new-a", 20), test("new-b", 40), test("new-c", 30)]);
        let total: u64 = tests.iter().map(|t| t.estimate.ms()).sum();
        assert_eq!(total, 990);
        let is_new = |k: &TestKey| k.id.starts_with("new");
        let checks = choose_new_tests("s", &tests, is_new, &on());
        let ids: Vec<&str> = checks.checked.iter().map(|k| k.id.as_str()).collect();
        // new-a: 40 ms, new-b: 80 ms more (120 > 99): run once; new-c: 60 ms more (100 > 99).
        assert_eq!(ids, ["new-a"]);
        assert_eq!(checks.unchecked, 2);
        let wide = NewTestPolicy {
            share_bp: 10_000,
            ..on()
        };
        let all = choose_new_tests("s", &tests, is_new, &wide);
        assert_eq!((all.checked.len(), all.unchecked), (3, 0));
    }

    #[test]
    fn nothing_is_checked_when_detection_is_off_or_a_test_runs_once() {
        let tests = [test("new", 1)];
        let off = choose_new_tests("s", &tests, |_| true, &NewTestPolicy::default());
        assert_eq!((off.checked.len(), off.unchecked), (0, 0));
        let once = NewTestPolicy { runs: 1, ..on() };
        assert!(
            choose_new_tests("s", &tests, |_| true, &once)
                .checked
                .is_empty()
        );
        let old = choose_new_tests("s", &tests, |_| false, &on());
        assert_eq!((old.checked.len(), old.unchecked), (0, 0));
    }
}
