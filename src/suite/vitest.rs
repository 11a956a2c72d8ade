//! Vitest: the tests listed on the runner by collecting them with the user's own vitest, and
//! batches that run exactly their tests, each reported as it ends. The Node environment is the
//! user's: their `node_modules` (shipped with the checkout, or installed on every job).
//!
//! Both sides go through a helper the binary ships ([`HELPER`], run with `node` in the
//! checkout), which loads the `vitest/node` the checkout resolves and uses Vitest's own API:
//! the listing collects the tests the suite's arguments (those of `vitest run`) select and
//! writes each one's id with Vitest's own ids of it; a batch gives each of its files Vitest's
//! ids of its tests (never a name pattern, which could match a neighbour whose names joined by
//! spaces are the same) and appends one JSON line to the report file as each test ends, then a
//! last line saying the run ended. A batch killed part-way leaves the lines of what finished.
//! (Vitest 3 takes no test ids: there a batch's files run with an anchored pattern of its
//! tests' exact names, and a neighbour of the same name joined by spaces runs too; the report
//! names it, and the runner ignores a test the batch did not ask for.) Vitest's ids are
//! positions in a file: a file that declares other tests on a worker than on the runner (from
//! its environment) runs other tests than those asked, whose report then lacks the asked ones:
//! they are errors, never passes.
//!
//! A test's id is what `vitest list` prints for it: `[project] file > describe > test`, with
//! the project when it has a name (the same test in two projects is two tests) and the file
//! relative to the project's root; a `test.each` row is a test of its own. Unlike `vitest
//! list`, tests skipped by `.skip`, `.todo` or a skipped describe are listed, as Vitest reports
//! them. A batch runs one Vitest worker (`--maxWorkers=1`) unless the suite's arguments set
//! `--maxWorkers` or `--fileParallelism`.
//!
//! A worker that gives a batch a session (see `worker::session`) has it run in a Vitest kept
//! started across its slot's batches: the helper's `serve` mode, which the session loop the
//! Node frameworks share (`node_session_server.cjs`) hands each batch, so that a batch costs
//! its tests and not Vitest's start (its configuration, its Vite server, its transforms).

use std::path::Path;

use serde::Deserialize;

use super::process::{Tool, run};
use super::report::{Reported, ReportedCase};
use super::{
    Listing, NODE_SESSION_START, REPORT_ENV, Shipped, Suite, SuiteError, TestCase, TestStatus,
    ids_path, job_path, node_session_client, shell_quote, shell_words, ship_dest,
    ship_node_session_server, write_lines,
};

/// Node itself.
const NODE: Tool = Tool {
    program: "node",
    install: "install Node.js (in CI, actions/setup-node) and vitest in the project (`npm \
              install --save-dev vitest`)",
};

/// Vitest, when the checkout's `node_modules` lacks it.
const VITEST: Tool = Tool {
    program: "vitest",
    install: "install it in the project: `npm install --save-dev vitest` (in CI, run `npm ci` \
              before cluster-action)",
};

/// The helper both sides run with `node`.
const HELPER: &str = include_str!("vitest_helper.mjs");

/// The helper's file name, in the listing's work directory and beside a suite's shipped files.
const HELPER_FILE: &str = "vitest_helper.mjs";

/// The listing's tests (what the helper's `list` writes), shipped to the batches, which find
/// Vitest's ids of their tests there.
const TESTS_FILE: &str = "vitest_tests.jsonl";

/// The helper's exit code when `vitest/node` does not resolve from the checkout.
const NOT_INSTALLED: i32 = 3;

/// One test as the helper's `list` writes it.
#[derive(Debug, Deserialize)]
struct Listed {
    /// Its id (see the module documentation).
    id: String,
    /// Its project's name, when it has one.
    project: Option<String>,
    /// Its file, relative to the checkout.
    file: String,
    /// Its full name: its describes and its own, joined by ` > `.
    name: String,
}

