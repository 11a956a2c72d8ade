//! Reports per test, for the run's suites: counts, which tests fail the run (`--flaky-result`),
//! the annotations (the first failures, one warning per flaky test), the job summary's lists
//! (failures, flaky tests, the slowest tests), the log's line for a test as it ends and the
//! list of the tests that did not pass at the end of the log.

use super::github::{escape_data, escape_property};
use super::{RunReport, one_line, without_escapes};
use crate::duration::format_duration;
use crate::runner::suite_run::{TestEnded, TestFinished};
use crate::suite::FinalStatus;
use crate::suite::{TestRecord, TestStatus};

/// At most this many `::error` annotations: GitHub shows about 10 per step.
pub const MAX_ERROR_ANNOTATIONS: usize = 10;
/// The job summary lists this many of the slowest tests.
const SLOWEST: usize = 10;
/// The end of the log names this many of the tests that did not pass at most.
const MAX_LISTED_FAILURES: usize = 100;
/// Lines of a test's message the end of the log shows at most.
const MESSAGE_LINES: usize = 5;
/// Characters of one line of a message shown in the log at most.
const MAX_LINE_CHARS: usize = 200;

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
    /// Quarantined (whatever they did: their failure fails no run), counted here alone.
    pub quarantined: usize,
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

impl RunReport {
    /// Whether `record`'s failure counts against the run: it failed and is not quarantined.
    fn fails(&self, record: &TestRecord) -> bool {
        is_failure(record) && self.quarantine_of(record).is_none()
    }

    /// Whether `record`'s test was flaky and is not quarantined.
    fn flagged_flaky(&self, record: &TestRecord) -> bool {
        record.status() == FinalStatus::Flaky && self.quarantine_of(record).is_none()
    }
}

/// The last attempt's message of a record, on one line.
fn message(record: &TestRecord) -> String {
    record
        .entry()
        .message
        .map_or_else(String::new, |m| one_line(&m))
}

/// One line for a test's attempt as it ends, for the log: `FAILED suite: id - message`,
/// `ERROR …`, `RETRY suite: id (attempt 1) - message` for a failure that runs again, `FLAKY
/// suite: id (passed on attempt 2)`; the message's first line only. `None` for a test that
/// passed (a new test running again too) or was skipped: the progress counts it.
pub fn test_line(ended: &TestEnded) -> Option<String> {
    let (word, note) = match ended.outcome {
        // A new test checked for flakiness passed and runs again: the progress counts it.
        None if ended.status == TestStatus::Passed => return None,
        None => ("RETRY", Some(format!("attempt {}", ended.attempt))),
        Some(FinalStatus::Passed | FinalStatus::Skipped) => return None,
        Some(FinalStatus::Flaky) => {
            let note = format!("passed on attempt {}", ended.attempt);
            return Some(named_line(
                "FLAKY",
                &ended.suite,
                &ended.id,
                Some(&note),
                None,
            ));
        }
        Some(FinalStatus::Failed) => ("FAILED", None),
        Some(FinalStatus::TimedOut) => ("TIMEOUT", None),
        Some(FinalStatus::Error | FinalStatus::NotRun) => ("ERROR", None),
    };
    let note = note.or_else(|| (ended.attempt > 1).then(|| format!("attempt {}", ended.attempt)));
    let message = ended.message.as_deref().or(match ended.status {
        TestStatus::NotRun => Some("its batch stopped before it finished"),
        _ => None,
    });
    let first = message.and_then(|m| message_lines(m).into_iter().next());
    Some(named_line(
        word,
        &ended.suite,
        &ended.id,
        note.as_deref(),
        first.as_deref(),
    ))
}

/// `WORD suite: id (note) - message`, on one line.
/// The line progress shows for a test a running batch reported: its status as the framework
/// said it, its run time, its suite and id (`   PASS    [0.52s] pytest: tests/a.py::t`).
pub fn finished_line(test: &TestFinished) -> String {
    let word = match test.status {
        TestStatus::Passed => "PASS",
        TestStatus::Failed => "FAIL",
        TestStatus::Skipped => "SKIP",
        TestStatus::TimedOut => "TIMEOUT",
        TestStatus::Error | TestStatus::NotRun => "ERROR",
    };
    // A framework that streams no run times (pytest's progress lines) shows none.
    let time = match test.duration_ms {
        0 => String::new(),
        ms => format!("[{:.2}s]", ms as f64 / 1000.0),
    };
    one_line(&format!("{word:>7} {time:>10} {}: {}", test.suite, test.id))
}

fn named_line(
    word: &str,
    suite: &str,
    id: &str,
    note: Option<&str>,
    message: Option<&str>,
) -> String {
    let mut line = format!("{word} {suite}: {id}");
    if let Some(note) = note {
        line.push_str(&format!(" ({note})"));
    }
    if let Some(message) = message {
        line.push_str(&format!(" - {message}"));
    }
    one_line(&line)
}

/// The lines of a framework's message worth showing: without escape sequences or blank lines,
/// each cut to [`MAX_LINE_CHARS`].
fn message_lines(message: &str) -> Vec<String> {
    without_escapes(message)
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.char_indices().nth(MAX_LINE_CHARS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        })
        .collect()
}

