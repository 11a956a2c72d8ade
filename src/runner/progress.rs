//! What a person sees while a run goes on: a progress bar on a terminal counting the tests and
//! jobs done, or one line per finished job in CI logs (with `::group::` output and `::error`
//! annotations on GitHub) and a line of counts per suite batch; in both, a line for each test
//! that failed as it happens.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::{self, JobReport};
use super::suite_run::{TestEnded, TestFinished};
use crate::proto::JobStatus;
use crate::suite::FinalStatus;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live bar on stderr (a terminal, not CI).
    Bar,
    /// One line per finished job on stdout (CI or no terminal).
    Lines {
        /// Also GitHub workflow commands (`::group::`, `::error`).
        github: bool,
    },
    /// Nothing (library use and tests).
    Quiet,
}

impl Mode {
    /// The bar on a terminal; lines when `CI` is set or stderr is not a terminal.
    pub fn detect() -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        if ci || github || !std::io::stderr().is_terminal() {
            Mode::Lines { github }
        } else {
            Mode::Bar
        }
    }
}

/// Progress of one run.
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    /// Where lines go (stdout; on a terminal, above the bar).
    out: Box<dyn Write + Send>,
    /// Where the bar is drawn (stderr) until [`Progress::begin`] draws it.
    bar_target: Option<ProgressDrawTarget>,
    counts: Counts,
}

/// What the bar and the CI log's lines of counts say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    jobs: usize,
    jobs_done: usize,
    tests: usize,
    tests_done: usize,
    /// Jobs and tests that passed.
    passed: usize,
    /// Tests that failed, then passed on a retry.
    flaky: usize,
    /// Jobs and tests that failed, timed out, could not run or were cancelled.
    not_passed: usize,
    /// Tests the framework skipped.
    skipped: usize,
    workers: u32,
}

impl Counts {
    /// `12/20 tests, 3/4 jobs: 14 passed, 1 not passed, 2 worker(s)` (and flaky and skipped
    /// tests when there are); a run without tests counts jobs alone, a run of suites alone
    /// counts tests alone.
    fn line(&self) -> String {
        let mut done = Vec::new();
        if self.tests > 0 {
            done.push(format!("{}/{} tests", self.tests_done, self.tests));
        }
        if self.jobs > 0 || self.tests == 0 {
            done.push(format!("{}/{} jobs", self.jobs_done, self.jobs));
        }
        let mut counts = vec![
            format!("{} passed", self.passed),
            format!("{} not passed", self.not_passed),
        ];
        for (n, what) in [(self.flaky, "flaky"), (self.skipped, "skipped")] {
            if n > 0 {
                counts.push(format!("{n} {what}"));
            }
        }
        format!(
            "{}: {}, {} worker(s)",
            done.join(", "),
            counts.join(", "),
            self.workers
        )
    }
}

impl Progress {
    /// Progress shown in `mode`, its lines on stdout.
    pub fn new(mode: Mode) -> Self {
        let stdout = Box::new(std::io::stdout());
        Self::writing_to(mode, stdout, ProgressDrawTarget::stderr())
    }

    /// Progress shown in `mode`, its lines written to `out`, its bar drawn on `bar_target`.
    fn writing_to(mode: Mode, out: Box<dyn Write + Send>, bar_target: ProgressDrawTarget) -> Self {
        Self {
            mode,
            bar: None,
            out,
            bar_target: Some(bar_target),
            counts: Counts::default(),
        }
    }

    /// The run's `jobs` were submitted and its suites list `tests` tests.
    pub fn begin(&mut self, jobs: usize, tests: usize) {
        self.counts.jobs = jobs;
        self.counts.tests = tests;
        if let (Mode::Bar, Some(target)) = (self.mode, self.bar_target.take()) {
            let bar = ProgressBar::with_draw_target(Some((jobs + tests) as u64), target);
            let style =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            self.bar = Some(bar);
            self.show_counts();
        }
    }

    /// The number of connected workers changed.
    pub fn workers(&mut self, workers: u32) {
        self.counts.workers = workers;
        self.show_counts();
    }

    /// An attempt started (shown only in debug logs).
    pub fn started(&mut self, name: &str, attempt: u32, worker: &str) {
        tracing::debug!(job = name, attempt, worker, "started");
    }