/// Lists the suite in `dir` with the helper, which is written with the listing under `work`.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let node = NODE.find(suite)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SuiteError::Io { path, source }
    };
    let helper = work.join(HELPER_FILE);
    std::fs::write(&helper, HELPER).map_err(io(&helper))?;
    let tests = work.join(TESTS_FILE);
    let mut args = vec![
        helper.display().to_string(),
        "list".to_owned(),
        tests.display().to_string(),
        "--".to_owned(),
    ];
    args.extend(suite.args.iter().cloned());
    let shown = || {
        let words = suite.args.iter().map(|a| shell_quote(a));
        std::iter::once("vitest list".to_owned())
            .chain(words)
            .collect::<Vec<_>>()
            .join(" ")
    };
    match run(suite, dir, &node, &args, &[]) {
        Ok(_) => {}
        Err(SuiteError::ListFailed { status, .. })
            if status.ends_with(&format!("exit status: {NOT_INSTALLED}")) =>
        {
            let looked = format!("`vitest/node` does not resolve from {}", dir.display());
            return Err(VITEST.missing(suite, looked));
        }
        Err(SuiteError::ListFailed {
            suite,
            status,
            stderr_tail,
            ..
        }) => {
            return Err(SuiteError::ListFailed {
                suite,
                command: shown(),
                status,
                stderr_tail,
            });
        }
        Err(e) => return Err(e),
    }
    let text = std::fs::read_to_string(&tests).map_err(io(&tests))?;
    let mut cases = Vec::new();
    for line in text.lines() {
        let listed: Listed = serde_json::from_str(line).map_err(|e| SuiteError::BadListing {
            suite: suite.name.clone(),
            command: shown(),
            why: format!("a line that is not a listed test ({e}): {line}"),
        })?;
        let group = match &listed.project {
            Some(project) => format!("[{project}] {}", listed.file),
            None => listed.file.clone(),
        };
        cases.push(TestCase {
            id: listed.id,
            group,
            name: listed.name,
            file: Some(listed.file),
        });
    }
    let mut listing = Listing::new(suite, cases);
    listing.ship = [(helper, HELPER_FILE), (tests, TESTS_FILE)]
        .into_iter()
        .map(|(source, file)| Shipped {
            source,
            dest: ship_dest(suite, file),
        })
        .collect();
    ship_node_session_server(&mut listing, work)?;
    listing.run_args = suite.args.clone();
    Ok(listing)
}

/// Runs the batch's tests with the helper: their ids in a file, the suite's arguments after
/// `--`, the report to [`REPORT_ENV`].
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let suite = &listing.suite;
    format!(
        "{}{}node {} run {} {} \"${REPORT_ENV}\" -- {}\n",
        write_lines(&ids_path(suite), batch.iter().map(|c| c.id.as_str())),
        node_session_client("Vitest", &ids_path(suite)),
        job_path(suite, HELPER_FILE),
        ids_path(suite),
        job_path(suite, TESTS_FILE),
        shell_words(&listing.run_args),
    )
}

/// The `bash -c` command that starts a warm Vitest session of the suite (the helper's
/// `serve`, with the suite's arguments) in a directory holding the suite's layers; see
/// [`NODE_SESSION_START`].
pub(super) fn session_command(listing: &Listing) -> String {
    let suite = &listing.suite;
    format!(
        "{NODE_SESSION_START}exec node {} serve {} -- {}\n",
        job_path(suite, HELPER_FILE),
        job_path(suite, TESTS_FILE),
        shell_words(&listing.run_args),
    )
}

/// One line of a batch's report.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Line {
    /// How a test ended.
    Test {
        /// Its id.
        id: String,
        /// `passed`, `failed`, `skipped` or `error` (its file failed to load).
        status: String,
        /// Its run time.
        #[serde(default)]
        ms: u64,
        /// Why it failed or was skipped.
        message: Option<String>,
        /// Its errors' stacks and its console output.
        #[serde(default)]
        output: String,
    },
    /// The run ended.
    End {
        /// Always true.
        end: bool,
    },
}

