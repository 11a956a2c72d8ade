//! What the tests of one framework's suites (tests/suite_rspec.rs, tests/suite_minitest.rs)
//! share: a run refused with the words a user needs (Ruby or its framework missing), a second
//! run that finds every test of the first run's timing history under the same id, attempt 2
//! of a workflow run re-running only what failed in attempt 1, a test that hangs stopped at
//! the per-test timeout, and a worker killed by a test it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::header;
use axum::routing::get;
use axum::{Json, Router};
use cluster_action::history::ArtifactDocument;
use cluster_action::history::results::{
    AttemptResults, TestOutcome, TestStatus, results_artifact_name,
};
use cluster_action::suite::TestKey;
use serde_json::{Value, json};

use super::local::{LocalRun, local};

/// Asserts that `local` with `args` in `dir` is refused as bad input (exit 2) with each of
/// `words` in its standard error.
pub fn assert_local_refused(dir: &Path, args: &[&str], words: &[&str]) {
    assert_refused(&local(dir).args(args).run(), words);
}

/// Asserts that a `local` run was refused as bad input (exit 2) with each of `words` in its
/// standard error.
pub fn assert_refused(run: &LocalRun, words: &[&str]) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    for word in words {
        assert!(
            run.stderr.contains(word),
            "{word:?} not in:\n{}",
            run.stderr
        );
    }
}

/// Asserts that `local` with `args` in `dir` is refused naming what is missing and how to
/// install it, without Ruby on PATH, and with a Ruby whose gems do not hold `gem`.
pub fn assert_refused_without_ruby_or_its_gem(dir: &Path, gem: &str, args: &[&str]) {
    let run = local(dir).env("PATH", "/nonexistent").args(args).run();
    assert_refused(&run, &["`ruby` is not installed", "ruby/setup-ruby"]);
    let no_gems = tempfile::tempdir().unwrap();
    let no_gems = no_gems.path().to_str().unwrap();
    let run = local(dir)
        .env("GEM_PATH", no_gems)
        .env("GEM_HOME", no_gems)
        .args(args)
        .run();
    let missing = format!("`{gem}` is not installed");
    let install = format!("`gem install {gem}`");
    assert_refused(&run, &[&missing, "cannot load it", &install]);
}

/// The durations the timing history file at `path` holds, by test id.
pub fn recorded_durations(path: &Path) -> BTreeMap<String, Vec<u64>> {
    let history: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    history["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ms = t["durations_ms"].as_array().unwrap();
            let ms = ms.iter().map(|d| d.as_u64().unwrap()).collect();
            (t["id"].as_str().unwrap().to_owned(), ms)
        })
        .collect()
}

/// Runs `local` with `args` in `dir` once more, reading and writing the timing history
/// `timings` a first run wrote, in which `slow` took a second: asserts that the second run
/// found every test of the history by its id (each that passed then has a duration of both
/// runs).
pub fn assert_second_run_adds_to_the_history(
    dir: &Path,
    timings: &Path,
    slow: &str,
    args: &[&str],
) {
    let first = recorded_durations(timings);
    assert!(first[slow][0] >= 900, "{first:?}");
    let path = timings.to_str().unwrap();
    let again = local(dir)
        .args(&["--timings", path, "--write-timings", path])
        .args(args)
        .run();
    assert_eq!(again.code, 1, "a test fails again: {}", again.stderr);
    let second = recorded_durations(timings);
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    // A test that never passed keeps its record but no duration.
    for (id, ms) in &second {
        let runs = if first[id].is_empty() { 0 } else { 2 };
        assert_eq!(ms.len(), runs, "{id} measured in both runs: {second:?}");
    }
}

