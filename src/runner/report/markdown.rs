//! The job summary: a markdown page for `$GITHUB_STEP_SUMMARY` that says at a glance how the
//! run went, lists what did not pass, and stays far below GitHub's 1 MiB cap at any size.

use std::time::Duration;

use super::{JobReport, RunReport, Summary, TestSummary, one_line};
use crate::duration::format_duration;
use crate::proto::JobStatus;

/// Rows per table at most; two tables of this many stay well under 1 MiB with the cell
/// limits below.
const MAX_ROWS: usize = 500;

/// Characters of a job name, worker name or error shown in a cell at most.
const MAX_CELL_CHARS: usize = 80;

/// The table header, shared by both tables.
const TABLE_HEAD: &str =
    "| Job | Status | Attempts | Duration | Worker |\n| --- | --- | ---: | ---: | --- |\n";

impl RunReport {
    /// The job summary: a headline, the counts and wall time, a table of the jobs that did
    /// not pass, and all jobs (slowest first) in a collapsed `<details>`. Each table shows at
    /// most 500 rows and says how many it left out.
    pub fn to_markdown(&self) -> String {
        let summary = self.summary();
        let tests = self.test_summary();
        let mut page = format!(
            "## {}\n\n{}\n\n",
            headline(&summary, &tests),
            counts(self, &summary, &tests)
        );
        let problems: Vec<&JobReport> = self
            .jobs
            .iter()
            .filter(|job| {
                matches!(
                    job.status,
                    JobStatus::Failed | JobStatus::TimedOut | JobStatus::Error
                )
            })
            .collect();
        if !problems.is_empty() {
            page.push_str("### Jobs that did not pass\n\n");
            push_table(&mut page, &problems);
        }
        if !self.jobs.is_empty() {
            let mut all: Vec<&JobReport> = self.jobs.iter().collect();
            all.sort_by_key(|job| std::cmp::Reverse(job.duration_ms));
            page.push_str(&format!(
                "<details><summary>All {} jobs, slowest first</summary>\n\n",
                all.len()
            ));
            push_table(&mut page, &all);
            page.push_str("</details>\n");
        }
        page.push_str(&self.tests_markdown());
        page
    }
}

/// One line saying how the run went, counting a run's tests beside its jobs (a run of suites
/// alone has tests and no jobs).
fn headline(summary: &Summary, tests: &TestSummary) -> String {
    let total = summary.total + tests.total;
    let not_passed = summary.not_passed() + tests.failed + tests.errors;
    let what = noun(summary.total, tests.total);
    if not_passed > 0 {
        format!("❌ cluster-action: {not_passed} of {total} {what} did not pass")
    } else if summary.cancelled > 0 {
        format!(
            "🚫 cluster-action: cancelled, {} of {total} {what} did not finish",
            summary.cancelled
        )
    } else if total == 0 {
        "cluster-action: nothing ran".to_owned()
    } else if tests.skipped > 0 {
        format!(
            "✅ cluster-action: all {} {what} passed, {} skipped",
            total - tests.skipped,
            tests.skipped
        )
    } else {
        format!("✅ cluster-action: all {total} {what} passed")
    }
}

/// What the headline counts: jobs, tests, or both.
fn noun(jobs: usize, tests: usize) -> &'static str {
    match (jobs, tests) {
        (1, 0) => "job",
        (_, 0) => "jobs",
        (0, 1) => "test",
        (0, _) => "tests",
        _ => "jobs and tests",
    }
}

