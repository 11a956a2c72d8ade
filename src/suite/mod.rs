//! Test suites as work: a framework (nextest, pytest, go test, Jest, Vitest, Playwright, RSpec,
//! Minitest or a pair of commands) lists a suite's tests on the runner, says what a worker runs
//! for a batch of them, and turns the framework's own report of that batch into one result per
//! test.
//!
//! The runner's side is [`Suite::list`]: it runs the framework's listing (building what has to
//! be built once: a nextest archive, go test binaries) and returns a [`Listing`], the tests
//! and the files to ship to workers. A worker runs [`Listing::batch_command`] with `bash -c` in
//! its job directory, with [`REPORT_ENV`] naming the file the framework writes its report to
//! and [`ATTEMPT_ENV`] the attempt number. [`Listing::parse_report`] reads that report back.
//!
//! Results come from the framework's report alone, never from the batch's exit code: a test
//! of the batch that a complete report does not mention is an [`TestStatus::Error`] ("not
//! reported"); when the report is missing or cut short (the batch was killed), what it
//! finished is kept and the rest is [`TestStatus::NotRun`], to be queued again. (go's report
//! is the test binaries' test2json events, streamed test by test; for nextest and pytest the
//! report file holds their progress lines until the framework's JUnit replaces it at the end;
//! Playwright's is a JSON line per test from a reporter of ours, then one at the run's end; a
//! `command` suite's JUnit is all or nothing.)
//! A test's attempts fold into one [`TestRecord`] and its [`FinalStatus`]; [`junit`] writes
//! the records of every batch and attempt as one JUnit XML. [`plan`] packs a suite's tests
//! (each a [`TestKey`]) into batches from their estimates, and [`makespan`] measures a plan;
//! [`new_tests`] picks the new tests run several times to catch flaky ones early.

pub mod batch_cost;
mod command;
mod error;
mod gotest;
mod jest;
pub mod junit;
pub mod makespan;
mod minitest;
pub mod new_tests;
mod nextest;
pub mod plan;
mod playwright;
mod process;
mod pytest;
mod report;
pub(crate) mod result;
mod rspec;
mod ruby;
mod vitest;
mod watchdog;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dir_name::dir_name as ship_name;

pub use command::TESTS_FILE_ENV;
pub use error::SuiteError;
pub use result::{FinalStatus, TestEntry, TestRecord, TestResult, TestStatus};

/// The variable naming the file a batch writes its report to (JUnit XML; for go, the test
/// binaries' test2json events; for Playwright, its reporter's JSON lines), relative to the
/// job's directory or absolute.
pub const REPORT_ENV: &str = "CLUSTER_JUNIT";

/// The variable naming the control directory of the warm session (pytest, Jest, Vitest) a worker
/// gives a batch (its socket, log and `served` mark): see [`Listing::session_command`].
pub const SESSION_ENV: &str = "CLUSTER_SESSION";

/// The variable holding the attempt number of a batch, from 1 (the first run).
pub const ATTEMPT_ENV: &str = "CLUSTER_ATTEMPT";

/// The directory, relative to a job's directory, where shipped files land.
const SHIP_DIR: &str = ".cluster-suite";

/// The file, beside a suite's shipped files, where a batch's command writes the ids of its
/// tests (one a line) for the framework to read: ids never reach a framework as arguments, as
/// the kernel refuses one over 128 KiB and all of them together over about 2 MiB.
const IDS_FILE: &str = "ids";

/// A test framework, as named by a suite's `framework:` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framework {
    /// `cargo nextest`: an archive built on the runner, run from it on workers.
    Nextest,
    /// `python -m pytest`, by node id.
    Pytest,
    /// `go test`: test binaries built on the runner.
    Go,
    /// Jest, the project's own, by file and full test name.
    Jest,
    /// Vitest, from the checkout's `node_modules`, by test id (`[project] file > name`).
    Vitest,
    /// `playwright test` (`@playwright/test`), from the project's `node_modules`.
    Playwright,
    /// Any tool: `list` prints one test id a line, `run` gets a batch's ids as arguments and
    /// in the file [`TESTS_FILE_ENV`] names, and writes JUnit to [`REPORT_ENV`].
    Command {
        /// Shell command printing the test ids.
        list: String,
        /// Shell command running the ids given as arguments (`"$@"`).
        run: String,
    },
    /// `rspec`, by example id.
    Rspec,
    /// Minitest, by `Class#method`.
    Minitest,
}

