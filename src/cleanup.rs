//! Cleanup and retention: what a cluster leaves in the run's artifact store.
//!
//! Everything a cluster exchanges is an artifact anyone who can read the run can download, and
//! it counts against the account's storage. So at a clean stop the broker deletes what the
//! cluster made ([`after_stop`]): its streams (every segment and the listen marker, named
//! `ca.<cluster>.<attempt>.…`) and the layers its jobs used or produced (`ca-layer-<sha256>`
//! and its copies, as the broker saw them in submissions and outcomes), keeping what [`Keep`] says, once every
//! runner has left (a runner fetches its jobs' outputs layers before it closes its stream; see
//! `broker::Departures`). A crashed
//! cluster cannot clean up; its artifacts carry an `expiresAt` instead (the store's retention,
//! [`crate::store::DEFAULT_RETENTION`] unless set), and `cluster-action gc` deletes a run's
//! leftovers on demand ([`leftovers`]).
//!
//! Deleting uses Twirp `DeleteArtifact` with each artifact's own backend ids from its
//! `ListArtifacts` entry (GitHub requires them for another job's artifact, as its own client
//! does since @actions/artifact 2.1). The store retries transient failures; what still fails is
//! returned as warnings, never as an error: a run's result does not depend on its cleanup.
//!
//! The `.closed` marker of a stopped cluster stays unless `keep: none`: it is empty, and a
//! worker that starts after the stop reads it to exit 0 at once instead of waiting for a broker.

use std::collections::HashSet;
use std::str::FromStr;

use futures_util::StreamExt;
use tracing::{info, warn};

use crate::history::is_history_artifact;
use crate::history::results::RESULTS_ARTIFACT;
use crate::history::timings::TIMINGS_ARTIFACT;
use crate::layer;
use crate::proto::{JobOutcome, Submission};
use crate::store::{ArtifactInfo, ArtifactStore, StoreError};
use crate::stream::Namespace;

/// Deletions in flight at once.
const PARALLEL_DELETES: usize = 8;

/// What a cleanup keeps (the `keep` input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Keep {
    /// Reports (`ca-timings…`, `ca-results-…`, a sealed cluster's `ca-history-…`) and the
    /// stopped marker; everything else goes.
    #[default]
    Reports,
    /// Everything: no cleanup (the artifacts still expire with their retention).
    All,
    /// Nothing: reports and the stopped marker go too.
    None,
}

/// A `keep` value that is not one of the three.
#[derive(Debug, thiserror::Error)]
#[error("keep '{0}' is not one of reports, all, none")]
pub struct KeepError(String);

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Keep::Reports => "reports",
            Keep::All => "all",
            Keep::None => "none",
        })
    }
}

impl FromStr for Keep {
    type Err = KeepError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reports" => Ok(Keep::Reports),
            "all" => Ok(Keep::All),
            "none" => Ok(Keep::None),
            other => Err(KeepError(other.to_string())),
        }
    }
}

/// Whether `name` is a report artifact, which outlives the run on purpose: the timing history
/// (`ca-timings-<cluster>[-<workflow>]`), an attempt's results
/// (`ca-results-<cluster>-<attempt>`), or either sealed (`ca-history-<32 hex>`).
pub fn is_report(name: &str) -> bool {
    let results = name
        .strip_prefix(RESULTS_ARTIFACT)
        .and_then(|rest| rest.strip_prefix('-')?.rsplit_once('-'))
        .is_some_and(|(cluster, attempt)| {
            Namespace::new(cluster, attempt).is_ok() && attempt.parse::<u32>().is_ok_and(|a| a > 0)
        });
    let timings = name
        .strip_prefix(TIMINGS_ARTIFACT)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| !rest.is_empty());
    results || timings || is_history_artifact(name)
}

/// Whether `name` is an artifact a cluster makes and leaves behind when it crashes: a stream
/// or marker of any cluster ([`Namespace::of_artifact`]) or a layer
/// ([`layer::is_layer_artifact`]). Only names of their exact grammar: a user's `ca.crt` or
/// `ca-layer-notes` is not the cluster's.
fn is_cluster_artifact(name: &str) -> bool {
    Namespace::of_artifact(name).is_some() || layer::is_layer_artifact(name)
}

