//! Timing history and earlier attempts' results from GitHub's REST API, with no service: the
//! previous attempts of this run (`GET /repos/{o}/{r}/actions/runs/{id}/artifacts`; the runtime
//! artifact service only sees the current attempt) and the newest timings of this workflow on
//! the default branch (`GET /repos/{o}/{r}/actions/artifacts?name=…`). Default-branch history
//! is taken only from a run of this repository's own code (not a fork's pull request from its
//! own `main`), of this workflow, from a push or a schedule: what the list says of each
//! artifact's run (`head_repository_id`) and, for the newest few, the run itself (`GET
//! …/actions/runs/{id}`: its `event` and `workflow_id`, and this run's own). Each source costs
//! one list and one download (earlier attempts: a list by name per attempt looked at, newest
//! first, usually one), the default branch's also at most [`MAX_RUN_LOOKUPS`] + 1 run
//! lookups and, when its newest page holds only other branches', up to [`MAX_LIST_PAGES`]
//! pages of the list, far inside `GITHUB_TOKEN`'s 1,000 requests an hour. Nothing here fails
//! a run: a source that cannot be read (no token, no permission, no artifact, a corrupt one)
//! is a [`Miss`], one line for the log, and the run goes on with estimates.
//!
//! A sealed cluster ([`fetch_sealed_history`]) looks for its documents under their sealed
//! names and opens them with the history keys of its secret ([`crate::history::HistorySeal`]);
//! history sealed under another secret, or none, is not found: one line, as with no history.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use octocrab::Octocrab;
use octocrab::models::workflows::WorkflowListArtifact;

use super::ArtifactDocument;
use super::HistorySeal;
use super::document::MAX_DOCUMENT_BYTES;
use super::results::{AttemptResults, results_artifact_name};
use super::timings::{Timings, timings_artifact_name};
use crate::credentials::GITHUB_TOKEN_VAR;

/// The REST API's base URL (GitHub Enterprise Server sets its own).
pub const API_URL_VAR: &str = "GITHUB_API_URL";
/// `owner/repo`.
pub const REPOSITORY_VAR: &str = "GITHUB_REPOSITORY";
/// The workflow run's id.
pub const RUN_ID_VAR: &str = "GITHUB_RUN_ID";
/// The run attempt: 1, then 2, 3… for each re-run.
pub const RUN_ATTEMPT_VAR: &str = "GITHUB_RUN_ATTEMPT";
/// The event's JSON, which names the repository's default branch.
pub const EVENT_PATH_VAR: &str = "GITHUB_EVENT_PATH";
/// `owner/repo/.github/workflows/FILE@REF`: which workflow this is.
pub const WORKFLOW_REF_VAR: &str = "GITHUB_WORKFLOW_REF";
/// github.com's API, when `GITHUB_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Artifacts asked for in one list request (GitHub's maximum page).
const PAGE_SIZE: u8 = 100;
/// Pages of the repository's listing read at most for the default branch's timings.
pub const MAX_LIST_PAGES: u32 = 5;
/// How long a REST request may take before the source counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Candidate runs looked up, newest first, for one whose default-branch timings may be taken.
pub const MAX_RUN_LOOKUPS: usize = 3;
/// The events whose runs on the default branch run its own code as pushed: only they feed
/// history (a pull request's or a manual run's code may be anyone's).
const HISTORY_EVENTS: [&str; 2] = ["push", "schedule"];

/// Where this workflow run is on GitHub, from the variables every Actions job has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRun {
    /// `GITHUB_API_URL`.
    pub api_url: String,
    /// `GITHUB_TOKEN`, when the job passes it.
    pub token: Option<String>,
    /// The repository's owner.
    pub owner: String,
    /// The repository's name.
    pub repo: String,
    /// `GITHUB_RUN_ID`.
    pub run_id: u64,
    /// `GITHUB_RUN_ATTEMPT` (1 when unset).
    pub attempt: u32,
    /// `repository.default_branch` of the event, when it names one.
    pub default_branch: Option<String>,
    /// The workflow's file name, from `GITHUB_WORKFLOW_REF`.
    pub workflow: Option<String>,
}