impl Framework {
    /// The names `framework:` accepts, for messages.
    pub const NAMES: [&'static str; 9] = [
        "nextest",
        "pytest",
        "go",
        "jest",
        "vitest",
        "playwright",
        "rspec",
        "minitest",
        "command",
    ];

    /// The framework `framework: NAME` (or `--tests NAME`) names, for every framework but
    /// `command`, which also needs its two commands.
    pub fn named(name: &str) -> Option<Framework> {
        match name {
            "nextest" => Some(Framework::Nextest),
            "pytest" => Some(Framework::Pytest),
            "go" => Some(Framework::Go),
            "vitest" => Some(Framework::Vitest),
            "playwright" => Some(Framework::Playwright),
            "rspec" => Some(Framework::Rspec),
            "minitest" => Some(Framework::Minitest),
            "jest" => Some(Framework::Jest),
            _ => None,
        }
    }

    /// How the framework's tests are grouped into batches unless a suite says `split:`.
    pub fn default_split(&self) -> Split {
        match self {
            // Jest's unit of isolation is the file: its module registry, its hooks.
            Framework::Jest => Split::File,
            _ => Split::Test,
        }
    }

    /// Whether its batches can run in a warm session of it ([`Listing::session_command`]).
    pub fn keeps_sessions(&self) -> bool {
        matches!(
            self,
            Framework::Pytest | Framework::Jest | Framework::Vitest
        )
    }

    /// Whether a batch under `isolation` can be handed to a session: its processes may
    /// outlive it under `process` and `none`, never in a sandbox of its own.
    pub fn sessions_allowed(isolation: crate::proto::Isolation) -> bool {
        use crate::proto::Isolation;
        matches!(isolation, Isolation::Process | Isolation::None)
    }

    /// The framework's name as written in a manifest.
    pub fn name(&self) -> &'static str {
        match self {
            Framework::Nextest => "nextest",
            Framework::Pytest => "pytest",
            Framework::Go => "go",
            Framework::Jest => "jest",
            Framework::Vitest => "vitest",
            Framework::Playwright => "playwright",
            Framework::Command { .. } => "command",
            Framework::Rspec => "rspec",
            Framework::Minitest => "minitest",
        }
    }
}

/// How tests are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// Any test in any batch.
    #[default]
    Test,
    /// A file's tests stay in one batch (module-scoped fixtures run once).
    File,
}

/// A suite to list: what the manifest's `suites:` entry says about running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// The suite's name (unique in the manifest).
    pub name: String,
    /// Its framework.
    pub framework: Framework,
    /// Arguments for listing and running.
    pub args: Vec<String>,
}

/// One test of a suite.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestCase {
    /// Unique id within the suite: what timing history and re-runs key on.
    pub id: String,
    /// Its group, a `<testsuite>` of the merged JUnit: the nextest binary, the pytest file,
    /// the go package, or the suite's name.
    pub group: String,
    /// Its name within the group.
    pub name: String,
    /// The file it is in, where the framework says (pytest; `split: file` keeps these together).
    pub file: Option<String>,
}

impl TestCase {
    /// Why this test cannot be run, whatever the framework: an id holding a NUL cannot be
    /// given to any program, nor one holding a line break written to the file of a batch's
    /// ids. Such a test is an error of its own, never of the batch it would have spoiled.
    pub fn refusal(&self) -> Option<&'static str> {
        if self.id.contains('\0') {
            Some("its id holds a NUL byte, which no program can be given")
        } else if self.id.contains('\n') {
            Some("its id holds a line break, which a batch cannot pass on to the framework")
        } else {
            None
        }
    }
}

/// One test of one suite: what every plan, history and result is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TestKey {
    /// The suite's name in the manifest.
    pub suite: String,
    /// The framework's own id of the test (nextest name, pytest node id, go test name).
    pub id: String,
}

impl TestKey {
    /// A key from its two parts.
    pub fn new(suite: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            suite: suite.into(),
            id: id.into(),
        }
    }
}

impl std::fmt::Display for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.suite, self.id)
    }
}

