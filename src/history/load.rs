//! A run's timing history and earlier attempts, around the runner: read before the run
//! (`--timings FILE`, else GitHub's REST API through [`super::github`]), kept after it (the
//! `ca-timings` and `ca-results` artifacts, and `--write-timings FILE`). Nothing here fails a
//! run: a source that gives nothing is one line, and the run goes on with estimates. With a
//! cluster secret both artifacts are sealed under the history keys of the secret alone
//! ([`HistorySeal`]), named `ca-history-…`, so a later run with the same secret reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::github::{GithubRun, fetch_history, fetch_sealed_history};
use super::local_file::{self, TimingsFileError};
use super::quarantine::QuarantinePolicy;
use super::results::{AttemptResults, RerunMode, outcomes, results_artifact_name};
use super::timings::{Timings, timings_artifact_name};
use super::{ArtifactDocument, HistorySeal};
use crate::credentials::SECRET_VAR;
use crate::seal::SealError;
use crate::store::ArtifactStore;
use crate::suite::TestRecord;
use crate::suite::batch_cost::BatchSample;

/// Where a run's history is read from and kept, beside GitHub's artifacts.
#[derive(Debug, Clone, Default)]
pub struct HistorySource {
    /// `--timings FILE`: read estimates from this file instead of GitHub's artifacts.
    pub timings_file: Option<PathBuf>,
    /// `--write-timings FILE`: write the history, this run's durations added, here.
    pub write_timings: Option<PathBuf>,
    /// The cluster's name: its history artifacts are its own.
    pub cluster: String,
}