/// The count of each outcome that occurred (passed always), and the wall time: of the jobs,
/// or of the tests in a run of suites alone (its jobs' counts would be all zero).
fn counts(report: &RunReport, summary: &Summary, tests: &TestSummary) -> String {
    let (passed, others) = match (summary.total, tests.total) {
        (0, 1..) => (
            tests.passed,
            [
                (tests.failed, "❌ {} failed"),
                (tests.flaky, "🔁 {} flaky"),
                (tests.skipped, "⏭️ {} skipped"),
                (tests.errors, "💥 {} errors"),
            ],
        ),
        _ => (
            summary.passed,
            [
                (summary.failed, "❌ {} failed"),
                (summary.timed_out, "⏱️ {} timed out"),
                (summary.errors, "💥 {} could not run"),
                (summary.cancelled, "🚫 {} cancelled"),
            ],
        ),
    };
    let mut parts = vec![format!("✅ {passed} passed")];
    for (count, label) in others {
        if count > 0 {
            parts.push(label.replace("{}", &count.to_string()));
        }
    }
    parts.push(format!(
        "🕒 {} wall time",
        format_duration(Duration::from_millis(report.wall_ms))
    ));
    parts.join(" · ")
}

/// Appends a table of `jobs`, cut at [`MAX_ROWS`] with a note of how many were left out.
fn push_table(page: &mut String, jobs: &[&JobReport]) {
    page.push_str(TABLE_HEAD);
    for job in jobs.iter().take(MAX_ROWS) {
        page.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            cell(&job.name),
            status_cell(job),
            job.attempts_of()
                .unwrap_or_else(|| job.attempts.to_string()),
            if job.attempts > 0 {
                job.duration()
            } else {
                "–".to_owned()
            },
            cell(&job.worker)
        ));
    }
    if jobs.len() > MAX_ROWS {
        page.push_str(&format!(
            "\n_{} more not shown; the JSON report lists every job._\n",
            jobs.len() - MAX_ROWS
        ));
    }
    page.push('\n');
}

/// The status with its emoji, and for problems the short reason.
fn status_cell(job: &JobReport) -> String {
    match job.status {
        JobStatus::Passed => "✅ passed".to_owned(),
        JobStatus::Failed => match job.exit_code {
            Some(code) => format!("❌ failed (exit {code})"),
            None => "❌ failed (signal)".to_owned(),
        },
        JobStatus::TimedOut => format!("⏱️ timed out ({})", job.timeout()),
        JobStatus::Error => match &job.error {
            Some(why) => format!("💥 could not run: {}", cell(why)),
            None => "💥 could not run".to_owned(),
        },
        JobStatus::Cancelled => "🚫 cancelled".to_owned(),
    }
}

/// Untrusted text as a table cell: on one line, cut to [`MAX_CELL_CHARS`], every ASCII
/// punctuation character backslash-escaped so that no markdown or HTML in it takes effect.
fn cell(text: &str) -> String {
    let text = one_line(text);
    let mut escaped = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CELL_CHARS {
            escaped.push('…');
            break;
        }
        if c.is_ascii_punctuation() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table_or_inject_markup() {
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(cell("<img src=x>"), "\\<img src\\=x\\>");
        assert_eq!(cell("line\nbreak"), "line break");
        assert_eq!(cell("**bold** [l](u)"), "\\*\\*bold\\*\\* \\[l\\]\\(u\\)");
        let long = cell(&"é".repeat(200));
        assert_eq!(long.chars().count(), MAX_CELL_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn the_headline_counts_the_tests_of_a_run_of_suites_alone() {
        let no_jobs = Summary::default();
        let tests = TestSummary {
            total: 7,
            passed: 5,
            failed: 1,
            flaky: 1,
            ..TestSummary::default()
        };
        assert_eq!(
            headline(&no_jobs, &tests),
            "❌ cluster-action: 1 of 7 tests did not pass"
        );
        let green = TestSummary {
            failed: 0,
            skipped: 1,
            ..tests
        };
        assert_eq!(
            headline(&no_jobs, &green),
            "✅ cluster-action: all 6 tests passed, 1 skipped"
        );
        let one_job = Summary {
            total: 1,
            passed: 1,
            ..Summary::default()
        };
        assert_eq!(
            headline(&one_job, &green),
            "✅ cluster-action: all 7 jobs and tests passed, 1 skipped"
        );
        assert_eq!(
            headline(&one_job, &TestSummary::default()),
            "✅ cluster-action: all 1 job passed"
        );
        assert_eq!(
            headline(&no_jobs, &TestSummary::default()),
            "cluster-action: nothing ran"
        );
    }
}
