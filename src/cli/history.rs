//! The run's history around the library's [`RunHistory`]: the suite flags say where it is
//! read from and written to, its notes go to stderr, and its errors are the user's to fix.

use cluster_action::history::local_file::TimingsFileError;
use cluster_action::history::{HistoryError, RunHistory};
use cluster_action::runner::manifest::Manifest;
use cluster_action::runner::report::RunReport;
use cluster_action::store::ArtifactStore;

use super::exit::Failure;
use super::suites::SuiteArgs;

/// The history of `manifest`'s suites in `cluster` ([`RunHistory::load`]).
pub async fn load_history(
    args: &SuiteArgs,
    manifest: &Manifest,
    cluster: &str,
) -> Result<RunHistory, Failure> {
    let source = args.history_source(cluster);
    RunHistory::load(&source, !manifest.suites.is_empty(), say)
        .await
        .map_err(bad_input)
}

/// Keeps this run's history ([`RunHistory::save`]).
pub async fn save_history(
    history: &RunHistory,
    args: &SuiteArgs,
    store: Option<&ArtifactStore>,
    cluster: &str,
    report: &RunReport,
) -> Result<(), Failure> {
    let source = args.history_source(cluster);
    history
        .save(&source, store, &report.tests, say)
        .await
        .map_err(|e| match e {
            // The file was fine before the run: failing to write it is the machine's (a full
            // disk), like a report that cannot be written.
            HistoryError::File(TimingsFileError::Write { path, source }) => {
                Failure::io(format!("cannot write --write-timings {path}"))(source)
            }
            e => bad_input(e),
        })
}

/// A note of the history on stderr.
fn say(line: &str) {
    eprintln!("{line}");
}

/// A history error as the exit table takes it.
fn bad_input(e: HistoryError) -> Failure {
    Failure::bad_input(e.to_string())
}
