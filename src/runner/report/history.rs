//! What the history says of a run's tests, in its reports: which tests were quarantined (their
//! failure fails no run) and each test's record across runs (flake rate, runs seen, last flaky
//! run) and trend (this run's time against its estimate before it).

use std::collections::BTreeSet;
use std::time::Duration;

use super::RunReport;
use crate::duration::format_duration;
use crate::history::quarantine::{QuarantineReason, Quarantined};
use crate::history::timings::Timings;
use crate::suite::{FinalStatus, TestKey, TestRecord};

/// The job summary lists this many of the flakiest tests.
const FLAKIEST: usize = 10;
/// The job summary's table of quarantined tests shows this many rows at most.
const MAX_QUARANTINED_ROWS: usize = 100;

/// The history around one run, for its reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportHistory {
    /// The history the run started from: estimates for the trend.
    pub before: Timings,
    /// The history with this run recorded: each test's record.
    pub after: Timings,
    /// The tests quarantined in this run.
    pub quarantined: Quarantined,
    /// Whether any history existed before the run (without, there is no record to show).
    pub known: bool,
}

/// A test's record as the reports show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestRecordView {
    /// Flaky runs per run seen, 0 to 1.
    pub flake_rate: f64,
    /// Runs it was seen in, this one included.
    pub runs_seen: usize,
}

/// What a quarantined test did in the run: `passed`, `failed`, `flaky`, `error`, `skipped`.
pub fn quarantined_outcome(status: FinalStatus) -> &'static str {
    match status {
        FinalStatus::Passed => "passed",
        FinalStatus::Failed | FinalStatus::TimedOut => "failed",
        FinalStatus::Flaky => "flaky",
        FinalStatus::Skipped => "skipped",
        FinalStatus::Error | FinalStatus::NotRun => "error",
    }
}

/// `rate` as a percentage for people: `30 %`, `3.3 %`.
fn percent(rate: f64) -> String {
    let pct = rate * 100.0;
    if pct >= 10.0 || pct == pct.round() {
        format!("{pct:.0} %")
    } else {
        format!("{pct:.1} %")
    }
}

/// The job summary's note of the ids quarantined by hand that no test of the run has
/// (`absent`, at most [`MAX_QUARANTINED_ROWS`] named); empty when there are none.
fn absent_markdown(absent: &[&TestKey]) -> String {
    if absent.is_empty() {
        return String::new();
    }
    let named: Vec<String> = (absent.iter().take(MAX_QUARANTINED_ROWS))
        .map(|key| format!("`{key}`"))
        .collect();
    let more = match absent.len().saturating_sub(MAX_QUARANTINED_ROWS) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "\n{} test(s) quarantined by hand are not in this run, so their quarantine does \
         nothing here: {}{more}. Check the ids against the JSON report's (a typo, a renamed or \
         removed test, or one this run's filters left out).\n",
        absent.len(),
        named.join(", ")
    )
}

/// The key of a record.
fn key_of(record: &TestRecord) -> TestKey {
    TestKey::new(&record.suite, &record.case.id)
}

impl RunReport {
    /// Why `record`'s test is quarantined in this run, when it is.
    pub fn quarantine_of(&self, record: &TestRecord) -> Option<&QuarantineReason> {
        self.history.as_ref()?.quarantined.get(&key_of(record))
    }

    /// The record of `record`'s test across runs, where history exists.
    pub fn record_view(&self, record: &TestRecord) -> Option<TestRecordView> {
        let history = self.history.as_ref().filter(|h| h.known)?;
        let kept = history.after.record(&key_of(record));
        Some(TestRecordView {
            flake_rate: kept.flake_rate(),
            runs_seen: kept.runs_seen(),
        })
    }

    /// The quarantined tests of the run, for the job summary: their outcome, flake rate, runs
    /// seen and since when, and the ids quarantined by hand that no test of the run has (a
    /// typo quarantines nothing). Empty when there are neither.
    pub fn quarantine_markdown(&self) -> String {
        let Some(history) = &self.history else {
            return String::new();
        };
        let quarantined: Vec<(&TestRecord, &QuarantineReason)> = self
            .tests
            .iter()
            .filter_map(|r| Some((r, history.quarantined.get(&key_of(r))?)))
            .collect();
        let ran: BTreeSet<TestKey> = self.tests.iter().map(key_of).collect();
        let absent: Vec<&TestKey> = (history.quarantined.by_hand())
            .filter(|key| !ran.contains(*key))
            .collect();
        let absent = absent_markdown(&absent);
        if quarantined.is_empty() {
            return absent;
        }
        let failed = quarantined
            .iter()
            .filter(|(r, _)| quarantined_outcome(r.status()) != "passed")
            .count();
        let mut page = format!(
            "\n#### Quarantined tests\n\n{} quarantined tests ran, {failed} of them did not pass; \
             their failures do not fail the run.\n\n\
             | suite | test | outcome | flake rate | runs seen | since |\n|---|---|---|---|---|---|\n",
            quarantined.len()
        );
        for (record, reason) in quarantined.iter().take(MAX_QUARANTINED_ROWS) {
            let kept = history.after.record(&key_of(record));
            let since = match (reason.since, reason.by_hand) {
                (Some(run), _) => run.to_string(),
                (None, _) => "by hand".to_owned(),
            };
            page.push_str(&format!(
                "| {} | {} | {} | {} | {} | {since} |\n",
                super::per_test::cell(&record.suite),
                super::per_test::cell(&record.case.id),
                quarantined_outcome(record.status()),
                percent(kept.flake_rate()),
                kept.runs_seen()
            ));
        }
        if quarantined.len() > MAX_QUARANTINED_ROWS {
            page.push_str(&format!(
                "\n_{} more not shown; the JSON report lists every test._\n",
                quarantined.len() - MAX_QUARANTINED_ROWS
            ));
        }
        page.push_str(&absent);
        page
    }

