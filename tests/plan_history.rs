//! Timing history and earlier attempts' results read through GitHub's REST API, against a
//! server on 127.0.0.1 that answers the endpoints octocrab calls with the JSON shapes GitHub
//! documents ("List artifacts for a repository", "List workflow run artifacts", "Get a workflow
//! run", "Download an artifact": a 302 to the zip). The server counts requests, so the
//! one-list-one-download budget is checked, and every failure (403, 404, a garbled zip) must
//! come back as one line.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cluster_action::history::ArtifactDocument;
use cluster_action::history::github::{GithubRun, History, MissReason, fetch_history};
use cluster_action::history::results::{
    AttemptResults, RESULTS_FILE, RerunMode, TestOutcome, TestStatus, select_rerun,
};
use cluster_action::history::timings::{TIMINGS_FILE, Timings};
use cluster_action::suite::TestKey;
use serde_json::{Value, json};

mod common;
use common::cluster::SCRUBBED_ENV;
use common::manifest::{REPORT_EACH_PASSED, command_suite};
use common::report::read_report_of;

const OWNER: &str = "octo-org";
const REPO: &str = "octo-repo";
const TOKEN: &str = "ghs_test_token";
const RUN: u64 = 900;
const CLUSTER: &str = "default";
const TIMINGS: &str = "ca-timings-default-ci.yml";

/// The repository's id, as GitHub numbers repositories.
const REPO_ID: u64 = 1296269;
/// A fork's id.
const FORK_ID: u64 = 7_700_001;
/// The id of the workflow `ci.yml` of the repository.
const CI_WORKFLOW: u64 = 161335;

/// Where a stored artifact's run came from: whose code it ran, on which event, which workflow.
#[derive(Clone, Copy)]
struct Origin {
    head_repository: u64,
    event: &'static str,
    workflow_id: u64,
}

/// A run of `ci.yml` pushed to this repository.
const OWN_PUSH: Origin = Origin {
    head_repository: REPO_ID,
    event: "push",
    workflow_id: CI_WORKFLOW,
};

/// One stored artifact: its listing fields, its run's origin and the zip a download
/// redirects to.
struct Stored {
    id: u64,
    name: String,
    run_id: u64,
    branch: &'static str,
    created_at: &'static str,
    expired: bool,
    origin: Origin,
    zip: Vec<u8>,
}

/// What the server answers wrong, when a test asks for it.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Every list answers 403, as for a token without `actions: read`.
    ListForbidden,
    /// Downloads answer 404 (the artifact was deleted between list and download).
    DownloadNotFound,
    /// Lists say every artifact is 1 byte, whatever its zip weighs.
    UnderstatedSizes,
}

/// Requests per endpoint.
#[derive(Default)]
struct Counts {
    repo_lists: AtomicUsize,
    run_lists: AtomicUsize,
    /// "Get a workflow run" requests.
    run_gets: AtomicUsize,
    downloads: AtomicUsize,
    blobs: AtomicUsize,
    /// Blob reads that carried an Authorization header (the token must stay with the API).
    blobs_with_token: AtomicUsize,
}

struct Server {
    base: String,
    /// Where the zips are: another authority, as GitHub redirects to blob storage.
    blob_base: String,
    artifacts: Vec<Stored>,
    fault: Fault,
    counts: Counts,
}

impl Server {
    /// The "artifact" object as GitHub documents it.
    fn artifact_json(&self, a: &Stored) -> Value {
        let url = format!(
            "{}/repos/{OWNER}/{REPO}/actions/artifacts/{}",
            self.base, a.id
        );
        json!({
            "id": a.id,
            "node_id": "MDg6QXJ0aWZhY3QxMQ==",
            "name": a.name,
            "size_in_bytes": if self.fault == Fault::UnderstatedSizes { 1 } else { a.zip.len() },
            "url": url,
            "archive_download_url": format!("{url}/zip"),
            "expired": a.expired,
            "created_at": a.created_at,
            "expires_at": "2027-03-21T14:59:22Z",
            "updated_at": a.created_at,
            "digest": "sha256:cfc3236bdad15b5898bca8408945c9e19e1917da8704adc20eaa618444f48e2f",
            "workflow_run": {
                "id": a.run_id,
                "repository_id": REPO_ID,
                "head_repository_id": a.origin.head_repository,
                "head_branch": a.branch,
                "head_sha": "328faa0536e6fef19753d9d91dc96a9931694ce3"
            }
        })
    }

    /// A list answer: 403 without permission, else the page of artifacts `keep` chooses.
    fn list(
        &self,
        owner: &str,
        repo: &str,
        headers: &HeaderMap,
        query: &Query<Vec<(String, String)>>,
        keep: impl Fn(&Stored) -> bool,
    ) -> Response {
        if self.fault == Fault::ListForbidden || !authorized(headers) {
            return forbidden();
        }
        if (owner, repo) != (OWNER, REPO) {
            return github_error(StatusCode::NOT_FOUND, "Not Found");
        }
        axum::Json(self.page(query, keep)).into_response()
    }

