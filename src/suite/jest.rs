//! Jest: the project's own Jest, driven in-process by a small node script the binary ships
//! ([`DRIVER`], `jest_run.js`), on the runner to list and on workers to run batches. The Node
//! environment is the user's: node on PATH, Jest in the checkout's `node_modules`.
//!
//! The listing loads every test file with a name pattern no test matches, so that each
//! `describe` runs and each test (every `test.each` row too) is reported pending, never run.
//! A test's id is its file, relative to the checkout, and its titles, joined by Jest's own
//! separator: `tests/a.test.js › describe › inner › test`, Jest's full name behind the file
//! it is in. A file that fails to load is one test of its own, its path, so that its error is
//! reported. Jest's unit of isolation is the file: its suites split by file unless they say
//! `split: test`.
//!
//! A batch gets its tests in the file of ids, one JSON array a line: `[file]` for the whole
//! file when the batch holds every listed test of its files, `[file, name]` otherwise. The
//! driver runs Jest on exactly those files and, for single tests, with a name pattern that
//! matches each of their full names whole and literally, in the plan's order (longest first:
//! the driver is Jest's test sequencer too). It runs one Jest worker unless the suite's
//! arguments choose (`--maxWorkers`, `-i`), and writes Jest's results, test by test,
//! as JSON to the report file; a file that failed to run makes its tests errors with Jest's
//! message. Until Jest ends, the report holds a line per finished test (the driver is one of
//! Jest's reporters too): a batch killed before then keeps those.
//!
//! A worker that gives a batch a session (see `worker::session`) has it run in a Node kept up
//! across its slot's batches with Jest loaded: the driver's `serve` mode, which the session
//! loop the Node frameworks share (`node_session_server.cjs`) hands each batch; Jest's
//! `runCLI` runs it there as in a Node of its own, and its cache of transformed files stays
//! warm.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::process::{Tool, run};
use super::report::{Reported, ReportedCase, seconds_to_ms};
use super::{
    Listing, NODE_SESSION_START, REPORT_ENV, Shipped, Suite, SuiteError, TestCase, TestStatus,
    ids_path, job_path, node_session_client, shell_quote, shell_words, ship_dest,
    ship_node_session_server, write_lines,
};

/// Node, which runs Jest and the driver.
const NODE: Tool = Tool {
    program: "node",
    install: "install Node.js (in CI, actions/setup-node) and Jest in the project: \
              `npm install --save-dev jest`",
};

/// Jest itself, when the project's `node_modules` lacks it.
const JEST: Tool = Tool {
    program: "jest",
    install: "install it into the project: `npm install --save-dev jest` (in CI, run \
              `npm ci` before cluster-action)",
};

/// The node script that lists and runs Jest suites.
const DRIVER: &str = include_str!("jest_run.js");

/// The driver's file name, on the runner and among a batch's shipped files.
const DRIVER_FILE: &str = "cluster_action_jest.js";

/// What the driver prints when it finds no Jest from the directory it runs in.
const NO_JEST: &str = "cluster-action: no `jest` package";

/// Jest's separator of a test's titles.
const SEPARATOR: &str = " › ";

/// The driver's document: Jest's results, test by test.
#[derive(Debug, Deserialize)]
struct Report {
    /// Why Jest did not run at all.
    error: Option<String>,
    /// Each test file Jest ran.
    files: Vec<FileReport>,
}

/// One test file in the driver's document.
#[derive(Debug, Deserialize)]
struct FileReport {
    /// Its path relative to the directory Jest ran in.
    file: String,
    /// Why it failed to run (it did not load, a hook outside any test failed).
    error: Option<String>,
    /// Jest's message for the whole file.
    #[serde(default)]
    output: String,
    /// Its run time, in milliseconds.
    #[serde(default)]
    duration: Option<f64>,
    /// Its tests.
    tests: Vec<TestReport>,
}

