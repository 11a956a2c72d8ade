//! The environment variables that carry credentials, in one list: the artifact store's, the
//! cluster secret and the REST token of the timing history. Each module that reads one names
//! it from here, and what hides them (from jobs, and from `/proc`) reads [`HIDDEN_VARS`].

/// The variable holding the artifact service's base URL.
pub const RESULTS_URL_VAR: &str = "ACTIONS_RESULTS_URL";
/// The variable holding the runtime token (a JWT) of the artifact service.
pub const RUNTIME_TOKEN_VAR: &str = "ACTIONS_RUNTIME_TOKEN";
/// The variable that holds the cluster secret (never a flag: every process can read another's
/// argv).
pub const SECRET_VAR: &str = "CLUSTER_SECRET";
/// The token the timing history's REST calls carry; it needs `actions: read`.
pub const GITHUB_TOKEN_VAR: &str = "GITHUB_TOKEN";

/// Credentials of the worker's own step that a job must not see: a plain `run:` step does not
/// get the artifact ones either, and with them a job could delete or forge the cluster's
/// artifacts; with the cluster secret it could open every sealed one, and a job that prints
/// its environment would put the secret in the reports (a manifest that means to pass it
/// names it in `secret-env`, which masks it). `GITHUB_TOKEN`, which the action gives a run for
/// timing history, is GitHub's token of the workflow: GitHub puts it in no step's environment.
pub const HIDDEN_VARS: &[&str] = &[
    SECRET_VAR,
    GITHUB_TOKEN_VAR,
    RUNTIME_TOKEN_VAR,
    RESULTS_URL_VAR,
    "ACTIONS_RUNTIME_URL",
    "ACTIONS_CACHE_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
];