    /// Page `page` of artifacts, newest first as GitHub lists them, `per_page` a page.
    fn page(&self, query: &Query<Vec<(String, String)>>, keep: impl Fn(&Stored) -> bool) -> Value {
        let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let per_page: usize = param("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
        let page: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let mut chosen: Vec<&Stored> = self.artifacts.iter().filter(|a| keep(a)).collect();
        chosen.sort_by(|a, b| b.created_at.cmp(a.created_at));
        let total = chosen.len();
        let artifacts: Vec<Value> = chosen
            .into_iter()
            .skip(page.saturating_sub(1) * per_page)
            .take(per_page)
            .map(|a| self.artifact_json(a))
            .collect();
        json!({"total_count": total, "artifacts": artifacts})
    }
}

/// "Get a workflow run": the run of [`RUN`] (a pull request's, running `ci.yml`), or the run
/// of a stored artifact, as GitHub documents the "workflow-run" object (the fields a client
/// may read, trimmed of URLs).
async fn get_run(
    State(server): State<Arc<Server>>,
    Path((owner, repo, run)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    server.counts.run_gets.fetch_add(1, Ordering::SeqCst);
    if !authorized(&headers) {
        return forbidden();
    }
    let current = Origin {
        event: "pull_request",
        ..OWN_PUSH
    };
    let found = if run == RUN {
        Some(("feature", current))
    } else {
        let stored = server.artifacts.iter().find(|a| a.run_id == run);
        stored.map(|a| (a.branch, a.origin))
    };
    let Some((branch, origin)) = found.filter(|_| (owner.as_str(), repo.as_str()) == (OWNER, REPO))
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let repository = |id: u64| {
        let full_name = if id == REPO_ID {
            format!("{OWNER}/{REPO}")
        } else {
            format!("forker/{REPO}")
        };
        json!({"id": id, "node_id": "MDEwOlJlcG9zaXRvcnkx", "name": REPO, "full_name": full_name, "private": false, "fork": id != REPO_ID})
    };
    let body = json!({
        "id": run,
        "name": "CI",
        "node_id": "MDEyOldvcmtmbG93IFJ1bjI2OTI4OQ==",
        "check_suite_id": 42,
        "head_branch": branch,
        "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d",
        "path": ".github/workflows/ci.yml",
        "run_number": 562,
        "run_attempt": 1,
        "event": origin.event,
        "status": "completed",
        "conclusion": "success",
        "workflow_id": origin.workflow_id,
        "created_at": "2026-11-10T09:50:00Z",
        "updated_at": "2026-11-10T10:00:00Z",
        "repository": repository(REPO_ID),
        "head_repository": repository(origin.head_repository),
    });
    axum::Json(body).into_response()
}

/// GitHub's error body.
fn github_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest/actions/artifacts",
        "status": status.as_u16().to_string()
    });
    (status, axum::Json(body)).into_response()
}

/// Every API call must carry the token.
fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

/// GitHub's answer to a token without `actions: read`.
fn forbidden() -> Response {
    github_error(
        StatusCode::FORBIDDEN,
        "Resource not accessible by integration",
    )
}

/// "List artifacts for a repository", filtered by `name`.
async fn list_repo(
    State(server): State<Arc<Server>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    query: Query<Vec<(String, String)>>,
) -> Response {
    server.counts.repo_lists.fetch_add(1, Ordering::SeqCst);
    let name = query
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone());
    let keep = |a: &Stored| name.as_ref().is_none_or(|n| *n == a.name);
    server.list(&owner, &repo, &headers, &query, keep)
}

/// "List workflow run artifacts": every attempt's, filtered by `name`.
async fn list_run(
    State(server): State<Arc<Server>>,
    Path((owner, repo, run)): Path<(String, String, u64)>,
    headers: HeaderMap,
    query: Query<Vec<(String, String)>>,
) -> Response {
    server.counts.run_lists.fetch_add(1, Ordering::SeqCst);
    let name = query
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone());
    let keep = |a: &Stored| a.run_id == run && name.as_ref().is_none_or(|n| *n == a.name);
    server.list(&owner, &repo, &headers, &query, keep)
}