/// One test in the driver's document.
#[derive(Debug, Deserialize)]
struct TestReport {
    /// Its describe blocks' titles and its own.
    titles: Vec<String>,
    /// Jest's status: passed, failed, pending, skipped, todo, disabled.
    status: String,
    /// Its run time, in milliseconds.
    #[serde(default)]
    duration: Option<f64>,
    /// Jest's failure messages.
    #[serde(default)]
    failure: String,
}

/// A line the driver appends to the report as a test finishes, until its whole document
/// replaces them.
#[derive(Debug, Deserialize)]
struct ProgressLine {
    /// The test's file.
    file: String,
    /// The test.
    #[serde(flatten)]
    test: TestReport,
}

/// A test's id: its file and its titles, joined by [`SEPARATOR`].
fn test_id(file: &str, titles: &[String]) -> String {
    std::iter::once(file)
        .chain(titles.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(SEPARATOR)
}

/// Lists the suite's tests in `dir` with the driver, written under `work` (and shipped from
/// there to the workers).
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let node = NODE.find(suite)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SuiteError::Io { path, source }
    };
    let driver = work.join(DRIVER_FILE);
    std::fs::write(&driver, DRIVER).map_err(io(&driver))?;
    let listed = work.join("listing.json");
    let mut args = vec![
        driver.display().to_string(),
        "list".to_owned(),
        listed.display().to_string(),
    ];
    args.extend(suite.args.iter().cloned());
    // Named as the user knows it: Jest with their arguments, not the driver in a temporary
    // directory.
    let shown = std::iter::once("jest".to_owned())
        .chain(suite.args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    match run(suite, dir, &node, &args, &[]) {
        Ok(_) => {}
        Err(SuiteError::ListFailed { stderr_tail, .. }) if stderr_tail.contains(NO_JEST) => {
            let looked = stderr_tail
                .lines()
                .find(|line| line.contains(NO_JEST))
                .unwrap_or_default()
                .trim_start_matches("cluster-action: ")
                .to_owned();
            return Err(JEST.missing(suite, looked));
        }
        Err(SuiteError::ListFailed {
            suite: name,
            status,
            stderr_tail,
            ..
        }) => {
            return Err(SuiteError::ListFailed {
                suite: name,
                command: shown,
                status,
                stderr_tail,
            });
        }
        Err(e) => return Err(e),
    }
    let bytes = std::fs::read(&listed).map_err(io(&listed))?;
    let report: Report = serde_json::from_slice(&bytes).map_err(|e| SuiteError::BadListing {
        suite: suite.name.clone(),
        command: shown,
        why: e.to_string(),
    })?;
    // Jest reports files as they finish; a listing's order is the files' (and in each, the
    // order of definition).
    let mut files = report.files;
    files.sort_by(|a, b| a.file.cmp(&b.file));
    let mut tests = Vec::new();
    for file in files {
        if file.tests.is_empty() && file.error.is_some() {
            tests.push(TestCase {
                id: file.file.clone(),
                group: file.file.clone(),
                name: file.file.clone(),
                file: Some(file.file),
            });
            continue;
        }
        for test in &file.tests {
            tests.push(TestCase {
                id: test_id(&file.file, &test.titles),
                group: file.file.clone(),
                name: test.titles.join(SEPARATOR),
                file: Some(file.file.clone()),
            });
        }
    }
    // Two tests of one full name in one file are one test (Jest cannot run one alone).
    let mut seen = std::collections::HashSet::new();
    tests.retain(|case| seen.insert(case.id.clone()));
    let mut listing = Listing::new(suite, tests);
    listing.file_tests = file_tests(&listing.tests);
    listing.ship.push(Shipped {
        source: driver,
        dest: ship_dest(suite, DRIVER_FILE),
    });
    ship_node_session_server(&mut listing, work)?;
    listing.run_args = suite.args.clone();
    Ok(listing)
}

/// The file `case` is in.
fn file_of(case: &TestCase) -> String {
    case.file.clone().unwrap_or_else(|| case.group.clone())
}

