//! The Results Twirp `ArtifactService`: create, finalize, list, sign and delete artifacts.
//!
//! Requests carry only the fields every server version accepts (act 0.2.x rejects unknown
//! ones); answers are read tolerantly: unknown fields ignored, int64 fields accepted as JSON
//! strings or numbers, an empty list accepted when protojson leaves the field out.

use std::time::{Duration, SystemTime};

use reqwest::Client;
use serde_json::{Value, json};

use super::blob::{BlobClient, http_client};
use super::{StoreConfig, StoreError, retry};
use crate::token::BackendIds;

/// The Twirp service path below `ACTIONS_RESULTS_URL`.
const SERVICE: &str = "twirp/github.actions.results.api.v1.ArtifactService/";

/// One entry of `ListArtifacts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// The artifact name.
    pub name: String,
    /// The owner's `workflowRunBackendId`.
    pub run_backend_id: String,
    /// The owner's `workflowJobRunBackendId` (use it for `GetSignedArtifactURL` / `DeleteArtifact`).
    pub job_backend_id: String,
    /// `databaseId`.
    pub database_id: i64,
    /// Size in bytes as listed (0 for streams; not meaningful on act).
    pub size: u64,
}

impl ArtifactInfo {
    /// The owner's ids, which requests about this artifact must carry.
    fn owner(&self) -> BackendIds {
        BackendIds {
            run: self.run_backend_id.clone(),
            job: self.job_backend_id.clone(),
        }
    }
}

/// How long what a cluster creates is retained unless it is deleted: a crashed cluster's
/// leftovers go after a day (the shortest retention GitHub's own action offers) instead of the
/// repository's 90-day default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Artifact store client: the Twirp calls here, the composite operations streams and layers
/// need in `transfer`. Cheap to clone (clones share one connection pool).
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    pub(super) cfg: StoreConfig,
    http: Client,
    pub(super) blob: BlobClient,
    retention: Option<Duration>,
}

impl ArtifactStore {
    /// A client for `cfg` whose artifacts expire after [`DEFAULT_RETENTION`].
    pub fn new(cfg: StoreConfig) -> Result<Self, StoreError> {
        let http = http_client();
        let blob = BlobClient::with_http(http.clone(), cfg.retry.clone());
        Ok(Self {
            cfg,
            http,
            blob,
            retention: Some(DEFAULT_RETENTION),
        })
    }

    /// The same client, creating artifacts that expire `retention` after their creation
    /// (`CreateArtifact`'s `expiresAt`), or never before the repository's retention (`None`:
    /// for what should outlive the run, such as reports).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Our own backend ids.
    pub fn ids(&self) -> &BackendIds {
        &self.cfg.ids
    }