    /// The flakiest tests of the run by their record (rate, runs seen, last flaky run), for the
    /// job summary; empty without history or when none was flaky.
    pub fn flakiest_markdown(&self) -> String {
        let Some(history) = self.history.as_ref().filter(|h| h.known) else {
            return String::new();
        };
        let mut flaky: Vec<(&TestRecord, f64, usize)> = self
            .tests
            .iter()
            .filter_map(|r| {
                let kept = history.after.record(&key_of(r));
                (kept.flaky_runs() > 0).then(|| (r, kept.flake_rate(), kept.runs_seen()))
            })
            .collect();
        if flaky.is_empty() {
            return String::new();
        }
        flaky.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)));
        let mut page = String::from(
            "\n#### Flakiest tests\n\n| suite | test | flake rate | runs seen | last flaky |\n|---|---|---|---|---|\n",
        );
        for (record, rate, seen) in flaky.into_iter().take(FLAKIEST) {
            let last = history
                .after
                .last_flaky(&key_of(record))
                .map_or_else(|| "–".to_owned(), |run| run.to_string());
            page.push_str(&format!(
                "| {} | {} | {} | {seen} | {last} |\n",
                super::per_test::cell(&record.suite),
                super::per_test::cell(&record.case.id),
                percent(rate)
            ));
        }
        page
    }

    /// The trend of a test's time in this run against its estimate before it: `+40 % (was
    /// 1.2s)`, `−10 % (was …)`, `new` (never seen), `–` (no passing time yet); none without
    /// history.
    pub fn trend(&self, record: &TestRecord, ms: u64) -> Option<String> {
        let history = self.history.as_ref().filter(|h| h.known)?;
        let key = key_of(record);
        let Some(before) = history.before.estimate_ms(&key) else {
            // Seen before without a passing time to compare with, or never seen.
            let seen = history.before.has_seen(&key);
            return Some(if seen { "–" } else { "new" }.to_owned());
        };
        if before == 0 {
            return Some(format!("was {}", format_duration(Duration::ZERO)));
        }
        let change = (ms as f64 - before as f64) / before as f64 * 100.0;
        Some(match change.round() as i64 {
            0 => "±0 %".to_owned(),
            up @ 1.. => format!(
                "+{up} % (was {})",
                format_duration(Duration::from_millis(before))
            ),
            down => format!(
                "−{} % (was {})",
                -down,
                format_duration(Duration::from_millis(before))
            ),
        })
    }

    /// What early flake detection did, for the job summary: per suite, how many new tests ran
    /// several times (and which of them were flaky) and how many ran once, over the share.
    pub fn new_tests_markdown(&self) -> String {
        let checks: Vec<_> = self
            .new_tests
            .iter()
            .filter(|c| !c.checked.is_empty() || c.unchecked > 0)
            .collect();
        if checks.is_empty() {
            return String::new();
        }
        let mut page = String::from("\n#### New tests\n\n");
        for check in checks {
            let flaky = self
                .tests
                .iter()
                .filter(|r| {
                    r.suite == check.suite
                        && r.status() == FinalStatus::Flaky
                        && check.checked.contains(&key_of(r))
                })
                .count();
            page.push_str(&format!(
                "- {}: {} new tests ran {} times each, on different workers where there were; \
                 {flaky} of them flaky.",
                super::per_test::cell(&check.suite),
                check.checked.len(),
                check.runs
            ));
            if check.unchecked > 0 {
                page.push_str(&format!(
                    " {} more ran once: their repeats would have taken more than {} of the \
                     suite's time (`new-test-share`).",
                    check.unchecked,
                    percent(f64::from(check.share_bp) / 10_000.0)
                ));
            }
            page.push('\n');
        }
        page
    }

    /// The one notice of a run that ran quarantined tests: how many, and how many of them did
    /// not pass.
    pub fn quarantine_notice(&self) -> Option<String> {
        let quarantined: Vec<&TestRecord> = self
            .tests
            .iter()
            .filter(|r| self.quarantine_of(r).is_some())
            .collect();
        if quarantined.is_empty() {
            return None;
        }
        let failed = quarantined
            .iter()
            .filter(|r| quarantined_outcome(r.status()) != "passed")
            .count();
        Some(format!(
            "::notice title=quarantined tests::{} quarantined tests ran; {failed} did not pass and \
             did not fail the run (see the job summary)",
            quarantined.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::quarantine::QuarantinePolicy;
    use crate::history::results::{TestOutcome, TestStatus as Outcome};
    use crate::suite::TestStatus;
    use crate::suite::result::tests::record;

    /// A run of `broken` (failing, quarantined by hand), `slow` (measured at 10 ms before,
    /// 20 ms now) and `fresh` (never seen), with the history around it.
    fn report() -> RunReport {
        let tests = vec![
            record("g", "broken", &[TestStatus::Failed]),
            record("g", "slow", &[TestStatus::Passed]),
            record("g", "fresh", &[TestStatus::Passed]),
        ];
        let mut before = Timings::default();
        let passed = |ms| TestOutcome {
            status: Outcome::Passed,
            duration_ms: Some(ms),
            attempt: 1,
        };
        let (slow, broken) = (key_of(&tests[1]), key_of(&tests[0]));
        let failed = TestOutcome {
            status: Outcome::Failed,
            ..passed(5)
        };
        before.record_run(None, [(&slow, &passed(5)), (&broken, &failed)]);
        let mut after = before.clone();
        after.record_run(None, [(&slow, &passed(20)), (&broken, &failed)]);
        let policy = QuarantinePolicy {
            tests: ["g broken".to_owned()].into(),
            ..QuarantinePolicy::default()
        };
        let quarantined = Quarantined::of(&before, [("s", &policy)]);
        RunReport {
            tests,
            history: Some(ReportHistory {
                before,
                after,
                quarantined,
                known: true,
            }),
            ..RunReport::default()
        }
    }

    #[test]
    fn a_quarantined_failure_fails_nothing_and_is_told_once() {
        let report = report();
        let summary = report.test_summary();
        assert_eq!(
            (summary.failed, summary.quarantined, summary.passed),
            (0, 1, 2)
        );
        assert_eq!(summary.failing(super::super::FlakyResult::Fail), 0);
        let annotations = report.test_annotations();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert!(annotations[0].starts_with("::notice title=quarantined tests::1 quarantined"));
        assert!(report.failed_tests_text().is_none());
        let json = report.to_json();
        assert_eq!(json["tests"][0]["status"], "quarantined");
        assert_eq!(json["tests"][0]["outcome"], "failed");
        assert_eq!(json["tests"][0]["runs_seen"], 2);
        assert!(
            report
                .to_junit()
                .contains("<property name=\"quarantined\" value=\"true\"/>")
        );
        let page = report.tests_markdown();
        assert!(
            page.contains("| s | g broken | failed | 0 % | 2 | by hand |"),
            "{page}"
        );
    }

    #[test]
    fn an_id_quarantined_by_hand_that_no_test_has_is_named_in_the_summary() {
        let mut report = report();
        let page = report.tests_markdown();
        assert!(!page.contains("not in this run"), "{page}");
        let policy = QuarantinePolicy {
            tests: ["g broken".to_owned(), "g brokn".to_owned()].into(),
            ..QuarantinePolicy::default()
        };
        let history = report.history.as_mut().unwrap();
        history.quarantined = Quarantined::of(&history.before, [("s", &policy)]);
        let page = report.tests_markdown();
        assert!(page.contains("| s | g broken | failed |"), "{page}");
        assert!(
            page.contains("1 test(s) quarantined by hand are not in this run")
                && page.contains("`s: g brokn`"),
            "{page}"
        );
    }
    #[test]
    fn the_trend_compares_this_run_with_the_estimate_before_it() {
        let report = report();
        let trend = |i: usize| report.trend(&report.tests[i], 20);
        assert_eq!(trend(1).as_deref(), Some("+300 % (was 5ms)"));
        assert_eq!(trend(2).as_deref(), Some("new"));
        assert_eq!(trend(0).as_deref(), Some("–"), "seen, never passed");
        let without = RunReport {
            history: None,
            ..report.clone()
        };
        assert_eq!(without.trend(&report.tests[1], 20), None);
    }

    #[test]
    fn rates_read_as_percentages() {
        assert_eq!(percent(0.3), "30 %");
        assert_eq!(percent(1.0 / 30.0), "3.3 %");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(quarantined_outcome(FinalStatus::TimedOut), "failed");
        assert_eq!(quarantined_outcome(FinalStatus::NotRun), "error");
    }
}