impl RunReport {
    /// The tests that failed or could not run, as a framework's short summary lists them at the
    /// end of its log: a heading, then a `FAILED suite: id - message` line per test (the first
    /// [`MAX_LISTED_FAILURES`]), with the next lines of its message indented under it (at
    /// most [`MESSAGE_LINES`] in all). `None` when every test passed.
    pub fn failed_tests_text(&self) -> Option<String> {
        let failures: Vec<&TestRecord> = self.tests.iter().filter(|r| self.fails(r)).collect();
        if failures.is_empty() {
            return None;
        }
        let mut text = format!(
            "=== tests that did not pass: {} of {} ===\n",
            failures.len(),
            self.tests.len()
        );
        for record in failures.iter().take(MAX_LISTED_FAILURES) {
            let entry = record.entry();
            let word = match record.status() {
                FinalStatus::Failed => "FAILED",
                FinalStatus::TimedOut => "TIMEOUT",
                _ => "ERROR",
            };
            let attempts = (entry.attempts > 1).then(|| format!("{} attempts", entry.attempts));
            let mut lines = entry
                .message
                .as_deref()
                .map(message_lines)
                .unwrap_or_default()
                .into_iter();
            let first = lines.next();
            text.push_str(&named_line(
                word,
                &record.suite,
                &record.case.id,
                attempts.as_deref(),
                first.as_deref(),
            ));
            text.push('\n');
            for line in lines.take(MESSAGE_LINES - 1) {
                text.push_str(&format!("    {}\n", one_line(&line)));
            }
        }
        if failures.len() > MAX_LISTED_FAILURES {
            text.push_str(&format!(
                "… and {} more: the JSON report and the job summary list every test\n",
                failures.len() - MAX_LISTED_FAILURES
            ));
        }
        Some(text)
    }

    /// The counts of the suites' tests.
    pub fn test_summary(&self) -> TestSummary {
        let mut s = TestSummary {
            total: self.tests.len(),
            ..TestSummary::default()
        };
        for record in &self.tests {
            if self.quarantine_of(record).is_some() {
                s.quarantined += 1;
                continue;
            }
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
    /// for each flaky test, and one `::notice` for the quarantined tests that ran.
    pub fn test_annotations(&self) -> Vec<String> {
        let failures: Vec<&TestRecord> = self.tests.iter().filter(|r| self.fails(r)).collect();
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
                .filter(|r| self.flagged_flaky(r))
                .map(|r| {
                    format!(
                        "::warning title={}::flaky: failed, then passed on a retry",
                        escape_property(&format!("{}: {}", r.suite, r.case.id))
                    )
                }),
        );
        lines.extend(self.quarantine_notice());
        lines
    }

    /// The job summary's part on tests: counts, failures, flaky tests and the slowest tests.
    pub fn tests_markdown(&self) -> String {
        if self.tests.is_empty() {
            return String::new();
        }
        let s = self.test_summary();
        let mut page = format!(
            "\n### Tests\n\n{} tests: {} passed, {} failed, {} flaky, {} skipped, {} errors",
            s.total, s.passed, s.failed, s.flaky, s.skipped, s.errors
        );
        if s.quarantined > 0 {
            page.push_str(&format!(", {} quarantined", s.quarantined));
        }
        page.push('\n');
        for failure in &self.suite_failures {
            let fence = "`".repeat(longest_backtick_run(&failure.output).max(2) + 1);
            page.push_str(&format!(
                "\n#### Suite {} stopped\n\n{}; its framework printed:\n\n{fence}text\n{}\n{fence}\n",
                cell(&failure.suite),
                cell(&failure.reason),
                failure.output
            ));
        }
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
                self.tests.iter().filter(|r| self.fails(r)).collect(),
            ),
            (
                "Flaky tests",
                self.tests
                    .iter()
                    .filter(|r| self.flagged_flaky(r))
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
        page.push_str(&self.quarantine_markdown());
        page.push_str(&self.new_tests_markdown());
        page.push_str(&self.flakiest_markdown());
        let mut slowest: Vec<(&TestRecord, u64)> = self
            .tests
            .iter()
            .map(|r| (r, r.entry().duration_ms))
            .collect();
        slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
        let with_trend = self.history.as_ref().is_some_and(|h| h.known);
        page.push_str(match with_trend {
            true => "\n#### Slowest tests\n\n| suite | test | time | trend |\n|---|---|---|---|\n",
            false => "\n#### Slowest tests\n\n| suite | test | time |\n|---|---|---|\n",
        });
        for (record, ms) in slowest.into_iter().take(SLOWEST) {
            let trend = self
                .trend(record, ms)
                .map_or_else(String::new, |t| format!(" {t} |"));
            page.push_str(&format!(
                "| {} | {} | {} |{trend}\n",
                cell(&record.suite),
                cell(&record.case.id),
                format_duration(std::time::Duration::from_millis(ms))
            ));
        }
        page
    }
}

/// The longest run of backticks in `text`, so that a code fence around it is longer.
fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `text` as one markdown table cell.
pub(super) fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}
