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
//!
//! The command line sets the same values over every suite's (`--quarantine min-runs=5`,
//! `--detect-new-flakes=runs=5`), checked alike by [`FlakySetting`].

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

/// A setting for flaky tests with a value, which a manifest's key and the command line's
/// `--quarantine` and `--detect-new-flakes` settings both give: one check of its value and one
/// hint for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlakySetting {
    /// `quarantine: min-runs`: runs of history before a flake rate counts.
    MinRuns,
    /// `quarantine: flake-rate`: the rate at or above which a test is quarantined.
    FlakeRate,
    /// `quarantine: release-after`: clean runs in a row that leave quarantine.
    ReleaseAfter,
    /// `new-test-runs`: how many times a new test runs in all.
    NewTestRuns,
    /// `new-test-share`: the most of a suite's time the repeats of new tests take.
    NewTestShare,
}

/// A setting as a section writes it: what it sets, its value as checked (none when the setting
/// does not take what is written) and the problem to report then.
type Written = (FlakySetting, Option<u32>, String);

impl FlakySetting {
    /// Its key in a manifest.
    pub fn key(self) -> &'static str {
        match self {
            Self::MinRuns => "min-runs",
            Self::FlakeRate => "flake-rate",
            Self::ReleaseAfter => "release-after",
            Self::NewTestRuns => "new-test-runs",
            Self::NewTestShare => "new-test-share",
        }
    }

    /// The count `n`, when this setting takes it (a share takes no count).
    pub fn count(self, n: u32) -> Option<u32> {
        let takes = match self {
            Self::MinRuns => n >= 1,
            Self::ReleaseAfter => (1..=RECORD_RUNS).contains(&(n as usize)),
            Self::NewTestRuns => (2..=MAX_NEW_TEST_RUNS).contains(&n),
            Self::FlakeRate | Self::NewTestShare => false,
        };
        takes.then_some(n)
    }

    /// The value written as `text` (a count, or a share in hundredths of a percent), when this
    /// setting takes it.
    pub fn parse(self, text: &str) -> Option<u32> {
        match self {
            Self::FlakeRate | Self::NewTestShare => parse_share(text),
            _ => self.count(text.trim().parse().ok()?),
        }
    }

    /// What it takes, said as the hint of a problem or an error.
    pub fn hint(self) -> String {
        match self {
            Self::MinRuns => "give how many runs of history a flake rate needs, such as 10".into(),
            Self::FlakeRate => "give a percentage above 0 and at most 100%, such as 10%, or a \
                                fraction such as 0.1"
                .into(),
            Self::ReleaseAfter => format!(
                "give 1 to {RECORD_RUNS} clean runs in a row (the history keeps each test's last \
                 {RECORD_RUNS} runs)"
            ),
            Self::NewTestRuns => {
                format!("give how many times a new test runs in all, 2 to {MAX_NEW_TEST_RUNS}")
            }
            Self::NewTestShare => "give a percentage above 0 and at most 100%, such as 10%".into(),
        }
    }

    /// Sets it to `value` (as [`Self::count`] or [`Self::parse`] gave it) in the policy it
    /// belongs to: `quarantine` or `new_tests`.
    pub fn set(self, value: u32, quarantine: &mut QuarantinePolicy, new_tests: &mut NewTestPolicy) {
        match self {
            Self::MinRuns => quarantine.min_runs = value as usize,
            Self::FlakeRate => quarantine.flake_rate_bp = value,
            Self::ReleaseAfter => quarantine.release_after = value as usize,
            Self::NewTestRuns => new_tests.runs = value,
            Self::NewTestShare => new_tests.share_bp = value,
        }
    }
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
        let mut settings = base.clone();
        self.quarantine(
            &mut settings,
            section.quarantine(),
            under(at, "quarantine"),
            owner,
        );
        self.new_tests(&mut settings, section.new_tests(), at, owner);
        settings
    }

    /// `settings` with the settings a section writes (under `at`) over them; each that its
    /// setting does not take is reported with its problem and the setting's hint, and leaves
    /// the value it had.
    fn written_settings(
        &mut self,
        settings: &mut FlakySettings,
        at: &NodePath,
        written: impl IntoIterator<Item = Option<Written>>,
    ) {
        for (setting, value, problem) in written.into_iter().flatten() {
            match value {
                Some(value) => {
                    setting.set(value, &mut settings.quarantine, &mut settings.new_tests)
                }
                None => self.problem(under(at, setting.key()), problem, setting.hint()),
            }
        }
    }

    /// `settings` with the new-test keys of `raw` (under `at`, of `owner`) over them.
    fn new_tests(
        &mut self,
        settings: &mut FlakySettings,
        raw: RawNewTests,
        at: &NodePath,
        owner: &str,
    ) {
        use FlakySetting::{NewTestRuns, NewTestShare};
        if let Some(detect) = raw.detect {
            settings.new_tests.detect = detect;
        }
        let runs = raw.runs.map(|runs| {
            let problem = format!("{owner} has new-test-runs {runs}");
            (NewTestRuns, NewTestRuns.count(runs), problem)
        });
        let share = raw.share.map(|text| {
            let problem = format!("{owner} has a new-test-share '{text}' that is not a share");
            (NewTestShare, NewTestShare.parse(text), problem)
        });
        self.written_settings(settings, at, [runs, share]);
    }

    /// `settings` with `raw` (at `at`, of `owner`) over their quarantine policy; each problem
    /// found is reported and leaves the value it had.
    fn quarantine(
        &mut self,
        settings: &mut FlakySettings,
        raw: Option<&RawQuarantine>,
        at: NodePath,
        owner: &str,
    ) {
        use FlakySetting::{FlakeRate, MinRuns, ReleaseAfter};
        let Some(raw) = raw else {
            return;
        };
        if let Some(auto) = raw.auto {
            settings.quarantine.auto = auto;
        }
        let min_runs = raw.min_runs.map(|runs| {
            let problem = format!("{owner} has a quarantine min-runs of {runs}");
            (MinRuns, MinRuns.count(runs), problem)
        });
        let rate = raw.flake_rate.as_deref().map(|text| {
            let problem =
                format!("{owner} has a quarantine flake-rate '{text}' that is not a rate");
            (FlakeRate, FlakeRate.parse(text), problem)
        });
        let release = raw.release_after.map(|runs| {
            let problem = format!("{owner} has a quarantine release-after of {runs}");
            (ReleaseAfter, ReleaseAfter.count(runs), problem)
        });
        self.written_settings(settings, &at, [min_runs, rate, release]);
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
                settings.quarantine.tests.insert(id.clone());
            }
        }
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

    #[test]
    fn settings_take_counts_in_their_ranges_and_shares() {
        let cases = [
            (FlakySetting::MinRuns, "1", Some(1)),
            (FlakySetting::MinRuns, "0", None),
            (FlakySetting::ReleaseAfter, "30", Some(30)),
            (FlakySetting::ReleaseAfter, "31", None),
            (FlakySetting::NewTestRuns, "2", Some(2)),
            (FlakySetting::NewTestRuns, "1", None),
            (FlakySetting::NewTestRuns, "11", None),
            (FlakySetting::NewTestRuns, "five", None),
            (FlakySetting::NewTestRuns, "-3", None),
            (FlakySetting::FlakeRate, "20%", Some(2_000)),
            (FlakySetting::FlakeRate, "0.2", Some(2_000)),
            (FlakySetting::NewTestShare, "0%", None),
        ];
        for (setting, text, value) in cases {
            assert_eq!(setting.parse(text), value, "{setting:?} {text}");
        }
        assert_eq!(FlakySetting::FlakeRate.count(1), None, "a rate is no count");
        let (mut quarantine, mut new_tests) = Default::default();
        FlakySetting::ReleaseAfter.set(5, &mut quarantine, &mut new_tests);
        FlakySetting::NewTestShare.set(2_000, &mut quarantine, &mut new_tests);
        assert_eq!((quarantine.release_after, new_tests.share_bp), (5, 2_000));
        assert_eq!(quarantine.min_runs, QuarantinePolicy::default().min_runs);
    }
}
