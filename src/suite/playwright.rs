//! Playwright (`@playwright/test` 1.56 or later): tests listed with `playwright test --list` on
//! the runner, batches run with `--test-list` (new in 1.56: an older Playwright is refused
//! before listing), results from a small reporter of ours. The project's `node_modules`
//! (shipped with the checkout) and its browsers are the user's on every machine.
//!
//! A test is its project, its file (relative to the configuration's `rootDir`) and its title
//! path, written as Playwright prints it without the line and column:
//! `[project] › file.spec.ts › describe › title` (no `[project] › ` for an unnamed project).
//! That is a line of a `--test-list` file, so the same title in two projects is two tests,
//! a test made in a loop is a test of its own, and a batch's ids are its test list, which
//! Playwright reads from a file: no id is ever an argument. A line of a test list selects
//! every test its titles begin, so the tests a batch would run beside its own are left out
//! with an inverted test list.
//!
//! Both the listing and the batches load [`REPORTER`] (`--reporter`, which replaces the
//! project's reporters): it writes one JSON line per test listed or ended, then one when the
//! run ends, so what a killed batch finished is kept. The suite's arguments go to both, then
//! the batch's own `--retries=0` (the cluster retries) and `--workers=1` unless the arguments
//! set the workers.

use std::path::Path;

use serde::Deserialize;

use super::process::{Tool, run};
use super::report::{Reported, ReportedCase};
use super::{
    Listing, Shipped, Suite, SuiteError, TestCase, TestStatus, ids_path, shell_quote, shell_words,
    ship_dest, write_lines,
};

/// Node, which runs Playwright.
const NODE: Tool = Tool {
    program: "node",
    install: "install Node.js (in CI, actions/setup-node) and Playwright into the project: \
              `npm install --save-dev @playwright/test`",
};

/// Playwright's test runner, looked for in the project's `node_modules`.
const PLAYWRIGHT: Tool = Tool {
    program: "playwright",
    install: "install it into the project: `npm install --save-dev @playwright/test` (in CI, \
              `npm ci` before this step; browsers: `npx playwright install --with-deps`)",
};

/// Playwright's command line, relative to the directory the suite is listed and run in.
const CLI: &str = "node_modules/@playwright/test/cli.js";

/// The package's manifest, which says its version.
const PACKAGE: &str = "node_modules/@playwright/test/package.json";

/// The first Playwright whose `playwright test` takes `--test-list` (1.56), as
/// `(major, minor)`.
const TEST_LIST_SINCE: (u64, u64) = (1, 56);

/// The reporter of the listing and the batches.
const REPORTER: &str = include_str!("playwright_reporter.cjs");

/// [`REPORTER`]'s file name, on the runner and among the shipped files (`.cjs`: CommonJS
/// whatever the project's `package.json` says).
const REPORTER_FILE: &str = "playwright-reporter.cjs";

/// The file, beside the batch's ids, of the tests its test list must not select.
const INVERT_FILE: &str = "ids-invert";

/// The variable naming the file [`REPORTER`] writes.
const OUT_ENV: &str = "CLUSTER_ACTION_PLAYWRIGHT_OUT";

/// The variable that makes [`REPORTER`] write the listed tests.
const LIST_ENV: &str = "CLUSTER_ACTION_PLAYWRIGHT_LIST";

/// What separates the parts of an id, as Playwright prints a test and reads a test list.
const SEPARATOR: &str = " › ";

/// A test as [`REPORTER`] names it.
#[derive(Debug, Deserialize)]
struct Named {
    project: String,
    file: String,
    titles: Vec<String>,
}

impl Named {
    /// The test's id: `[project] › file › title…`.
    fn id(&self) -> String {
        let project = (!self.project.is_empty()).then(|| format!("[{}]", self.project));
        project
            .into_iter()
            .chain(std::iter::once(self.file.clone()))
            .chain(self.titles.iter().cloned())
            .collect::<Vec<_>>()
            .join(SEPARATOR)
    }
}

