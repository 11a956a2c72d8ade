//! The manifest's settings for flaky tests, in `defaults:` or a suite (a suite's keys over the
//! defaults', its `tests` added to theirs):
//!
//! ```yaml
//! quarantine:
//!   auto: true          # quarantine by flake rate (default: false)
//!   min-runs: 10        # runs of history before a rate counts
//!   flake-rate: 10%     # quarantined at or above this rate (or 0.1)
//!   release-after: 20   # clean runs in a row to leave quarantine (at most 30)
//!   tests: [ID, ...]    # quarantined by hand, whatever the history
//! detect-new-flakes: true   # a test the history has never seen runs several times
//! new-test-runs: 3          # how many times in all (2 to 10)
//! new-test-share: 10%       # at most this share of the suite's time goes to the repeats
//! ```

use serde::Deserialize;

use super::locate::{NodePath, Step};
use super::validate::Checker;
use crate::history::quarantine::QuarantinePolicy;
use crate::history::record::RECORD_RUNS;
use crate::suite::new_tests::NewTestPolicy;

/// The most times a new test may be run.
const MAX_NEW_TEST_RUNS: u32 = 10;

/// The early flake detection keys as written, in `defaults:` or a suite.
pub(super) struct RawNewTests<'a> {
    pub detect: Option<bool>,
    pub runs: Option<u32>,
    pub share: Option<&'a str>,
}

/// `quarantine:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuarantine {
    pub auto: Option<bool>,
    #[serde(rename = "min-runs")]
    pub min_runs: Option<u32>,
    #[serde(rename = "flake-rate")]
    pub flake_rate: Option<String>,
    #[serde(rename = "release-after")]
    pub release_after: Option<u32>,
    #[serde(default)]
    pub tests: Vec<String>,
}

/// A section that may hold the keys for flaky tests: `defaults:` or a suite.
pub(super) trait FlakyKeys {
    /// Its `quarantine:`.
    fn quarantine(&self) -> Option<&RawQuarantine>;
    /// Its `detect-new-flakes`, `new-test-runs` and `new-test-share`.
    fn new_tests(&self) -> RawNewTests<'_>;
}

/// `defaults:` and a suite spell the keys alike.
macro_rules! flaky_keys {
    ($($section:ty),*) => {$(
        impl FlakyKeys for $section {
            fn quarantine(&self) -> Option<&RawQuarantine> {
                self.quarantine.as_ref()
            }

            fn new_tests(&self) -> RawNewTests<'_> {
                RawNewTests {
                    detect: self.detect_new_flakes,
                    runs: self.new_test_runs,
                    share: self.new_test_share.as_deref(),
                }
            }
        }
    )*};
}

flaky_keys!(super::schema::Defaults, super::suites::RawSuite);

/// A suite's settings for flaky tests.
#[derive(Debug, Clone, Default)]
pub(super) struct FlakySettings {
    /// Which of its tests fail no run.
    pub quarantine: QuarantinePolicy,
    /// Whether its new tests run several times.
    pub new_tests: NewTestPolicy,
}

/// `at` with `key` added.
fn under(at: &NodePath, key: &str) -> NodePath {
    let mut path = at.clone();
    path.push(Step::from(key));
    path
}

/// A share written as a percentage (`10%`) or a fraction (`0.1`), above 0 and at most 1, in
/// hundredths of a percent (1000 for 10 %).
pub(crate) fn parse_share(text: &str) -> Option<u32> {
    let text = text.trim();
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().ok()? / 100.0,
        None => text.parse::<f64>().ok()?,
    };
    let bp = (value * 10_000.0).round();
    (value > 0.0 && (1.0..=10_000.0).contains(&bp)).then_some(bp as u32)
}

impl Checker {
    /// `base` (the defaults' settings, or none) with those of `section` (at `at`, of `owner`)
    /// over it.
    pub(super) fn flaky_settings(
        &mut self,
        base: &FlakySettings,
        section: &impl FlakyKeys,
        at: &NodePath,
        owner: &str,
    ) -> FlakySettings {
        FlakySettings {
            quarantine: self.quarantine(
                &base.quarantine,
                section.quarantine(),
                under(at, "quarantine"),
                owner,
            ),
            new_tests: self.new_tests(&base.new_tests, section.new_tests(), at, owner),
        }
    }