/// A GitHub variable with a value this build cannot use (exit 2: bad input).
#[derive(Debug, thiserror::Error)]
#[error("{var} {problem}")]
pub struct RunEnvError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl GithubRun {
    /// From the process environment; none outside a workflow run (`GITHUB_RUN_ID` unset).
    pub fn from_env() -> Result<Option<Self>, RunEnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From variables looked up by `var`, validated as [`GithubRun::from_env`] does.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, RunEnvError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let Some(run_id) = set(RUN_ID_VAR) else {
            return Ok(None);
        };
        let run_id = positive(RUN_ID_VAR, &run_id)?;
        let attempt = match set(RUN_ATTEMPT_VAR) {
            Some(text) => {
                u32::try_from(positive(RUN_ATTEMPT_VAR, &text)?).map_err(|_| RunEnvError {
                    var: RUN_ATTEMPT_VAR,
                    problem: format!("is {text:?}, too large for a run attempt"),
                })?
            }
            None => 1,
        };
        let repository = set(REPOSITORY_VAR).unwrap_or_default();
        let Some((owner, repo)) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        else {
            return Err(RunEnvError {
                var: REPOSITORY_VAR,
                problem: format!("must be owner/repo, got {repository:?}"),
            });
        };
        let api_url = set(API_URL_VAR).unwrap_or_else(|| DEFAULT_API_URL.to_string());
        if url::Url::parse(&api_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(RunEnvError {
                var: API_URL_VAR,
                problem: format!(
                    "must be an http(s) URL such as {DEFAULT_API_URL}, got {api_url:?}"
                ),
            });
        }
        Ok(Some(Self {
            api_url: api_url.trim_end_matches('/').to_string(),
            token: set(GITHUB_TOKEN_VAR),
            owner: owner.to_string(),
            repo: repo.to_string(),
            run_id,
            attempt,
            default_branch: set(EVENT_PATH_VAR).and_then(|p| default_branch(Path::new(&p))),
            workflow: set(WORKFLOW_REF_VAR).and_then(|r| workflow_file(&r)),
        }))
    }
}

/// A positive whole number, or an error naming the variable.
fn positive(var: &'static str, text: &str) -> Result<u64, RunEnvError> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 && text.trim().bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(RunEnvError {
            var,
            problem: format!("must be a positive whole number (as GitHub sets it), got {text:?}"),
        }),
    }
}

/// The most the event JSON (`GITHUB_EVENT_PATH`) is read up to: GitHub caps an event's
/// payload at 25 MB.
pub const MAX_EVENT_BYTES: u64 = 32 << 20;

/// The event JSON at `path` (`GITHUB_EVENT_PATH`), when it is a regular file of at most
/// [`MAX_EVENT_BYTES`] holding JSON.
pub fn read_event(path: &Path) -> Option<serde_json::Value> {
    let bytes = crate::input_file::read_bounded(path, MAX_EVENT_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `repository.default_branch` of the event JSON at `path`, if it has one.
fn default_branch(path: &Path) -> Option<String> {
    let event = read_event(path)?;
    Some(event["repository"]["default_branch"].as_str()?.to_string())
}

/// `ci.yml` from `owner/repo/.github/workflows/ci.yml@refs/heads/main`.
fn workflow_file(workflow_ref: &str) -> Option<String> {
    let path = workflow_ref.split('@').next()?;
    let file = path.rsplit('/').next()?;
    (!file.is_empty()).then(|| file.to_string())
}

/// The artifact a value came from, for the log line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u64,
    /// The run that made it.
    pub run_id: Option<u64>,
}

impl std::fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "artifact {} (id {}", self.name, self.id)?;
        match self.run_id {
            Some(run) => write!(f, ", run {run})"),
            None => write!(f, ")"),
        }
    }
}

/// Why a source gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// No `GITHUB_TOKEN` in the environment.
    NoToken,
    /// The event does not name the default branch.
    NoDefaultBranch,
    /// The token may not read the artifacts (HTTP 403, or 401).
    Forbidden(String),
    /// No artifact fits (none listed, expired, another branch, none from a run that may feed
    /// history, or 404 on download).
    NotFound(String),
    /// The artifact is there but is not what this build writes.
    Corrupt(String),
    /// The API could not be reached or answered something else.
    Failed(String),
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoToken => write!(
                f,
                "{GITHUB_TOKEN_VAR} is not set (the action passes its `token` input, ${{{{ github.token }}}})"
            ),
            Self::NoDefaultBranch => {
                write!(f, "{EVENT_PATH_VAR} names no repository.default_branch")
            }
            Self::Forbidden(detail) => write!(
                f,
                "the token may not read artifacts ({detail}); give the job `permissions: actions: read`"
            ),
            Self::NotFound(detail) => write!(f, "{detail}"),
            Self::Corrupt(detail) => write!(f, "the artifact is unreadable: {detail}"),
            Self::Failed(detail) => write!(f, "the REST API failed: {detail}"),
        }
    }
}