/// One line [`REPORTER`] writes: a test (listed, or ended with its result) or the run's end.
#[derive(Debug, Deserialize)]
struct Line {
    test: Option<Named>,
    /// How the test ended: passed, failed, timedOut, skipped or interrupted.
    status: Option<String>,
    /// How it was expected to end (`failed` under `test.fail()`).
    expected: Option<String>,
    /// Its run time in milliseconds.
    #[serde(default)]
    duration: f64,
    message: Option<String>,
    #[serde(default)]
    output: String,
    /// The run's status, on the last line.
    end: Option<String>,
}

/// Lists the suite's tests in `dir` with [`REPORTER`], written under `work` to be shipped.
pub(super) fn list(suite: &Suite, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
    let node = NODE.find(suite)?;
    if !dir.join(CLI).is_file() {
        let looked = format!("no {CLI} in {}", dir.display());
        return Err(PLAYWRIGHT.missing(suite, looked));
    }
    check_version(suite, dir)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SuiteError::Io { path, source }
    };
    let reporter = work.join(REPORTER_FILE);
    std::fs::write(&reporter, REPORTER).map_err(io(&reporter))?;
    let listed = work.join("listed");
    let mut args = vec![CLI.to_owned(), "test".to_owned()];
    args.extend(suite.args.iter().cloned());
    // With no tests Playwright fails, as it does for a file it cannot load: this makes the
    // first an empty listing (the suite's error), leaving the failure to the second.
    args.extend(["--list", "--pass-with-no-tests", "--reporter"].map(str::to_owned));
    args.push(reporter.display().to_string());
    let env = [(OUT_ENV, listed.as_os_str()), (LIST_ENV, "1".as_ref())];
    run(suite, dir, &node, &args, &env)?;
    let text = std::fs::read_to_string(&listed).map_err(io(&listed))?;
    let mut tests = Vec::new();
    for line in text.lines() {
        let read: Line = serde_json::from_str(line).map_err(|e| SuiteError::BadListing {
            suite: suite.name.clone(),
            command: "playwright test --list".into(),
            why: format!("a line that is not the reporter's ({e}): {line}"),
        })?;
        if let Some(test) = read.test {
            tests.push(case(&test));
        }
    }
    let mut listing = Listing::new(suite, tests);
    listing.ship = vec![Shipped {
        source: reporter,
        dest: ship_dest(suite, REPORTER_FILE),
    }];
    listing.run_args = suite.args.clone();
    if !sets_workers(&suite.args) {
        listing.run_args.push("--workers=1".into());
    }
    Ok(listing)
}