/// "Download an artifact": 302 to where the zip is.
async fn download(
    State(server): State<Arc<Server>>,
    Path((_, _, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    server.counts.downloads.fetch_add(1, Ordering::SeqCst);
    if !authorized(&headers) {
        return forbidden();
    }
    if server.fault == Fault::DownloadNotFound || !server.artifacts.iter().any(|a| a.id == id) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let location = format!("{}/blob/{id}.zip?sig=signed", server.blob_base);
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn blob(
    State(server): State<Arc<Server>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    server.counts.blobs.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key(header::AUTHORIZATION) {
        server
            .counts
            .blobs_with_token
            .fetch_add(1, Ordering::SeqCst);
    }
    let id: Option<u64> = file.strip_suffix(".zip").and_then(|id| id.parse().ok());
    match server.artifacts.iter().find(|a| Some(a.id) == id) {
        Some(a) => ([(header::CONTENT_TYPE, "application/zip")], a.zip.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the API and the blob host (two listeners on 127.0.0.1) with `artifacts`.
async fn serve(artifacts: Vec<Stored>, fault: Fault) -> Arc<Server> {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blobs = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Arc::new(Server {
        base: format!("http://{}", api.local_addr().unwrap()),
        blob_base: format!("http://{}", blobs.local_addr().unwrap()),
        artifacts,
        fault,
        counts: Counts::default(),
    });
    let api_routes = Router::new()
        .route("/repos/{owner}/{repo}/actions/artifacts", get(list_repo))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run}/artifacts",
            get(list_run),
        )
        .route("/repos/{owner}/{repo}/actions/runs/{run}", get(get_run))
        .route(
            "/repos/{owner}/{repo}/actions/artifacts/{id}/zip",
            get(download),
        )
        .with_state(server.clone());
    let blob_routes = Router::new()
        .route("/blob/{file}", get(blob))
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(api, api_routes).await });
    tokio::spawn(async move { axum::serve(blobs, blob_routes).await });
    server
}

/// A zip as `@actions/artifact` uploads it: the file at the root, deflated.
fn zip(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, options).unwrap();
    zip.write_all(contents).unwrap();
    zip.finish().unwrap().into_inner()
}

fn passed(ms: u64) -> TestOutcome {
    TestOutcome {
        status: TestStatus::Passed,
        duration_ms: Some(ms),
        attempt: 1,
    }
}

/// Timings where test `slow` took `ms`.
fn timings(run: u64, ms: u64) -> Timings {
    let mut timings = Timings::default();
    timings.record_run(Some(run), [(&TestKey::new("rust", "slow"), &passed(ms))]);
    timings
}

fn timings_artifact(
    id: u64,
    run_id: u64,
    branch: &'static str,
    at: &'static str,
    ms: u64,
) -> Stored {
    Stored {
        id,
        name: TIMINGS.into(),
        run_id,
        branch,
        created_at: at,
        expired: false,
        origin: OWN_PUSH,
        zip: zip(TIMINGS_FILE, &timings(run_id, ms).to_json()),
    }
}

/// The default branch's history: the right one, plus newer ones that must not be taken.
fn repository_artifacts() -> Vec<Stored> {
    let mut expired = timings_artifact(2, 102, "main", "2026-11-20T10:00:00Z", 2_000);
    expired.expired = true;
    let mut other_workflow = timings_artifact(4, 104, "main", "2026-11-22T10:00:00Z", 4_000);
    other_workflow.name = "ca-timings-default-release.yml".into();
    vec![
        timings_artifact(1, 101, "main", "2026-11-10T10:00:00Z", 1_000),
        expired,
        timings_artifact(3, 103, "feature", "2026-11-21T10:00:00Z", 3_000),
        other_workflow,
    ]
}

fn run(server: &Server, attempt: u32) -> GithubRun {
    GithubRun {
        api_url: server.base.clone(),
        token: Some(TOKEN.into()),
        owner: OWNER.into(),
        repo: REPO.into(),
        run_id: RUN,
        attempt,
        default_branch: Some("main".into()),
        workflow: Some("ci.yml".into()),
    }
}

/// (repository lists, run lists, downloads, blob reads)
fn counts(server: &Server) -> (usize, usize, usize, usize) {
    let c = &server.counts;
    let load = |n: &AtomicUsize| n.load(Ordering::SeqCst);
    (
        load(&c.repo_lists),
        load(&c.run_lists),
        load(&c.downloads),
        load(&c.blobs),
    )
}

fn slow_estimate(history: &History) -> Option<u64> {
    let (timings, _) = history.timings.as_ref()?;
    timings.estimate_ms(&TestKey::new("rust", "slow"))
}

#[tokio::test]
async fn timings_come_from_the_newest_default_branch_artifact_in_one_list_and_one_download() {
    let server = serve(repository_artifacts(), Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_eq!(history.misses, []);
    let (_, from) = history.timings.as_ref().unwrap();
    assert_eq!((from.id, from.run_id), (1, Some(101)));
    assert_eq!(slow_estimate(&history), Some(1_000));
    assert_eq!(history.previous, None);
    assert_eq!(counts(&server), (1, 0, 1, 1));
    assert_eq!(server.counts.blobs_with_token.load(Ordering::SeqCst), 0);
    let lines = history.lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains(TIMINGS) && lines[0].contains("run 101"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn timings_come_only_from_push_or_schedule_runs_of_this_workflow_in_this_repository() {
    // Newer than the repository's own (run 101), each with the same name on `main`: a fork's
    // pull request from its own `main` (the newest), a pull request from this repository's
    // `main`, another workflow writing the same name, and (below) manual runs.
    let from = |id: u64, at, origin: Origin| {
        let mut artifact = timings_artifact(id, 100 + id, "main", at, id * 1_000);
        artifact.origin = origin;
        artifact
    };
    let fork = Origin {
        head_repository: FORK_ID,
        event: "pull_request",
        ..OWN_PUSH
    };
    let own_pull_request = Origin {
        event: "pull_request",
        ..OWN_PUSH
    };
    let manual = Origin {
        event: "workflow_dispatch",
        ..OWN_PUSH
    };
    let other_workflow = Origin {
        workflow_id: CI_WORKFLOW + 1,
        ..OWN_PUSH
    };
    let mut artifacts = repository_artifacts();
    artifacts.extend([
        from(6, "2026-11-26T10:00:00Z", own_pull_request),
        from(7, "2026-11-27T10:00:00Z", other_workflow),
        from(8, "2026-11-28T10:00:00Z", fork),
    ]);
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_eq!(history.misses, []);
    let (_, from_artifact) = history.timings.as_ref().unwrap();
    assert_eq!((from_artifact.id, from_artifact.run_id), (1, Some(101)));
    assert_eq!(slow_estimate(&history), Some(1_000));
    // One list, this run and the three candidates from this repository (the fork's is known
    // from the list), one download.
    assert_eq!(counts(&server), (1, 0, 1, 1));
    assert_eq!(server.counts.run_gets.load(Ordering::SeqCst), 4);

    // Newer untrusted runs than the lookups allow: none is taken, in one line.
    let mut artifacts = repository_artifacts();
    artifacts.extend([
        from(5, "2026-11-25T10:00:00Z", manual),
        from(6, "2026-11-26T10:00:00Z", own_pull_request),
        from(7, "2026-11-27T10:00:00Z", other_workflow),
        from(8, "2026-11-28T10:00:00Z", fork),
        from(9, "2026-11-29T10:00:00Z", manual),
    ]);
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::NotFound(_)),
        "push or scheduled run of this workflow",
    );
    assert_eq!(server.counts.run_gets.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_rerun_takes_the_newest_earlier_attempt_and_runs_only_what_did_not_pass() {
    let results = |attempt: u32, failing: &[&str]| {
        let tests = ["ok", "bad", "lost"].into_iter().map(|id| {
            let mut outcome = passed(10);
            if failing.contains(&id) {
                outcome.status = TestStatus::Failed;
            }
            outcome.attempt = attempt;
            (TestKey::new("rust", id), outcome)
        });
        let all = AttemptResults::after_attempt(
            None,
            RUN,
            attempt,
            tests.collect(),
            timings(RUN, 7_000 + u64::from(attempt)),
        );
        Stored {
            id: 10 + u64::from(attempt),
            name: format!("ca-results-{CLUSTER}-{attempt}"),
            run_id: RUN,
            branch: "feature",
            created_at: if attempt == 1 {
                "2026-11-30T10:00:00Z"
            } else {
                "2026-11-30T11:00:00Z"
            },
            expired: false,
            origin: OWN_PUSH,
            zip: zip(RESULTS_FILE, &all.to_json()),
        }
    };
    let mut artifacts = repository_artifacts();
    artifacts.push(results(1, &["bad", "lost"]));
    artifacts.push(results(2, &["lost"]));
    let server = serve(artifacts, Fault::None).await;

    let history = fetch_history(&run(&server, 3), CLUSTER, true).await;
    assert_eq!(history.misses, []);
    let (previous, from) = history.previous.as_ref().unwrap();
    assert_eq!(
        (previous.attempt, from.name.as_str()),
        (2, "ca-results-default-2")
    );
    // Estimates come from the earlier attempt too; the default branch is not asked.
    assert_eq!(slow_estimate(&history), Some(7_002));
    assert_eq!(counts(&server), (0, 1, 1, 1));

    let listed: Vec<TestKey> = ["ok", "bad", "lost", "new"]
        .into_iter()
        .map(|id| TestKey::new("rust", id))
        .collect();
    let selection = select_rerun(&listed, Some(previous), RerunMode::Failed);
    let ids: Vec<&str> = selection.run.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["lost", "new"]);
    assert_eq!(selection.skipped, 2);
}

#[tokio::test]
async fn a_rerun_finds_earlier_results_among_more_artifacts_than_a_page_shows() {
    let outcomes = [(TestKey::new("rust", "bad"), {
        let mut outcome = passed(10);
        outcome.status = TestStatus::Failed;
        outcome
    })];
    let results = AttemptResults::after_attempt(
        None,
        RUN,
        1,
        outcomes.into_iter().collect(),
        timings(RUN, 5),
    );
    let mut artifacts = repository_artifacts();
    artifacts.push(Stored {
        id: 11,
        name: format!("ca-results-{CLUSTER}-1"),
        run_id: RUN,
        branch: "feature",
        created_at: "2026-11-30T10:00:00Z",
        expired: false,
        origin: OWN_PUSH,
        zip: zip(RESULTS_FILE, &results.to_json()),
    });
    // A crashed attempt 1 left its stream segments: newer, and more than a page (100) holds.
    artifacts.extend((0..150).map(|n| Stored {
        id: 1_000 + n,
        name: format!("ca.{CLUSTER}.1.w{n}.up.0"),
        run_id: RUN,
        branch: "feature",
        created_at: "2026-11-30T10:30:00Z",
        expired: false,
        origin: OWN_PUSH,
        zip: Vec::new(),
    }));
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 3), CLUSTER, true).await;
    assert_eq!(history.misses, []);
    let (previous, from) = history.previous.as_ref().unwrap();
    assert_eq!(
        (previous.attempt, from.name.as_str()),
        (1, "ca-results-default-1")
    );
    // Attempt 2 kept no results: asked for by name, then attempt 1.
    assert_eq!(counts(&server), (0, 2, 1, 1));
}

#[tokio::test]
async fn a_rerun_without_earlier_results_falls_back_to_the_default_branch() {
    // This run has results, but of another cluster: not ours to re-run from.
    let mut artifacts = repository_artifacts();
    let other = AttemptResults::after_attempt(None, RUN, 1, Default::default(), timings(RUN, 5));
    artifacts.push(Stored {
        id: 50,
        name: "ca-results-other-1".into(),
        run_id: RUN,
        branch: "feature",
        created_at: "2026-11-30T10:00:00Z",
        expired: false,
        origin: OWN_PUSH,
        zip: zip(RESULTS_FILE, &other.to_json()),
    });
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 2), CLUSTER, true).await;
    assert_eq!(history.previous, None);
    assert_eq!(slow_estimate(&history), Some(1_000));
    assert_eq!(history.misses.len(), 1);
    assert!(matches!(history.misses[0].why, MissReason::NotFound(_)));
    let lines = history.lines();
    assert!(
        lines.iter().any(|l| l.ends_with("every test runs")),
        "{lines:?}"
    );
    assert_eq!(counts(&server), (1, 1, 1, 1));
}