/// Which source a miss is about, and so what the run does without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The results of this run's earlier attempts: without them every test runs.
    EarlierAttempts,
    /// The default branch's timings: without them tests are estimated with no history.
    DefaultBranch,
}

/// A source that gave nothing: what was looked for and why there was nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// The source.
    pub source: Source,
    /// What was looked for ("results of earlier attempts", "ca-timings-default-ci.yml on main").
    pub what: String,
    /// Why there was nothing.
    pub why: MissReason,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let then = match self.source {
            Source::EarlierAttempts => "every test runs",
            Source::DefaultBranch => "going on with estimates",
        };
        write!(f, "no {}: {}; {then}", self.what, self.why)
    }
}

/// What one source gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// A value, and the artifact it came from.
    Found(T, ArtifactRef),
    /// Nothing, and why.
    Missed(Miss),
}

/// What the runner starts from: the previous attempt's results (attempts above 1) and the
/// timings to estimate with, each with where it came from, and one [`Miss`] per source that
/// gave nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The newest earlier attempt's results.
    pub previous: Option<(AttemptResults, ArtifactRef)>,
    /// The timings to estimate with.
    pub timings: Option<(Timings, ArtifactRef)>,
    /// The sources that gave nothing, in the order they were asked.
    pub misses: Vec<Miss>,
}

impl History {
    /// One line per source: where results and timings came from, and every miss.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some((results, from)) = &self.previous {
            lines.push(format!(
                "results of attempt {} from {from}",
                results.attempt
            ));
        }
        if let Some((timings, from)) = &self.timings {
            lines.push(format!("timings of {} test(s) from {from}", timings.len()));
        }
        lines.extend(self.misses.iter().map(Miss::to_string));
        lines
    }
}

/// Asks GitHub for `cluster`'s history, in order: the previous attempts of this run (attempts
/// above 1), then, when `want_timings` and no earlier attempt had timings, the newest timings
/// of this workflow on the default branch.
pub async fn fetch_history(run: &GithubRun, cluster: &str, want_timings: bool) -> History {
    fetch(run, cluster, want_timings, None).await
}

/// [`fetch_history`] of a sealed cluster: the documents sealed under `seal`'s secret.
pub async fn fetch_sealed_history(
    run: &GithubRun,
    cluster: &str,
    want_timings: bool,
    seal: &HistorySeal,
) -> History {
    fetch(run, cluster, want_timings, Some(seal)).await
}

async fn fetch(
    run: &GithubRun,
    cluster: &str,
    want_timings: bool,
    seal: Option<&HistorySeal>,
) -> History {
    let mut history = History::default();
    if run.attempt == 1 && !want_timings {
        // No earlier attempt, and the timings come from elsewhere: nothing to ask, nothing missed.
        return history;
    }
    let client = match HistoryClient::new(run, cluster, seal) {
        Ok(client) => client,
        Err(why) => {
            let (source, what) = if run.attempt > 1 {
                (
                    Source::EarlierAttempts,
                    "earlier results or timing history from GitHub",
                )
            } else {
                (Source::DefaultBranch, "timing history from GitHub")
            };
            history.misses.push(Miss {
                source,
                what: what.into(),
                why,
            });
            return history;
        }
    };
    if run.attempt > 1 {
        match client.previous_attempt().await {
            Lookup::Found(results, from) => {
                if !results.timings.is_empty() {
                    history.timings = Some((results.timings.clone(), from.clone()));
                }
                history.previous = Some((results, from));
            }
            Lookup::Missed(miss) => history.misses.push(miss),
        }
    }
    if want_timings && history.timings.is_none() {
        match client.default_branch_timings().await {
            Lookup::Found(timings, from) => history.timings = Some((timings, from)),
            Lookup::Missed(miss) => history.misses.push(miss),
        }
    }
    history
}

