//! The artifact registry: which artifacts exist in which workflow run, who owns them and
//! whether they are finalized, with github.com's rules (names unique per run, only finalized
//! artifacts visible, another job's ids do not find an artifact, at most
//! [`MAX_ARTIFACTS_PER_JOB`] artifacts created per job, an artifact past its `expiresAt` gone).
//! Blob bytes live elsewhere.

use std::collections::HashMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::token::BackendIds;

/// One artifact.
#[derive(Debug, Clone)]
pub(super) struct Artifact {
    /// `databaseId`; also names the artifact's blob.
    pub id: u64,
    /// The ids of the job that created it.
    pub owner: BackendIds,
    /// Unique within the run.
    pub name: String,
    /// When `CreateArtifact` ran.
    pub created_at: SystemTime,
    /// Set by `FinalizeArtifact`; only finalized artifacts are visible.
    pub finalized: Option<Finalized>,
    /// `expiresAt` of `CreateArtifact`: from then on the artifact is gone (none: kept).
    pub expires_at: Option<SystemTime>,
}

impl Artifact {
    fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// GitHub's limit on the artifacts one job may create. Every `CreateArtifact` counts, deleted
/// or not: GitHub does not say that deleting gives one back, so this is the safe reading.
pub const MAX_ARTIFACTS_PER_JOB: u32 = crate::budget::ARTIFACTS_PER_JOB;

/// What `FinalizeArtifact` recorded.
#[derive(Debug, Clone)]
pub(super) struct Finalized {
    /// The size the client reported (not checked against the blob: streams keep growing).
    pub size: u64,
    /// The `hash` the client reported, listed back as `digest` (not checked).
    pub digest: Option<String>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RegistryError {
    /// The name is taken in this run (finalized or not, by any job).
    #[error("an artifact named '{0}' already exists in this workflow run")]
    AlreadyExists(String),
    /// No artifact of that name for these ids (or not finalized, where that matters).
    #[error("artifact '{0}' not found for this workflow run and job")]
    NotFound(String),
    /// The job has created as many artifacts as it may.
    #[error(
        "artifact '{name}' cannot be created: this job has reached the limit of {limit} artifacts per job"
    )]
    LimitReached {
        /// The refused name.
        name: String,
        /// The limit.
        limit: u32,
    },
}

/// One artifact as `GET /_artifacts` shows it: everything the registry knows, including what
/// `ListArtifacts` hides (unfinalized artifacts, `expiresAt`), for tests to inspect.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Inspected {
    pub database_id: u64,
    pub name: String,
    pub workflow_run_backend_id: String,
    pub workflow_job_run_backend_id: String,
    pub finalized: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// All artifacts, keyed by (run, name), and how many each job has created.
#[derive(Debug)]
pub(super) struct Registry {
    last_id: u64,
    artifacts: HashMap<(String, String), Artifact>,
    created: HashMap<BackendIds, u32>,
    max_per_job: u32,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(MAX_ARTIFACTS_PER_JOB)
    }
}

impl Registry {
    /// An empty registry allowing `max_per_job` creates per job.
    pub(super) fn new(max_per_job: u32) -> Self {
        Self {
            last_id: 0,
            artifacts: HashMap::new(),
            created: HashMap::new(),
            max_per_job,
        }
    }