/// Runs `local` with `args` on two workers in `dir`, one of whose tests runs
/// [`ruby_killing_its_worker_once`] with `marker`: asserts that a worker was killed and that the
/// tests `ids`, all of the suite, still each passed once.
pub fn assert_a_killed_worker_loses_no_test(
    dir: &Path,
    marker: &Path,
    args: &[&str],
    ids: &[&str],
) {
    let run = local(dir)
        .workers(2)
        .args(&["--peer-timeout", "3s"])
        .args(args)
        .run();
    assert!(marker.exists(), "a worker was killed");
    let want: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.to_string(), "passed".to_owned()))
        .collect();
    assert_eq!(run.statuses(), want, "{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Ruby statements that, the first time they run (they make the directory `marker`), SIGKILL
/// the worker running them mid-batch (the first `cluster-action` among their process's
/// ancestors) and wait for the batch to be lost with it.
pub fn ruby_killing_its_worker_once(marker: &Path) -> String {
    format!(
        r#"if (Dir.mkdir({marker:?}) rescue nil)
  pid = Process.pid
  while pid > 1
    pid = File.read("/proc/#{{pid}}/stat").split(") ").last.split[1].to_i
    next unless File.read("/proc/#{{pid}}/comm").strip == "cluster-action"

    Process.kill(:KILL, pid)
    sleep 5
    break
  end
end
"#,
        marker = marker.display().to_string()
    )
}

/// The repository, run and token of [`assert_attempt_2_reruns_only`]'s workflow run.
const REPOSITORY: &str = "octo-org/octo-repo";
const RUN_ID: u64 = 900;
const TOKEN: &str = "ghs_test_token";

/// Runs `local --tests FRAMEWORK` in `dir` as attempt 2 of a workflow run whose attempt 1 was
/// `first` (the same in `dir`), with the GitHub REST API of [`serve_attempt_1`] holding
/// attempt 1's results as a run keeps them: asserts that it ran exactly `failed` (the tests
/// that failed or erred in attempt 1, failing again) and said so.
pub fn assert_attempt_2_reruns_only(
    dir: &Path,
    first: &LocalRun,
    framework: &str,
    failed: &[&str],
) {
    let tests = first
        .statuses()
        .into_iter()
        .map(|(id, status)| {
            let status = match status.as_str() {
                "passed" | "skipped" => TestStatus::Passed,
                "flaky" => TestStatus::Flaky,
                "not_run" => TestStatus::NotRun,
                _ => TestStatus::Failed,
            };
            let outcome = TestOutcome {
                status,
                duration_ms: None,
                attempt: 1,
            };
            (TestKey::new(framework, id), outcome)
        })
        .collect();
    let results = AttemptResults {
        run_id: RUN_ID,
        attempt: 1,
        tests,
        timings: Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = serve_attempt_1(&runtime, results.to_artifact_zip().unwrap());
    let run = local(dir)
        .env("GITHUB_API_URL", api)
        .env("GITHUB_REPOSITORY", REPOSITORY)
        .env("GITHUB_RUN_ID", RUN_ID.to_string())
        .env("GITHUB_RUN_ATTEMPT", "2")
        .env("GITHUB_TOKEN", TOKEN)
        .args(&["--tests", framework])
        .run();
    let total = first.tests().len();
    let said = format!("re-run: running {} of {total} tests", failed.len());
    assert!(
        run.stderr.contains(&said),
        "{said:?} not in:\n{}",
        run.stderr
    );
    let ran: Vec<&str> = run.statuses_in_order().iter().map(|(id, _)| *id).collect();
    let mut want = failed.to_vec();
    want.sort_unstable();
    let mut ran = ran;
    ran.sort_unstable();
    assert_eq!(ran, want, "{}", run.stderr);
    assert_eq!(run.code, 1, "they fail again: {}", run.stderr);
}

/// A GitHub REST API on 127.0.0.1 for run [`RUN_ID`] of [`REPOSITORY`], whose one artifact is
/// `zip`, attempt 1's results (`ca-results-local-1`: `local` names its cluster `local`): "list
/// workflow run artifacts" and "download an artifact" (the zip itself). Returns its base URL;
/// it serves on `runtime`'s threads while the test waits for a run.
fn serve_attempt_1(runtime: &tokio::runtime::Runtime, zip: Vec<u8>) -> String {
    let name = results_artifact_name("local", 1);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/repos/{REPOSITORY}/actions/artifacts/1");
    let artifact = json!({
        "id": 1,
        "node_id": "MDg6QXJ0aWZhY3QxMQ==",
        "name": name,
        "size_in_bytes": zip.len(),
        "url": url,
        "archive_download_url": format!("{url}/zip"),
        "expired": false,
        "created_at": "2026-03-01T10:00:00Z",
        "expires_at": "2027-03-01T10:00:00Z",
        "updated_at": "2026-03-01T10:00:00Z",
        "workflow_run": {
            "id": RUN_ID,
            "repository_id": 1,
            "head_repository_id": 1,
            "head_branch": "main",
            "head_sha": "328faa0536e6fef19753d9d91dc96a9931694ce3"
        }
    });
    let list = move |Query(query): Query<Vec<(String, String)>>| {
        let wanted = query.iter().all(|(k, v)| k != "name" || *v == name);
        let artifacts = if wanted {
            vec![artifact.clone()]
        } else {
            vec![]
        };
        async move { Json(json!({"total_count": artifacts.len(), "artifacts": artifacts})) }
    };
    let download = move || {
        let zip = zip.clone();
        async move { ([(header::CONTENT_TYPE, "application/zip")], zip) }
    };
    let routes = Router::new()
        .route(
            &format!("/repos/{REPOSITORY}/actions/runs/{RUN_ID}/artifacts"),
            get(list),
        )
        .route(
            &format!("/repos/{REPOSITORY}/actions/artifacts/1/zip"),
            get(download),
        );
    runtime.spawn(async move { axum::serve(listener, routes).await });
    base
}

/// Runs `local` on a manifest suite of `framework` in `dir`, with a per-test timeout of 3 s,
/// one retry and a file's tests in one batch, whose tests `[a, hang, b, c]` (in the order the
/// framework runs them, `hang` never ending) are in the files of `paths`: asserts that `hang`
/// times out on both attempts, its message naming the timeout, and the others pass once,
/// long before a batch's own limit.
pub fn assert_a_hung_test_times_out_alone(
    dir: &Path,
    framework: &str,
    paths: &[&str],
    [a, hang, b, c]: [&str; 4],
) {
    let manifest = format!(
        "layers:\n  checkout: {{ paths: [{}] }}\nsuites:\n  - name: {framework}\n    \
         framework: {framework}\n    layers: [checkout]\n    split: file\n    timeout: 3s\n    \
         retries: 1\n",
        paths.join(", ")
    );
    std::fs::write(dir.join("cluster.yml"), manifest).unwrap();
    let started = Instant::now();
    let run = local(dir)
        .args(&["cluster.yml"])
        .within(Duration::from_secs(60))
        .run();
    let took = started.elapsed();
    let want: BTreeMap<&str, (&str, u64)> = [
        (a, ("passed", 1)),
        (hang, ("timed_out", 2)),
        (b, ("passed", 1)),
        (c, ("passed", 1)),
    ]
    .into();
    assert_eq!(run.outcomes(), want, "{}\n{}", run.report, run.stderr);
    let message = run.message(hang);
    assert!(
        message.contains("timed out") && message.contains("3s"),
        "{message}"
    );
    assert_eq!(
        run.code, 1,
        "a timed-out test fails the run: {}",
        run.stderr
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
}