/// What "Get a workflow run" says of a run that decides whether its history may be taken.
#[derive(Debug, serde::Deserialize)]
struct RunOrigin {
    /// What started it: `push`, `schedule`, `pull_request`, …
    event: String,
    /// Its workflow.
    workflow_id: u64,
    /// The branch it ran on.
    head_branch: Option<String>,
    /// The repository it ran in.
    repository: RepositoryId,
    /// The repository whose code it ran: a fork's for a fork's pull request (none when that
    /// fork was deleted).
    head_repository: Option<RepositoryId>,
}

/// A repository, by id.
#[derive(Debug, serde::Deserialize)]
struct RepositoryId {
    id: u64,
}

impl RunOrigin {
    /// Whether this run's artifacts may feed the history of `current`'s workflow on `branch`:
    /// a push or a schedule on `branch`, of the same workflow, running this repository's code.
    fn feeds_history_of(&self, current: &RunOrigin, branch: &str) -> bool {
        HISTORY_EVENTS.contains(&self.event.as_str())
            && self.workflow_id == current.workflow_id
            && self.head_branch.as_deref() == Some(branch)
            && self.repository.id == current.repository.id
            && self
                .head_repository
                .as_ref()
                .is_some_and(|head| head.id == self.repository.id)
    }
}

/// The REST client for one cluster of one run.
pub struct HistoryClient<'a> {
    crab: Octocrab,
    run: &'a GithubRun,
    cluster: &'a str,
    /// The history keys of a sealed cluster.
    seal: Option<&'a HistorySeal>,
}

impl<'a> HistoryClient<'a> {
    /// A client with the run's token and API URL, for `cluster`'s artifacts (sealed under
    /// `seal`, when given).
    pub fn new(
        run: &'a GithubRun,
        cluster: &'a str,
        seal: Option<&'a HistorySeal>,
    ) -> Result<Self, MissReason> {
        let token = run.token.clone().ok_or(MissReason::NoToken)?;
        let crab = Octocrab::builder()
            .base_uri(run.api_url.as_str())
            .and_then(|b| {
                b.personal_token(token)
                    .set_connect_timeout(Some(REQUEST_TIMEOUT))
                    .set_read_timeout(Some(REQUEST_TIMEOUT))
                    .build()
            })
            .map_err(|e| MissReason::Failed(one_line(&e)))?;
        Ok(Self {
            crab,
            run,
            cluster,
            seal,
        })
    }

    /// The artifact name of the document whose plain name is `plain`: sealed, with a seal.
    fn stored_name(&self, plain: &str) -> String {
        self.seal
            .map_or_else(|| plain.to_string(), |s| s.name(plain))
    }

    /// `plain`, and its sealed name when there is one, for log lines.
    fn shown(&self, plain: &str) -> String {
        match self.seal {
            Some(seal) => format!("{plain}, sealed as {}", seal.name(plain)),
            None => plain.to_string(),
        }
    }

    /// The newest earlier attempt's `ca-results-<cluster>-<attempt>`: one list by name per
    /// attempt looked at, newest first (one, unless the newest attempts kept no results), and
    /// one download.
    pub async fn previous_attempt(&self) -> Lookup<AttemptResults> {
        let what = format!(
            "results of earlier attempts of run {} ({} to {})",
            self.run.run_id,
            results_artifact_name(self.cluster, 1),
            self.shown(&results_artifact_name(
                self.cluster,
                self.run.attempt.saturating_sub(1)
            ))
        );
        let newest = self.newest_earlier_results().await;
        self.fetch(Source::EarlierAttempts, what, newest).await
    }

    /// The newest earlier attempt's unexpired results artifact (with the plain name of its
    /// document), asked for by name, newest attempt first (`GET …/runs/{id}/artifacts?name=`):
    /// the run's listing holds every attempt's artifacts, a crashed or `keep: all` cluster's
    /// stream segments among them, far more than one page shows.
    async fn newest_earlier_results(&self) -> Result<(WorkflowListArtifact, String), MissReason> {
        let route = format!(
            "/repos/{}/{}/actions/runs/{}/artifacts",
            self.run.owner, self.run.repo, self.run.run_id
        );
        for attempt in (1..self.run.attempt).rev() {
            let plain = results_artifact_name(self.cluster, attempt);
            let name = self.stored_name(&plain);
            let listed: ArtifactList = self
                .crab
                .get(&route, Some(&[("name", name.as_str())]))
                .await
                .map_err(|e| reason(&e))?;
            if let Some(artifact) = listed
                .artifacts
                .into_iter()
                .find(|a| !a.expired && a.name == name)
            {
                return Ok((artifact, plain));
            }
        }
        Err(none_listed())
    }