/// A file the runner ships to workers for a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// Where it is on the runner.
    pub source: PathBuf,
    /// Where the batch command expects it, relative to the job's directory.
    pub dest: PathBuf,
}

/// A listed suite: its tests, the files workers need, and what a batch of it runs.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The suite.
    pub suite: Suite,
    /// Every test, in the framework's order.
    pub tests: Vec<TestCase>,
    /// Files to ship as a layer with every batch.
    pub ship: Vec<Shipped>,
    /// Arguments the batch command passes on (the options among the suite's arguments).
    run_args: Vec<String>,
    /// For go: each package's import path and source directory relative to the listing
    /// directory (where its binary runs).
    packages: Vec<(String, String)>,
    /// For jest: how many tests each file has in the whole listing (a re-run keeps only some
    /// of [`Listing::tests`]): a batch holding them all runs the file whole.
    file_tests: std::collections::HashMap<String, usize>,
}

impl Suite {
    /// Lists the suite in `dir` (the checkout), writing what must be built once (a nextest
    /// archive, go test binaries) under `work`. Errors are the user's to fix: the framework's
    /// command is missing, listing failed, or nothing matched.
    pub fn list(&self, dir: &Path, work: &Path) -> Result<Listing, SuiteError> {
        let work = work.join(ship_name(&self.name));
        std::fs::create_dir_all(&work).map_err(|source| SuiteError::Io {
            path: work.clone(),
            source,
        })?;
        let mut listing = match &self.framework {
            Framework::Nextest => nextest::list(self, dir, &work)?,
            Framework::Pytest => pytest::list(self, dir)?,
            Framework::Go => gotest::list(self, dir, &work)?,
            Framework::Jest => jest::list(self, dir, &work)?,
            Framework::Vitest => vitest::list(self, dir, &work)?,
            Framework::Playwright => playwright::list(self, dir, &work)?,
            Framework::Command { list, .. } => command::list(self, list, dir)?,
            Framework::Rspec => rspec::list(self, dir, &work)?,
            Framework::Minitest => minitest::list(self, dir, &work)?,
        };
        if listing.tests.is_empty() {
            return Err(SuiteError::NoTests {
                suite: self.name.clone(),
                args: self.args.clone(),
            });
        }
        // A test listed twice (a `command` list, overlapping go patterns) runs once.
        let mut seen = std::collections::HashSet::new();
        listing.tests.retain(|t| seen.insert(t.id.clone()));
        Ok(listing)
    }
}

/// A job that starts a warm session of a suite before the suite is listed and has it load
/// what the batches will need, so that the listing's time is not also spent, after it, by
/// every slot: see [`Suite::warm_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmUp {
    /// The command that starts the session: the same as [`Listing::session_command`], so that
    /// a worker hands the suite's batches the session this job warmed.
    pub session: String,
    /// The job's `bash -c` command, run with the session's control directory in
    /// [`SESSION_ENV`]; without one (a worker that gave it no session) it does nothing.
    pub run: String,
}

impl Suite {
    /// The warm-up of the suite's sessions in `dir` (the checkout), for frameworks that keep
    /// them (pytest); `None` for the others.
    pub fn warm_up(&self, dir: &Path) -> Option<WarmUp> {
        match self.framework {
            Framework::Pytest => Some(pytest::warm_up(self, dir)),
            _ => None,
        }
    }
}

impl Listing {
    /// The listing of `suite` with `tests` and no files to ship or arguments to pass on;
    /// each framework adds what it needs (the runner's unit tests build one directly).
    pub(crate) fn new(suite: &Suite, tests: Vec<TestCase>) -> Self {
        Self {
            suite: suite.clone(),
            tests,
            ship: Vec::new(),
            run_args: Vec::new(),
            packages: Vec::new(),
            file_tests: std::collections::HashMap::new(),
        }
    }

    /// The `bash -c` command a worker runs for `batch` in its job directory (with the
    /// shipped files and the suite's layers in place). It writes the framework's report to
    /// the file named by [`REPORT_ENV`]; its exit code does not decide any test's result.
    /// The ids are in here-documents it writes to files the framework reads: no process it
    /// starts gets them as arguments, however many they are.
    pub fn batch_command(&self, batch: &[TestCase]) -> String {
        match &self.suite.framework {
            Framework::Nextest => nextest::batch_command(self, batch),
            Framework::Pytest => pytest::batch_command(self, batch),
            Framework::Go => gotest::batch_command(self, batch),
            Framework::Jest => jest::batch_command(self, batch),
            Framework::Vitest => vitest::batch_command(self, batch),
            Framework::Playwright => playwright::batch_command(self, batch),
            Framework::Command { run, .. } => command::batch_command(&self.suite, run, batch),
            Framework::Rspec => rspec::batch_command(self, batch),
            Framework::Minitest => minitest::batch_command(self, batch),
        }
    }