/// How many of `tests` each file holds.
fn file_tests(tests: &[TestCase]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for case in tests {
        *counts.entry(file_of(case)).or_default() += 1;
    }
    counts
}

/// The lines of a batch's file of ids: `[file]` per file when the batch holds every listed
/// test of each of its files (Jest runs them whole, with the suite's own name pattern, if
/// any), else `[file, name]` per test (`[file]` for a file that failed to load).
fn id_lines(listing: &Listing, batch: &[TestCase]) -> Vec<String> {
    let mut asked: Vec<(String, usize)> = Vec::new();
    for case in batch {
        let file = file_of(case);
        match asked.iter_mut().find(|(f, _)| *f == file) {
            Some((_, count)) => *count += 1,
            None => asked.push((file, 1)),
        }
    }
    let whole = asked
        .iter()
        .all(|(file, count)| listing.file_tests.get(file) == Some(count));
    let json = |value: serde_json::Value| value.to_string();
    if whole {
        return asked
            .into_iter()
            .map(|(file, _)| json(serde_json::json!([file])))
            .collect();
    }
    batch
        .iter()
        .map(|case| {
            let file = file_of(case);
            match case.id == file {
                true => json(serde_json::json!([file])),
                false => json(serde_json::json!([file, case.name])),
            }
        })
        .collect()
}

/// Runs the batch's tests: handed to the worker's warm session when it gives the batch one
/// (see [`session_command`] and [`node_session_client`]), otherwise with the driver and the
/// suite's arguments in a Node of their own.
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let lines = id_lines(listing, batch);
    format!(
        "{}{}node {} batch {ids} \"${REPORT_ENV}\" {}\n",
        write_lines(&ids_path(&listing.suite), lines.iter().map(String::as_str)),
        node_session_client("Jest", &ids_path(&listing.suite)),
        job_path(&listing.suite, DRIVER_FILE),
        shell_words(&listing.run_args),
        ids = ids_path(&listing.suite),
    )
}

/// The `bash -c` command that starts a warm Jest session of the suite (the driver's `serve`,
/// with the suite's arguments) in a directory holding the suite's layers; see
/// [`NODE_SESSION_START`].
pub(super) fn session_command(listing: &Listing) -> String {
    format!(
        "{NODE_SESSION_START}exec node {} serve {}\n",
        job_path(&listing.suite, DRIVER_FILE),
        shell_words(&listing.run_args),
    )
}

/// The first non-blank line of `text`, trimmed.
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

/// Jest's status of a test as a result.
fn status(jest: &str) -> Option<TestStatus> {
    match jest {
        "passed" | "focused" => Some(TestStatus::Passed),
        "failed" => Some(TestStatus::Failed),
        "pending" | "skipped" | "todo" | "disabled" => Some(TestStatus::Skipped),
        _ => None,
    }
}

/// What the driver's report says of each test of `batch` (and of the tests Jest reported
/// that the batch did not ask for, which [`Reported::results`] ignores). A report that is not
/// the driver's whole document (the batch was killed before Jest ended) is its progress lines,
/// incomplete: the tests they do not name run again. A file that failed to run makes each of
/// the batch's tests in it that Jest did not report an error.
pub(super) fn parse(bytes: &[u8], batch: &[TestCase]) -> Reported {
    let Ok(report) = serde_json::from_slice::<Report>(bytes) else {
        let mut reported = Reported::default();
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines() {
            // The last line may be cut short: it is not JSON then.
            if let Ok(progress) = serde_json::from_str::<ProgressLine>(line) {
                let key = test_id(&progress.file, &progress.test.titles);
                reported.insert(key, reported_case(&progress.test));
            }
        }
        return reported;
    };
    let mut reported = Reported {
        complete: true,
        ..Reported::default()
    };
    if let Some(why) = report.error {
        for case in batch {
            reported.insert(case.id.clone(), error_case(&why, &why, 0));
        }
        return reported;
    }
    for file in &report.files {
        for test in &file.tests {
            reported.insert(test_id(&file.file, &test.titles), reported_case(test));
        }
        let Some(why) = &file.error else { continue };
        let output = if file.output.trim().is_empty() {
            why
        } else {
            &file.output
        };
        let duration_ms = seconds_to_ms(file.duration.unwrap_or(0.0) / 1000.0);
        for case in batch {
            let in_file = case.file.as_deref() == Some(file.file.as_str());
            if in_file && !reported.cases.contains_key(&case.id) {
                reported.insert(case.id.clone(), error_case(why, output, duration_ms));
            }
        }
    }
    reported
}

