//! Where the artifact service is and who we are to it: `ACTIONS_RESULTS_URL` and
//! `ACTIONS_RUNTIME_TOKEN`, checked up front so a bad value fails with a message that names
//! the variable and what was expected, not with an HTTP error later.

use url::Url;

use super::{RetryPolicy, StoreError};
use crate::credentials::{RESULTS_URL_VAR, RUNTIME_TOKEN_VAR};
use crate::token::{BackendIds, backend_ids};

/// Where the artifact service is and who we are to it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `ACTIONS_RESULTS_URL`, always ending in `/`.
    pub results_url: Url,
    /// `ACTIONS_RUNTIME_TOKEN`.
    pub token: String,
    /// Parsed from the token's `scp` claim.
    pub ids: BackendIds,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
}

impl StoreConfig {
    /// From `ACTIONS_RESULTS_URL` and `ACTIONS_RUNTIME_TOKEN`; errors name the variable and
    /// what was expected.
    pub fn from_env() -> Result<Self, StoreError> {
        let var = |name: &str| match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(v),
            Ok(_) => Err(StoreError::Config(format!("{name} is set but empty"))),
            Err(std::env::VarError::NotPresent) => Err(StoreError::Config(format!(
                "{name} is not set: cluster-action needs the workflow run's artifact credentials \
                 ({RESULTS_URL_VAR} and {RUNTIME_TOKEN_VAR})"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(StoreError::Config(format!("{name} is not valid UTF-8")))
            }
        };
        Self::new(&var(RESULTS_URL_VAR)?, &var(RUNTIME_TOKEN_VAR)?)
    }

    /// From explicit values (validated as `from_env` does).
    pub fn new(results_url: &str, token: &str) -> Result<Self, StoreError> {
        let results_url = parse_base_url(results_url)?;
        let token = token.trim().to_string();
        let ids = backend_ids(&token).map_err(|e| {
            StoreError::Config(format!(
                "{RUNTIME_TOKEN_VAR} is not a usable runtime token: {e}"
            ))
        })?;
        Ok(Self {
            results_url,
            token,
            ids,
            retry: super::retry::REQUEST_RETRY,
        })
    }
}

/// An absolute http(s) URL with a host, normalised to end in `/` so paths join below it.
fn parse_base_url(text: &str) -> Result<Url, StoreError> {
    let bad = |why: &str| {
        StoreError::Config(format!(
            "{RESULTS_URL_VAR} must be an absolute http:// or https:// URL such as \
             https://results-receiver.actions.githubusercontent.com/, got {text:?}: {why}"
        ))
    };
    let mut url = Url::parse(text.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme is not http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("there is no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::make_token;

    fn token() -> String {
        make_token(&BackendIds {
            run: "r1".into(),
            job: "j1".into(),
        })
    }

    #[test]
    fn a_good_url_and_token_give_ids_and_a_slash_terminated_base() {
        let cfg = StoreConfig::new("http://127.0.0.1:8080/base", &token()).unwrap();
        assert_eq!(cfg.results_url.as_str(), "http://127.0.0.1:8080/base/");
        assert_eq!(cfg.ids.run, "r1");
        assert_eq!(cfg.ids.job, "j1");
    }

    #[test]
    fn bad_urls_name_the_variable_and_the_expected_form() {
        for bad in ["", "127.0.0.1:80", "ftp://x/", "http://x/?a=b", "not a url"] {
            let e = StoreConfig::new(bad, &token()).unwrap_err().to_string();
            assert!(e.contains("ACTIONS_RESULTS_URL"), "{e}");
            assert!(e.contains("http://"), "{e}");
        }
    }

    #[test]
    fn bad_tokens_name_the_variable_and_what_is_missing() {
        let e = StoreConfig::new("http://127.0.0.1/", "abc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ACTIONS_RUNTIME_TOKEN"), "{e}");
        assert!(e.contains("JWT"), "{e}");
        let e = StoreConfig::new("http://127.0.0.1/", "a.e30.c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Actions.Results:<run>:<job>"), "{e}");
    }
}