    /// The `bash -c` command that starts a warm session of the suite, for frameworks that
    /// have one (pytest, Jest, Vitest): a worker runs it in a directory holding the suite's layers, with
    /// [`SESSION_ENV`] naming a control directory of its own, and gives that directory to
    /// the batches it hands the session (in [`SESSION_ENV`] too); their
    /// [`Listing::batch_command`] then runs its tests there instead of starting the
    /// framework. It prints `ready` once batches can be handed to it.
    pub fn session_command(&self) -> Option<String> {
        match self.suite.framework {
            Framework::Pytest => Some(pytest::session_command(self)),
            Framework::Jest => Some(jest::session_command(self)),
            Framework::Vitest => Some(vitest::session_command(self)),
            _ => None,
        }
    }

    /// [`Listing::batch_command`] under a watchdog that stops the batch when no test finished
    /// for `timeout` (the suite's per-test timeout): the test then running is `timed_out`.
    /// Only for frameworks whose progress says which test is running (pytest, RSpec,
    /// Minitest); the others run as they are, bounded by their batch's time limit alone.
    pub fn guarded_batch_command(&self, batch: &[TestCase], timeout: Duration) -> String {
        let command = self.batch_command(batch);
        match self.suite.framework {
            Framework::Pytest => watchdog::guard(&command, timeout),
            Framework::Rspec | Framework::Minitest => watchdog::guard(&command, timeout),
            _ => command,
        }
    }

    /// One result per test of `batch`, in its order, from the report a batch command wrote
    /// (`None` when it wrote none). See the module documentation for tests the report does not
    /// mention.
    pub fn parse_report(&self, report: Option<&[u8]>, batch: &[TestCase]) -> Vec<TestResult> {
        self.read_report(report, batch).results
    }

    /// [`Listing::parse_report`], with the tests the report mentions that `batch` did not ask
    /// for (a name filter that also matched a neighbour): ignored, for the runner to say so.
    pub fn read_report(&self, report: Option<&[u8]>, batch: &[TestCase]) -> BatchReport {
        let reported = match (&self.suite.framework, report) {
            (_, None) => report::Reported::default(),
            (Framework::Go, Some(bytes)) => gotest::parse(bytes),
            (Framework::Jest, Some(bytes)) => jest::parse(bytes, batch),
            (Framework::Vitest, Some(bytes)) => vitest::parse(bytes),
            (Framework::Playwright, Some(bytes)) => playwright::parse(bytes),
            (Framework::Nextest, Some(bytes)) => report::junit(bytes, nextest::junit_key)
                .unwrap_or_else(|| report::progress(bytes, nextest::progress_line, |_| None)),
            (Framework::Pytest, Some(bytes)) => report::junit(bytes, pytest::junit_key)
                .unwrap_or_else(|| {
                    report::progress(bytes, pytest::progress_line, pytest::started_line)
                }),
            (Framework::Command { .. }, Some(bytes)) => {
                report::junit(bytes, command::junit_key).unwrap_or_default()
            }
            (Framework::Rspec, Some(bytes)) => rspec::parse(bytes, batch),
            (Framework::Minitest, Some(bytes)) => minitest::parse(bytes, batch),
        };
        // A test's key in the report is its id (nextest's binary and name, go's package and
        // name, a `command` suite's id), but for pytest, whose JUnit mangles node ids.
        let key_of = |case: &TestCase| match self.suite.framework {
            Framework::Pytest => pytest::case_key(case),
            _ => case.id.clone(),
        };
        let asked = batch.iter().map(key_of).collect();
        BatchReport {
            unasked: reported.unasked(&asked),
            results: reported.results(batch, key_of),
        }
    }