    /// The newest unexpired `ca-timings-<cluster>-<workflow>` of another run on the default
    /// branch that may feed history (of a push or scheduled run of this workflow in this
    /// repository): one list by name (more pages only while none is of the branch), this
    /// run's lookup and at most [`MAX_RUN_LOOKUPS`] of the newest candidates', one download.
    pub async fn default_branch_timings(&self) -> Lookup<Timings> {
        let plain = timings_artifact_name(self.cluster, self.run.workflow.as_deref());
        let name = self.stored_name(&plain);
        let Some(branch) = &self.run.default_branch else {
            return Lookup::Missed(Miss {
                source: Source::DefaultBranch,
                what: format!("timing history ({})", self.shown(&plain)),
                why: MissReason::NoDefaultBranch,
            });
        };
        let what = format!("timing history ({} on {branch})", self.shown(&plain));
        let newest = match self.branch_candidates(&name, branch).await {
            Ok((candidates, _)) if !candidates.is_empty() => self
                .first_feeding_history(candidates, branch)
                .await
                .map(|a| (a, plain.clone())),
            Ok((_, 0)) => Err(none_listed()),
            Ok((_, listed)) => Err(MissReason::NotFound(format!(
                "the {listed} newest listed are of this run, other branches or a fork's code"
            ))),
            Err(why) => Err(why),
        };
        self.fetch(Source::DefaultBranch, what, newest).await
    }

    /// The unexpired artifacts `name` of other runs on `branch` running this repository's
    /// code, newest first, and how many of that name were listed: pages of the listing are
    /// read, newest first, until one holds such an artifact, at most [`MAX_LIST_PAGES`] (on a
    /// busy repository the runs of pull requests list the same name far more often than the
    /// default branch's).
    async fn branch_candidates(
        &self,
        name: &str,
        branch: &str,
    ) -> Result<(Vec<WorkflowListArtifact>, usize), MissReason> {
        let mut listed = 0;
        for page in 1..=MAX_LIST_PAGES {
            let answer = self
                .crab
                .actions()
                .list_repository_artifacts(&self.run.owner, &self.run.repo)
                .name(name)
                .per_page(PAGE_SIZE)
                .page(page)
                .send()
                .await
                .map_err(|e| reason(&e))?;
            let items = answer.value.map(|p| p.items).unwrap_or_default();
            let last = items.len() < usize::from(PAGE_SIZE);
            let named: Vec<WorkflowListArtifact> = items
                .into_iter()
                .filter(|a| !a.expired && a.name == name)
                .collect();
            listed += named.len();
            let mut candidates: Vec<WorkflowListArtifact> = named
                .into_iter()
                .filter(|a| {
                    a.workflow_run.as_ref().is_some_and(|run| {
                        run.head_branch == branch
                            && run.head_repository_id == run.repository_id
                            && run.id.into_inner() != self.run.run_id
                    })
                })
                .collect();
            if !candidates.is_empty() || last {
                candidates.sort_by_key(|a| std::cmp::Reverse(a.created_at));
                return Ok((candidates, listed));
            }
        }
        Ok((Vec::new(), listed))
    }

    /// The first of `candidates` (newest first) whose run may feed the history of this run's
    /// workflow on `branch`, looking up at most [`MAX_RUN_LOOKUPS`] runs (a run deleted since
    /// is passed over).
    async fn first_feeding_history(
        &self,
        candidates: Vec<WorkflowListArtifact>,
        branch: &str,
    ) -> Result<WorkflowListArtifact, MissReason> {
        if candidates.is_empty() {
            return Err(none_listed());
        }
        let current = self.run_origin(self.run.run_id).await?;
        let mut looked_up = Vec::new();
        for artifact in candidates {
            let Some(run) = artifact.workflow_run.as_ref().map(|r| r.id.into_inner()) else {
                continue;
            };
            if looked_up.contains(&run) {
                continue;
            }
            if looked_up.len() == MAX_RUN_LOOKUPS {
                break;
            }
            looked_up.push(run);
            match self.run_origin(run).await {
                Ok(origin) if origin.feeds_history_of(&current, branch) => return Ok(artifact),
                Ok(_) | Err(MissReason::NotFound(_)) => {}
                Err(why) => return Err(why),
            }
        }
        Err(MissReason::NotFound(format!(
            "none of the {} newest listed came from a push or scheduled run of this workflow \
             in this repository",
            looked_up.len()
        )))
    }

