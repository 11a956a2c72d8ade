//! A run's timing history and earlier attempts, outside the runner: read before the run
//! (`--timings FILE`, else GitHub's REST API through `plan::github`), kept after it (the
//! `ca-timings` and `ca-results` artifacts, and `--write-timings FILE`). Nothing here fails a
//! run: a source that gives nothing is one line, and the run goes on with estimates.

use sha2::{Digest as _, Sha256};

use cluster_action::plan::ArtifactDocument;
use cluster_action::plan::github::{GithubRun, fetch_history};
use cluster_action::plan::results::{AttemptResults, RerunMode, results_artifact_name};
use cluster_action::plan::timings::{Timings, timings_artifact_name};
use cluster_action::runner::manifest::Manifest;
use cluster_action::runner::report::RunReport;
use cluster_action::runner::suites::outcomes;
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
        // Outside GitHub some variables are set otherwise (act sets GITHUB_REPOSITORY to a
        // local path): history from GitHub is then off, like any other miss, in one line.
        let run = GithubRun::from_env().unwrap_or_else(|e| {
            eprintln!("note: no timing history from GitHub ({e}); going on with estimates");
            None
        });
        let Some(run) = run else {
            return Ok(Self {
                timings: from_file.unwrap_or_default(),
                ..Self::default()
            });
        };
        let history = fetch_history(&run, cluster, from_file.is_none()).await;
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
        // Test names and statuses would be readable by everyone who can read the run, and the
        // cluster's keys (bound to this run) could not seal them for later runs.
        if std::env::var_os(cluster_action::seal::SECRET_VAR).is_some() {
            eprintln!(
                "note: with a cluster secret, the timing history and results artifacts are not \
                 kept (they would hold test names in plain text); keep timings with \
                 --write-timings FILE and a cache step instead"
            );
            return Ok(());
        }
        let results = AttemptResults::after_attempt(
            self.previous.as_ref(),
            run.run_id,
            attempt,
            outcomes,
            timings.clone(),
        );
        let documents = [
            (
                timings_artifact_name(cluster, run.workflow.as_deref()),
                timings.to_artifact_zip(),
            ),
            (
                results_artifact_name(cluster, attempt),
                results.to_artifact_zip(),
            ),
        ];
        for (name, zip) in documents {
            if let Err(e) = upload(store, &name, zip).await {
                eprintln!("warning: the history artifact '{name}' was not kept: {e}");
            }
        }
        Ok(())
    }
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
