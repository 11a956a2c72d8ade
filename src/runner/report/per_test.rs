//! Reports per test, for the run's suites: counts, which tests fail the run (`--flaky-result`),
//! the annotations (the first failures, one warning per flaky test) and the job summary's lists
//! (failures, flaky tests, the slowest tests).

use super::github::{escape_data, escape_property};
use super::{RunReport, one_line};
use crate::duration::format_duration;
use crate::suite::FinalStatus;
use crate::suite::TestRecord;

/// At most this many `::error` annotations: GitHub shows about 10 per step.
pub const MAX_ERROR_ANNOTATIONS: usize = 10;
/// The job summary lists this many of the slowest tests.
const SLOWEST: usize = 10;

/// Whether a test that passed only on a retry passes the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FlakyResult {
    /// It passes (and is flagged).
    #[default]
    Pass,
    /// It fails the run.
    Fail,
}

/// How many tests ended each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestSummary {
    /// Tests in all suites.
    pub total: usize,
    /// Passed on their first attempt.
    pub passed: usize,
    /// Failed on every attempt.
    pub failed: usize,
    /// Failed, then passed on a retry.
    pub flaky: usize,
    /// Skipped by their framework.
    pub skipped: usize,
    /// Could not run, or never finished.
    pub errors: usize,
}

impl TestSummary {
    /// Tests that fail the run under `flaky`.
    pub fn failing(&self, flaky: FlakyResult) -> usize {
        self.failed
            + self.errors
            + match flaky {
                FlakyResult::Pass => 0,
                FlakyResult::Fail => self.flaky,
            }
    }
}

/// Whether a test ended failed or in error.
fn is_failure(record: &TestRecord) -> bool {
    matches!(
        record.status(),
        FinalStatus::Failed | FinalStatus::TimedOut | FinalStatus::Error
    )
}

/// The last attempt's message of a record, on one line.
fn message(record: &TestRecord) -> String {
    record
        .entry()
        .message
        .map_or_else(String::new, |m| one_line(&m))
}

impl RunReport {
    /// The counts of the suites' tests.
    pub fn test_summary(&self) -> TestSummary {
        let mut s = TestSummary {
            total: self.tests.len(),
            ..TestSummary::default()
        };
        for record in &self.tests {
            *match record.status() {
                FinalStatus::Passed => &mut s.passed,
                // A test stopped at its timeout failed; its entry says `timed_out`.
                FinalStatus::Failed | FinalStatus::TimedOut => &mut s.failed,
                FinalStatus::Flaky => &mut s.flaky,
                FinalStatus::Skipped => &mut s.skipped,
                FinalStatus::Error | FinalStatus::NotRun => &mut s.errors,
            } += 1;
        }
        s
    }

    /// GitHub annotations for the tests: an `::error` for each of the first
    /// [`MAX_ERROR_ANNOTATIONS`] failures (the rest counted in a `::notice`), a `::warning`
    /// for each flaky test.
    pub fn test_annotations(&self) -> Vec<String> {
        let failures: Vec<&TestRecord> = self.tests.iter().filter(|r| is_failure(r)).collect();
        let mut lines: Vec<String> = failures
            .iter()
            .take(MAX_ERROR_ANNOTATIONS)
            .map(|r| {
                format!(
                    "::error title={}::{} {}",
                    escape_property(&format!("{}: {}", r.suite, r.case.id)),
                    r.status().name(),
                    escape_data(&message(r))
                )
            })
            .collect();
        if failures.len() > MAX_ERROR_ANNOTATIONS {
            lines.push(format!(
                "::notice::{} more failed tests: see the job summary",
                failures.len() - MAX_ERROR_ANNOTATIONS
            ));
        }
        lines.extend(
            self.tests
                .iter()
                .filter(|r| r.status() == FinalStatus::Flaky)
                .map(|r| {
                    format!(
                        "::warning title={}::flaky: failed, then passed on a retry",
                        escape_property(&format!("{}: {}", r.suite, r.case.id))
                    )
                }),
        );
        lines
    }

    /// The job summary's part on tests: counts, failures, flaky tests and the slowest tests.
    pub fn tests_markdown(&self) -> String {
        if self.tests.is_empty() {
            return String::new();
        }
        let s = self.test_summary();
        let mut page = format!(
            "\n### Tests\n\n{} tests: {} passed, {} failed, {} flaky, {} skipped, {} errors\n",
            s.total, s.passed, s.failed, s.flaky, s.skipped, s.errors
        );
        let row = |r: &TestRecord| {
            format!(
                "| {} | {} | {} | {} |\n",
                cell(&r.suite),
                cell(&r.case.id),
                r.status().name(),
                cell(&message(r))
            )
        };
        let lists: [(&str, Vec<&TestRecord>); 2] = [
            (
                "Failures",
                self.tests.iter().filter(|r| is_failure(r)).collect(),
            ),
            (
                "Flaky tests",
                self.tests
                    .iter()
                    .filter(|r| r.status() == FinalStatus::Flaky)
                    .collect(),
            ),
        ];
        for (title, records) in lists {
            if records.is_empty() {
                continue;
            }
            page.push_str(&format!(
                "\n#### {title}\n\n| suite | test | status | message |\n|---|---|---|---|\n"
            ));
            for record in records {
                page.push_str(&row(record));
            }
        }
        let mut slowest: Vec<(&TestRecord, u64)> = self
            .tests
            .iter()
            .map(|r| (r, r.entry().duration_ms))
            .collect();
        slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
        page.push_str("\n#### Slowest tests\n\n| suite | test | time |\n|---|---|---|\n");
        for (record, ms) in slowest.into_iter().take(SLOWEST) {
            page.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&record.suite),
                cell(&record.case.id),
                format_duration(std::time::Duration::from_millis(ms))
            ));
        }
        page
    }
}

/// `text` as one markdown table cell.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}
