//! Playwright suites (`@playwright/test`) through `cluster-action local --tests playwright`,
//! on tests/fixtures/suite-playwright: two projects (the page tests run in both, as two tests
//! each), pages opened in Debian's chromium (the fixture's configuration launches
//! `CHROMIUM_PATH`, default /usr/bin/chromium, as Playwright's own browser download does not
//! reach this machine), nested describes, tests made in a loop, names with spaces, quotes,
//! brackets, `#`, `$`, `>` and unicode, a slow, a failing, two skipped and a flaky test.
//!
//! Needs node, the packages of tests/frameworks (see `common::local::node_modules`) and
//! chromium: outside CI a missing one skips the test, under `CI=true` it fails it.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use cluster_action::suite::{ATTEMPT_ENV, Framework, Suite, TestStatus};

mod common;
use common::await_some;
use common::framework::assert_refused;
use common::local::{
    LocalRun, alone, available, fixture_copy, js_fixture_copy, junit_counts, local,
    spawn_batch_held,
};

/// Playwright's command line in a checkout.
const CLI: &str = "node_modules/@playwright/test/cli.js";

/// The packages a project depending on `@playwright/test` alone has in its node_modules.
const PLAYWRIGHT_PACKAGES: [&str; 3] = ["@playwright", "playwright", "playwright-core"];

/// The chromium the fixture's configuration launches.
fn chromium() -> String {
    std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// A checkout of the fixture as a user's after `npm ci`, with only Playwright's packages in
/// its node_modules (the checkout is shipped to the workers: jest's and vitest's packages would
/// only make it bigger), or `None` when node, the packages or chromium are missing.
fn checkout() -> Option<tempfile::TempDir> {
    if !available("node", &["--version"]) || !available(&chromium(), &["--version"]) {
        return None;
    }
    let dir = js_fixture_copy("suite-playwright")?;
    let modules = dir.path().join("node_modules");
    for entry in std::fs::read_dir(&modules).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_str().unwrap();
        if PLAYWRIGHT_PACKAGES.contains(&name) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    Some(dir)
}

/// The id of a test of the fixture: `[project] › file › titles`.
fn id(project: &str, file: &str, titles: &str) -> String {
    format!("[{project}] › {file} › {titles}")
}

/// The fixture's tests, their final status with one retry and their number of attempts.
fn expected() -> BTreeMap<String, (&'static str, u64)> {
    let basics = |titles: &str| id("desktop", "basics.spec.ts", titles);
    let mut want: BTreeMap<String, (&str, u64)> = [
        (basics("outer › inner context › adds"), ("passed", 1)),
        (
            basics("outer › name with spaces, \"quotes\", [brackets] and ünïcødé ✓"),
            ("passed", 1),
        ),
        (basics("param 1"), ("passed", 1)),
        (basics("param 2"), ("passed", 1)),
        (basics("param 3"), ("passed", 1)),
        (basics("slow"), ("passed", 1)),
        (basics("fails"), ("failed", 2)),
        (basics("skipped"), ("skipped", 1)),
        (basics("not yet"), ("skipped", 1)),
        (basics("flaky: # $HOME 'it' > next"), ("flaky", 2)),
    ]
    .into();
    // The page tests, in both projects: two tests each.
    for project in ["desktop", "narrow"] {
        for title in ["a data: URL has its title", "a file page shows its heading"] {
            let test = id(project, "pages.spec.ts", &format!("pages › {title}"));
            want.insert(test, ("passed", 1));
        }
    }
    want
}

/// `(tests, failures, errors, skipped)` of Playwright alone on a fresh checkout with
/// `CLUSTER_ATTEMPT=2` (the flaky test passes), from its own JUnit reporter.
fn playwright_alone() -> (usize, usize, usize, usize) {
    let dir = checkout().unwrap();
    let xml = dir.path().join("alone.xml");
    let out = alone(
        dir.path(),
        "node",
        &[CLI, "test", "--reporter=junit"],
        &[
            ("PLAYWRIGHT_JUNIT_OUTPUT_NAME", xml.to_str().unwrap()),
            (ATTEMPT_ENV, "2"),
        ],
    );
    let junit = std::fs::read_to_string(&xml)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    junit_counts(&junit)
}

/// Each test's durations in a timings file, by id.
fn samples(timings: &Path) -> BTreeMap<String, Vec<u64>> {
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(timings).unwrap()).unwrap();
    let tests = history["tests"].as_array().unwrap().iter();
    tests
        .map(|t| {
            let durations = t["durations_ms"].as_array().unwrap();
            let durations = durations.iter().map(|d| d.as_u64().unwrap()).collect();
            (t["id"].as_str().unwrap().to_owned(), durations)
        })
        .collect()
}

/// The run's final status and attempts of each test, by id.
fn outcomes(run: &LocalRun) -> BTreeMap<String, (&str, u64)> {
    let outcomes = run.outcomes().into_iter();
    outcomes
        .map(|(id, outcome)| (id.to_owned(), outcome))
        .collect()
}