/// The layers a cluster used or produced, as its broker saw them go by.
#[derive(Debug, Default, Clone)]
pub struct Made {
    layers: HashSet<String>,
}

impl Made {
    /// Notes the layers of submitted jobs.
    pub fn submitted(&mut self, jobs: &[Submission]) {
        let names = jobs
            .iter()
            .flat_map(|j| &j.spec.layers)
            .map(layer::artifact_name);
        self.layers.extend(names);
    }

    /// Notes the outputs layer of a finished job.
    pub fn finished(&mut self, outcome: &JobOutcome) {
        if let Some(digest) = &outcome.outputs_layer {
            self.layers.insert(layer::artifact_name(digest));
        }
    }

    /// Whether `name` is one of these layers under its main name or a copy's
    /// (`ca-layer-<sha256>.<random>`, published when a dead upload held the main name).
    fn has_layer(&self, name: &str) -> bool {
        let main = match name.split_once('.') {
            Some((main, _)) if layer::is_layer_artifact(name) => main,
            _ => name,
        };
        self.layers.contains(main)
    }
}

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Artifacts deleted (or found already gone).
    pub deleted: usize,
    /// One line per artifact that could not be deleted (or the listing that failed).
    pub failed: Vec<String>,
}

/// Of the listed artifacts, those a clean stop of the cluster `ns` deletes.
pub fn stop_targets(
    listed: Vec<ArtifactInfo>,
    ns: &Namespace,
    made: &Made,
    keep: Keep,
) -> Vec<ArtifactInfo> {
    if keep == Keep::All {
        return Vec::new();
    }
    let closed = ns.closed_name();
    listed
        .into_iter()
        .filter(|a| {
            (Namespace::of_artifact(&a.name).as_ref() == Some(ns)
                && (a.name != closed || keep == Keep::None))
                || made.has_layer(&a.name)
                || (keep == Keep::None && is_report(&a.name))
        })
        .collect()
}

/// Of the listed artifacts, a run's cluster-action leftovers that `gc` deletes: every cluster's
/// streams and markers (`ca.<cluster>.<attempt>.…`) and every layer (`ca-layer-<digest>`), and
/// reports unless kept; never a name outside their grammar.
pub fn leftovers(listed: Vec<ArtifactInfo>, keep: Keep) -> Vec<ArtifactInfo> {
    if keep == Keep::All {
        return Vec::new();
    }
    listed
        .into_iter()
        .filter(|a| is_cluster_artifact(&a.name) || (keep == Keep::None && is_report(&a.name)))
        .collect()
}

/// Deletes `targets`, a few at once; an artifact already gone counts as deleted.
pub async fn delete(store: &ArtifactStore, targets: Vec<ArtifactInfo>) -> CleanupReport {
    let results: Vec<(String, Result<(), StoreError>)> = futures_util::stream::iter(targets)
        .map(|artifact| async move {
            let result = match store.delete(&artifact).await {
                Err(StoreError::NotFound(_)) => Ok(()),
                other => other,
            };
            (artifact.name, result)
        })
        .buffer_unordered(PARALLEL_DELETES)
        .collect()
        .await;
    let mut report = CleanupReport::default();
    for (name, result) in results {
        match result {
            Ok(()) => report.deleted += 1,
            Err(e) => report
                .failed
                .push(format!("could not delete '{name}': {e}")),
        }
    }
    report
}