    /// The batches `split` allows: with [`Split::File`], the tests of one file (in test
    /// order) form one unit that must not be divided; otherwise every test is its own unit.
    pub fn units(&self, split: Split) -> Vec<Vec<TestCase>> {
        match split {
            Split::Test => self.tests.iter().map(|t| vec![t.clone()]).collect(),
            Split::File => {
                let mut units: Vec<Vec<TestCase>> = Vec::new();
                for test in &self.tests {
                    let file = test.file.as_ref().unwrap_or(&test.group);
                    match units
                        .iter_mut()
                        .find(|u| u[0].file.as_ref().unwrap_or(&u[0].group) == file)
                    {
                        Some(unit) => unit.push(test.clone()),
                        None => units.push(vec![test.clone()]),
                    }
                }
                units
            }
        }
    }
}

/// What a batch's report says ([`Listing::read_report`]).
#[derive(Debug)]
pub struct BatchReport {
    /// One result per test of the batch, in its order.
    pub results: Vec<TestResult>,
    /// The report's keys of tests the batch did not ask for, sorted: ignored.
    pub unasked: Vec<String>,
}

/// What a batch of a Node framework's suite runs when the worker gave it a session: hands the
/// session the batch and prints what the framework printed.
const NODE_SESSION_CLIENT: &str = include_str!("node_session_client.js");

/// The loop of a Node framework's warm session, which its driver's `serve` mode loads from
/// beside itself.
const NODE_SESSION_SERVER: &str = include_str!("node_session_server.cjs");

/// [`NODE_SESSION_SERVER`]'s file name, beside a suite's driver on the runner and in the
/// batches' shipped files.
const NODE_SESSION_SERVER_FILE: &str = "node_session_server.cjs";

/// Writes [`NODE_SESSION_SERVER`] under `work` (where the listing wrote the framework's driver)
/// and ships it with `listing`'s files, beside the driver.
fn ship_node_session_server(listing: &mut Listing, work: &Path) -> Result<(), SuiteError> {
    let source = work.join(NODE_SESSION_SERVER_FILE);
    std::fs::write(&source, NODE_SESSION_SERVER).map_err(|e| SuiteError::Io {
        path: source.clone(),
        source: e,
    })?;
    listing.ship.push(Shipped {
        source,
        dest: ship_dest(&listing.suite, NODE_SESSION_SERVER_FILE),
    });
    Ok(())
}

/// The first lines of the `bash -c` command that starts a warm session of a Node framework:
/// its standard output and error go to the session's log (the worker reads the command's
/// standard output only until `ready`), but for descriptor 3, the command's standard output,
/// where the session writes `ready` once batches can connect.
const NODE_SESSION_START: &str = "exec 3>&1 1>&2\n";

/// Shell lines that hand a batch of a Node framework (`name`, for messages) to the worker's
/// session when it gave the batch one ([`SESSION_ENV`]), with its file of ids at `ids` (a
/// shell word) and its report at [`REPORT_ENV`]; without one, the lines after them run.
fn node_session_client(name: &str, ids: &str) -> String {
    format!(
        "if [ -n \"${{{SESSION_ENV}:-}}\" ]; then\n\
         exec node -e {} {name} {ids} \"${REPORT_ENV}\"\n\
         fi\n",
        shell_quote(NODE_SESSION_CLIENT),
    )
}

/// `args` (a suite's arguments) as shell words, quoted, separated by spaces.
fn shell_words(args: &[String]) -> String {
    let words: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    words.join(" ")
}

/// Where a shipped file named `file` of `suite` lands, relative to the job's directory.
fn ship_dest(suite: &Suite, file: &str) -> PathBuf {
    Path::new(SHIP_DIR).join(ship_name(&suite.name)).join(file)
}

/// The batch's file of test ids ([`IDS_FILE`]), as a shell word: absolute, as a batch may
/// change directories.
fn ids_path(suite: &Suite) -> String {
    job_path(suite, IDS_FILE)
}

/// Where a file named `file` beside `suite`'s shipped files is, as a shell word: absolute, as
/// a batch may change directories.
fn job_path(suite: &Suite, file: &str) -> String {
    format!(
        "\"$PWD\"/{}",
        shell_quote(&ship_dest(suite, file).display().to_string())
    )
}