/// One miss, of the expected kind, and nothing taken.
fn assert_one_miss(history: &History, expected: fn(&MissReason) -> bool, words: &str) {
    assert_eq!(history.timings, None);
    assert_eq!(history.misses.len(), 1, "{:?}", history.misses);
    assert!(expected(&history.misses[0].why), "{:?}", history.misses[0]);
    let lines = history.lines();
    assert_eq!(lines.len(), 1);
    assert!(!lines[0].contains('\n'));
    assert!(lines[0].contains(words), "{}", lines[0]);
    assert!(
        lines[0].ends_with("going on with estimates"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn no_permission_is_one_line() {
    let server = serve(repository_artifacts(), Fault::ListForbidden).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::Forbidden(_)),
        "actions: read",
    );
    assert_eq!(counts(&server), (1, 0, 0, 0));
}

#[tokio::test]
async fn a_history_only_of_other_branches_says_so_without_looking_up_runs() {
    let artifacts = vec![
        timings_artifact(3, 103, "feature", "2026-11-21T10:00:00Z", 3_000),
        timings_artifact(5, 105, "fix", "2026-11-22T10:00:00Z", 5_000),
    ];
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::NotFound(_)),
        "the 2 newest listed are of this run, other branches or a fork's code",
    );
    assert_eq!(counts(&server), (1, 0, 0, 0));
    assert_eq!(server.counts.run_gets.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn default_branch_timings_behind_a_page_of_other_branches_are_found_on_the_next() {
    // The pull requests' runs of a day, newer than the default branch's last push.
    let mut artifacts = repository_artifacts();
    artifacts.extend((0..150).map(|n| {
        timings_artifact(
            1_000 + n,
            1_000 + n,
            "feature",
            "2026-11-29T10:00:00Z",
            9_000,
        )
    }));
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_eq!(history.misses, []);
    assert_eq!(slow_estimate(&history), Some(1_000));
    assert_eq!(counts(&server), (2, 0, 1, 1), "two pages, one download");
}

#[tokio::test]
async fn no_artifact_is_one_line() {
    let server = serve(Vec::new(), Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::NotFound(_)),
        "on main",
    );
    assert_eq!(counts(&server), (1, 0, 0, 0));

    let server = serve(repository_artifacts(), Fault::DownloadNotFound).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(&history, |w| matches!(w, MissReason::NotFound(_)), "404");
    assert_eq!(counts(&server), (1, 0, 1, 0));
}