/// Refuses a Playwright older than [`TEST_LIST_SINCE`], whose batches could not name their
/// tests; a version that cannot be read is left for the listing to try.
fn check_version(suite: &Suite, dir: &Path) -> Result<(), SuiteError> {
    #[derive(Deserialize)]
    struct Package {
        version: String,
    }
    let Some(version) = std::fs::read(dir.join(PACKAGE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Package>(&bytes).ok())
        .map(|package| package.version)
    else {
        return Ok(());
    };
    match major_minor(&version) {
        Some(found) if found < TEST_LIST_SINCE => Err(SuiteError::TooOld {
            suite: suite.name.clone(),
            command: "playwright".into(),
            found: format!("{version} (in {PACKAGE})"),
            why: "a batch names its tests with `playwright test --test-list`, new in 1.56",
            install: "upgrade it: `npm install --save-dev @playwright/test@latest`",
        }),
        _ => Ok(()),
    }
}

/// `(major, minor)` of a version such as `1.56.0` or `1.57.0-alpha-1`.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The test `test` names: grouped by project and file, named by its titles.
fn case(test: &Named) -> TestCase {
    let id = test.id();
    let group = match test.project.as_str() {
        "" => test.file.clone(),
        project => format!("[{project}]{SEPARATOR}{}", test.file),
    };
    TestCase {
        name: test.titles.join(SEPARATOR),
        group,
        file: Some(test.file.clone()),
        id,
    }
}

/// Whether the suite's arguments choose Playwright's workers (`--workers N`, `-j N`,
/// `--workers=N`, `-jN`).
fn sets_workers(args: &[String]) -> bool {
    args.iter()
        .any(|arg| arg == "--workers" || arg.starts_with("--workers=") || arg.starts_with("-j"))
}

/// Runs the batch's tests, named in a test list, with the suite's arguments and then the
/// batch's own, which win: no retries of Playwright's, [`REPORTER`] writing the report. The
/// tests the list would select beside the batch's ([`overselected`]) are in an inverted test
/// list, so that the batch runs exactly its tests.
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let reporter = format!("./{}", ship_dest(&listing.suite, REPORTER_FILE).display());
    let mut lists = write_lines(
        &ids_path(&listing.suite),
        batch.iter().map(|c| c.id.as_str()),
    );
    lists.push_str(&format!(
        "set -- --test-list {}\n",
        ids_path(&listing.suite)
    ));
    let others = overselected(&listing.tests, batch);
    if !others.is_empty() {
        let invert = ship_dest(&listing.suite, INVERT_FILE).display().to_string();
        let invert = format!("\"$PWD\"/{}", shell_quote(&invert));
        lists.push_str(&write_lines(&invert, others));
        lists.push_str(&format!("set -- \"$@\" --test-list-invert {invert}\n"));
    }
    format!(
        "{lists}{OUT_ENV}=\"${}\" node {CLI} test {} \"$@\" --retries=0 --reporter {}\n",
        super::REPORT_ENV,
        shell_words(&listing.run_args),
        shell_quote(&reporter),
    )
}

/// The ids of the tests of `tests` outside `batch` that the batch's test list selects too: a
/// line of a test list selects every test whose titles begin with its own (`file › x` also
/// selects `file › x › y`, a test of a describe `x` beside the test `x`). Left out are those
/// whose own line would also deselect a test of the batch (`x › y` when the batch holds
/// `x › y › z`).
fn overselected<'a>(tests: &'a [TestCase], batch: &[TestCase]) -> Vec<&'a str> {
    use std::collections::BTreeSet;
    use std::ops::Bound::{Excluded, Unbounded};

    /// The ids of `set` below `id` (beginning with `id › `).
    fn below<'s>(set: &BTreeSet<&'s str>, id: &str) -> Vec<&'s str> {
        let prefix = format!("{id}{SEPARATOR}");
        set.range::<str, _>((Excluded(prefix.as_str()), Unbounded))
            .take_while(|other| other.starts_with(&prefix))
            .copied()
            .collect()
    }

    let asked: BTreeSet<&str> = batch.iter().map(|c| c.id.as_str()).collect();
    let all: BTreeSet<&str> = tests.iter().map(|c| c.id.as_str()).collect();
    let mut others = BTreeSet::new();
    for id in &asked {
        for other in below(&all, id) {
            if !asked.contains(other) && below(&asked, other).is_empty() {
                others.insert(other);
            }
        }
    }
    others.into_iter().collect()
}

/// The tests [`REPORTER`]'s lines report, under their ids; whole once the run's end is in it.
pub(super) fn parse(bytes: &[u8]) -> Reported {
    let mut reported = Reported::default();
    for line in String::from_utf8_lossy(bytes).lines() {
        let Ok(read) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        if read.end.is_some() {
            reported.complete = true;
        }
        let (Some(test), Some(status)) = (&read.test, &read.status) else {
            continue;
        };
        let (status, why) = outcome(status, read.expected.as_deref().unwrap_or("passed"));
        let case = ReportedCase {
            status,
            duration_ms: super::report::seconds_to_ms(read.duration / 1000.0),
            message: why.map(str::to_owned).or(read.message),
            output: read.output,
        };
        reported.insert(test.id(), case);
    }
    reported
}