    /// `base` (the defaults' policy) with `raw` (keys under `at`, of `owner`) over it.
    fn new_tests(
        &mut self,
        base: &NewTestPolicy,
        raw: RawNewTests,
        at: &NodePath,
        owner: &str,
    ) -> NewTestPolicy {
        let mut policy = *base;
        if let Some(detect) = raw.detect {
            policy.detect = detect;
        }
        match raw.runs {
            Some(runs @ 2..=MAX_NEW_TEST_RUNS) => policy.runs = runs,
            Some(runs) => self.problem(
                under(at, "new-test-runs"),
                format!("{owner} has new-test-runs {runs}"),
                format!("give how many times a new test runs in all, 2 to {MAX_NEW_TEST_RUNS}"),
            ),
            None => {}
        }
        if let Some(text) = raw.share {
            match parse_share(text) {
                Some(share) => policy.share_bp = share,
                None => self.problem(
                    under(at, "new-test-share"),
                    format!("{owner} has a new-test-share '{text}' that is not a share"),
                    "give a percentage above 0 and at most 100%, such as 10%",
                ),
            }
        }
        policy
    }

    /// `base` (the defaults' policy) with `raw` (at `at`, of `owner`) over it; each problem
    /// found is reported and leaves the base's value.
    fn quarantine(
        &mut self,
        base: &QuarantinePolicy,
        raw: Option<&RawQuarantine>,
        at: NodePath,
        owner: &str,
    ) -> QuarantinePolicy {
        let mut policy = base.clone();
        let Some(raw) = raw else {
            return policy;
        };
        if let Some(auto) = raw.auto {
            policy.auto = auto;
        }
        match raw.min_runs {
            Some(0) => self.problem(
                under(&at, "min-runs"),
                format!("{owner} has a quarantine min-runs of 0"),
                "give how many runs of history a flake rate needs, such as 10",
            ),
            Some(runs) => policy.min_runs = runs as usize,
            None => {}
        }
        if let Some(text) = &raw.flake_rate {
            match parse_share(text) {
                Some(rate) => policy.flake_rate_bp = rate,
                None => self.problem(
                    under(&at, "flake-rate"),
                    format!("{owner} has a quarantine flake-rate '{text}' that is not a rate"),
                    "give a percentage above 0 and at most 100%, such as 10%, or a fraction such as 0.1",
                ),
            }
        }
        match raw.release_after {
            Some(runs @ 1..) if runs as usize <= RECORD_RUNS => {
                policy.release_after = runs as usize
            }
            Some(runs) => self.problem(
                under(&at, "release-after"),
                format!("{owner} has a quarantine release-after of {runs}"),
                format!(
                    "give 1 to {RECORD_RUNS} clean runs in a row (the history keeps each test's \
                     last {RECORD_RUNS} runs)"
                ),
            ),
            None => {}
        }
        let tests = under(&at, "tests");
        for (i, id) in raw.tests.iter().enumerate() {
            if id.trim().is_empty() {
                let mut at = tests.clone();
                at.push(Step::from(i));
                self.problem(
                    at,
                    format!("{owner} quarantines an empty test id"),
                    "give test ids as the reports name them (the JSON report's `id`)",
                );
            } else {
                policy.tests.insert(id.clone());
            }
        }
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percentages_or_fractions_above_zero_up_to_one() {
        assert_eq!(parse_share("10%"), Some(1_000));
        assert_eq!(parse_share(" 25 % "), Some(2_500));
        assert_eq!(parse_share("0.5"), Some(5_000));
        assert_eq!(parse_share("1"), Some(10_000));
        assert_eq!(parse_share("0.05%"), Some(5));
        for bad in ["0", "0%", "150%", "-1", "ten", "", "%"] {
            assert_eq!(parse_share(bad), None, "{bad}");
        }
    }
}