#[tokio::test]
async fn a_garbled_artifact_is_one_line() {
    let mut artifacts = repository_artifacts();
    artifacts[0].zip = b"PK\x03\x04 this is not a zip".to_vec();
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::Corrupt(_)),
        "not a zip",
    );

    let mut artifacts = repository_artifacts();
    artifacts[0].zip = zip(TIMINGS_FILE, b"{\"version\": 1, \"tests\": ");
    let server = serve(artifacts, Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::Corrupt(_)),
        "unreadable",
    );
}

/// The ids of the tests a JSON report holds, in its order.
fn reported_ids(report: &Value) -> Vec<&str> {
    let tests = report["tests"].as_array().unwrap();
    tests.iter().map(|t| t["id"].as_str().unwrap()).collect()
}

/// A server holding `previous`, the results of attempt 1 of `local`'s cluster in [`RUN`].
async fn serve_attempt_1(previous: &AttemptResults) -> Arc<Server> {
    // `local` names its cluster `local`.
    let name = cluster_action::history::results::results_artifact_name("local", 1);
    serve(
        vec![Stored {
            id: 7,
            name,
            run_id: RUN,
            branch: "main",
            created_at: "2026-03-01T10:00:00Z",
            expired: false,
            origin: OWN_PUSH,
            zip: zip(RESULTS_FILE, &previous.to_json()),
        }],
        Fault::None,
    )
    .await
}

#[tokio::test]
async fn attempt_2_through_local_runs_only_the_tests_that_failed_or_never_ran() {
    let outcome = |status| TestOutcome {
        status,
        duration_ms: Some(5),
        attempt: 1,
    };
    let key = |id: &str| TestKey::new("r", id);
    let previous = AttemptResults {
        run_id: RUN,
        attempt: 1,
        tests: [
            (key("t1"), outcome(TestStatus::Passed)),
            (key("t2"), outcome(TestStatus::Flaky)),
            (key("t3"), outcome(TestStatus::Failed)),
            (key("t4"), outcome(TestStatus::NotRun)),
        ]
        .into(),
        timings: Timings::default(),
    };
    let server = serve_attempt_1(&previous).await;
    let (code, stderr, report) = local_run(&server, &["t1", "t2", "t3", "t4", "t5"], 2).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("re-run: running 3 of 5 tests"),
        "the run says what it re-runs: {stderr}"
    );
    let ran = reported_ids(&report);
    assert_eq!(ran, ["t3", "t4", "t5"], "failed, never ran, and new");
}

// Whole runs: `cluster-action local` as attempt 1 of a workflow run whose history lookup
// fails. Each failure is one line on standard error, and the run goes on with estimates.

/// The default branch's timings for `local`'s cluster in workflow `ci.yml`, as the server
/// stores them (a download answers `zip`).
fn local_timings(zip_bytes: Vec<u8>) -> Vec<Stored> {
    vec![Stored {
        id: 21,
        name: cluster_action::history::timings::timings_artifact_name("local", Some("ci.yml")),
        run_id: 101,
        branch: "main",
        created_at: "2026-11-10T10:00:00Z",
        expired: false,
        origin: OWN_PUSH,
        zip: zip_bytes,
    }]
}

/// A `local` run of a suite of tests `ids` (each passes) as attempt `attempt` of run [`RUN`]
/// of `ci.yml` on `main`, against `server`: its exit code, its standard error and its JSON
/// report. Attempt 1 knows the workflow and the default branch (for timings); later attempts
/// look only at the run's own earlier attempts.
async fn local_run(server: &Server, ids: &[&str], attempt: u32) -> (Option<i32>, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = command_suite(ids, REPORT_EACH_PASSED);
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let report = dir.path().join("report.json");
    let mut env = Vec::new();
    if attempt == 1 {
        let event = dir.path().join("event.json");
        let body = json!({"repository": {"default_branch": "main", "private": true}});
        std::fs::write(&event, body.to_string()).unwrap();
        let workflow = format!("{OWNER}/{REPO}/.github/workflows/ci.yml@refs/heads/main");
        env.push(("GITHUB_EVENT_PATH", event.display().to_string()));
        env.push(("GITHUB_WORKFLOW_REF", workflow));
    }
    let json = report.to_str().unwrap();
    let args = [
        "local",
        "--workers",
        "1",
        "cluster.yml",
        "--report-json",
        json,
    ];
    let (code, stderr) = run_binary(dir.path(), &args, &server.base, attempt, &env).await;
    let (report, _) = read_report_of(&report, &stderr);
    (code, stderr, report)
}

