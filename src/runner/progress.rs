//! What a person sees while a run goes on: a progress bar on a terminal, or one line per
//! finished job in CI logs (with `::group::` output and `::error` annotations on GitHub).

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::report::{self, JobReport};
use crate::proto::JobStatus;

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
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
}

impl Progress {
    /// Progress shown in `mode`.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            bar: None,
            counts: Counts::default(),
        }
    }

    /// The jobs were submitted.
    pub fn begin(&mut self, total: usize) {
        if self.mode == Mode::Bar {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            self.bar = Some(bar);
            self.message(0);
        }
    }

    /// The number of connected workers changed.
    pub fn workers(&mut self, workers: u32) {
        self.message(workers);
    }

    /// An attempt started (shown only in debug logs).
    pub fn started(&mut self, name: &str, attempt: u32, worker: &str) {
        tracing::debug!(job = name, attempt, worker, "started");
    }

    /// A job has its final outcome.
    pub fn finished(&mut self, job: &JobReport) {
        if job.status == JobStatus::Passed {
            self.counts.passed += 1;
        } else {
            self.counts.failed += 1;
        }
        let failed = !matches!(job.status, JobStatus::Passed | JobStatus::Cancelled);
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    if failed {
                        bar.println(format!(
                            "{}\n{}",
                            report::ci_line(job),
                            job.output.trim_end()
                        ));
                    }
                }
            }
            Mode::Lines { github } => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", report::ci_line(job));
                if failed {
                    if github {
                        let _ = write!(out, "{}", report::group(job));
                        if let Some(annotation) = report::annotation(job) {
                            let _ = writeln!(out, "{annotation}");
                        }
                    } else {
                        let _ = writeln!(out, "{}", job.output.trim_end());
                    }
                }
            }
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

    fn message(&self, workers: u32) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} passed, {} not passed, {workers} worker(s)",
                self.counts.passed, self.counts.failed
            ));
        }
    }
}
