//! Reports of a run: what each job did, told to machines (JSON, JUnit XML), to people reading
//! the job summary (markdown) and to the CI log (one line per job, annotations, log groups).
//!
//! Everything here is a pure function of a [`RunReport`]; the runner decides where it goes,
//! after [`check_destinations`] has found that it can go there.

mod destinations;
mod github;
mod history;
mod json;
pub(crate) mod junit;
mod markdown;
mod per_test;

use std::time::Duration;

pub use destinations::check_destinations;
pub use github::{add_masks, annotation, ci_line, fenced, group, output_file_text, step_outputs};
pub use history::{ReportHistory, TestRecordView, quarantined_outcome};
pub use json::JsonReport;
pub use per_test::{FlakyResult, MAX_ERROR_ANNOTATIONS, TestSummary, finished_line, test_line};

use crate::duration::format_duration;
use crate::proto::{JobOutcome, JobSpec, JobStatus};

/// The result of a whole run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunReport {
    /// Every submitted job, in manifest order.
    pub jobs: Vec<JobReport>,
    /// Every test of the run's suites, in manifest and listing order.
    pub tests: Vec<crate::suite::TestRecord>,
    /// The suites whose batches stopped on a systematic failure, with what their framework
    /// printed.
    pub suite_failures: Vec<crate::runner::suite_run::SuiteFailure>,
    /// Per suite, what its batches that ran every test cost beyond them (for the timing
    /// history).
    pub batch_samples:
        std::collections::BTreeMap<String, Vec<crate::suite::batch_cost::BatchSample>>,
    /// Wall time of the run in milliseconds.
    pub wall_ms: u64,
    /// What the history says of the tests (quarantine, records), once the run is recorded.
    pub history: Option<ReportHistory>,
    /// Per suite with `detect-new-flakes`: the new tests run several times, and those run once.
    pub new_tests: Vec<crate::suite::new_tests::NewTestChecks>,
}

/// The final result of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// How its last attempt ended.
    pub status: JobStatus,
    /// The exit code of its last attempt, when the process exited.
    pub exit_code: Option<i32>,
    /// Attempts made (0 if it never started).
    pub attempts: u32,
    /// Attempts allowed: 1 + retries.
    pub max_attempts: u32,
    /// Wall time of its last attempt in milliseconds.
    pub duration_ms: u64,
    /// Its time limit per attempt in milliseconds.
    pub timeout_ms: u64,
    /// The worker that ran its last attempt (empty if none did).
    pub worker: String,
    /// Output files brought back, relative paths.
    pub outputs: Vec<String>,
    /// Captured stdout+stderr of its last attempt (a tail).
    pub output: String,
    /// Why it could not run, for [`JobStatus::Error`].
    pub error: Option<String>,
}

impl JobReport {
    /// The report of a job from its final outcome and the output files brought back.
    pub fn finished(spec: &JobSpec, outcome: &JobOutcome, outputs: Vec<String>) -> Self {
        Self {
            name: spec.name.clone(),
            status: outcome.status,
            exit_code: outcome.exit_code,
            attempts: outcome.attempt,
            max_attempts: spec.retries.saturating_add(1),
            duration_ms: outcome.duration_ms,
            timeout_ms: spec.timeout_ms,
            worker: outcome.worker.clone(),
            outputs,
            output: outcome.output.clone(),
            error: outcome.error.clone(),
        }
    }

    /// The report of a job that was cancelled before it got a final outcome.
    pub fn cancelled(spec: &JobSpec) -> Self {
        Self {
            name: spec.name.clone(),
            status: JobStatus::Cancelled,
            exit_code: None,
            attempts: 0,
            max_attempts: spec.retries.saturating_add(1),
            duration_ms: 0,
            timeout_ms: spec.timeout_ms,
            worker: String::new(),
            outputs: Vec::new(),
            output: String::new(),
            error: None,
        }
    }

    /// What happened, as a phrase that follows "job 'name' ": `passed`, `failed with exit
    /// code 1`, `timed out after 10m`, `could not run: ...`, `was cancelled`.
    pub fn describe(&self) -> String {
        match self.status {
            JobStatus::Passed => "passed".to_owned(),
            JobStatus::Failed => match self.exit_code {
                Some(code) => format!("failed with exit code {code}"),
                None => "failed without an exit code (killed by a signal)".to_owned(),
            },
            JobStatus::TimedOut => format!("timed out after {}", self.timeout()),
            JobStatus::Error => match &self.error {
                Some(why) => format!("could not run: {why}"),
                None => "could not run".to_owned(),
            },
            JobStatus::Cancelled => "was cancelled".to_owned(),
        }
    }