/// The run passed every test, and said `expected` once and nothing else about the history it
/// looked for: a whole line, or its start and end around a `…` (the zip library's own words).
fn assert_went_on_with_estimates(
    (code, stderr, report): (Option<i32>, String, Value),
    expected: &str,
) {
    assert_eq!(code, Some(0), "{stderr}");
    let statuses: Vec<&str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["passed"; 3], "{report}");
    let about_history: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ca-timings") || l.contains("history"))
        .collect();
    assert_eq!(about_history.len(), 1, "{stderr}");
    let line = about_history[0];
    match expected.split_once('…') {
        Some((start, end)) => assert!(line.starts_with(start) && line.ends_with(end), "{line}"),
        None => assert_eq!(line, expected),
    }
}

#[tokio::test]
async fn a_run_whose_history_lookup_is_forbidden_says_so_once_and_passes() {
    let timings = zip(TIMINGS_FILE, &timings(101, 1_000).to_json());
    let server = serve(local_timings(timings), Fault::ListForbidden).await;
    let run = local_run(&server, &["t1", "t2", "t3"], 1).await;
    assert_went_on_with_estimates(
        run,
        "no timing history (ca-timings-local-ci.yml on main): the token may not read artifacts \
         (HTTP 403: Resource not accessible by integration); give the job `permissions: actions: \
         read`; going on with estimates",
    );
    assert_eq!(counts(&server), (1, 0, 0, 0));
}

#[tokio::test]
async fn a_run_whose_history_download_is_not_found_says_so_once_and_passes() {
    let timings = zip(TIMINGS_FILE, &timings(101, 1_000).to_json());
    let server = serve(local_timings(timings), Fault::DownloadNotFound).await;
    let run = local_run(&server, &["t1", "t2", "t3"], 1).await;
    assert_went_on_with_estimates(
        run,
        "no timing history (ca-timings-local-ci.yml on main): HTTP 404: Not Found; going on with \
         estimates",
    );
    assert_eq!(counts(&server), (1, 0, 1, 0));
}

#[tokio::test]
async fn a_run_whose_history_artifact_is_garbled_says_so_once_and_passes() {
    let server = serve(local_timings(b"PK\x03\x04 garbled".to_vec()), Fault::None).await;
    let run = local_run(&server, &["t1", "t2", "t3"], 1).await;
    assert_went_on_with_estimates(
        run,
        "no timing history (ca-timings-local-ci.yml on main): the artifact is unreadable: artifact \
         ca-timings-local-ci.yml (id 21, run 101): not a zip: …; going on with estimates",
    );
    assert_eq!(counts(&server), (1, 0, 1, 1));
}

#[tokio::test]
async fn a_history_zip_past_the_bound_is_not_downloaded_whole() {
    use cluster_action::history::document::MAX_DOCUMENT_BYTES;
    let artifacts = || {
        let mut artifacts = repository_artifacts();
        let past = usize::try_from(MAX_DOCUMENT_BYTES).unwrap() + 1;
        artifacts[0].zip.resize(past, 0);
        artifacts
    };
    let words = "its zip is larger than 32 MiB, the most a history document may take";
    // Listed as large as it is: not downloaded at all.
    let server = serve(artifacts(), Fault::None).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(&history, |w| matches!(w, MissReason::Corrupt(_)), words);
    assert_eq!(counts(&server).2, 0, "no download");
    // Listed smaller than it is: the download stops at the bound.
    let server = serve(artifacts(), Fault::UnderstatedSizes).await;
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(&history, |w| matches!(w, MissReason::Corrupt(_)), words);
    assert_eq!(counts(&server).3, 1, "one blob read");
}

#[tokio::test]
async fn a_run_whose_history_inflates_past_the_bound_says_so_once_and_passes() {
    use cluster_action::history::document::MAX_DOCUMENT_BYTES;
    // Valid timings, padded with JSON whitespace past the bound: a small zip (spaces deflate
    // a thousandfold) that would read fine if it were inflated whole.
    let mut document = timings(101, 1_000).to_json();
    document.resize(usize::try_from(MAX_DOCUMENT_BYTES).unwrap() + 1, b' ');
    let bomb = zip(TIMINGS_FILE, &document);
    drop(document);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let server = serve(local_timings(bomb), Fault::None).await;
    let run = local_run(&server, &["t1", "t2", "t3"], 1).await;
    assert_went_on_with_estimates(
        run,
        "no timing history (ca-timings-local-ci.yml on main): the artifact is unreadable: artifact \
         ca-timings-local-ci.yml (id 21, run 101): ca-timings.json in the zip inflates past 32 \
         MiB, the most a history document may take; going on with estimates",
    );
}

#[tokio::test]
async fn sealed_history_is_read_with_the_same_secret_and_missed_in_one_line_without_it() {
    use cluster_action::history::github::fetch_sealed_history;
    use cluster_action::history::{HISTORY_ARTIFACT, HistorySeal};
    let seal = HistorySeal::derive(b"s3cret").unwrap();
    // What a sealed run on main kept: its timings under their sealed name, sealed.
    let mut sealed = timings_artifact(1, 101, "main", "2026-11-10T10:00:00Z", 1_000);
    sealed.name = seal.name(TIMINGS);
    sealed.zip = timings(101, 1_000).to_sealed_zip(&seal, TIMINGS).unwrap();
    assert!(sealed.name.starts_with(HISTORY_ARTIFACT) && !sealed.name.contains("ci.yml"));
    let server = serve(vec![sealed], Fault::None).await;

    let later = HistorySeal::derive(b"s3cret").unwrap();
    let history = fetch_sealed_history(&run(&server, 1), CLUSTER, true, &later).await;
    assert_eq!(history.misses, []);
    assert_eq!(slow_estimate(&history), Some(1_000));
    assert_eq!(counts(&server), (1, 0, 1, 1), "one list, one download");

    let other = HistorySeal::derive(b"another secret").unwrap();
    let history = fetch_sealed_history(&run(&server, 1), CLUSTER, true, &other).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::NotFound(_)),
        "sealed as",
    );
    let history = fetch_history(&run(&server, 1), CLUSTER, true).await;
    assert_one_miss(&history, |w| matches!(w, MissReason::NotFound(_)), TIMINGS);
}