/// The clean-stop cleanup of cluster `ns`: lists the run's artifacts and deletes what
/// [`stop_targets`] picks; failures are logged as warnings and returned.
pub async fn after_stop(
    store: &ArtifactStore,
    ns: &Namespace,
    made: &Made,
    keep: Keep,
) -> CleanupReport {
    if keep == Keep::All {
        return CleanupReport::default();
    }
    let report = match store.list(None).await {
        Ok(listed) => delete(store, stop_targets(listed, ns, made, keep)).await,
        Err(e) => CleanupReport {
            deleted: 0,
            failed: vec![format!(
                "could not list the run's artifacts to clean up: {e}"
            )],
        },
    };
    for failure in &report.failed {
        warn!("cleanup: {failure} (it expires with its retention)");
    }
    info!(
        deleted = report.deleted,
        "cleaned up the cluster's artifacts"
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Digest;

    fn listed(names: &[&str]) -> Vec<ArtifactInfo> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| ArtifactInfo {
                name: (*n).to_string(),
                run_backend_id: "r".into(),
                job_backend_id: "j".into(),
                database_id: i64::try_from(i).unwrap(),
                size: 0,
            })
            .collect()
    }

    fn names(v: Vec<ArtifactInfo>) -> Vec<String> {
        v.into_iter().map(|a| a.name).collect()
    }

    /// A layer's digest: 64 hex characters of `c`.
    fn digest(c: char) -> Digest {
        Digest(c.to_string().repeat(64))
    }

    /// A run's artifacts: two clusters' streams, two layers, three reports, a user's own
    /// artifacts (the last six, some looking like the cluster's).
    fn run() -> Vec<String> {
        let layer = |c| layer::artifact_name(&digest(c));
        [
            "ca.c.1.listen",
            "ca.c.1.closed",
            "ca.c.1.0123456789abcdef.up.0",
            "ca.other.1.listen",
            "ca.c.2.listen",
            &layer('a'),
            &layer('b'),
            "ca-timings-c-ci.yml",
            "ca-results-c-1",
            "ca-history-0123456789abcdef0123456789abcdef",
            "user-artifact",
            "ca.crt",
            "ca-layer-notes",
            "ca.c.1.notes",
            "ca-results-summary",
            "ca-history-notes",
        ]
        .map(String::from)
        .to_vec()
    }

    fn listed_run() -> Vec<ArtifactInfo> {
        let names = run();
        listed(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn made() -> Made {
        let mut made = Made::default();
        made.layers.insert(layer::artifact_name(&digest('a')));
        made
    }

    #[test]
    fn a_stop_deletes_its_own_streams_and_layers_only() {
        let ns = Namespace::new("c", "1").unwrap();
        let run = run();
        let pick = |i: &[usize]| i.iter().map(|&i| run[i].clone()).collect::<Vec<_>>();
        let picked = names(stop_targets(listed_run(), &ns, &made(), Keep::Reports));
        assert_eq!(picked, pick(&[0, 2, 5]));
        let picked = names(stop_targets(listed_run(), &ns, &made(), Keep::None));
        assert_eq!(picked, pick(&[0, 1, 2, 5, 7, 8, 9]));
        assert!(stop_targets(listed_run(), &ns, &made(), Keep::All).is_empty());
    }

    #[test]
    fn a_stop_deletes_the_copies_of_its_layers_too() {
        let ns = Namespace::new("c", "1").unwrap();
        let main = layer::artifact_name(&digest('a'));
        let copy = format!("{main}.0123456789abcdef");
        let others_copy = format!("{}.0123456789abcdef", layer::artifact_name(&digest('b')));
        let not_a_copy = format!("{main}.notes");
        let all = [main.as_str(), &copy, &others_copy, &not_a_copy];
        let picked = names(stop_targets(listed(&all), &ns, &made(), Keep::Reports));
        assert_eq!(picked, [main.clone(), copy]);
    }

    #[test]
    fn gc_takes_every_clusters_leftovers_but_never_user_artifacts() {
        let run = run();
        let picked = names(leftovers(listed_run(), Keep::Reports));
        assert_eq!(picked, run[..7]);
        let picked = names(leftovers(listed_run(), Keep::None));
        assert_eq!(picked, run[..10]);
        assert!(leftovers(listed_run(), Keep::All).is_empty());
    }

    #[test]
    fn keep_parses_its_three_values_and_names_a_bad_one() {
        assert_eq!("reports".parse::<Keep>().unwrap(), Keep::Reports);
        assert_eq!("all".parse::<Keep>().unwrap(), Keep::All);
        assert_eq!("none".parse::<Keep>().unwrap(), Keep::None);
        for keep in [Keep::Reports, Keep::All, Keep::None] {
            assert_eq!(
                keep.to_string().parse::<Keep>().unwrap(),
                keep,
                "shown as parsed"
            );
        }
        let e = "some".parse::<Keep>().unwrap_err().to_string();
        assert!(
            e.contains("'some'") && e.contains("reports, all, none"),
            "{e}"
        );
    }
}