/// Why a run's history cannot be used: the user's to fix (a bad file or secret).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `--timings` or `--write-timings` names a file that cannot be read or written.
    #[error(transparent)]
    File(#[from] TimingsFileError),
    /// `CLUSTER_SECRET` cannot give history keys.
    #[error(transparent)]
    Secret(#[from] SealError),
}

/// What a run starts from.
#[derive(Debug, Default)]
pub struct RunHistory {
    /// The workflow run, on GitHub.
    run: Option<GithubRun>,
    /// The estimates.
    pub timings: Timings,
    /// The previous attempt's results, on a re-run.
    pub previous: Option<AttemptResults>,
    /// With a cluster secret: the keys the history is sealed under.
    seal: Option<HistorySeal>,
}

impl RunHistory {
    /// The history of a run's suites (none when `has_suites` is false): the timings file,
    /// else (on GitHub) the earlier attempts' and the default branch's artifacts, each miss
    /// said in one line to `note`. A `--write-timings` file that cannot take a history is
    /// refused here, before the run.
    pub async fn load(
        source: &HistorySource,
        has_suites: bool,
        mut note: impl FnMut(&str),
    ) -> Result<Self, HistoryError> {
        let from_file = read_timings(source, &mut note)?;
        if let Some(path) = &source.write_timings {
            local_file::check_writable(path)?;
        }
        if !has_suites {
            return Ok(Self::default());
        }
        let seal = history_seal()?;
        // Outside GitHub some variables are set otherwise (act sets GITHUB_REPOSITORY to a
        // local path): history from GitHub is then off, like any other miss, in one line.
        let run = GithubRun::from_env().unwrap_or_else(|e| {
            note(&format!(
                "note: no timing history from GitHub ({e}); going on with estimates"
            ));
            None
        });
        let Some(run) = run else {
            return Ok(Self {
                timings: from_file.unwrap_or_default(),
                seal,
                ..Self::default()
            });
        };
        let want_timings = from_file.is_none();
        let history = match &seal {
            Some(seal) => fetch_sealed_history(&run, &source.cluster, want_timings, seal).await,
            None => fetch_history(&run, &source.cluster, want_timings).await,
        };
        for line in history.lines() {
            note(&line);
        }
        let timings = from_file
            .or(history.timings.map(|(t, _)| t))
            .unwrap_or_default();
        Ok(Self {
            run: Some(run),
            timings,
            previous: history.previous.map(|(r, _)| r),
            seal,
        })
    }

    /// What a re-run runs again: the previous attempt's results with `mode`, when there are
    /// any.
    pub fn rerun(&self, mode: RerunMode) -> Option<(AttemptResults, RerunMode)> {
        self.previous.clone().map(|p| (p, mode))
    }

    /// Keeps this run's history of `tests` and of its suites' batches (`batches`, per suite):
    /// the `--write-timings` file, and on GitHub the `ca-timings` and this attempt's
    /// `ca-results` artifacts (uploaded with the store's default retention); an artifact that
    /// cannot be kept is one line to `note`. Each test enters or leaves quarantine as its
    /// suite's policy (`policy_of` the suite) says ([`Timings::update_quarantine`]). Returns
    /// the history with this run recorded.
    pub async fn save<'a>(
        &self,
        source: &HistorySource,
        store: Option<&ArtifactStore>,
        tests: &[TestRecord],
        batches: &BTreeMap<String, Vec<BatchSample>>,
        policy_of: impl Fn(&str) -> Option<&'a QuarantinePolicy>,
        mut note: impl FnMut(&str),
    ) -> Result<Timings, HistoryError> {
        if tests.is_empty() {
            return Ok(self.timings.clone());
        }
        let attempt = self.run.as_ref().map_or(1, |r| r.attempt);
        let outcomes = outcomes(tests, attempt);
        let mut timings = self.timings.clone();
        timings.record_run(self.run.as_ref().map(|r| r.run_id), &outcomes);
        timings.update_quarantine(policy_of);
        for (suite, samples) in batches {
            timings.record_batches(suite, samples.iter().copied());
        }
        if let Some(path) = &source.write_timings {
            local_file::write(path, &timings)?;
            note(&format!("timing history written to {}", path.display()));
        }
        let (Some(run), Some(store)) = (&self.run, store) else {
            return Ok(timings);
        };
        let results = AttemptResults::after_attempt(
            self.previous.as_ref(),
            run.run_id,
            attempt,
            outcomes,
            timings.clone(),
        );
        let timings_name = timings_artifact_name(&source.cluster, run.workflow.as_deref());
        let results_name = results_artifact_name(&source.cluster, attempt);
        // Test names and statuses are readable by everyone who can read the run: a sealed
        // cluster keeps them sealed, under names that say only that they are history.
        let documents = match &self.seal {
            None => [
                (timings_name, timings.to_artifact_zip()),
                (results_name, results.to_artifact_zip()),
            ],
            Some(seal) => [
                (
                    seal.name(&timings_name),
                    timings.to_sealed_zip(seal, &timings_name),
                ),
                (
                    seal.name(&results_name),
                    results.to_sealed_zip(seal, &results_name),
                ),
            ],
        };
        for (name, zip) in documents {
            if let Err(e) = upload(store, &name, zip).await {
                note(&format!(
                    "warning: the history artifact '{name}' was not kept: {e}"
                ));
            }
        }
        Ok(timings)
    }
}

/// The `--timings` file: none when not given or (said in one line) when the file does not
/// exist yet.
fn read_timings(
    source: &HistorySource,
    note: &mut impl FnMut(&str),
) -> Result<Option<Timings>, TimingsFileError> {
    let Some(path) = &source.timings_file else {
        return Ok(None);
    };
    let read = local_file::read(path)?;
    if read.is_none() {
        note(&format!(
            "no timing history in {} yet: tests are estimated",
            path.display()
        ));
    }
    Ok(read)
}

/// The history keys of `CLUSTER_SECRET`, when it is set.
fn history_seal() -> Result<Option<HistorySeal>, SealError> {
    use std::os::unix::ffi::OsStrExt;
    let Some(secret) = std::env::var_os(SECRET_VAR) else {
        return Ok(None);
    };
    HistorySeal::derive(secret.as_bytes()).map(Some)
}

/// Uploads `zip` as artifact `name`.
async fn upload(
    store: &ArtifactStore,
    name: &str,
    zip: Result<Vec<u8>, String>,
) -> Result<(), String> {
    let zip = zip?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("document.zip");
    std::fs::write(&path, &zip).map_err(|e| e.to_string())?;
    let sha = hex::encode(Sha256::digest(&zip));
    store
        .upload_file(name, &path, &sha)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