#[tokio::test]
async fn a_tampered_sealed_history_is_refused_in_one_line() {
    use cluster_action::history::HistorySeal;
    use cluster_action::history::github::fetch_sealed_history;
    let seal = HistorySeal::derive(b"s3cret").unwrap();
    let mut sealed = timings_artifact(1, 101, "main", "2026-11-10T10:00:00Z", 1_000);
    sealed.name = seal.name(TIMINGS);
    // Sealed as another document (results of attempt 1): bound to its name, so refused.
    sealed.zip = timings(101, 1_000)
        .to_sealed_zip(&seal, "ca-results-default-1")
        .unwrap();
    let server = serve(vec![sealed], Fault::None).await;
    let history = fetch_sealed_history(&run(&server, 1), CLUSTER, true, &seal).await;
    assert_one_miss(
        &history,
        |w| matches!(w, MissReason::Corrupt(_)),
        "failed authentication",
    );
}

/// Runs `cluster-action ARGS` in `dir` with the GitHub variables of attempt `attempt` of
/// [`RUN`] (REST API at `api`), none of the caller's, `env` added; returns its exit code and
/// stderr.
async fn run_binary(
    dir: &std::path::Path,
    args: &[&str],
    api: &str,
    attempt: u32,
    env: &[(&str, String)],
) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cluster-action"));
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .args(args)
        .current_dir(dir)
        .env_remove("GITHUB_WORKFLOW_REF")
        .env("GITHUB_API_URL", api)
        .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
        .env("GITHUB_RUN_ID", RUN.to_string())
        .env("GITHUB_RUN_ATTEMPT", attempt.to_string())
        .env("GITHUB_TOKEN", TOKEN)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_sealed_run_s_history_is_sealed_and_only_the_same_secret_re_runs_from_it() {
    use cluster_action::history::HISTORY_ARTIFACT;
    use cluster_action::token::{BackendIds, make_token};
    let service = cluster_action::serve::start(Default::default())
        .await
        .unwrap();
    let nothing = serve(Vec::new(), Fault::None).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ["alpha_marker_one", "beta_marker_two", "gamma_marker_three"];
    let manifest = format!(
        "suites:\n  - name: r\n    framework: command\n    list: printf '{}\\n'\n    run: |\n      \
         {{ echo '<testsuite>'; for t in \"$@\"; do if [ \"$t\" = beta_marker_two ] && [ \"$GITHUB_RUN_ATTEMPT\" = 1 ]; then echo \"<testcase name='$t'><failure/></testcase>\"; else echo \"<testcase name='$t'/>\"; fi; done; echo '</testsuite>'; }} > \"$CLUSTER_JUNIT\"\n      \
         env:\n        GITHUB_RUN_ATTEMPT: \"${{GITHUB_RUN_ATTEMPT}}\"\n",
        ids.join("\\n")
    );
    std::fs::write(dir.path().join("cluster.yml"), manifest).unwrap();
    let secret = ("CLUSTER_SECRET", "s3cret".to_string());
    let token = make_token(&BackendIds {
        run: "run-1".into(),
        job: "runner".into(),
    });
    let store_env = [
        ("ACTIONS_RESULTS_URL", service.url().to_string()),
        ("ACTIONS_RUNTIME_TOKEN", token.clone()),
        secret.clone(),
    ];
    let args = [
        "run",
        "cluster.yml",
        "--embed-broker",
        "--slots",
        "1",
        "--stop-cluster",
        // `local`'s cluster id, which the history names carry.
        "--cluster",
        "local",
    ];
    let (code, stderr) = run_binary(dir.path(), &args, &nothing.base, 1, &store_env).await;
    assert_eq!(code, Some(1), "one test fails in attempt 1: {stderr}");

    // What the run kept: sealed history only, holding none of the test names.
    let store = cluster_action::store::ArtifactStore::new(
        cluster_action::store::StoreConfig::new(service.url(), &token).unwrap(),
    )
    .unwrap();
    let listed = store.list(None).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("ca-timings") || n.starts_with("ca-results")),
        "{names:?}"
    );
    let history: Vec<_> = listed
        .iter()
        .filter(|a| a.name.starts_with(HISTORY_ARTIFACT))
        .collect();
    assert_eq!(history.len(), 2, "timings and results: {names:?}");
    let mut stored = Vec::new();
    for (i, artifact) in history.into_iter().enumerate() {
        let path = dir.path().join(format!("kept-{i}.zip"));
        store.download_to(artifact, &path).await.unwrap();
        let zip = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&zip);
        assert!(!ids.iter().any(|id| text.contains(id)), "{text}");
        stored.push(Stored {
            id: 10 + i as u64,
            name: artifact.name.clone(),
            run_id: RUN,
            branch: "main",
            created_at: "2026-03-01T10:00:00Z",
            expired: false,
            origin: OWN_PUSH,
            zip,
        });
    }
    let github = serve(stored, Fault::None).await;

    // Attempt 2 with the same secret re-runs only what failed.
    let local = ["local", "--workers", "1", "cluster.yml"];
    let (code, stderr) = run_binary(dir.path(), &local, &github.base, 2, &[secret]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("re-run: running 1 of 3 tests"), "{stderr}");

    // Another secret, or none: not found, one line, every test runs.
    for env in [vec![("CLUSTER_SECRET", "other".to_string())], vec![]] {
        let (code, stderr) = run_binary(dir.path(), &local, &github.base, 2, &env).await;
        assert_eq!(code, Some(0), "{stderr}");
        let misses: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("no results of earlier attempts"))
            .collect();
        assert_eq!(misses.len(), 1, "{stderr}");
        assert!(misses[0].ends_with("every test runs"), "{stderr}");
        assert!(!stderr.contains("re-run: running 1 of 3"), "{stderr}");
    }
}

