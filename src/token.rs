//! The Actions runtime token: where the artifact backend ids come from.
//!
//! `ACTIONS_RUNTIME_TOKEN` is a JWT whose `scp` claim holds, among space-separated scopes,
//! `Actions.Results:<workflowRunBackendId>:<workflowJobRunBackendId>`. Every artifact request
//! carries those two ids. Nothing here checks the signature: GitHub does that server-side, and
//! the local service trusts the claim by design (it only binds loopback).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The two ids that scope every artifact request to one workflow run and one job of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendIds {
    /// `workflowRunBackendId`: shared by every job of the run.
    pub run: String,
    /// `workflowJobRunBackendId`: the job that owns the artifacts it creates.
    pub job: String,
}

/// Why a runtime token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token does not have the three dot-separated parts of a JWT.
    #[error("expected a JWT (three base64url parts separated by '.'), got {parts} part(s)")]
    NotAJwt {
        /// How many parts were found.
        parts: usize,
    },
    /// The payload is not base64url-encoded JSON.
    #[error("the JWT payload is not base64url-encoded JSON: {0}")]
    BadPayload(String),
    /// No `Actions.Results:<run>:<job>` scope in the `scp` claim.
    #[error("the JWT has no 'scp' claim with an 'Actions.Results:<run>:<job>' scope (scp = {0:?})")]
    NoResultsScope(String),
}

/// Reads the backend ids from the `scp` claim of a runtime token.
pub fn backend_ids(token: &str) -> Result<BackendIds, TokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(TokenError::NotAJwt { parts: parts.len() });
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|e| TokenError::BadPayload(e.to_string()))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| TokenError::BadPayload(e.to_string()))?;
    let scp = claims
        .get("scp")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    scp.split(' ')
        .find_map(|scope| {
            let rest = scope.strip_prefix("Actions.Results:")?;
            let (run, job) = rest.split_once(':')?;
            (!run.is_empty() && !job.is_empty()).then(|| BackendIds {
                run: run.to_string(),
                job: job.to_string(),
            })
        })
        .ok_or_else(|| TokenError::NoResultsScope(scp.to_string()))
}

/// Makes an unsigned runtime token for the local artifact service (which, like act's,
/// trusts the claim). The signature part is a fixed placeholder.
pub fn make_token(ids: &BackendIds) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "scp": format!("Actions.ExampleScope Actions.Results:{}:{}", ids.run, ids.job),
        "iss": "cluster-action",
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.bG9jYWw")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ids = BackendIds {
            run: "r-1".into(),
            job: "j-2".into(),
        };
        assert_eq!(backend_ids(&make_token(&ids)).unwrap(), ids);
    }

    #[test]
    fn rejects_non_jwt_and_missing_scope() {
        assert!(matches!(
            backend_ids("abc"),
            Err(TokenError::NotAJwt { parts: 1 })
        ));
        let payload = URL_SAFE_NO_PAD.encode(br#"{"scp":"Actions.Other"}"#);
        let err = backend_ids(&format!("e30.{payload}.x")).unwrap_err();
        assert!(err.to_string().contains("Actions.Results"), "{err}");
        assert!(matches!(
            backend_ids("a.!!!.c"),
            Err(TokenError::BadPayload(_))
        ));
    }
}