    /// A job has its final outcome.
    pub fn finished(&mut self, job: &JobReport) {
        self.counts.jobs_done += 1;
        if job.status == JobStatus::Passed {
            self.counts.passed += 1;
        } else {
            self.counts.not_passed += 1;
        }
        let failed = !matches!(job.status, JobStatus::Passed | JobStatus::Cancelled);
        let text = match self.mode {
            Mode::Quiet => return,
            Mode::Bar if failed => format!("{}\n{}", report::ci_line(job), job.output.trim_end()),
            Mode::Bar => String::new(),
            Mode::Lines { github } => {
                let mut text = report::ci_line(job);
                if failed && github {
                    text.push('\n');
                    text.push_str(report::group(job).trim_end());
                    if let Some(annotation) = report::annotation(job) {
                        text.push('\n');
                        text.push_str(&annotation);
                    }
                } else if failed {
                    text.push('\n');
                    text.push_str(job.output.trim_end());
                }
                text
            }
        };
        self.show_counts();
        if !text.is_empty() {
            self.print(&text);
        }
    }

    /// The attempts of a suite batch's tests ended: a test with its final outcome is counted,
    /// one that did not pass (or runs again) is named with its message; in CI logs a line of
    /// counts follows.
    pub fn tests_ended(&mut self, ended: &[TestEnded]) {
        for test in ended {
            match test.outcome {
                None => {}
                Some(FinalStatus::Passed) => self.counts.passed += 1,
                Some(FinalStatus::Flaky) => self.counts.flaky += 1,
                Some(FinalStatus::Skipped) => self.counts.skipped += 1,
                Some(
                    FinalStatus::Failed
                    | FinalStatus::TimedOut
                    | FinalStatus::Error
                    | FinalStatus::NotRun,
                ) => {
                    self.counts.not_passed += 1;
                }
            }
            self.counts.tests_done += usize::from(test.outcome.is_some());
        }
        self.show_counts();
        if self.mode == Mode::Quiet {
            return;
        }
        let lines: Vec<String> = ended.iter().filter_map(report::test_line).collect();
        let mut text = match (self.mode, lines.is_empty()) {
            (_, true) => String::new(),
            (Mode::Lines { github: true }, false) => report::fenced(&lines.join("\n")),
            (_, false) => lines.join("\n") + "\n",
        };
        if matches!(self.mode, Mode::Lines { .. }) {
            text.push_str(&self.counts.line());
        }
        if !text.is_empty() {
            self.print(text.trim_end());
        }
    }

    /// Tests a running batch reported finished: a line each, as they come (on a terminal,
    /// above the bar).
    pub fn tests_finished(&mut self, finished: &[TestFinished]) {
        if self.mode == Mode::Quiet || finished.is_empty() {
            return;
        }
        let lines: Vec<String> = finished.iter().map(report::finished_line).collect();
        let text = match self.mode {
            Mode::Lines { github: true } => report::fenced(&lines.join("\n")),
            _ => lines.join("\n"),
        };
        self.print(text.trim_end());
    }

