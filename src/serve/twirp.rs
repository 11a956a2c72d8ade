//! The Twirp half: `github.actions.results.api.v1.ArtifactService` over JSON, as github.com
//! answers it.
//!
//! Requests are read as protojson: camelCase or snake_case names, unknown fields ignored,
//! int64 as a number or a string, wrapper types (`nameFilter`, `idFilter`, `hash`) bare or as
//! `{"value": …}`. Answers are protojson: camelCase, int64 as strings. The caller is the job in
//! the bearer token's `scp` claim; the ids in the body must name the token's run, and for
//! `CreateArtifact`/`FinalizeArtifact` its job too. Errors are Twirp's `{"code","msg"}`.
//!
//! `CreateArtifact` honours `expiresAt` (a protojson `Timestamp`: RFC 3339, or
//! `{"seconds","nanos"}`): the artifact is gone from then on. A job's 501st create is refused
//! with Twirp `failed_precondition` (HTTP 412, which no client retries) and a message naming the
//! limit; GitHub documents the limit, not its error text, so the text is ours.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::artifacts::{Finalized, RegistryError};
use super::faults::{Fault, RETRY_AFTER_SECS};
use super::sign::Access;
use super::{App, rfc3339};
use crate::token::{self, BackendIds};

/// The service's methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    CreateArtifact,
    FinalizeArtifact,
    ListArtifacts,
    GetSignedArtifactURL,
    DeleteArtifact,
}

impl Method {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "CreateArtifact" => Self::CreateArtifact,
            "FinalizeArtifact" => Self::FinalizeArtifact,
            "ListArtifacts" => Self::ListArtifacts,
            "GetSignedArtifactURL" => Self::GetSignedArtifactURL,
            "DeleteArtifact" => Self::DeleteArtifact,
            _ => return None,
        })
    }

    /// Whether the body's job id must be the caller's own (the artifact is the caller's).
    fn acts_as_owner(self) -> bool {
        matches!(self, Self::CreateArtifact | Self::FinalizeArtifact)
    }
}

/// A Twirp error answer.
#[derive(Debug)]
pub(super) struct TwirpError {
    code: &'static str,
    msg: String,
}

impl TwirpError {
    fn new(code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self.code {
            "invalid_argument" | "malformed" => StatusCode::BAD_REQUEST,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" | "bad_route" => StatusCode::NOT_FOUND,
            "already_exists" => StatusCode::CONFLICT,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn from_fault(fault: Fault) -> Self {
        match fault {
            Fault::Internal => Self::new("internal", "injected fault"),
            Fault::Unavailable => Self::new("unavailable", "injected fault"),
            Fault::Throttled => Self::new("resource_exhausted", "injected throttling"),
        }
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        let mut response =
            (status, Json(json!({"code": self.code, "msg": self.msg}))).into_response();
        if throttled {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<RegistryError> for TwirpError {
    fn from(e: RegistryError) -> Self {
        let code = match e {
            RegistryError::AlreadyExists(_) => "already_exists",
            RegistryError::NotFound(_) => "not_found",
            RegistryError::LimitReached { .. } => "failed_precondition",
        };
        Self::new(code, e.to_string())
    }
}

/// A protojson int64: a number or a decimal string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Int64 {
    Number(i64),
    Text(String),
}

impl Int64 {
    fn value(&self, field: &str) -> Result<i64, TwirpError> {
        match self {
            Int64::Number(n) => Ok(*n),
            Int64::Text(s) => s.parse().map_err(|_| {
                TwirpError::new(
                    "invalid_argument",
                    format!("{field}: {s:?} is not an int64"),
                )
            }),
        }
    }
}

/// A protobuf wrapper type (`StringValue`, `Int64Value`): bare in protojson, boxed in
/// hand-written clients.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Wrapped<T> {
    Bare(T),
    Boxed { value: T },
}

impl<T> Wrapped<T> {
    fn get(&self) -> &T {
        match self {
            Wrapped::Bare(v) | Wrapped::Boxed { value: v } => v,
        }
    }
}

/// A protojson `google.protobuf.Timestamp`: an RFC 3339 string, or the message's fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Text(String),
    Fields {
        #[serde(default)]
        seconds: Option<Int64>,
        #[serde(default)]
        nanos: Option<u32>,
    },
}

impl Timestamp {
    fn value(&self, field: &str) -> Result<SystemTime, TwirpError> {
        let bad = |why: String| TwirpError::new("invalid_argument", format!("{field}: {why}"));
        match self {
            Timestamp::Text(s) => humantime::parse_rfc3339_weak(s)
                .map_err(|e| bad(format!("{s:?} is not an RFC 3339 timestamp: {e}"))),
            Timestamp::Fields { seconds, nanos } => {
                let secs = seconds.as_ref().map_or(Ok(0), |s| s.value(field))?;
                let secs = u64::try_from(secs).map_err(|_| bad("before 1970".into()))?;
                Ok(UNIX_EPOCH
                    + Duration::from_secs(secs)
                    + Duration::from_nanos(u64::from(nanos.unwrap_or(0))))
            }
        }
    }
}

/// The union of the methods' request fields (each method reads what it needs).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    #[serde(rename = "workflowRunBackendId", alias = "workflow_run_backend_id")]
    run: String,
    #[serde(
        rename = "workflowJobRunBackendId",
        alias = "workflow_job_run_backend_id"
    )]
    job: String,
    name: String,
    size: Option<Int64>,
    hash: Option<Wrapped<String>>,
    #[serde(rename = "nameFilter", alias = "name_filter")]
    name_filter: Option<Wrapped<String>>,
    #[serde(rename = "idFilter", alias = "id_filter")]
    id_filter: Option<Wrapped<Int64>>,
    #[serde(rename = "expiresAt", alias = "expires_at")]
    expires_at: Option<Timestamp>,
}