    /// Creates an unfinalized artifact owned by `owner`, gone after `expires_at`; returns its
    /// id. An expired artifact's name is free again.
    pub(super) fn create(
        &mut self,
        owner: &BackendIds,
        name: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<u64, RegistryError> {
        let now = SystemTime::now();
        let key = (owner.run.clone(), name.to_string());
        if self.artifacts.get(&key).is_some_and(|a| !a.expired(now)) {
            return Err(RegistryError::AlreadyExists(name.to_string()));
        }
        let created = self.created.entry(owner.clone()).or_default();
        if *created >= self.max_per_job {
            return Err(RegistryError::LimitReached {
                name: name.to_string(),
                limit: self.max_per_job,
            });
        }
        *created += 1;
        self.last_id += 1;
        let artifact = Artifact {
            id: self.last_id,
            owner: owner.clone(),
            name: name.to_string(),
            created_at: now,
            finalized: None,
            expires_at,
        };
        self.artifacts.insert(key, artifact);
        Ok(self.last_id)
    }

    /// Every artifact of every run, by id, expired or not.
    pub(super) fn inspect(&self, rfc3339: impl Fn(SystemTime) -> String) -> Vec<Inspected> {
        let mut all: Vec<&Artifact> = self.artifacts.values().collect();
        all.sort_by_key(|a| a.id);
        all.into_iter()
            .map(|a| Inspected {
                database_id: a.id,
                name: a.name.clone(),
                workflow_run_backend_id: a.owner.run.clone(),
                workflow_job_run_backend_id: a.owner.job.clone(),
                finalized: a.finalized.is_some(),
                created_at: rfc3339(a.created_at),
                expires_at: a.expires_at.map(&rfc3339),
            })
            .collect()
    }

    /// Finalizes the artifact `ids` own under `name`. Finalizing again is accepted and keeps
    /// the first size and digest, so a client retrying a lost answer does not fail.
    pub(super) fn finalize(
        &mut self,
        ids: &BackendIds,
        name: &str,
        finalized: Finalized,
    ) -> Result<u64, RegistryError> {
        let now = SystemTime::now();
        let artifact = self
            .artifacts
            .get_mut(&(ids.run.clone(), name.to_string()))
            .filter(|a| a.owner == *ids && !a.expired(now))
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        artifact.finalized.get_or_insert(finalized);
        Ok(artifact.id)
    }

    /// The finalized artifacts of `run`, by id, optionally only those named `name` or with `id`.
    pub(super) fn list(&self, run: &str, name: Option<&str>, id: Option<u64>) -> Vec<&Artifact> {
        let now = SystemTime::now();
        let mut found: Vec<&Artifact> = self
            .artifacts
            .values()
            .filter(|a| a.owner.run == run && a.finalized.is_some() && !a.expired(now))
            .filter(|a| name.is_none_or(|n| a.name == n))
            .filter(|a| id.is_none_or(|i| a.id == i))
            .collect();
        found.sort_by_key(|a| a.id);
        found
    }

    /// The finalized artifact `name` owned by exactly `ids`.
    pub(super) fn get(&self, ids: &BackendIds, name: &str) -> Result<&Artifact, RegistryError> {
        let now = SystemTime::now();
        self.artifacts
            .get(&(ids.run.clone(), name.to_string()))
            .filter(|a| a.owner == *ids && a.finalized.is_some() && !a.expired(now))
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Removes the finalized artifact `name` owned by exactly `ids`; the name is free again.
    pub(super) fn delete(
        &mut self,
        ids: &BackendIds,
        name: &str,
    ) -> Result<Artifact, RegistryError> {
        self.get(ids, name)?;
        self.artifacts
            .remove(&(ids.run.clone(), name.to_string()))
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(run: &str, job: &str) -> BackendIds {
        BackendIds {
            run: run.into(),
            job: job.into(),
        }
    }

    fn done(size: u64) -> Finalized {
        Finalized { size, digest: None }
    }

    #[test]
    fn names_are_unique_per_run_and_free_again_after_delete() {
        let mut reg = Registry::default();
        let a = reg.create(&ids("r", "j1"), "x", None).unwrap();
        assert!(matches!(
            reg.create(&ids("r", "j2"), "x", None),
            Err(RegistryError::AlreadyExists(_))
        ));
        assert!(reg.create(&ids("other-run", "j1"), "x", None).is_ok());
        reg.finalize(&ids("r", "j1"), "x", done(3)).unwrap();
        assert_eq!(reg.delete(&ids("r", "j1"), "x").unwrap().id, a);
        assert!(reg.create(&ids("r", "j2"), "x", None).unwrap() > a);
    }

    #[test]
    fn only_finalized_artifacts_are_visible() {
        let mut reg = Registry::default();
        let owner = ids("r", "j1");
        reg.create(&owner, "a", None).unwrap();
        let b = reg.create(&owner, "b", None).unwrap();
        assert!(reg.list("r", None, None).is_empty());
        assert!(reg.get(&owner, "a").is_err());
        reg.finalize(&owner, "b", done(5)).unwrap();
        let listed: Vec<_> = reg.list("r", None, None).iter().map(|a| a.id).collect();
        assert_eq!(listed, [b]);
        assert_eq!(reg.list("r", Some("b"), None).len(), 1);
        assert!(reg.list("r", Some("a"), None).is_empty());
        assert!(reg.list("r", None, Some(b + 1)).is_empty());
        assert!(reg.list("other", None, None).is_empty());
    }

    #[test]
    fn another_jobs_ids_do_not_find_an_artifact() {
        let mut reg = Registry::default();
        reg.create(&ids("r", "j1"), "a", None).unwrap();
        assert!(reg.finalize(&ids("r", "j2"), "a", done(0)).is_err());
        reg.finalize(&ids("r", "j1"), "a", done(0)).unwrap();
        assert!(reg.get(&ids("r", "j2"), "a").is_err());
        assert!(reg.delete(&ids("r", "j2"), "a").is_err());
        assert!(reg.get(&ids("r", "j1"), "a").is_ok());
    }

    #[test]
    fn a_job_creates_at_most_its_limit_and_deleting_gives_none_back() {
        let mut reg = Registry::new(2);
        let job = ids("r", "j1");
        reg.create(&job, "a", None).unwrap();
        reg.create(&job, "b", None).unwrap();
        reg.finalize(&job, "b", done(0)).unwrap();
        reg.delete(&job, "b").unwrap();
        let refused = reg.create(&job, "c", None).unwrap_err();
        assert!(
            matches!(refused, RegistryError::LimitReached { limit: 2, .. }),
            "{refused}"
        );
        assert!(reg.create(&ids("r", "j2"), "c", None).is_ok());
    }

    #[test]
    fn an_expired_artifact_is_gone_and_its_name_free() {
        let mut reg = Registry::default();
        let job = ids("r", "j1");
        let past = SystemTime::now() - std::time::Duration::from_secs(1);
        reg.create(&job, "old", Some(past)).unwrap();
        assert!(reg.finalize(&job, "old", done(0)).is_err());
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        reg.create(&job, "old", Some(later)).unwrap();
        reg.finalize(&job, "old", done(0)).unwrap();
        assert_eq!(reg.list("r", None, None).len(), 1);
        let shown = reg.inspect(|t| format!("{t:?}"));
        assert!(shown[0].expires_at.is_some(), "{shown:?}");
    }

    #[test]
    fn finalize_again_keeps_the_first_size() {
        let mut reg = Registry::default();
        let owner = ids("r", "j");
        let id = reg.create(&owner, "a", None).unwrap();
        assert_eq!(reg.finalize(&owner, "a", done(1)).unwrap(), id);
        assert_eq!(reg.finalize(&owner, "a", done(2)).unwrap(), id);
        let size = reg
            .get(&owner, "a")
            .unwrap()
            .finalized
            .as_ref()
            .unwrap()
            .size;
        assert_eq!(size, 1);
    }
}