    /// One Twirp call with retries; maps `already_exists` and `not_found` to their variants.
    async fn call(
        &self,
        method: &'static str,
        artifact: &str,
        body: Value,
    ) -> Result<Value, StoreError> {
        let url = format!("{}{SERVICE}{method}", self.cfg.results_url);
        let response = retry::send(&self.cfg.retry, method, artifact, || {
            self.http
                .post(&url)
                .bearer_auth(&self.cfg.token)
                .json(&body)
        })
        .await?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let error = StoreError::from_response(method, artifact, response).await;
            // A listing names no artifact: its 404 (say, an unknown run) stays an HTTP error.
            return Err(match status {
                409 if !artifact.is_empty() => StoreError::AlreadyExists(artifact.to_string()),
                404 if !artifact.is_empty() => StoreError::NotFound(artifact.to_string()),
                _ => error,
            });
        }
        response.json().await.map_err(|e| StoreError::Protocol {
            op: method,
            artifact: artifact.to_string(),
            message: format!("the answer is not JSON: {e}"),
        })
    }

    /// The request body fields every call carries: the given ids.
    fn ids_body(ids: &BackendIds) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        body.insert("workflowRunBackendId".into(), json!(ids.run));
        body.insert("workflowJobRunBackendId".into(), json!(ids.job));
        body
    }

    /// `CreateArtifact`: returns the signed upload URL.
    pub async fn create_artifact(&self, name: &str) -> Result<String, StoreError> {
        let mut body = Self::ids_body(self.ids());
        body.insert("name".into(), json!(name));
        body.insert("version".into(), json!(4));
        if let Some(retention) = self.retention {
            let at = humantime::format_rfc3339_seconds(SystemTime::now() + retention);
            body.insert("expiresAt".into(), json!(at.to_string()));
        }
        let answer = self.call("CreateArtifact", name, body.into()).await?;
        check_ok("CreateArtifact", name, &answer)?;
        string_field("CreateArtifact", name, &answer, "signedUploadUrl")
    }

    /// `FinalizeArtifact`: returns the artifact id.
    pub async fn finalize_artifact(
        &self,
        name: &str,
        size: u64,
        sha256_hex: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut body = Self::ids_body(self.ids());
        body.insert("name".into(), json!(name));
        body.insert("size".into(), json!(size.to_string()));
        if let Some(hex) = sha256_hex {
            body.insert("hash".into(), json!(format!("sha256:{hex}")));
        }
        let answer = self.call("FinalizeArtifact", name, body.into()).await?;
        check_ok("FinalizeArtifact", name, &answer)?;
        int_field("FinalizeArtifact", name, &answer, "artifactId")
    }

    /// `ListArtifacts` of this run, optionally with an exact-name filter.
    pub async fn list(&self, name_filter: Option<&str>) -> Result<Vec<ArtifactInfo>, StoreError> {
        let mut body = Self::ids_body(self.ids());
        if let Some(name) = name_filter {
            body.insert("nameFilter".into(), json!(name));
        }
        let artifact = name_filter.unwrap_or("");
        let answer = self.call("ListArtifacts", artifact, body.into()).await?;
        let entries = match answer.get("artifacts") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                return Err(StoreError::Protocol {
                    op: "ListArtifacts",
                    artifact: artifact.to_string(),
                    message: format!("'artifacts' is not a list: {other}"),
                });
            }
        };
        entries
            .iter()
            .map(|entry| {
                let name = string_field("ListArtifacts", artifact, entry, "name")?;
                Ok(ArtifactInfo {
                    run_backend_id: string_field(
                        "ListArtifacts",
                        &name,
                        entry,
                        "workflowRunBackendId",
                    )
                    .unwrap_or_else(|_| self.ids().run.clone()),
                    job_backend_id: string_field(
                        "ListArtifacts",
                        &name,
                        entry,
                        "workflowJobRunBackendId",
                    )
                    .unwrap_or_else(|_| self.ids().job.clone()),
                    database_id: int_field("ListArtifacts", &name, entry, "databaseId")?,
                    size: int_field("ListArtifacts", &name, entry, "size")
                        .map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                    name,
                })
            })
            .collect()
    }

    /// The listed artifact of exactly this name, if any (the newest, should there be several).
    pub async fn find(&self, name: &str) -> Result<Option<ArtifactInfo>, StoreError> {
        Ok(self
            .list(Some(name))
            .await?
            .into_iter()
            .filter(|a| a.name == name)
            .max_by_key(|a| a.database_id))
    }

    /// `GetSignedArtifactURL` for a listed artifact (with the owner's ids).
    pub async fn download_url(&self, artifact: &ArtifactInfo) -> Result<String, StoreError> {
        let mut body = Self::ids_body(&artifact.owner());
        body.insert("name".into(), json!(artifact.name));
        let answer = self
            .call("GetSignedArtifactURL", &artifact.name, body.into())
            .await?;
        string_field("GetSignedArtifactURL", &artifact.name, &answer, "signedUrl")
    }

    /// `DeleteArtifact` for a listed artifact (with the owner's ids, as GitHub requires for
    /// another job's artifact). An artifact already gone is [`StoreError::NotFound`].
    pub async fn delete(&self, artifact: &ArtifactInfo) -> Result<(), StoreError> {
        let mut body = Self::ids_body(&artifact.owner());
        body.insert("name".into(), json!(artifact.name));
        let answer = self
            .call("DeleteArtifact", &artifact.name, body.into())
            .await?;
        check_ok("DeleteArtifact", &artifact.name, &answer)
    }
}

/// Refuses an answer that says `"ok": false` (an absent `ok` is protojson's false, but act
/// and older servers leave it out on success too, so only an explicit false counts).
fn check_ok(op: &'static str, artifact: &str, answer: &Value) -> Result<(), StoreError> {
    if answer.get("ok") == Some(&Value::Bool(false)) {
        return Err(StoreError::Protocol {
            op,
            artifact: artifact.to_string(),
            message: format!("the server answered ok: false ({answer})"),
        });
    }
    Ok(())
}

fn missing(op: &'static str, artifact: &str, field: &str, answer: &Value) -> StoreError {
    StoreError::Protocol {
        op,
        artifact: artifact.to_string(),
        message: format!("no usable '{field}' in {answer}"),
    }
}

/// A string field of an answer.
fn string_field(
    op: &'static str,
    artifact: &str,
    answer: &Value,
    field: &str,
) -> Result<String, StoreError> {
    answer
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing(op, artifact, field, answer))
}

/// An int64 field, which protojson writes as a string (and others as a number).
fn int_field(
    op: &'static str,
    artifact: &str,
    answer: &Value,
    field: &str,
) -> Result<i64, StoreError> {
    match answer.get(field) {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| missing(op, artifact, field, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_fields_are_read_from_strings_and_numbers() {
        let answer = json!({"a": "42", "b": 7, "c": "x"});
        assert_eq!(int_field("op", "n", &answer, "a").unwrap(), 42);
        assert_eq!(int_field("op", "n", &answer, "b").unwrap(), 7);
        let e = int_field("op", "n", &answer, "c").unwrap_err().to_string();
        assert!(
            e.contains("'c'") && e.contains("op") && e.contains("'n'"),
            "{e}"
        );
    }

    #[test]
    fn only_an_explicit_false_ok_is_refused() {
        assert!(check_ok("op", "n", &json!({"ok": true})).is_ok());
        assert!(check_ok("op", "n", &json!({})).is_ok());
        assert!(check_ok("op", "n", &json!({"ok": false})).is_err());
    }
}