#[test]
fn playwright_through_local_runs_every_test_once_plus_retries_and_keeps_its_timings() {
    let Some(dir) = checkout() else {
        return;
    };
    let timings = tempfile::tempdir().unwrap();
    let timings = timings.path().join("timings.json");
    let timings_arg = timings.to_str().unwrap();
    let run = local(dir.path())
        .workers(2)
        .args(&["--test-retries", "1", "--write-timings", timings_arg])
        .args(&["--tests", "playwright"])
        .run();
    assert_eq!(outcomes(&run), expected(), "{}", run.stderr);
    assert_eq!(run.report["test_summary"]["flaky"], 1, "{}", run.report);
    let fails = id("desktop", "basics.spec.ts", "fails");
    assert_eq!(run.message(&fails), "Error: two and two make five");
    assert_eq!(
        junit_counts(&run.junit),
        playwright_alone(),
        "{}",
        run.junit
    );
    assert_eq!(run.code, 1, "a test failed: {}", run.stderr);
    let first = samples(&timings);
    let slow = id("desktop", "basics.spec.ts", "slow");
    assert!(first[&slow][0] >= 1000, "the slow test's time: {first:?}");

    // A second run finds every test in the first one's history, by the same ids: each test
    // that passed in both has two durations.
    let run = local(dir.path())
        .args(&["--timings", timings_arg, "--write-timings", timings_arg])
        .args(&["--tests", "playwright"])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let second = samples(&timings);
    let passed: Vec<String> = expected()
        .into_iter()
        .filter(|(_, (status, _))| *status == "passed")
        .map(|(id, _)| id)
        .collect();
    for test in &passed {
        assert_eq!(second[test].len(), 2, "{test}: {second:?}");
    }
    assert_eq!(passed.len(), 10);
}