impl Request {
    fn ids(&self) -> BackendIds {
        BackendIds {
            run: self.run.clone(),
            job: self.job.clone(),
        }
    }

    fn name(&self) -> Result<&str, TwirpError> {
        const FORBIDDEN: &[char] = &['"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/'];
        if self.name.is_empty() {
            return Err(TwirpError::new("invalid_argument", "name is required"));
        }
        if self.name.contains(FORBIDDEN) {
            return Err(TwirpError::new(
                "invalid_argument",
                format!(
                    "artifact name {:?} contains one of {FORBIDDEN:?}",
                    self.name
                ),
            ));
        }
        Ok(&self.name)
    }
}

/// `POST /twirp/github.actions.results.api.v1.ArtifactService/{method}`.
pub(super) async fn handle(
    State(app): State<Arc<App>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let known = Method::parse(&method);
    app.stats
        .count_twirp(if known.is_some() { &method } else { "unknown" });
    if let Some(fault) = app.faults.before_request().await {
        return TwirpError::from_fault(fault).into_response();
    }
    let Some(method) = known else {
        return TwirpError::new("bad_route", format!("no such method: {method}")).into_response();
    };
    match answer(&app, method, &headers, &body).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(
    app: &App,
    method: Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, TwirpError> {
    let caller = caller(headers)?;
    let request: Request = serde_json::from_slice(body).map_err(|e| {
        TwirpError::new("malformed", format!("the body is not a valid request: {e}"))
    })?;
    if request.run != caller.run {
        return Err(TwirpError::new(
            "permission_denied",
            format!(
                "workflowRunBackendId {:?} is not the token's run {:?}",
                request.run, caller.run
            ),
        ));
    }
    if method.acts_as_owner() && request.job != caller.job {
        return Err(TwirpError::new(
            "permission_denied",
            format!(
                "workflowJobRunBackendId {:?} is not the token's job {:?}",
                request.job, caller.job
            ),
        ));
    }
    match method {
        Method::CreateArtifact => create(app, &request),
        Method::FinalizeArtifact => finalize(app, &request),
        Method::ListArtifacts => list(app, &request),
        Method::GetSignedArtifactURL => signed_url(app, &request),
        Method::DeleteArtifact => delete(app, &request).await,
    }
}

/// The backend ids of the bearer token's `scp` claim.
fn caller(headers: &HeaderMap) -> Result<BackendIds, TwirpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            TwirpError::new(
                "unauthenticated",
                "an 'Authorization: Bearer <runtime token>' header is required",
            )
        })?;
    token::backend_ids(token)
        .map_err(|e| TwirpError::new("unauthenticated", format!("bad runtime token: {e}")))
}

fn create(app: &App, request: &Request) -> Result<Value, TwirpError> {
    let name = request.name()?;
    let expires_at = match &request.expires_at {
        Some(at) => Some(at.value("expiresAt")?),
        None => None,
    };
    let id = app.registry().create(&request.ids(), name, expires_at)?;
    app.blobs.register(id);
    let url = app
        .signer
        .url(&app.base_url, id, Access::Write, app.url_ttl);
    Ok(json!({"ok": true, "signedUploadUrl": url}))
}

fn finalize(app: &App, request: &Request) -> Result<Value, TwirpError> {
    let name = request.name()?;
    let size = match &request.size {
        Some(size) => u64::try_from(size.value("size")?)
            .map_err(|_| TwirpError::new("invalid_argument", "size must not be negative"))?,
        None => 0,
    };
    let digest = request.hash.as_ref().map(|h| h.get().clone());
    let id = app
        .registry()
        .finalize(&request.ids(), name, Finalized { size, digest })?;
    Ok(json!({"ok": true, "artifactId": id.to_string()}))
}

fn list(app: &App, request: &Request) -> Result<Value, TwirpError> {
    let id_filter = match &request.id_filter {
        // A negative id matches nothing, like an id that does not exist.
        Some(id) => Some(u64::try_from(id.get().value("idFilter")?).unwrap_or(u64::MAX)),
        None => None,
    };
    let name_filter = request.name_filter.as_ref().map(|n| n.get().as_str());
    let registry = app.registry();
    let artifacts: Vec<Value> = registry
        .list(&request.run, name_filter, id_filter)
        .into_iter()
        .map(|a| {
            let mut entry = json!({
                "workflowRunBackendId": a.owner.run,
                "workflowJobRunBackendId": a.owner.job,
                "databaseId": a.id.to_string(),
                "name": a.name,
                "size": a.finalized.as_ref().map_or(0, |f| f.size).to_string(),
                "createdAt": rfc3339(a.created_at),
            });
            if let Some(digest) = a.finalized.as_ref().and_then(|f| f.digest.as_ref()) {
                entry["digest"] = json!(digest);
            }
            entry
        })
        .collect();
    Ok(json!({ "artifacts": artifacts }))
}

fn signed_url(app: &App, request: &Request) -> Result<Value, TwirpError> {
    let name = request.name()?;
    let id = app.registry().get(&request.ids(), name)?.id;
    let url = app.signer.url(&app.base_url, id, Access::Read, app.url_ttl);
    Ok(json!({ "signedUrl": url }))
}

async fn delete(app: &App, request: &Request) -> Result<Value, TwirpError> {
    let name = request.name()?;
    let artifact = app.registry().delete(&request.ids(), name)?;
    app.blobs
        .remove(artifact.id)
        .await
        .map_err(|e| TwirpError::new("internal", format!("deleting the blob of '{name}': {e}")))?;
    Ok(json!({"ok": true, "artifactId": artifact.id.to_string()}))
}