    /// `GET /repos/{o}/{r}/actions/runs/{id}`: where run `id` came from.
    async fn run_origin(&self, id: u64) -> Result<RunOrigin, MissReason> {
        let route = format!(
            "/repos/{}/{}/actions/runs/{id}",
            self.run.owner, self.run.repo
        );
        self.crab
            .get(route, None::<&()>)
            .await
            .map_err(|e| reason(&e))
    }

    /// Downloads the artifact a list chose (with the plain name of its document) and decodes
    /// it (opens it, with a seal), or says why there is nothing.
    async fn fetch<T: ArtifactDocument>(
        &self,
        source: Source,
        what: String,
        listed: Result<(WorkflowListArtifact, String), MissReason>,
    ) -> Lookup<T> {
        let miss = |why| {
            Lookup::Missed(Miss {
                source,
                what: what.clone(),
                why,
            })
        };
        let (artifact, plain) = match listed {
            Ok(found) => found,
            Err(why) => return miss(why),
        };
        let from = ArtifactRef {
            name: artifact.name.clone(),
            id: artifact.id.into_inner(),
            run_id: artifact.workflow_run.as_ref().map(|r| r.id.into_inner()),
        };
        let bytes = match self.download(&from, artifact.size_in_bytes).await {
            Ok(bytes) => bytes,
            Err(why) => return miss(why),
        };
        let decoded = match self.seal {
            Some(seal) => T::from_sealed_zip(&bytes, seal, &plain),
            None => T::from_artifact_zip(&bytes),
        };
        match decoded {
            Ok(value) => Lookup::Found(value, from),
            Err(detail) => miss(MissReason::Corrupt(format!("{from}: {detail}"))),
        }
    }

    /// `GET /repos/{o}/{r}/actions/artifacts/{id}/zip`, following its redirect to the zip, of
    /// at most [`MAX_DOCUMENT_BYTES`]: an artifact listed larger is not asked for, and a
    /// download is cut at the bound whatever the listing said. (octocrab's `download_artifact`
    /// returns an error answer's body as if it were the zip, so a 403 or 404 would look like a
    /// corrupt artifact; this checks the status first.)
    async fn download(
        &self,
        from: &ArtifactRef,
        listed_size: usize,
    ) -> Result<bytes::Bytes, MissReason> {
        let too_large = || {
            MissReason::Corrupt(format!(
                "{from}: its zip is larger than {} MiB, the most a history document may take",
                MAX_DOCUMENT_BYTES >> 20
            ))
        };
        let bound = usize::try_from(MAX_DOCUMENT_BYTES).unwrap_or(usize::MAX);
        if listed_size > bound {
            return Err(too_large());
        }
        let route = format!(
            "/repos/{}/{}/actions/artifacts/{}/zip",
            self.run.owner, self.run.repo, from.id
        );
        let response = self.crab._get(route).await.map_err(|e| reason(&e))?;
        let response = octocrab::map_github_error(response)
            .await
            .map_err(|e| reason(&e))?;
        match Limited::new(response.into_body(), bound).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
            Err(e) => Err(MissReason::Failed(one_line(&e))),
        }
    }
}

/// A page of "List workflow run artifacts".
#[derive(serde::Deserialize)]
struct ArtifactList {
    artifacts: Vec<WorkflowListArtifact>,
}

/// Why there is nothing when a list holds no artifact that fits.
fn none_listed() -> MissReason {
    MissReason::NotFound("none unexpired is listed".into())
}

/// The reason an octocrab error stands for.
fn reason(error: &octocrab::Error) -> MissReason {
    if let octocrab::Error::GitHub { source, .. } = error {
        let detail = format!("HTTP {}: {}", source.status_code.as_u16(), source.message);
        return match source.status_code.as_u16() {
            401 | 403 => MissReason::Forbidden(detail),
            404 | 410 => MissReason::NotFound(detail),
            _ => MissReason::Failed(detail),
        };
    }
    MissReason::Failed(one_line(error))
}