/// A batch of `titles` (tests of the desktop project's basics.spec.ts) run as a worker runs
/// it, SIGKILLed with its process group once its output shows that `marker` passed: each
/// test's status from what its report holds.
fn kill_part_way(dir: &Path, titles: &[&str], marker: &str) -> BTreeMap<String, TestStatus> {
    let work = tempfile::tempdir().unwrap();
    let suite = Suite {
        name: "pw".into(),
        framework: Framework::Playwright,
        args: vec![],
    };
    let listing = suite
        .list(dir, work.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = titles
        .iter()
        .map(|t| id("desktop", "basics.spec.ts", t))
        .collect();
    let batch: Vec<_> = ids
        .iter()
        .map(|id| listing.tests.iter().find(|t| t.id == *id).unwrap().clone())
        .collect();
    for file in &listing.ship {
        let dest = dir.join(&file.dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file.source, dest).unwrap();
    }
    let report = dir.join("report.out");
    let mut child = spawn_batch_held(dir, &listing.batch_command(&batch), &report);
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let shown = format!("passed {}", id("desktop", "basics.spec.ts", marker));
    loop {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "ended before {shown:?}"
        );
        if line.starts_with(&shown) {
            break;
        }
    }
    // The reporter writes the report before it prints the line.
    await_some("the marker in the report", || {
        let text = std::fs::read_to_string(&report).ok()?;
        text.contains(&format!("\"{marker}\"")).then_some(())
    });
    let pgid = i32::try_from(child.id()).unwrap();
    // SAFETY: a plain syscall on the process group of the child started above.
    assert_eq!(unsafe { libc::killpg(pgid, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let bytes = std::fs::read(&report).unwrap();
    let results = listing.parse_report(Some(&bytes), &batch);
    results
        .into_iter()
        .map(|r| (r.case.name, r.status))
        .collect()
}

#[test]
fn a_playwright_batch_killed_part_way_keeps_what_finished() {
    let Some(dir) = checkout() else {
        return;
    };
    // Playwright runs a file's tests in their order: `slow` is running at the kill.
    let got = kill_part_way(dir.path(), &["param 1", "slow", "fails"], "param 1");
    let want: BTreeMap<String, TestStatus> = [
        ("param 1", TestStatus::Passed),
        ("slow", TestStatus::NotRun),
        ("fails", TestStatus::NotRun),
    ]
    .into_iter()
    .map(|(name, status)| (name.to_owned(), status))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn playwright_bad_input_exits_2_with_the_words_a_user_needs() {
    let Some(dir) = checkout() else {
        return;
    };
    // No tests match.
    let run = local(dir.path())
        .args(&["--tests", "playwright", "-g", "no_test_is_called_this"])
        .run();
    assert_refused(
        &run,
        &[
            "suite 'playwright': no tests match",
            "no_test_is_called_this",
        ],
    );
    // A spec file that does not load: the listing fails with Playwright's words.
    let spec = dir.path().join("tests/basics.spec.ts");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("\nthis is not TypeScript(\n");
    std::fs::write(&spec, text).unwrap();
    let run = local(dir.path()).args(&["--tests", "playwright"]).run();
    assert_refused(
        &run,
        &[
            "suite 'playwright': `node node_modules/@playwright/test/cli.js test --list",
            "failed (exit status: 1)",
            "basics.spec.ts",
        ],
    );
    // No Node on PATH.
    let run = local(dir.path())
        .env("PATH", "/nonexistent")
        .args(&["--tests", "playwright"])
        .run();
    assert_refused(
        &run,
        &[
            "`node` is not installed (not found on PATH)",
            "npm install --save-dev @playwright/test",
        ],
    );
    // A checkout without its node_modules: Playwright is not installed.
    let bare = fixture_copy("suite-playwright");
    let run = local(bare.path()).args(&["--tests", "playwright"]).run();
    assert_refused(
        &run,
        &[
            "`playwright` is not installed (no node_modules/@playwright/test/cli.js in",
            "npm install --save-dev @playwright/test",
        ],
    );
}

/// The token the run passes to the API (the fake one of [`rerun_api`] takes any).
const TOKEN: &str = "ghs_playwright_rerun";

/// The workflow run whose attempt 2 [`rerun_api`] serves.
const RUN: u64 = 4242;

/// A GitHub REST API on 127.0.0.1 holding one artifact of run [`RUN`], the results of its
/// attempt 1 (`zip`, named as `local`'s cluster names them): "List workflow run artifacts"
/// and "Download an artifact" (a 302 to the zip), as GitHub documents them. Returns its URL.
async fn rerun_api(zip: Vec<u8>) -> String {
    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let name = cluster_action::history::results::results_artifact_name("local", 1);
    let list = {
        let url = format!("{base}/repos/o/r/actions/artifacts/1");
        let size = zip.len();
        move || async move {
            axum::Json(serde_json::json!({"total_count": 1, "artifacts": [{
                "id": 1,
                "node_id": "MDg6QXJ0aWZhY3QxMQ==",
                "name": name,
                "size_in_bytes": size,
                "url": url,
                "archive_download_url": format!("{url}/zip"),
                "expired": false,
                "created_at": "2026-12-01T10:00:00Z",
                "expires_at": "2027-03-01T10:00:00Z",
                "updated_at": "2026-12-01T10:00:00Z",
                "workflow_run": {"id": RUN, "repository_id": 1, "head_repository_id": 1,
                    "head_branch": "main", "head_sha": "328faa0536e6fef19753d9d91dc96a9931694ce3"}
            }]}))
        }
    };
    let download = {
        let blob = format!("{base}/blob/1.zip");
        move || async move { (StatusCode::FOUND, [(header::LOCATION, blob)]).into_response() }
    };
    let routes = axum::Router::new()
        .route("/repos/o/r/actions/runs/{run}/artifacts", get(list))
        .route("/repos/o/r/actions/artifacts/{id}/zip", get(download))
        .route(
            "/blob/1.zip",
            get(|State(zip): State<Vec<u8>>| async move { zip }),
        )
        .with_state(zip);
    tokio::spawn(async move { axum::serve(listener, routes).await });
    base
}

/// `contents` as the file `name` of a zip, as `@actions/artifact` uploads it.
fn zipped(name: &str, contents: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, options).unwrap();
    zip.write_all(contents).unwrap();
    zip.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn attempt_2_runs_only_the_playwright_tests_that_failed_or_never_ran() {
    use cluster_action::history::ArtifactDocument;
    use cluster_action::history::results::TestStatus as Earlier;
    use cluster_action::history::results::{AttemptResults, RESULTS_FILE, TestOutcome};
    let Some(dir) = checkout() else {
        return;
    };
    // Attempt 1: `fails` failed, one page test of the narrow project never ran (its worker
    // was lost), everything else passed.
    let fails = id("desktop", "basics.spec.ts", "fails");
    let lost = id(
        "narrow",
        "pages.spec.ts",
        "pages › a file page shows its heading",
    );
    let tests = expected().into_keys().map(|test| {
        let status = match test {
            _ if test == fails => Earlier::Failed,
            _ if test == lost => Earlier::NotRun,
            _ => Earlier::Passed,
        };
        let outcome = TestOutcome {
            status,
            duration_ms: Some(100),
            attempt: 1,
        };
        (
            cluster_action::suite::TestKey::new("playwright", test),
            outcome,
        )
    });
    let earlier = AttemptResults {
        run_id: RUN,
        attempt: 1,
        tests: tests.collect(),
        timings: Default::default(),
    };
    let api = rerun_api(zipped(RESULTS_FILE, &earlier.to_json())).await;
    let path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        local(&path)
            .env("GITHUB_API_URL", api)
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_RUN_ID", RUN.to_string())
            .env("GITHUB_RUN_ATTEMPT", "2")
            .env("GITHUB_TOKEN", TOKEN)
            .args(&["--tests", "playwright"])
            .run()
    })
    .await
    .unwrap();
    assert!(
        run.stderr.contains("re-run: running 2 of 14 tests"),
        "{}",
        run.stderr
    );
    let want: BTreeMap<String, (&str, u64)> =
        [(fails, ("failed", 1)), (lost, ("passed", 1))].into();
    assert_eq!(outcomes(&run), want, "{}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
}
