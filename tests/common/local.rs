//! `cluster-action local` run as a user runs it in a directory (a copy of a fixture, a
//! manifest written by the test): the test tools first on PATH, none of the caller's CI
//! variables, the reports in a scratch directory of their own, the run bounded in time. Also
//! the probe that says whether a tool is installed, the fixture copy, a framework run alone
//! for comparison and a batch command run as a worker runs it.
//!
//! Tools come from `CLUSTER_TEST_TOOLS` (colon-separated directories, put first on PATH;
//! scripts/test.sh sets it). Outside CI a missing tool skips the test with a message; under
//! `CI=true` it fails it.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cluster_action::suite::{ATTEMPT_ENV, REPORT_ENV};
use serde_json::Value;

use super::cluster::{Proc, Scratch};
use super::copy_tree;
use super::report::read_report_of;

/// PATH with the directories of `CLUSTER_TEST_TOOLS` first.
pub fn tools_path() -> String {
    let tools = std::env::var("CLUSTER_TEST_TOOLS").unwrap_or_default();
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{tools}:{rest}")
}

/// Whether `program probe…` runs with [`tools_path`]; a missing tool fails the test under CI.
pub fn available(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .env("PATH", tools_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{program} {}` does not run: scripts/test.sh installs it",
            probe.join(" ")
        );
        eprintln!("skipped: `{program}` is not available (scripts/test.sh installs it)");
    }
    ok
}

/// Whether a `python` with pytest runs (see [`available`]).
pub fn have_pytest() -> bool {
    available("python", &["-m", "pytest", "--version"])
}

/// The fixture directory `name` (tests/fixtures/NAME), to be copied before a run.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of the tree at `source` in a fresh temporary directory (without build output or
/// caches), so that nothing a run writes lands in the source tree.
pub fn copy_of(source: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(source, dir.path());
    dir
}

/// A copy of the fixture directory `name` (see [`copy_of`]).
pub fn fixture_copy(name: &str) -> tempfile::TempDir {
    copy_of(&fixture(name))
}

/// The node_modules holding jest, vitest and @playwright/test: `CLUSTER_TEST_NODE_MODULES`
/// (scripts/test.sh sets it), else tests/frameworks/node_modules. `None` when it holds no
/// `bin` (see [`available`] for what a missing tool does in and outside CI).
pub fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("CLUSTER_TEST_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frameworks/node_modules"),
        PathBuf::from,
    );
    if dir.join(".bin").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} holds no packages: scripts/test.sh installs them (npm ci)",
        dir.display()
    );
    eprintln!(
        "skipped: {} holds no packages (scripts/test.sh installs them)",
        dir.display()
    );
    None
}

/// A copy of the JavaScript fixture `name` with the test frameworks' `node_modules` in it, as
/// a user's checkout after `npm ci` (hard links to [`node_modules`] where they can be made: a
/// copy that costs no space, shipped as the user's own directory would be). `None` when the packages are missing.
pub fn js_fixture_copy(name: &str) -> Option<tempfile::TempDir> {
    let modules = node_modules()?;
    let dir = fixture_copy(name);
    let to = dir.path().join("node_modules");
    let copy = |how: &str| {
        let status = Command::new("cp").arg(how).arg(&modules).arg(&to).status();
        status.is_ok_and(|s| s.success())
    };
    // Hard links need one file system; where the temporary directory is another, a copy.
    if !copy("-al") {
        let _ = std::fs::remove_dir_all(&to);
        assert!(
            copy("-a"),
            "cannot copy {} into {}",
            modules.display(),
            to.display()
        );
    }
    Some(dir)
}

/// [`js_fixture_copy`] with node_modules holding `package` and its dependencies alone (npm's
/// own record of the tree, `node_modules/.package-lock.json`, says which), as a project using
/// only that framework has it: the other frameworks' packages would make every run that ships
/// the directory ship and unpack twice as much or more.
pub fn js_fixture_with_only(name: &str, package: &str) -> Option<tempfile::TempDir> {
    let dir = js_fixture_copy(name)?;
    let modules = dir.path().join("node_modules");
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(modules.join(".package-lock.json")).unwrap())
            .unwrap();
    let packages = lock["packages"].as_object().unwrap();
    // A package's name is what its path holds after its last `node_modules/`.
    let name_of = |path: &str| path.rsplit_once("node_modules/").unwrap().1.to_owned();
    let mut needed: std::collections::BTreeSet<String> = Default::default();
    let mut queue = vec![package.to_owned()];
    while let Some(name) = queue.pop() {
        if !needed.insert(name.clone()) {
            continue;
        }
        // Every copy of the package in the tree, nested ones too: over-keeping is harmless.
        let copies = packages
            .iter()
            .filter(|(path, _)| !path.is_empty() && name_of(path) == name);
        for (_, package) in copies {
            for key in ["dependencies", "optionalDependencies", "peerDependencies"] {
                if let Some(deps) = package[key].as_object() {
                    queue.extend(deps.keys().cloned());
                }
            }
        }
    }
    for entry in std::fs::read_dir(&modules).unwrap() {
        let entry = entry.unwrap();
        let top = entry.file_name().to_string_lossy().into_owned();
        if top.starts_with('.') {
            continue;
        }
        let names: Vec<(String, PathBuf)> = if top.starts_with('@') {
            std::fs::read_dir(entry.path())
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| {
                    (
                        format!("{top}/{}", e.file_name().to_string_lossy()),
                        e.path(),
                    )
                })
                .collect()
        } else {
            vec![(top, entry.path())]
        };
        for (name, path) in names {
            if !needed.contains(&name) {
                std::fs::remove_dir_all(&path).unwrap();
            }
        }
    }
    Some(dir)
}

/// Where the cargo fixture builds, apart from the fixture and shared by the tests using it.
pub fn fixture_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("suite-cargo")
}

/// `program args` in `dir` with the tools on PATH and `env` added, as a user would run the
/// framework alone.
pub fn alone(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A suite's batch `command` started as a worker starts it: `bash -c` in `dir` (the job's
/// directory), leading its own process group (which a test may kill, as a lost worker's end
/// would), with the tools on PATH, the report file `report` and the attempt `attempt` in its
/// environment, its standard output piped.
pub fn spawn_batch(dir: &Path, command: &str, report: &Path, attempt: u32) -> Child {
    batch_command(dir, command, report, attempt)
        .spawn()
        .unwrap()
}

/// What the fixtures' slow tests read for how long to take, in milliseconds, instead of their
/// second or so.
pub const FIXTURE_SLOW_ENV: &str = "FIXTURE_SLOW_MS";

/// [`spawn_batch`] for a test that kills the batch while its fixture's slow test runs: the
/// slow test is held for five minutes (see [`FIXTURE_SLOW_ENV`]), so that no load on the
/// machine lets it finish before the kill.
pub fn spawn_batch_held(dir: &Path, command: &str, report: &Path) -> Child {
    batch_command(dir, command, report, 1)
        .env(FIXTURE_SLOW_ENV, HELD_MS)
        .spawn()
        .unwrap()
}

/// How long a held slow test takes: far beyond any wait of a test, short of go's ten-minute
/// default timeout.
pub const HELD_MS: &str = "300000";

/// The command [`spawn_batch`] starts.
fn batch_command(dir: &Path, command: &str, report: &Path, attempt: u32) -> Command {
    let mut batch = Command::new("bash");
    batch
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env(REPORT_ENV, report)
        .env(ATTEMPT_ENV, attempt.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    batch
}

/// How long a `local` run may take unless a test says otherwise: only a hang reaches it (a
/// nextest suite builds its fixture first, on a machine other tests load too).
const LOCAL_PATIENCE: Duration = Duration::from_secs(600);

/// A `cluster-action local` run to make: [`local`] starts one, its methods set what a test
/// needs, [`Local::run`] runs it.
pub struct Local {
    dir: PathBuf,
    copy: Option<tempfile::TempDir>,
    workers: u32,
    args: Vec<String>,
    env: Vec<(String, String)>,
    summary: bool,
    patience: Duration,
}

/// `cluster-action local --workers 1` in `dir`, writing its JSON and JUnit reports to a
/// scratch directory, with the tools on PATH and no bytecode written.
pub fn local(dir: &Path) -> Local {
    Local {
        dir: dir.to_path_buf(),
        copy: None,
        workers: 1,
        args: Vec::new(),
        env: vec![
            ("PATH".into(), tools_path()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ],
        summary: false,
        patience: LOCAL_PATIENCE,
    }
}

/// [`local`] in `dir` on `manifest` (YAML, written to `dir/cluster.yml`), each worker with one
/// slot: a suite of a test's own making.
pub fn local_manifest(dir: &Path, manifest: &str) -> Local {
    std::fs::write(dir.join("cluster.yml"), manifest).unwrap();
    local(dir).args(&["cluster.yml", "--slots", "1"])
}

/// [`local`] in a copy of the tree at `source` (see [`copy_of`]), removed after the run.
pub fn local_in_copy(source: &Path) -> Local {
    let copy = copy_of(source);
    let mut local = local(copy.path());
    local.copy = Some(copy);
    local
}

impl Local {
    /// Adds `args` to the command line.
    pub fn args(mut self, args: &[&str]) -> Local {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs `workers` workers instead of one.
    pub fn workers(mut self, workers: u32) -> Local {
        self.workers = workers;
        self
    }

    /// Sets the variable `name` to `value` (PATH too).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Local {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Writes the job summary too (`GITHUB_STEP_SUMMARY`), read into [`LocalRun::summary`].
    pub fn summary(mut self) -> Local {
        self.summary = true;
        self
    }

    /// Fails the test if the run outlasts `patience` (a bound that is what the test checks).
    pub fn within(mut self, patience: Duration) -> Local {
        self.patience = patience;
        self
    }

    /// Runs it to its end: what it left (see [`Running::finish`]).
    pub fn run(self) -> LocalRun {
        self.start().finish()
    }

    /// Starts it, for a test that acts on the run while it runs.
    pub fn start(self) -> Running {
        let scratch = Scratch::new();
        let json = scratch.path().join("report.json");
        let junit = scratch.path().join("report.xml");
        let summary = scratch.path().join("summary.md");
        let mut args: Vec<String> = vec!["local".into(), "--workers".into()];
        args.push(self.workers.to_string());
        args.extend(["--report-json".into(), json.display().to_string()]);
        args.extend(["--report-junit".into(), junit.display().to_string()]);
        args.extend(self.args);
        let mut env = self.env;
        if self.summary {
            env.push(("GITHUB_STEP_SUMMARY".into(), summary.display().to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let proc = scratch.spawn_args(&self.dir, "local", &args, &env);
        Running {
            proc,
            json,
            junit,
            summary,
            patience: self.patience,
            _scratch: scratch,
            _copy: self.copy,
        }
    }
}

/// A `local` run under way.
pub struct Running {
    proc: Proc,
    json: PathBuf,
    junit: PathBuf,
    summary: PathBuf,
    patience: Duration,
    _scratch: Scratch,
    _copy: Option<tempfile::TempDir>,
}

impl Running {
    /// Waits until the run's standard output holds a line containing `text`.
    pub fn await_stdout(&self, text: &str) {
        super::await_some(&format!("'{text}' in the run's output"), || {
            self.proc.stdout().contains(text).then_some(())
        });
    }

    /// Sends `signal` to the run's `cluster-action` process.
    pub fn signal(&self, signal: libc::c_int) {
        self.proc.signal(signal);
    }

    /// Waits for the run to end (failing the test after its patience): what it left. A run
    /// must write its JSON report, with its documented schema, unless it was refused before
    /// it began (exit 2).
    pub fn finish(mut self) -> LocalRun {
        let code = self.proc.wait_within(self.patience).code().unwrap_or(-1);
        let stderr = self.proc.stderr();
        let report = if code == 2 && !self.json.exists() {
            Value::Null
        } else {
            read_report_of(&self.json, &stderr).0
        };
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        LocalRun {
            code,
            stdout: self.proc.stdout(),
            stderr,
            report,
            junit: read(&self.junit),
            summary: read(&self.summary),
        }
    }
}

/// What a `local` run left.
pub struct LocalRun {
    /// The exit code (-1 for a signal).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// The `--report-json` document (null without one).
    pub report: Value,
    /// The `--report-junit` document (empty without one).
    pub junit: String,
    /// The job summary (empty unless asked for with [`Local::summary`]).
    pub summary: String,
}

impl LocalRun {
    /// The reported tests, in the report's order.
    pub fn tests(&self) -> &[Value] {
        self.report["tests"]
            .as_array()
            .unwrap_or_else(|| panic!("no tests in the report: {}\n{}", self.report, self.stderr))
    }

    /// `(id, status)` of each reported test, in the report's order.
    pub fn statuses_in_order(&self) -> Vec<(&str, &str)> {
        let tests = self.tests().iter();
        tests
            .map(|t| (t["id"].as_str().unwrap(), t["status"].as_str().unwrap()))
            .collect()
    }

    /// Each reported test's final status by id; a test reported twice fails the test.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        let tests = self.tests();
        let statuses: BTreeMap<String, String> = tests
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            statuses.len(),
            tests.len(),
            "each test once: {}",
            self.report
        );
        statuses
    }

    /// Each reported test's final status and number of attempts by id; a test reported twice
    /// fails the test.
    pub fn outcomes(&self) -> BTreeMap<&str, (&str, u64)> {
        let tests = self.tests();
        let outcomes: BTreeMap<&str, (&str, u64)> = tests
            .iter()
            .map(|t| {
                let status = t["status"].as_str().unwrap();
                (
                    t["id"].as_str().unwrap(),
                    (status, t["attempts"].as_u64().unwrap()),
                )
            })
            .collect();
        assert_eq!(
            outcomes.len(),
            tests.len(),
            "each test once: {}",
            self.report
        );
        outcomes
    }

    /// The message of test `id`.
    pub fn message(&self, id: &str) -> String {
        let test = self.tests().iter().find(|t| t["id"] == id).unwrap();
        test["message"].as_str().unwrap_or_default().to_owned()
    }
}

/// `(id, status)` pairs as [`LocalRun::statuses`] gives them.
pub fn statuses_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(id, status)| (id.to_string(), status.to_string()))
        .collect()
}

/// `(tests, failures, errors, skipped)` of a JUnit XML, counted from its test cases.
pub fn junit_counts(xml: &str) -> (usize, usize, usize, usize) {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let with = |tag: &str| {
        cases
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name(tag)))
            .count()
    };
    (cases.len(), with("failure"), with("error"), with("skipped"))
}
