//! What a person sees while a run goes on: a progress bar on a terminal counting the tests and
//! jobs done, or one line per finished job in CI logs (with `::group::` output and `::error`
//! annotations on GitHub) and a line of counts per suite batch; in both, a line for each test
//! that failed as it happens.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::report::{self, JobReport};
use super::suites::TestEnded;
use crate::proto::JobStatus;
use crate::suite::junit::FinalStatus;

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
    counts: Counts,
}

/// What the bar and the CI log's lines of counts say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    jobs: usize,
    jobs_done: usize,
    tests: usize,
    tests_done: usize,
    /// Jobs and tests that passed (flaky tests too: they pass the run by default).
    passed: usize,
    /// Jobs and tests that failed, timed out, could not run or were cancelled.
    not_passed: usize,
    /// Tests the framework skipped.
    skipped: usize,
    workers: u32,
}

impl Counts {
    /// `12/20 tests, 3/4 jobs: 14 passed, 1 not passed, 2 worker(s)`; a run without tests
    /// counts jobs alone, a run of suites alone counts tests alone.
    fn line(&self) -> String {
        let mut done = Vec::new();
        if self.tests > 0 {
            done.push(format!("{}/{} tests", self.tests_done, self.tests));
        }
        if self.jobs > 0 || self.tests == 0 {
            done.push(format!("{}/{} jobs", self.jobs_done, self.jobs));
        }
        let skipped = match self.skipped {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        format!(
            "{}: {} passed, {} not passed{skipped}, {} worker(s)",
            done.join(", "),
            self.passed,
            self.not_passed,
            self.workers
        )
    }
}

impl Progress {
    /// Progress shown in `mode`, its lines on stdout.
    pub fn new(mode: Mode) -> Self {
        Self::writing_to(mode, Box::new(std::io::stdout()))
    }

    /// Progress shown in `mode`, its lines written to `out`.
    fn writing_to(mode: Mode, out: Box<dyn Write + Send>) -> Self {
        Self {
            mode,
            bar: None,
            out,
            counts: Counts::default(),
        }
    }

    /// The run's `jobs` were submitted and its suites list `tests` tests.
    pub fn begin(&mut self, jobs: usize, tests: usize) {
        self.counts.jobs = jobs;
        self.counts.tests = tests;
        if self.mode == Mode::Bar {
            let bar = ProgressBar::new((jobs + tests) as u64);
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
                Some(FinalStatus::Passed | FinalStatus::Flaky) => self.counts.passed += 1,
                Some(FinalStatus::Skipped) => self.counts.skipped += 1,
                Some(FinalStatus::Failed | FinalStatus::Error | FinalStatus::NotRun) => {
                    self.counts.not_passed += 1;
                }
            }
            self.counts.tests_done += usize::from(test.outcome.is_some());
        }
        self.show_counts();
        if self.mode == Mode::Quiet {
            return;
        }
        let mut lines: Vec<String> = ended.iter().filter_map(report::test_line).collect();
        if matches!(self.mode, Mode::Lines { .. }) {
            lines.push(self.counts.line());
        }
        if !lines.is_empty() {
            self.print(&lines.join("\n"));
        }
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