/// `plan` reads the history as a run does: the default branch's `ca-timings` of the workflow,
/// through the REST API, with the set-up and the last check runs kept in it.
#[tokio::test]
async fn a_plan_sizes_the_cluster_from_the_default_branch_history() {
    use cluster_action::history::sizing::PredictionCheck;
    let mut history = Timings::default();
    let took = [("t1", 1_000), ("t2", 2_000), ("t3", 3_000)];
    let outcomes: Vec<(TestKey, TestOutcome)> = (took.iter())
        .map(|&(id, ms)| (TestKey::new("r", id), passed(ms)))
        .collect();
    history.record_run(Some(101), outcomes.iter().map(|(k, o)| (k, o)));
    let check = PredictionCheck {
        machines: 2,
        slots: 1,
        predicted_ms: 5_000,
        actual_ms: 5_500,
    };
    history.sizing.record(2_000, Some(check));
    let mut stored = timings_artifact(1, 101, "main", "2026-11-10T10:00:00Z", 0);
    stored.zip = zip(TIMINGS_FILE, &history.to_json());
    let server = serve(vec![stored], Fault::None).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.yml"),
        command_suite(&["t1", "t2", "t3"], REPORT_EACH_PASSED),
    )
    .unwrap();
    let event = dir.path().join("event.json");
    let body = json!({"repository": {"default_branch": "main", "private": true}});
    std::fs::write(&event, body.to_string()).unwrap();
    let summary = dir.path().join("summary.md");
    let env = [
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        (
            "GITHUB_WORKFLOW_REF",
            format!("{OWNER}/{REPO}/.github/workflows/ci.yml@refs/heads/main"),
        ),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
    ];
    let args = ["plan", "--slots", "1", "--max-workers", "3", "cluster.yml"];
    let (code, stderr) = run_binary(dir.path(), &args, &server.base, 1, &env).await;
    assert_eq!(code, Some(0), "{stderr}");
    let text = std::fs::read_to_string(&summary).unwrap();
    // 6 s of tests, 2 s of set-up, 250 ms a batch, two batches a slot at least: 8.5 s on one
    // machine; 5.5 s on two (3.2 s, then 2.2 s + 1.2 s); 5.2 s on three, which saves less than
    // the set-up: the knee is 2.
    for words in [
        "3 of 3 tests measured; 6s of tests in all",
        "set-up of a run: 2s (measured: the median of the last 1 run(s))",
        "last run: predicted 5s on 2 machine(s) of 1 slot(s), took 5.5s (+10%)",
        "workers: 2 (the knee: one more would save 250ms, less than its set-up of 2s; predicted 5.5s)",
    ] {
        assert!(
            text.contains(words),
            "expected {words:?} in:\n{text}\n{stderr}"
        );
    }
    assert_eq!(server.counts.downloads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn attempt_2_of_a_jest_suite_runs_only_its_failed_test_and_that_test_alone() {
    use cluster_action::suite::{Framework, Suite};
    let Some(dir) = common::local::js_fixture_with_only("suite-jest", "jest") else {
        return;
    };
    // Attempt 1 ran every test the suite lists; one of them failed.
    let failed = "tests/math.test.js › math › two and two make five";
    let suite = Suite {
        name: "jest".into(),
        framework: Framework::Jest,
        args: Vec::new(),
    };
    let work = tempfile::tempdir().unwrap();
    // Listed before the server starts: nothing else runs on this thread meanwhile.
    let listing = suite.list(dir.path(), work.path()).unwrap();
    let tests = listing.tests.iter().map(|case| {
        let status = match case.id == failed {
            true => TestStatus::Failed,
            false => TestStatus::Passed,
        };
        let outcome = TestOutcome {
            status,
            duration_ms: Some(5),
            attempt: 1,
        };
        (TestKey::new("jest", &case.id), outcome)
    });
    let previous = AttemptResults {
        run_id: RUN,
        attempt: 1,
        tests: tests.collect(),
        timings: Timings::default(),
    };
    let server = serve_attempt_1(&previous).await;
    let log = work.path().join("ran");
    let report = work.path().join("report.json");
    let (json, path) = (report.to_str().unwrap(), common::local::tools_path());
    let args = [
        "local",
        "--workers",
        "1",
        "--report-json",
        json,
        "--tests",
        "jest",
    ];
    let env = [("JEST_RAN_LOG", log.display().to_string()), ("PATH", path)];
    let (code, stderr) = run_binary(dir.path(), &args, &server.base, 2, &env).await;
    assert_eq!(code, Some(1), "the test fails again: {stderr}");
    let all = listing.tests.len();
    let said = format!("re-run: running 1 of {all} tests");
    assert!(stderr.contains(&said), "{said}: {stderr}");
    let (report, _) = read_report_of(&report, &stderr);
    let ran = reported_ids(&report);
    assert_eq!(ran, [failed], "{report}");
    // Jest ran that test alone, not its neighbours in tests/math.test.js.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged, "tests/math.test.js math two and two make five\n");
}
