//! The artifact registry: which artifacts exist in which workflow run, who owns them and
//! whether they are finalized, with github.com's rules (names unique per run, only finalized
//! artifacts visible, another job's ids do not find an artifact). Blob bytes live elsewhere.

use std::collections::HashMap;
use std::time::SystemTime;

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
}

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
}

/// All artifacts, keyed by (run, name).
#[derive(Debug, Default)]
pub(super) struct Registry {
    last_id: u64,
    artifacts: HashMap<(String, String), Artifact>,
}

impl Registry {
    /// Creates an unfinalized artifact owned by `owner`; returns its id.
    pub(super) fn create(&mut self, owner: &BackendIds, name: &str) -> Result<u64, RegistryError> {
        let key = (owner.run.clone(), name.to_string());
        if self.artifacts.contains_key(&key) {
            return Err(RegistryError::AlreadyExists(name.to_string()));
        }
        self.last_id += 1;
        let artifact = Artifact {
            id: self.last_id,
            owner: owner.clone(),
            name: name.to_string(),
            created_at: SystemTime::now(),
            finalized: None,
        };
        self.artifacts.insert(key, artifact);
        Ok(self.last_id)
    }

    /// Finalizes the artifact `ids` own under `name`. Finalizing again is accepted and keeps
    /// the first size and digest, so a client retrying a lost answer does not fail.
    pub(super) fn finalize(
        &mut self,
        ids: &BackendIds,
        name: &str,
        finalized: Finalized,
    ) -> Result<u64, RegistryError> {
        let artifact = self
            .artifacts
            .get_mut(&(ids.run.clone(), name.to_string()))
            .filter(|a| a.owner == *ids)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        artifact.finalized.get_or_insert(finalized);
        Ok(artifact.id)
    }

    /// The finalized artifacts of `run`, by id, optionally only those named `name` or with `id`.
    pub(super) fn list(&self, run: &str, name: Option<&str>, id: Option<u64>) -> Vec<&Artifact> {
        let mut found: Vec<&Artifact> = self
            .artifacts
            .values()
            .filter(|a| a.owner.run == run && a.finalized.is_some())
            .filter(|a| name.is_none_or(|n| a.name == n))
            .filter(|a| id.is_none_or(|i| a.id == i))
            .collect();
        found.sort_by_key(|a| a.id);
        found
    }

    /// The finalized artifact `name` owned by exactly `ids`.
    pub(super) fn get(&self, ids: &BackendIds, name: &str) -> Result<&Artifact, RegistryError> {
        self.artifacts
            .get(&(ids.run.clone(), name.to_string()))
            .filter(|a| a.owner == *ids && a.finalized.is_some())
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
        let a = reg.create(&ids("r", "j1"), "x").unwrap();
        assert!(matches!(
            reg.create(&ids("r", "j2"), "x"),
            Err(RegistryError::AlreadyExists(_))
        ));
        assert!(reg.create(&ids("other-run", "j1"), "x").is_ok());
        reg.finalize(&ids("r", "j1"), "x", done(3)).unwrap();
        assert_eq!(reg.delete(&ids("r", "j1"), "x").unwrap().id, a);
        assert!(reg.create(&ids("r", "j2"), "x").unwrap() > a);
    }

    #[test]
    fn only_finalized_artifacts_are_visible() {
        let mut reg = Registry::default();
        let owner = ids("r", "j1");
        reg.create(&owner, "a").unwrap();
        let b = reg.create(&owner, "b").unwrap();
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
        reg.create(&ids("r", "j1"), "a").unwrap();
        assert!(reg.finalize(&ids("r", "j2"), "a", done(0)).is_err());
        reg.finalize(&ids("r", "j1"), "a", done(0)).unwrap();
        assert!(reg.get(&ids("r", "j2"), "a").is_err());
        assert!(reg.delete(&ids("r", "j2"), "a").is_err());
        assert!(reg.get(&ids("r", "j1"), "a").is_ok());
    }

    #[test]
    fn finalize_again_keeps_the_first_size() {
        let mut reg = Registry::default();
        let owner = ids("r", "j");
        let id = reg.create(&owner, "a").unwrap();
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