/// The tests a batch's report holds, by id; complete once its last line says the run ended.
pub(super) fn parse(bytes: &[u8]) -> Reported {
    let mut reported = Reported::default();
    for text in String::from_utf8_lossy(bytes).lines() {
        match serde_json::from_str::<Line>(text) {
            Ok(Line::End { end }) => reported.complete |= end,
            Ok(Line::Test {
                id,
                status,
                ms,
                message,
                output,
            }) => {
                let status = match status.as_str() {
                    "passed" => TestStatus::Passed,
                    "failed" => TestStatus::Failed,
                    "skipped" => TestStatus::Skipped,
                    _ => TestStatus::Error,
                };
                let case = ReportedCase {
                    status,
                    duration_ms: ms,
                    message,
                    output,
                };
                reported.insert(id, case);
            }
            // A line cut by a kill.
            Err(_) => {}
        }
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str) -> TestCase {
        TestCase {
            id: id.into(),
            group: String::new(),
            name: String::new(),
            file: None,
        }
    }

    #[test]
    fn a_report_gives_each_test_its_line_and_is_whole_at_its_end() {
        let report = concat!(
            r#"{"id":"a.test.ts > ok","status":"passed","ms":12,"output":""}"#,
            "\n",
            r#"{"id":"[p] a.test.ts > d > bad","status":"failed","ms":3,"message":"AssertionError: no","output":"at a.test.ts:3"}"#,
            "\n",
            r#"{"id":"a.test.ts > todo","status":"skipped","ms":0,"message":"skipped","output":""}"#,
            "\n",
            r#"{"id":"b.test.ts > x","status":"error","ms":0,"message":"Error: cannot load","output":""}"#,
            "\n"
        );
        let batch = [
            case("a.test.ts > ok"),
            case("[p] a.test.ts > d > bad"),
            case("a.test.ts > todo"),
            case("b.test.ts > x"),
            case("a.test.ts > later"),
        ];
        let status = |bytes: &[u8]| -> Vec<TestStatus> {
            parse(bytes)
                .results(&batch, |c| c.id.clone())
                .into_iter()
                .map(|r| r.status)
                .collect()
        };
        use TestStatus::*;
        assert_eq!(
            status(report.as_bytes()),
            [Passed, Failed, Skipped, Error, NotRun],
            "a report without its end leaves the rest to run again"
        );
        let whole = format!("{report}{{\"end\":true}}\n");
        assert_eq!(
            status(whole.as_bytes()),
            [Passed, Failed, Skipped, Error, Error],
            "a whole report that does not mention a test makes it an error"
        );
        let cut = &whole.as_bytes()[..report.len() - 20];
        assert_eq!(status(cut), [Passed, Failed, Skipped, NotRun, NotRun]);
        let results = parse(whole.as_bytes()).results(&batch, |c| c.id.clone());
        assert_eq!(results[0].duration_ms, 12);
        assert_eq!(results[1].message.as_deref(), Some("AssertionError: no"));
        assert_eq!(results[1].output, "at a.test.ts:3");
    }

    #[test]
    fn the_batch_passes_the_suites_arguments_after_its_own() {
        let suite = Suite {
            name: "web".into(),
            framework: super::super::Framework::Vitest,
            args: vec!["--project".into(), "it's".into()],
        };
        let mut listing = Listing::new(&suite, vec![case("a.test.ts > x $y")]);
        listing.run_args = suite.args.clone();
        let command = batch_command(&listing, &listing.tests.clone());
        let run = command.lines().find(|l| l.starts_with("node ")).unwrap();
        assert!(run.ends_with(r" -- --project 'it'\''s'"), "{command}");
        assert!(run.contains("\"$CLUSTER_JUNIT\""), "{command}");
        assert!(!run.contains("x $y"), "ids come in a file: {command}");
    }
}