/// What Jest said of one test.
fn reported_case(test: &TestReport) -> ReportedCase {
    let duration_ms = seconds_to_ms(test.duration.unwrap_or(0.0) / 1000.0);
    match status(&test.status) {
        Some(status) => ReportedCase {
            status,
            duration_ms,
            message: (status == TestStatus::Failed)
                .then(|| first_line(&test.failure))
                .flatten(),
            output: test.failure.clone(),
        },
        None => error_case(
            &format!("Jest reported the status '{}'", test.status),
            &test.failure,
            duration_ms,
        ),
    }
}

/// An error whose reason is the first line of `why`.
fn error_case(why: &str, output: &str, duration_ms: u64) -> ReportedCase {
    ReportedCase {
        status: TestStatus::Error,
        duration_ms,
        message: first_line(why),
        output: output.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Framework;

    fn case(file: &str, titles: &[&str]) -> TestCase {
        let titles: Vec<String> = titles.iter().map(|t| t.to_string()).collect();
        TestCase {
            id: test_id(file, &titles),
            group: file.into(),
            name: titles.join(SEPARATOR),
            file: Some(file.into()),
        }
    }

    fn listing(tests: Vec<TestCase>) -> Listing {
        let suite = Suite {
            name: "jest".into(),
            framework: Framework::Jest,
            args: vec![],
        };
        let mut listing = Listing::new(&suite, tests);
        listing.file_tests = file_tests(&listing.tests);
        listing
    }

    #[test]
    fn a_tests_id_is_its_file_and_its_titles() {
        let c = case("tests/a.test.js", &["outer", "inner", "adds"]);
        assert_eq!(c.id, "tests/a.test.js › outer › inner › adds");
        assert_eq!(c.name, "outer › inner › adds");
    }

    #[test]
    fn a_batch_of_whole_files_names_the_files_else_each_test() {
        let (a1, a2) = (
            case("a.test.js", &["d", "one"]),
            case("a.test.js", &["two"]),
        );
        let b1 = case("b.test.js", &["it's \"b\" [1]"]);
        let listing = listing(vec![a1.clone(), a2.clone(), b1.clone()]);
        let whole = id_lines(&listing, &[a1.clone(), b1.clone(), a2]);
        assert_eq!(whole, [r#"["a.test.js"]"#, r#"["b.test.js"]"#]);
        // A re-run keeps only some of the listed tests: one of them is still part of its file.
        let mut rerun = listing.clone();
        rerun.tests.retain(|t| t.id == a1.id);
        let alone = id_lines(&rerun, std::slice::from_ref(&a1));
        assert_eq!(alone, [r#"["a.test.js","d › one"]"#]);
        let part = id_lines(&listing, &[a1, b1]);
        assert_eq!(
            part,
            [
                r#"["a.test.js","d › one"]"#,
                r#"["b.test.js","it's \"b\" [1]"]"#
            ]
        );
    }

    #[test]
    fn a_batch_command_holds_its_ids_only_in_its_here_document() {
        let tests: Vec<TestCase> = (0..20_001)
            .map(|n| case(&format!("t{}.test.js", n % 7), &[&format!("test {n:070}")]))
            .collect();
        let listing = listing(tests.clone());
        let command = batch_command(&listing, &tests[1..]);
        assert!(command.len() > 20_000 * 70, "every id is in the command");
        let run = command.lines().last().unwrap();
        assert!(run.starts_with("node ") && run.len() < 200, "{run}");
    }

    /// The driver's report of a batch: a.test.js ran, b.test.js failed to load.
    const REPORT: &str = r#"{"error": null, "files": [
      {"file": "a.test.js", "error": null, "output": "", "duration": 20, "tests": [
        {"titles": ["d", "ok"], "status": "passed", "duration": 1500, "failure": ""},
        {"titles": ["d", "bad"], "status": "failed", "duration": 3,
         "failure": "Error: expect(received).toBe(expected)\n\nExpected: 5\n    at a.test.js:3:1"},
        {"titles": ["skip"], "status": "pending", "duration": null, "failure": ""},
        {"titles": ["later"], "status": "todo", "failure": ""},
        {"titles": ["d", "bad"], "status": "passed", "duration": 1, "failure": ""},
        {"titles": ["unasked"], "status": "passed", "duration": 1, "failure": ""}]},
      {"file": "b.test.js", "error": "b.test.js: Unexpected token (2:0)\n> 2 |",
       "output": "  ● Test suite failed to run", "duration": 5, "tests": []}]}"#;

    #[test]
    fn a_report_gives_each_test_its_status_and_a_broken_file_makes_errors() {
        let batch = [
            case("a.test.js", &["d", "ok"]),
            case("a.test.js", &["d", "bad"]),
            case("a.test.js", &["skip"]),
            case("a.test.js", &["later"]),
            case("a.test.js", &["gone"]),
            case("b.test.js", &["b1"]),
        ];
        let results = parse(REPORT.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        let got: Vec<_> = results
            .iter()
            .map(|r| (r.status, r.message.as_deref().unwrap_or_default()))
            .collect();
        use TestStatus::*;
        assert_eq!(
            got,
            [
                (Passed, ""),
                (Failed, "Error: expect(received).toBe(expected)"),
                (Skipped, ""),
                (Skipped, ""),
                (Error, super::super::result::NOT_REPORTED),
                (Error, "b.test.js: Unexpected token (2:0)"),
            ]
        );
        assert_eq!(results[0].duration_ms, 1500);
        assert!(results[1].output.contains("Expected: 5"), "{results:?}");
        assert_eq!(results[5].output, "  ● Test suite failed to run");
    }

    #[test]
    fn a_killed_batch_keeps_what_finished_and_jests_own_error_fails_every_test() {
        let batch = [
            case("a.test.js", &["d", "ok"]),
            case("a.test.js", &["d", "bad"]),
            case("a.test.js", &["next"]),
        ];
        let progress = concat!(
            r#"{"file":"a.test.js","titles":["d","ok"],"status":"passed","duration":7,"failure":""}"#,
            "\n",
            r#"{"file":"a.test.js","titles":["d","bad"],"status":"failed","duration":1,"failure":"Error: no"}"#,
            "\n",
            r#"{"file":"a.test.js","titles":["next"],"sta"#,
        );
        let results = parse(progress.as_bytes(), &batch).results(&batch, |c| c.id.clone());
        let got: Vec<_> = results.iter().map(|r| r.status).collect();
        use TestStatus::*;
        assert_eq!(got, [Passed, Failed, NotRun]);
        assert_eq!(results[1].message.as_deref(), Some("Error: no"));
        let cut = &REPORT.as_bytes()[..REPORT.len() / 2];
        let results = parse(cut, &batch).results(&batch, |c| c.id.clone());
        assert_eq!(results[0].status, TestStatus::NotRun);
        let broken = br#"{"error": "Error: Can't find a root directory\n  at x", "files": []}"#;
        let results = parse(broken, &batch).results(&batch, |c| c.id.clone());
        assert_eq!(results[0].status, TestStatus::Error);
        assert_eq!(
            results[0].message.as_deref(),
            Some("Error: Can't find a root directory")
        );
    }
}
