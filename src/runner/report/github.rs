//! What the runner writes to a CI log: one line per finished job, `::error` annotations on the
//! run page, and each job's output in a collapsible group that it cannot escape from; and the
//! action's step outputs, in the form `$GITHUB_OUTPUT` reads.
//!
//! GitHub reads lines starting with `::` as workflow commands, so untrusted text is escaped
//! (messages and properties) or fenced with `::stop-commands::` (job output).

use super::{JobReport, Summary, TestSummary, last_lines, one_line, without_escapes};
use std::collections::BTreeSet;
use std::path::Path;

use crate::proto::JobStatus;
use crate::runner::manifest::Manifest;

/// `::add-mask::` commands for the values of the jobs' `secret-env` variables (each line of a
/// multi-line value, as GitHub masks line by line), each value once, so that GitHub hides
/// them wherever they would appear in this job's log.
pub fn add_masks(manifest: &Manifest) -> Vec<String> {
    let values: BTreeSet<&str> = manifest
        .jobs
        .iter()
        .flat_map(|job| job.secret_env.0.values())
        .flat_map(|value| value.lines())
        .filter(|line| !line.trim().is_empty())
        .collect();
    values
        .into_iter()
        .map(|value| format!("::add-mask::{value}"))
        .collect()
}

/// Lines of output quoted in an annotation.
const ANNOTATION_LINES: usize = 20;

/// One line for a finished job: `PASS unit-1 (1.2s, worker w-2)`,
/// `FAIL unit-3 exit 1 (attempt 2/2, 0.3s, worker w-1)`, `TIMEOUT unit-4 after 10m (10m, worker w-1)`,
/// `ERROR unit-5: why (...)`, `CANCEL unit-6`.
pub fn ci_line(job: &JobReport) -> String {
    let (word, detail) = match job.status {
        JobStatus::Passed => ("PASS", String::new()),
        JobStatus::Failed => match job.exit_code {
            Some(code) => ("FAIL", format!(" exit {code}")),
            None => ("FAIL", " killed by a signal".to_owned()),
        },
        JobStatus::TimedOut => ("TIMEOUT", format!(" after {}", job.timeout())),
        JobStatus::Error => (
            "ERROR",
            job.error
                .as_deref()
                .map_or_else(String::new, |why| format!(": {why}")),
        ),
        JobStatus::Cancelled => ("CANCEL", String::new()),
    };
    let mut facts = Vec::new();
    if let Some(attempts) = job.attempts_of() {
        facts.push(format!("attempt {attempts}"));
    }
    if job.attempts > 0 {
        facts.push(job.duration());
    }
    if !job.worker.is_empty() {
        facts.push(format!("worker {}", job.worker));
    }
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join(", "))
    };
    one_line(&format!("{word} {}{detail}{facts}", job.name))
}

/// An `::error` annotation for a job that failed, timed out or could not run, quoting the end
/// of its output; `None` for a job that passed or was cancelled.
pub fn annotation(job: &JobReport) -> Option<String> {
    let trouble = match job.status {
        JobStatus::Passed | JobStatus::Cancelled => return None,
        JobStatus::Failed => "failed",
        JobStatus::TimedOut => "timed out",
        JobStatus::Error => "could not run",
    };
    let mut message = format!("job '{}' {}", job.name, job.describe());
    if !job.worker.is_empty() {
        message.push_str(&format!(" on worker {}", job.worker));
    }
    if let Some(attempts) = job.attempts_of() {
        message.push_str(&format!(" (attempt {attempts})"));
    }
    let output = without_escapes(&job.output);
    let tail = last_lines(&output, ANNOTATION_LINES);
    if !tail.trim().is_empty() {
        message.push_str("\n\n");
        message.push_str(tail.trim_end());
    }
    Some(format!(
        "::error title={}::{}",
        escape_property(&format!("{} {trouble}", job.name)),
        escape_data(&message)
    ))
}

/// The job's output in a collapsible log group titled with its [`ci_line`]. The output is
/// [`fenced`], so nothing it prints can end the group or run a workflow command.
pub fn group(job: &JobReport) -> String {
    let output = match job.output.as_str() {
        "" => "(no output)",
        output => output,
    };
    format!(
        "::group::{}\n{}::endgroup::\n",
        escape_data(&ci_line(job)),
        fenced(output)
    )
}

/// Untrusted lines for a GitHub log (a test's id and message, a job's output), fenced with
/// `::stop-commands::<token>` … `::<token>::`, with a fresh random token they do not contain,
/// so that no line of them runs a workflow command (GitHub reads one in any line that starts
/// with `::` after spaces, or holds `##[`).
pub fn fenced(text: &str) -> String {
    let token = loop {
        let token = format!("{:032x}", rand::random::<u128>());
        if !text.contains(&token) {
            break token;
        }
    };
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("::stop-commands::{token}\n{text}{newline}::{token}::\n")
}

/// The action's step outputs of a run, named as action.yml declares them: jobs and tests that
/// passed (flaky tests included), that did not pass because of themselves (failed, timed out,
/// an error; cancelled ones are not failures), all of them, and the reports written (empty
/// when one was not).
pub fn step_outputs(
    jobs: &Summary,
    tests: &TestSummary,
    json: Option<&Path>,
    junit: Option<&Path>,
) -> [(&'static str, String); 5] {
    let path = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
    [
        (
            "passed",
            (jobs.passed + tests.passed + tests.flaky).to_string(),
        ),
        (
            "failed",
            (jobs.not_passed() + tests.failed + tests.errors).to_string(),
        ),
        ("total", (jobs.total + tests.total).to_string()),
        ("report-json", path(json)),
        ("report-junit", path(junit)),
    ]
}

/// Outputs in the `$GITHUB_OUTPUT` file's delimiter form (`name<<DELIMITER`, the value, the
/// delimiter), each delimiter random and absent from its value, so no value can end early or
/// set another output.
pub fn output_file_text(outputs: &[(&str, String)]) -> String {
    let mut text = String::new();
    for (name, value) in outputs {
        let delimiter = loop {
            let delimiter = format!("ghadelimiter_{:032x}", rand::random::<u128>());
            if !value.contains(&delimiter) {
                break delimiter;
            }
        };
        text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
    }
    text
}

/// Escapes the message of a workflow command.
pub(super) fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command.
pub(super) fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}