    /// `a/m` when more than one attempt was allowed or made, else `None`.
    fn attempts_of(&self) -> Option<String> {
        let allowed = self.max_attempts.max(self.attempts);
        (self.attempts > 0 && allowed > 1).then(|| format!("{}/{allowed}", self.attempts))
    }

    /// The duration of its last attempt, for people.
    fn duration(&self) -> String {
        format_duration(Duration::from_millis(self.duration_ms))
    }

    /// Its time limit, for people.
    fn timeout(&self) -> String {
        format_duration(Duration::from_millis(self.timeout_ms))
    }
}

/// How many jobs ended which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// All jobs.
    pub total: usize,
    /// [`JobStatus::Passed`].
    pub passed: usize,
    /// [`JobStatus::Failed`].
    pub failed: usize,
    /// [`JobStatus::TimedOut`].
    pub timed_out: usize,
    /// [`JobStatus::Error`].
    pub errors: usize,
    /// [`JobStatus::Cancelled`].
    pub cancelled: usize,
}

impl Summary {
    /// Jobs that failed, timed out or could not run.
    pub fn not_passed(&self) -> usize {
        self.failed + self.timed_out + self.errors
    }
}

impl RunReport {
    /// The counts of each outcome.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            total: self.jobs.len(),
            ..Summary::default()
        };
        for job in &self.jobs {
            *match job.status {
                JobStatus::Passed => &mut summary.passed,
                JobStatus::Failed => &mut summary.failed,
                JobStatus::TimedOut => &mut summary.timed_out,
                JobStatus::Error => &mut summary.errors,
                JobStatus::Cancelled => &mut summary.cancelled,
            } += 1;
        }
        summary
    }
}

impl RunReport {
    /// What never ran to an end, for the message of a run cut short: `3 of 4 job(s)`, `6 of 7
    /// test(s)` or both joined by `and` (a run's jobs, and its tests when it has suites). A job
    /// counts when no attempt of it ended, a test when no batch finished it.
    pub fn unfinished_counts(&self) -> String {
        let jobs = self.jobs.iter().filter(|job| job.attempts == 0).count();
        let tests = self
            .tests
            .iter()
            .filter(|record| {
                (record.attempts.iter()).all(|a| a.status == crate::suite::TestStatus::NotRun)
            })
            .count();
        let mut parts = Vec::new();
        if !self.jobs.is_empty() || self.tests.is_empty() {
            parts.push(format!("{jobs} of {} job(s)", self.jobs.len()));
        }
        if !self.tests.is_empty() {
            parts.push(format!("{tests} of {} test(s)", self.tests.len()));
        }
        parts.join(" and ")
    }
}

/// The name of a status in reports: `passed`, `failed`, `timed_out`, `error`, `cancelled`.
pub fn status_name(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Passed => "passed",
        JobStatus::Failed => "failed",
        JobStatus::TimedOut => "timed_out",
        JobStatus::Error => "error",
        JobStatus::Cancelled => "cancelled",
    }
}

/// The last `n` lines of `text` (all of it if it has fewer).
pub(crate) fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n - 1) {
        Some((newline, _)) => &text[newline + 1..],
        None => text,
    }
}

/// `text` without terminal escape sequences (colours, cursor moves, hyperlinks), for places
/// that do not render them: JUnit XML and annotations.
pub(crate) fn without_escapes(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            plain.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates up to a final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            // nF: intermediates in ' '..'/' up to a final byte, as in ESC ( B.
            Some(' '..='/') => {
                for c in chars.by_ref() {
                    if !(' '..='/').contains(&c) {
                        break;
                    }
                }
            }
            // Other two-character sequences.
            _ => {}
        }
    }
    plain
}

/// `text` on one line: control characters (newlines, tabs, escapes) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn escapes_are_removed() {
        let coloured = "\u{1b}[1;31merror\u{1b}[0m: see \u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{1b}\\ \u{1b}(Bdone";
        assert_eq!(without_escapes(coloured), "error: see link done");
    }
}
