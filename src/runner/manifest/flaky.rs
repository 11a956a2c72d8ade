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
//! ```

use serde::Deserialize;

use super::locate::{NodePath, Step};
use super::validate::Checker;
use crate::history::quarantine::QuarantinePolicy;
use crate::history::record::RECORD_RUNS;

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
    /// `base` (the defaults' policy) with `raw` (at `at`, of `owner`) over it; each problem
    /// found is reported and leaves the base's value.
    pub(super) fn quarantine(
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