    /// A problem worth the user's attention that does not stop the run.
    pub fn warn(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {msg}")),
            None => eprintln!("warning: {msg}"),
        }
    }

    /// The run is over: clear the bar.
    pub fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Writes `text` and a newline to the output, above the bar when there is one.
    fn print(&mut self, text: &str) {
        let out = &mut self.out;
        let mut write = || {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Shows the counts on the bar, with the bar's position.
    fn show_counts(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position((self.counts.jobs_done + self.counts.tests_done) as u64);
            bar.set_message(self.counts.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::suite::TestStatus;

    /// A writer whose text the test reads back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        /// What was written since the last call.
        fn take(&self) -> String {
            let bytes = std::mem::take(&mut *self.0.lock().expect("not poisoned"));
            String::from_utf8(bytes).expect("text")
        }
    }

    fn progress(mode: Mode) -> (Progress, Buffer) {
        let out = Buffer::default();
        let progress =
            Progress::writing_to(mode, Box::new(out.clone()), ProgressDrawTarget::hidden());
        (progress, out)
    }

    fn ended(
        id: &str,
        attempt: u32,
        status: TestStatus,
        outcome: Option<FinalStatus>,
    ) -> TestEnded {
        TestEnded {
            suite: "pytest".into(),
            id: id.into(),
            attempt,
            status,
            message: (status == TestStatus::Failed).then(|| "AssertionError: boom\nmore".into()),
            outcome,
        }
    }

    #[test]
    fn the_counts_name_tests_and_jobs_done_of_those_there_are() {
        let jobs = Counts {
            jobs: 4,
            jobs_done: 3,
            passed: 2,
            not_passed: 1,
            workers: 2,
            ..Counts::default()
        };
        assert_eq!(jobs.line(), "3/4 jobs: 2 passed, 1 not passed, 2 worker(s)");
        let tests = Counts {
            tests: 20,
            tests_done: 12,
            passed: 10,
            not_passed: 1,
            flaky: 1,
            skipped: 1,
            workers: 2,
            ..Counts::default()
        };
        assert_eq!(
            tests.line(),
            "12/20 tests: 10 passed, 1 not passed, 1 flaky, 1 skipped, 2 worker(s)"
        );
        let both = Counts {
            jobs: 4,
            jobs_done: 3,
            ..tests.clone()
        };
        assert_eq!(
            both.line(),
            "12/20 tests, 3/4 jobs: 10 passed, 1 not passed, 1 flaky, 1 skipped, 2 worker(s)"
        );
        assert_eq!(
            Counts::default().line(),
            "0/0 jobs: 0 passed, 0 not passed, 0 worker(s)"
        );
    }

    #[test]
    fn the_bar_counts_the_tests_of_a_run_of_suites_and_failures_are_printed_above_it() {
        let (mut progress, out) = progress(Mode::Bar);
        progress.begin(0, 3);
        progress.workers(2);
        let bar = progress.bar.clone().expect("a bar");
        assert_eq!((bar.position(), bar.length()), (0, Some(3)));
        progress.tests_ended(&[
            ended("a", 1, TestStatus::Passed, Some(FinalStatus::Passed)),
            ended("b", 1, TestStatus::Failed, Some(FinalStatus::Failed)),
        ]);
        assert_eq!(bar.position(), 2);
        assert_eq!(
            bar.message(),
            "2/3 tests: 1 passed, 1 not passed, 2 worker(s)"
        );
        assert_eq!(
            out.take(),
            "FAILED pytest: b - AssertionError: boom\n",
            "the failure as it happens, no line of counts (the bar has them)"
        );
        progress.end();
    }

    #[test]
    fn ci_lines_name_each_failure_as_it_happens_then_the_counts() {
        let (mut progress, out) = progress(Mode::Lines { github: false });
        progress.begin(0, 3);
        progress.tests_ended(&[
            ended("a", 1, TestStatus::Passed, Some(FinalStatus::Passed)),
            ended("b", 1, TestStatus::Failed, None),
        ]);
        assert_eq!(
            out.take(),
            "RETRY pytest: b (attempt 1) - AssertionError: boom\n\
             1/3 tests: 1 passed, 0 not passed, 0 worker(s)\n"
        );
        progress.tests_ended(&[ended("b", 2, TestStatus::Failed, Some(FinalStatus::Failed))]);
        assert_eq!(
            out.take(),
            "FAILED pytest: b (attempt 2) - AssertionError: boom\n\
             2/3 tests: 1 passed, 1 not passed, 0 worker(s)\n"
        );
    }

    #[test]
    fn on_github_the_tests_lines_are_fenced_from_workflow_commands() {
        let (mut progress, out) = progress(Mode::Lines { github: true });
        progress.begin(0, 1);
        let mut hostile = ended("b", 1, TestStatus::Failed, Some(FinalStatus::Failed));
        hostile.message = Some("::error::injected".into());
        progress.tests_ended(&[hostile]);
        let text = out.take();
        let lines: Vec<&str> = text.lines().collect();
        let token = lines[0].strip_prefix("::stop-commands::").expect("fenced");
        assert_eq!(lines[1], "FAILED pytest: b - ::error::injected");
        assert_eq!(lines[2], format!("::{token}::"));
        assert_eq!(lines[3], "1/1 tests: 0 passed, 1 not passed, 0 worker(s)");
    }

    #[test]
    fn each_finished_test_is_a_line_with_its_run_time_when_known() {
        let finished = |id: &str, status, duration_ms| TestFinished {
            suite: "py".into(),
            id: id.into(),
            status,
            duration_ms,
        };
        let (mut lines, out) = progress(Mode::Lines { github: false });
        lines.begin(0, 2);
        lines.tests_finished(&[
            finished("a", TestStatus::Passed, 1520),
            finished("b", TestStatus::Failed, 0),
        ]);
        assert_eq!(
            out.take(),
            "   PASS    [1.52s] py: a\n   FAIL            py: b\n"
        );
        let (mut github, out) = progress(Mode::Lines { github: true });
        github.tests_finished(&[finished("::error::x", TestStatus::Passed, 0)]);
        assert!(out.take().starts_with("::stop-commands::"), "fenced");
        let (mut quiet, out) = progress(Mode::Quiet);
        quiet.tests_finished(&[finished("a", TestStatus::Passed, 0)]);
        assert_eq!(out.take(), "");
    }

    #[test]
    fn quiet_progress_prints_nothing() {
        let (mut progress, out) = progress(Mode::Quiet);
        progress.begin(0, 1);
        progress.tests_ended(&[ended("b", 1, TestStatus::Failed, Some(FinalStatus::Failed))]);
        assert_eq!(out.take(), "");
    }
}
