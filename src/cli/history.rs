//! The run's history around the library's [`RunHistory`]: the suite flags say where it is
//! read from and written to, its notes go to stderr, and its errors are the user's to fix;
//! once kept, it tells the report what it says of the tests (quarantine, records).

use std::collections::BTreeMap;

use cluster_action::history::local_file::TimingsFileError;
use cluster_action::history::quarantine::{QuarantinePolicy, Quarantined};
use cluster_action::history::{HistoryError, RunHistory};
use cluster_action::runner::manifest::Manifest;
use cluster_action::runner::report::{ReportHistory, RunReport};
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

/// The quarantine policy of each suite of `manifest`, by name.
pub fn quarantine_policies(manifest: &Manifest) -> BTreeMap<String, QuarantinePolicy> {
    manifest
        .suites
        .iter()
        .map(|s| (s.suite.name.clone(), s.quarantine.clone()))
        .collect()
}

/// Keeps this run's history ([`RunHistory::save`]) and gives `report` what the history says
/// of its tests: the tests quarantined from the start (by `policies`) and each test's record
/// with this run in it (the record before the run, when it could not be kept).
pub async fn save_history(
    history: &RunHistory,
    policies: &BTreeMap<String, QuarantinePolicy>,
    args: &SuiteArgs,
    store: Option<&ArtifactStore>,
    cluster: &str,
    report: &mut RunReport,
) -> Result<(), Failure> {
    let source = args.history_source(cluster);
    let saved = history
        .save(
            &source,
            store,
            &report.tests,
            &report.batch_samples,
            |suite| policies.get(suite),
            say,
        )
        .await
        .map_err(save_failure);
    let before = &history.timings;
    report.history = Some(ReportHistory {
        quarantined: Quarantined::of(before, policies.iter().map(|(s, p)| (s.as_str(), p))),
        after: saved.as_ref().map_or_else(|_| before.clone(), Clone::clone),
        known: !before.is_empty(),
        before: before.clone(),
    });
    saved.map(drop)
}

/// A history that could not be kept, as the exit table takes it: the file was checked before
/// the run, so failing to write it then is the machine's (a full disk, a directory removed),
/// like a report that cannot be written (exit 3); anything else is the user's (exit 2).
fn save_failure(e: HistoryError) -> Failure {
    match e {
        HistoryError::File(TimingsFileError::Write { path, source }) => {
            Failure::io(format!("cannot write --write-timings {path}"))(source)
        }
        e => bad_input(e),
    }
}

/// A note of the history on stderr.
fn say(line: &str) {
    eprintln!("{line}");
}

/// A history error as the exit table takes it.
fn bad_input(e: HistoryError) -> Failure {
    Failure::bad_input(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit::{BAD_INPUT, INFRA};

    #[test]
    fn a_history_not_written_is_the_machines_and_a_file_refused_the_users() {
        let write = TimingsFileError::Write {
            path: "t.json".into(),
            source: std::io::Error::other("no space left"),
        };
        let failure = save_failure(HistoryError::File(write));
        assert_eq!(failure.exit_code(), INFRA);
        assert!(
            failure.to_string().contains("--write-timings t.json"),
            "{failure}"
        );
        let refused = TimingsFileError::NotAFile {
            path: "fifo".into(),
            kind: "a FIFO (named pipe)",
        };
        assert_eq!(
            save_failure(HistoryError::File(refused)).exit_code(),
            BAD_INPUT
        );
    }
}