/// An error's message on one line (octocrab's can carry a backtrace below).
fn one_line(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_event_is_read_from_a_regular_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(&event, r#"{"repository": {"default_branch": "trunk"}}"#).unwrap();
        assert_eq!(default_branch(&event).as_deref(), Some("trunk"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // Not waited on: a FIFO with no writer would block a plain read forever.
        assert_eq!(read_event(&fifo), None);
        assert_eq!(read_event(Path::new("/dev/zero")), None);
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        (RUN_ID_VAR, "77"),
        (REPOSITORY_VAR, "octo/repo"),
        (
            WORKFLOW_REF_VAR,
            "octo/repo/.github/workflows/ci.yml@refs/heads/main",
        ),
    ];

    #[test]
    fn outside_a_workflow_run_there_is_no_run() {
        assert_eq!(GithubRun::from_vars(vars(&[])).unwrap(), None);
    }

    #[test]
    fn the_run_comes_from_the_variables() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(&event, r#"{"repository": {"default_branch": "trunk"}}"#).unwrap();
        let event = event.to_str().unwrap();
        let mut all = BASE.to_vec();
        all.extend([
            (RUN_ATTEMPT_VAR, "2"),
            (EVENT_PATH_VAR, event),
            (GITHUB_TOKEN_VAR, "t"),
        ]);
        let run = GithubRun::from_vars(vars(&all)).unwrap().unwrap();
        assert_eq!((run.owner.as_str(), run.repo.as_str()), ("octo", "repo"));
        assert_eq!((run.run_id, run.attempt), (77, 2));
        assert_eq!(run.api_url, DEFAULT_API_URL);
        assert_eq!(run.default_branch.as_deref(), Some("trunk"));
        assert_eq!(run.workflow.as_deref(), Some("ci.yml"));
        assert_eq!(run.token.as_deref(), Some("t"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            (RUN_ATTEMPT_VAR, "../1"),
            (RUN_ATTEMPT_VAR, "0"),
            (RUN_ATTEMPT_VAR, "+1"),
            (RUN_ATTEMPT_VAR, "99999999999"),
            (RUN_ID_VAR, "abc"),
            (REPOSITORY_VAR, "no-slash"),
            (REPOSITORY_VAR, "a/b/c"),
            (API_URL_VAR, "ftp://x"),
        ] {
            let mut all = BASE.to_vec();
            all.retain(|(k, _)| *k != var);
            all.push((var, value));
            let err = GithubRun::from_vars(vars(&all)).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
    }

    #[test]
    fn only_push_or_schedule_runs_of_this_workflow_and_repository_feed_history() {
        let origin = |event: &str, workflow: u64, branch: &str, head: serde_json::Value| {
            let run = serde_json::json!({
                "event": event, "workflow_id": workflow, "head_branch": branch,
                "repository": {"id": 1}, "head_repository": head,
            });
            serde_json::from_value::<RunOrigin>(run).unwrap()
        };
        let own = serde_json::json!({"id": 1});
        let current = origin("pull_request", 10, "feature", own.clone());
        let feeds = |o: RunOrigin| o.feeds_history_of(&current, "main");
        assert!(feeds(origin("push", 10, "main", own.clone())));
        assert!(feeds(origin("schedule", 10, "main", own.clone())));
        for event in [
            "pull_request",
            "pull_request_target",
            "workflow_dispatch",
            "workflow_run",
        ] {
            assert!(!feeds(origin(event, 10, "main", own.clone())), "{event}");
        }
        assert!(
            !feeds(origin("push", 11, "main", own.clone())),
            "another workflow"
        );
        assert!(!feeds(origin("push", 10, "dev", own)), "another branch");
        let fork = serde_json::json!({"id": 2});
        assert!(!feeds(origin("push", 10, "main", fork)), "a fork's code");
        let gone = serde_json::Value::Null;
        assert!(!feeds(origin("push", 10, "main", gone)), "a deleted fork's");
    }

    #[tokio::test]
    async fn a_first_attempt_with_its_timings_from_a_file_asks_nothing_and_misses_nothing() {
        let run = GithubRun::from_vars(vars(&BASE)).unwrap().unwrap();
        let history = fetch_history(&run, "default", false).await;
        assert_eq!(history, History::default());
    }

    #[tokio::test]
    async fn without_a_token_there_is_one_line_and_nothing_else() {
        let run = GithubRun::from_vars(vars(&BASE)).unwrap().unwrap();
        let history = fetch_history(&run, "default", true).await;
        assert_eq!(history.previous, None);
        assert_eq!(history.timings, None);
        let lines = history.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(GITHUB_TOKEN_VAR), "{}", lines[0]);
    }
}
