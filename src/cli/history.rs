//! A run's timing history and earlier attempts, outside the runner: read before the run
//! (`--timings FILE`, else GitHub's REST API through `plan::github`), kept after it (the
//! `ca-timings` and `ca-results` artifacts, and `--write-timings FILE`). Nothing here fails a
//! run: a source that gives nothing is one line, and the run goes on with estimates. With a
//! cluster secret both artifacts are sealed under the history keys of the secret alone
//! (`seal::HistorySeal`), named `ca-history-…`, so a later run with the same secret reads them.

use sha2::{Digest as _, Sha256};

use cluster_action::plan::ArtifactDocument;
use cluster_action::plan::github::{GithubRun, fetch_history, fetch_sealed_history};
use cluster_action::plan::results::{AttemptResults, RerunMode, results_artifact_name};
use cluster_action::plan::timings::{Timings, timings_artifact_name};
use cluster_action::runner::manifest::Manifest;
use cluster_action::runner::report::RunReport;
use cluster_action::runner::suite_run::outcomes;
use cluster_action::seal::{HistorySeal, SECRET_VAR};
use cluster_action::store::ArtifactStore;

use super::exit::Failure;
use super::suites::SuiteArgs;

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
    /// The history of `manifest`'s suites in `cluster`: `--timings FILE`, else (on GitHub) the
    /// earlier attempts' and the default branch's artifacts, each miss said in one line.
    pub async fn load(
        args: &SuiteArgs,
        manifest: &Manifest,
        cluster: &str,
    ) -> Result<Self, Failure> {
        let from_file = args.read_timings()?;
        if manifest.suites.is_empty() {
            return Ok(Self::default());
        }
        let seal = history_seal()?;
        // Outside GitHub some variables are set otherwise (act sets GITHUB_REPOSITORY to a
        // local path): history from GitHub is then off, like any other miss, in one line.
        let run = GithubRun::from_env().unwrap_or_else(|e| {
            eprintln!("note: no timing history from GitHub ({e}); going on with estimates");
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
            Some(seal) => fetch_sealed_history(&run, cluster, want_timings, seal).await,
            None => fetch_history(&run, cluster, want_timings).await,
        };
        for line in history.lines() {
            eprintln!("{line}");
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

    /// Keeps this run's history: `--write-timings FILE`, and on GitHub the `ca-timings` and
    /// this attempt's `ca-results` artifacts (uploaded with the store's default retention).
    pub async fn save(
        &self,
        args: &SuiteArgs,
        store: Option<&ArtifactStore>,
        cluster: &str,
        report: &RunReport,
    ) -> Result<(), Failure> {
        if report.tests.is_empty() {
            return Ok(());
        }
        let attempt = self.run.as_ref().map_or(1, |r| r.attempt);
        let outcomes = outcomes(&report.tests, attempt);
        let mut timings = self.timings.clone();
        timings.record_run(self.run.as_ref().map(|r| r.run_id), &outcomes);
        args.write_timings(&timings)?;
        let (Some(run), Some(store)) = (&self.run, store) else {
            return Ok(());
        };
        let results = AttemptResults::after_attempt(
            self.previous.as_ref(),
            run.run_id,
            attempt,
            outcomes,
            timings.clone(),
        );
        let timings_name = timings_artifact_name(cluster, run.workflow.as_deref());
        let results_name = results_artifact_name(cluster, attempt);
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
                eprintln!("warning: the history artifact '{name}' was not kept: {e}");
            }
        }
        Ok(())
    }
}

/// The history keys of `CLUSTER_SECRET`, when it is set.
fn history_seal() -> Result<Option<HistorySeal>, Failure> {
    use std::os::unix::ffi::OsStrExt;
    let Some(secret) = std::env::var_os(SECRET_VAR) else {
        return Ok(None);
    };
    HistorySeal::derive(secret.as_bytes())
        .map(Some)
        .map_err(|e| Failure::bad_input(e.to_string()))
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