/// Shell lines writing `lines`, one a line, to the file `path` (a shell word; its directory is
/// made when missing): see [`here_document`].
fn write_lines<'a>(path: &str, lines: impl IntoIterator<Item = &'a str>) -> String {
    let (redirect, body) = here_document(lines);
    format!("mkdir -p \"$(dirname {path})\"\ncat > {path} {redirect}\n{body}")
}

/// `lines` as a quoted here-document, in which nothing is expanded: the redirection (`<<'END'`)
/// to put on a command's line, and the body with its end, to follow that line. However many
/// the lines, no process gets them as arguments. No line may hold a line break (nor a NUL,
/// which no shell passes on: the listing refuses such ids); the end is a word no line is.
fn here_document<'a>(lines: impl IntoIterator<Item = &'a str>) -> (String, String) {
    let lines: Vec<&str> = lines.into_iter().collect();
    let mut end = String::from("CLUSTER_ACTION_END");
    while lines.contains(&end.as_str()) {
        end.push('_');
    }
    let mut body = String::new();
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    body.push_str(&end);
    body.push('\n');
    (format!("<<'{end}'"), body)
}

/// `text` quoted for bash: single quotes, with `'` written as `'\''`.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_bash() {
        assert_eq!(shell_quote("tests/a.py::t"), "tests/a.py::t");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("t[1-$x]"), "'t[1-$x]'");
    }

    /// `command` without the bodies of its here-documents.
    fn outside_here_documents(command: &str) -> String {
        let mut outside = String::new();
        let mut end: Option<String> = None;
        for line in command.lines() {
            match &end {
                Some(word) if line == word => end = None,
                Some(_) => {}
                None => {
                    if let Some((_, rest)) = line.split_once("<<'") {
                        end = rest.split_once('\'').map(|(word, _)| word.to_owned());
                    }
                    outside.push_str(line);
                    outside.push('\n');
                }
            }
        }
        outside
    }

    /// Whatever the number of ids (20,000 of 80 bytes here: 1.6 MB), a batch command is
    /// short but for its here-documents, so no process it starts gets them as arguments.
    #[test]
    fn a_batch_command_holds_its_ids_only_in_here_documents() {
        let frameworks = [
            Framework::Nextest,
            Framework::Pytest,
            Framework::Go,
            Framework::Vitest,
            Framework::Playwright,
            Framework::Command {
                list: "true".into(),
                run: "./run \"$@\"".into(),
            },
            Framework::Rspec,
            Framework::Minitest,
        ];
        for framework in frameworks {
            let name = framework.name();
            let suite = Suite {
                name: "s".into(),
                framework,
                args: vec!["-x".into()],
            };
            let tests: Vec<TestCase> = (0..20_000)
                .map(|n| {
                    let file = format!("tests/test_{}.py", n % 7);
                    let name = format!("Test_{n:070}");
                    TestCase {
                        id: format!("{file}::{name}"),
                        group: ["a/pkg", "b/pkg"][n % 2].into(),
                        name,
                        file: Some(file),
                    }
                })
                .collect();
            let mut listing = Listing::new(&suite, tests.clone());
            listing.packages = vec![("a/pkg".into(), "a".into()), ("b/pkg".into(), "b".into())];
            let command = listing.batch_command(&tests);
            let outside = outside_here_documents(&command);
            assert!(outside.len() < 8 * 1024, "{name}: {outside}");
            assert!(
                command.len() > 20_000 * 70,
                "{name}: every id is in the command"
            );
        }
    }

    #[test]
    fn file_split_keeps_a_files_tests_together() {
        let case = |id: &str, file: &str| TestCase {
            id: id.into(),
            group: file.into(),
            name: id.into(),
            file: Some(file.into()),
        };
        let suite = Suite {
            name: "py".into(),
            framework: Framework::Pytest,
            args: vec![],
        };
        let listing = Listing::new(
            &suite,
            vec![case("a1", "a.py"), case("b1", "b.py"), case("a2", "a.py")],
        );
        let ids = |units: Vec<Vec<TestCase>>| -> Vec<Vec<String>> {
            units
                .into_iter()
                .map(|u| u.into_iter().map(|t| t.id).collect())
                .collect()
        };
        assert_eq!(
            ids(listing.units(Split::File)),
            [vec!["a1", "a2"], vec!["b1"]]
        );
        assert_eq!(listing.units(Split::Test).len(), 3);
    }
}