/// A test's status from how it ended and how it was expected to (a test marked `test.fail()`
/// passes by failing), and the message when the status needs one of its own.
fn outcome(status: &str, expected: &str) -> (TestStatus, Option<&'static str>) {
    match (status, expected) {
        ("skipped", _) => (TestStatus::Skipped, None),
        (status, expected) if status == expected => (TestStatus::Passed, None),
        ("passed", _) => (
            TestStatus::Failed,
            Some("passed, but it is marked to fail (test.fail())"),
        ),
        ("timedOut", _) => (TestStatus::TimedOut, None),
        ("interrupted", _) => (
            TestStatus::NotRun,
            Some("interrupted: Playwright stopped before this test ended"),
        ),
        _ => (TestStatus::Failed, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(project: &str, file: &str, titles: &[&str]) -> Named {
        Named {
            project: project.into(),
            file: file.into(),
            titles: titles.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn ids_are_test_list_lines_as_playwright_prints_them() {
        let test = named("chromium", "a/b.spec.ts", &["outer", "it's [1] #$x"]);
        assert_eq!(test.id(), "[chromium] › a/b.spec.ts › outer › it's [1] #$x");
        assert_eq!(named("", "b.spec.ts", &["t"]).id(), "b.spec.ts › t");
        let case = case(&test);
        assert_eq!(case.group, "[chromium] › a/b.spec.ts");
        assert_eq!(case.name, "outer › it's [1] #$x");
        assert_eq!(case.file.as_deref(), Some("a/b.spec.ts"));
    }

    #[test]
    fn a_playwright_without_test_lists_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let suite = Suite {
            name: "pw".into(),
            framework: super::super::Framework::Playwright,
            args: vec![],
        };
        let package = dir.path().join(PACKAGE);
        std::fs::create_dir_all(package.parent().unwrap()).unwrap();
        for (version, refused) in [
            ("1.55.2", true),
            ("1.9.0", true),
            ("1.56.0", false),
            ("1.65.2", false),
            ("1.66.0-alpha-2026-01-01", false),
            ("2.0.0", false),
            ("next", false),
        ] {
            let json = format!(r#"{{"name": "@playwright/test", "version": "{version}"}}"#);
            std::fs::write(&package, json).unwrap();
            let checked = check_version(&suite, dir.path());
            assert_eq!(checked.is_err(), refused, "{version}");
            if let Err(e) = checked {
                let message = e.to_string();
                assert!(
                    message.contains(&format!("`playwright` {version}")),
                    "{message}"
                );
                assert!(message.contains("--test-list"), "{message}");
                assert!(message.contains("@playwright/test@latest"), "{message}");
            }
        }
    }

    #[test]
    fn workers_are_one_unless_the_arguments_say() {
        let set =
            |args: &[&str]| sets_workers(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        assert!(!set(&["--project", "chromium", "tests/"]));
        assert!(set(&["--workers", "4"]));
        assert!(set(&["--workers=50%"]));
        assert!(set(&["-j", "2"]));
        assert!(set(&["-j2"]));
    }

    fn line(titles: &str, status: &str, expected: &str) -> String {
        format!(
            r#"{{"test":{{"project":"p","file":"a.spec.ts","titles":[{titles}]}},"status":"{status}","expected":"{expected}","duration":1500,"message":"Error: boom","output":"Error: boom\n  at a.spec.ts:3"}}"#
        )
    }

    fn case_of(id: &str) -> TestCase {
        TestCase {
            id: id.into(),
            group: String::new(),
            name: String::new(),
            file: None,
        }
    }

    #[test]
    fn reads_every_status_and_the_worst_of_a_test_reported_twice() {
        let report = [
            line(r#""ok""#, "passed", "passed"),
            line(r#""bad""#, "failed", "passed"),
            line(r#""skip""#, "skipped", "skipped"),
            line(r#""slow""#, "timedOut", "passed"),
            line(r#""known bug""#, "failed", "failed"),
            line(r#""fixed bug""#, "passed", "failed"),
            line(r#""cut""#, "interrupted", "passed"),
            line(r#""twice""#, "failed", "passed"),
            line(r#""twice""#, "passed", "passed"),
            line(r#""unasked""#, "passed", "passed"),
            r#"{"end":"failed"}"#.to_owned(),
        ]
        .join("\n");
        let names = [
            "ok",
            "bad",
            "skip",
            "slow",
            "known bug",
            "fixed bug",
            "cut",
            "twice",
            "missing",
        ];
        let batch: Vec<TestCase> = names
            .iter()
            .map(|n| case_of(&format!("[p] › a.spec.ts › {n}")))
            .collect();
        let results = parse(report.as_bytes()).results(&batch, |c| c.id.clone());
        use TestStatus::*;
        let statuses: Vec<TestStatus> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                Passed, Failed, Skipped, TimedOut, Passed, Failed, NotRun, Failed, Error
            ]
        );
        assert_eq!(results[1].message.as_deref(), Some("Error: boom"));
        assert_eq!(results[1].duration_ms, 1500);
        assert!(results[1].output.contains("a.spec.ts:3"));
        assert!(
            results[5]
                .message
                .as_deref()
                .unwrap()
                .contains("test.fail()")
        );
        assert!(
            results[8]
                .message
                .as_deref()
                .unwrap()
                .contains("not reported")
        );
    }

    #[test]
    fn a_report_without_its_end_leaves_the_rest_not_run() {
        let report = format!("{}\n{}", line(r#""a""#, "passed", "passed"), "{\"test\":");
        let batch = [
            case_of("[p] › a.spec.ts › a"),
            case_of("[p] › a.spec.ts › b"),
        ];
        let results = parse(report.as_bytes()).results(&batch, |c| c.id.clone());
        let statuses: Vec<TestStatus> = results.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [TestStatus::Passed, TestStatus::NotRun]);
    }

    #[test]
    fn tests_a_test_list_would_select_beside_the_batchs_are_inverted() {
        let tests: Vec<TestCase> = [
            "[p] › f › x",
            "[p] › f › x › inner",
            "[p] › f › x › inner › deeper",
            "[p] › f › xy",
            "[q] › f › x › inner",
        ]
        .map(case_of)
        .to_vec();
        let others = |ids: &[&str]| -> Vec<String> {
            let batch: Vec<TestCase> = ids.iter().map(|id| case_of(id)).collect();
            overselected(&tests, &batch)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            others(&["[p] › f › x"]),
            ["[p] › f › x › inner", "[p] › f › x › inner › deeper"]
        );
        assert_eq!(
            others(&["[p] › f › x › inner"]),
            ["[p] › f › x › inner › deeper"]
        );
        // Leaving out `x › inner` would leave out the batch's `x › inner › deeper` too.
        assert!(others(&["[p] › f › x", "[p] › f › x › inner › deeper"]).is_empty());
        assert!(others(&["[p] › f › xy", "[q] › f › x › inner"]).is_empty());
    }

    #[test]
    fn a_batch_names_its_tests_in_a_file_and_its_own_options_come_last() {
        let suite = Suite {
            name: "pw".into(),
            framework: super::super::Framework::Playwright,
            args: vec!["--retries".into(), "3".into(), "--reporter=html".into()],
        };
        let batch = [case_of("[p] › a.spec.ts › it's $HOME")];
        let mut listing = Listing::new(&suite, batch.to_vec());
        listing.run_args = suite.args.clone();
        let command = batch_command(&listing, &batch);
        let run = command.lines().find(|l| l.contains(CLI)).unwrap();
        assert!(!run.contains("it's"), "{command}");
        assert!(run.find("--retries=0").unwrap() > run.find("--retries 3").unwrap());
        assert!(run.find("--reporter ./").unwrap() > run.find("--reporter=html").unwrap());
        assert!(
            command.contains("\n[p] › a.spec.ts › it's $HOME\n"),
            "{command}"
        );
    }
}
