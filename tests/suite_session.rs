//! pytest's warm session (`Listing::session_command`) against pytest alone: the batches a
//! session runs, handed to it as a worker hands them (`CLUSTER_SESSION` naming its control
//! directory, each batch its own job directory), give every test the result a batch's own
//! pytest gives it (statuses, skips, xfail and xpass, errors in setup and in teardown, the
//! framework's messages), with the session's fixtures set up once and a module's once per
//! batch. Then through `cluster-action local`, where workers keep the sessions: a thousand
//! tests in small batches, a session killed by its test, a test that hangs, a worker lost
//! mid-session.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use cluster_action::suite::{Framework, Listing, REPORT_ENV, SESSION_ENV, Suite, TestCase};

mod common;
use common::local::{LocalRun, copy_of, fixture, have_pytest, local_manifest, tools_path};

/// A listed pytest suite in `dir` (listed with the tools on PATH).
fn listing(dir: &Path) -> Listing {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the one test of this process sets it before it starts a child; only Rust code
    // touches the environment here, through std's lock.
    ONCE.call_once(|| unsafe { std::env::set_var("PATH", tools_path()) });
    let suite = Suite {
        name: "py".into(),
        framework: Framework::Pytest,
        args: Vec::new(),
    };
    let work = tempfile::tempdir().unwrap();
    suite.list(dir, work.path()).unwrap()
}

/// `bash -c command` in `dir` with the tools on PATH and `env`.
fn bash(command: &str, dir: &Path, env: &[(&str, &Path)]) -> Command {
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", tools_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdin(Stdio::null());
    bash
}

/// A session of `listing` started in `tree`, controlled from `control`, once it said ready.
struct Session {
    child: Child,
}

impl Session {
    fn start(listing: &Listing, tree: &Path, control: &Path) -> Session {
        let command = listing.session_command().unwrap();
        let mut child = bash(&command, tree, &[(SESSION_ENV, control)])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        Session { child }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(status, message)` of each test of `batch`, from the report its batch command wrote in a
/// fresh job directory (a copy of `tree` when `session` is `None`, else an empty one handed
/// the session's control directory).
fn run_batch(
    listing: &Listing,
    batch: &[TestCase],
    tree: &Path,
    control: Option<&Path>,
) -> BTreeMap<String, (String, Option<String>)> {
    let job = match control {
        Some(_) => tempfile::tempdir().unwrap(),
        None => copy_of(tree),
    };
    let report = job.path().join("report");
    let mut env = vec![(REPORT_ENV, report.as_path())];
    env.extend(control.map(|c| (SESSION_ENV, c)));
    let ran = bash(&listing.batch_command(batch), job.path(), &env)
        .output()
        .unwrap();
    let text = std::fs::read(&report).ok();
    let results = listing.parse_report(text.as_deref(), batch);
    results
        .into_iter()
        .map(|r| {
            let status = format!("{:?}", r.status);
            assert_ne!(
                status,
                "NotRun",
                "{}: {}",
                r.case.id,
                String::from_utf8_lossy(&ran.stdout)
            );
            (r.case.id, (status, r.message))
        })
        .collect()
}

/// The setups `conftest.py` of the fixture counted, one line each: `scope [module] pid`.
fn setups(tree: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(tree.join("setups.log")).unwrap_or_default();
    log.lines().map(str::to_owned).collect()
}

#[test]
fn a_session_gives_each_test_what_pytest_alone_gives_it() {
    if !have_pytest() {
        return;
    }
    let alone_tree = copy_of(&fixture("suite-pytest-session"));
    let listing = listing(alone_tree.path());
    assert_eq!(listing.tests.len(), 17, "{:?}", listing.tests);
    let alone = run_batch(&listing, &listing.tests, alone_tree.path(), None);

    let tree = copy_of(&fixture("suite-pytest-session"));
    let control = tempfile::tempdir().unwrap();
    let _session = Session::start(&listing, tree.path(), control.path());
    // Batches of one to four tests, files interleaved and collected as they come: the last
    // file of `sub/` after its first, whose directory (and conftest) the session keeps.
    let mut tests = listing.tests.clone();
    tests.reverse();
    let mut in_session = BTreeMap::new();
    let mut size = 1;
    let mut batches_of = BTreeMap::<&str, usize>::new();
    while !tests.is_empty() {
        let batch: Vec<TestCase> = tests.drain(..size.min(tests.len())).collect();
        in_session.extend(run_batch(
            &listing,
            &batch,
            tree.path(),
            Some(control.path()),
        ));
        for module in ["test_module.py", "sub/test_sub_more.py"] {
            if batch.iter().any(|t| t.file.as_deref() == Some(module)) {
                *batches_of.entry(module).or_default() += 1;
            }
        }
        size = size % 4 + 1;
    }
    assert_eq!(in_session, alone);
    let statuses: BTreeMap<&str, &str> = alone
        .iter()
        .map(|(id, (status, _))| (id.as_str(), status.as_str()))
        .collect();
    let expected = BTreeMap::from([
        ("sub/test_sub.py::test_sub_fixture", "Passed"),
        ("sub/test_sub_more.py::test_sub_fixture_again", "Passed"),
        ("test_module.py::test_first", "Passed"),
        ("test_module.py::test_second", "Passed"),
        ("test_outcomes.py::TestGroup::test_method", "Passed"),
        ("test_outcomes.py::test_fails", "Failed"),
        ("test_outcomes.py::test_param[1]", "Passed"),
        ("test_outcomes.py::test_param[2]", "Failed"),
        ("test_outcomes.py::test_param[3]", "Passed"),
        ("test_outcomes.py::test_passes", "Passed"),
        ("test_outcomes.py::test_setup_error", "Error"),
        ("test_outcomes.py::test_skipif", "Skipped"),
        ("test_outcomes.py::test_skipped", "Skipped"),
        ("test_outcomes.py::test_teardown_error", "Error"),
        ("test_outcomes.py::test_xfail", "Skipped"),
        ("test_outcomes.py::test_xpass", "Passed"),
        ("test_outcomes.py::test_xpass_strict", "Failed"),
    ]);
    assert_eq!(statuses, expected);

    // One process ran every batch, with the session's fixture set up once; the module
    // fixture once per batch that holds tests of its module.
    let setups = setups(tree.path());
    let pids: std::collections::BTreeSet<&str> =
        setups.iter().filter_map(|s| s.rsplit(' ').next()).collect();
    assert_eq!(pids.len(), 1, "{setups:?}");
    let count = |what: &str| setups.iter().filter(|s| s.starts_with(what)).count();
    assert_eq!(count("session "), 1, "{setups:?}");
    assert_eq!(
        count("module test_module "),
        batches_of["test_module.py"],
        "{setups:?}"
    );
    assert_eq!(
        count("module test_sub_more "),
        batches_of["sub/test_sub_more.py"],
        "{setups:?}"
    );
}

// Through `cluster-action local`: the worker keeps the sessions and hands them the batches.

/// A pytest project in a fresh directory: `files` (name and body) beside a conftest whose
/// autouse fixture appends `NODE_ID PID` to the file `$RUN_LOG` as each test starts.
fn project(files: &[(String, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let conftest = "import os\n\nimport pytest\n\n\n@pytest.fixture(autouse=True)\n\
                    def logged(request):\n    with open(os.environ[\"RUN_LOG\"], \"a\") as log:\n\
                    \x20       log.write(f\"{request.node.nodeid} {os.getpid()}\\n\")\n";
    std::fs::write(dir.path().join("conftest.py"), conftest).unwrap();
    std::fs::write(
        dir.path().join("pytest.ini"),
        "[pytest]\naddopts = -p no:cacheprovider\n",
    )
    .unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

/// `cluster-action local` on `workers` workers of one slot in `dir`, the suite `py` of its
/// pytest project with `settings` (YAML lines of the suite), `RUN_LOG` at `log`.
fn run_suite(dir: &Path, workers: u32, log: &Path, settings: &str, args: &[&str]) -> LocalRun {
    let manifest = format!(
        "layers:\n  checkout: {{paths: [.]}}\nsuites:\n  - name: py\n    framework: pytest\n\
         \x20   layers: [checkout]\n    env: {{RUN_LOG: \"{}\"}}\n{settings}",
        log.display()
    );
    local_manifest(dir, &manifest)
        .workers(workers)
        .args(args)
        .run()
}

/// The end of a run's log, for messages.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Each test's starts in the run log: `(node id, pid)` in order.
fn starts(log: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(id, pid)| (id.to_owned(), pid.to_owned()))
        .collect()
}

/// How many times each test started.
fn runs(starts: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut runs = BTreeMap::new();
    for (id, _) in starts {
        *runs.entry(id.clone()).or_default() += 1;
    }
    runs
}

/// The processes the tests ran in, each once.
fn pids(starts: &[(String, String)]) -> std::collections::BTreeSet<i32> {
    starts.iter().map(|(_, pid)| pid.parse().unwrap()).collect()
}

#[test]
fn a_thousand_tests_in_small_batches_give_what_pytest_alone_gives() {
    if !have_pytest() {
        return;
    }
    // 20 files of 50 tests: passes, failures, skips, xfails and setup errors.
    let mut expected = BTreeMap::new();
    let files: Vec<(String, String)> = (0..20)
        .map(|f| {
            let mut body = String::from(
                "import pytest\n\n\n@pytest.fixture\ndef broken():\n    raise RuntimeError('no')\n",
            );
            for t in 0..50 {
                let (code, status) = match (f * 50 + t) % 10 {
                    3 => ("    assert False\n".to_owned(), "failed"),
                    5 => ("    pytest.skip('later')\n".to_owned(), "skipped"),
                    7 => ("    assert False\n".to_owned(), "skipped"),
                    9 => (String::new(), "error"),
                    _ => ("    assert True\n".to_owned(), "passed"),
                };
                let (mark, args) = match status {
                    "skipped" if code.contains("assert") => ("@pytest.mark.xfail\n", ""),
                    "error" => ("", "broken"),
                    _ => ("", ""),
                };
                let code = if code.is_empty() {
                    "    pass\n".to_owned()
                } else {
                    code
                };
                body.push_str(&format!("\n\n{mark}def test_{t}({args}):\n{code}"));
                expected.insert(format!("test_f{f}.py::test_{t}"), status.to_owned());
            }
            (format!("test_f{f}.py"), body)
        })
        .collect();
    let dir = project(&files);
    let logs = tempfile::tempdir().unwrap();

    let alone_log = logs.path().join("alone.log");
    let xml = logs.path().join("alone.xml");
    let junit = format!("--junitxml={}", xml.display());
    common::local::alone(
        dir.path(),
        "python",
        &["-m", "pytest", &junit],
        &[("RUN_LOG", alone_log.to_str().unwrap())],
    );
    let alone_counts = common::local::junit_counts(&std::fs::read_to_string(&xml).unwrap());

    let log = logs.path().join("run.log");
    // A test's guessed estimate is 1s: a 2s target makes batches of two.
    let run = run_suite(dir.path(), 2, &log, "    batch: 2s\n", &[]);
    let statuses = run.statuses();
    let wrong: Vec<_> = (statuses.iter())
        .filter(|(id, status)| expected.get(*id) != Some(status))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}: {}", last_lines(&run.stderr));
    assert_eq!(statuses.len(), expected.len());
    assert_eq!(common::local::junit_counts(&run.junit), alone_counts);
    assert_eq!(run.code, 1, "tests failed: {}", run.stderr);
    let starts = starts(&log);
    assert!(
        runs(&starts).values().all(|&n| n == 1),
        "each test ran once"
    );
    assert_eq!(runs(&starts).len(), 1000);
    // Two sessions (one per worker's slot) ran all 500 batches, and are gone with the run.
    let pids = pids(&starts);
    assert_eq!(pids.len(), 2, "{pids:?}");
    for pid in pids {
        assert!(!common::alive(pid), "session {pid} outlived its worker");
    }
}

/// A file `test_s.py` of `count` tests `test_N`, test `special` with `body` (Python lines
/// indented by four spaces; `os`, `signal` and `time` are imported), the others passing.
fn tests_with(count: usize, special: usize, body: &str) -> Vec<(String, String)> {
    let mut text = String::from("import os\nimport signal\nimport time\n");
    for t in 0..count {
        let code = if t == special { body } else { "    pass\n" };
        text.push_str(&format!("\n\ndef test_{t}():\n{code}"));
    }
    vec![("test_s.py".to_owned(), text)]
}

/// Each test's final status, from the run's report.
fn outcomes(run: &LocalRun) -> BTreeMap<String, String> {
    run.statuses()
}

/// `ids` with `status`, as [`outcomes`] gives them.
fn all(count: usize, status: &str) -> BTreeMap<String, String> {
    (0..count)
        .map(|t| (format!("test_s.py::test_{t}"), status.to_owned()))
        .collect()
}

#[test]
fn a_session_killed_mid_test_loses_only_that_test() {
    if !have_pytest() {
        return;
    }
    // test_2 kills its session on its first run (SIGKILL, as a crash or the OOM killer).
    let body = "    crashed = os.environ['RUN_LOG'] + '.crashed'\n\
                \x20   if not os.path.exists(crashed):\n\
                \x20       open(crashed, 'w').close()\n\
                \x20       os.kill(os.getpid(), signal.SIGKILL)\n";
    let dir = project(&tests_with(6, 2, body));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("run.log");
    let run = run_suite(dir.path(), 1, &log, "    batch: 1h\n", &[]);
    assert_eq!(
        outcomes(&run),
        all(6, "passed"),
        "{}",
        last_lines(&run.stderr)
    );
    let starts = starts(&log);
    let runs = runs(&starts);
    let twice: Vec<&String> = runs
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(twice, ["test_s.py::test_2"], "{starts:?}");
    // The crashed session's tests before it kept their results; a new one ran the rest.
    let pids = pids(&starts);
    assert_eq!(pids.len(), 2, "{starts:?}");
}

#[test]
fn a_hanging_test_times_out_alone() {
    if !have_pytest() {
        return;
    }
    let dir = project(&tests_with(5, 2, "    time.sleep(300)\n"));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("run.log");
    let run = run_suite(dir.path(), 1, &log, "    batch: 1h\n    timeout: 2s\n", &[]);
    let mut want = all(5, "passed");
    want.insert("test_s.py::test_2".into(), "timed_out".into());
    assert_eq!(outcomes(&run), want, "{}", last_lines(&run.stderr));
    let starts = starts(&log);
    assert!(runs(&starts).values().all(|&n| n == 1), "{starts:?}");
    // The session stuck in the test was stopped; a new one ran the tests after it.
    let pids = pids(&starts);
    assert_eq!(pids.len(), 2, "{starts:?}");
    for pid in pids {
        assert!(!common::alive(pid), "session {pid} outlived the run");
    }
}

#[test]
fn a_worker_lost_mid_session_requeues_what_it_had_not_reported() {
    if !have_pytest() {
        return;
    }
    // test_5, on its first run, SIGKILLs the worker its session belongs to (the first
    // `cluster-action` among its ancestors).
    let body = "    lost = os.environ['RUN_LOG'] + '.lost'\n\
                \x20   if not os.path.exists(lost):\n\
                \x20       open(lost, 'w').close()\n\
                \x20       pid = os.getpid()\n\
                \x20       while pid > 1:\n\
                \x20           pid = int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])\n\
                \x20           if open(f'/proc/{pid}/comm').read().strip() == 'cluster-action':\n\
                \x20               os.kill(pid, signal.SIGKILL)\n\
                \x20               time.sleep(30)\n";
    let dir = project(&tests_with(10, 5, body));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("run.log");
    let args = ["--peer-timeout", "3s"];
    let run = run_suite(dir.path(), 2, &log, "    batch: 1s\n", &args);
    assert!(
        logs.path().join("run.log.lost").exists(),
        "a worker was killed"
    );
    assert_eq!(
        outcomes(&run),
        all(10, "passed"),
        "{}",
        last_lines(&run.stderr)
    );
    let starts = starts(&log);
    let lost = &starts
        .iter()
        .find(|(id, _)| id == "test_s.py::test_5")
        .unwrap()
        .1;
    // Every test ran to an end once, but those the lost worker's session ran and the worker
    // had not reported yet, which ran again elsewhere; that session died with its worker.
    let mut seen = BTreeMap::<&str, &str>::new();
    for (id, pid) in &starts {
        if let Some(first) = seen.insert(id, pid) {
            assert_eq!(first, lost, "{id} ran twice: {starts:?}");
        }
    }
    assert!(
        !common::alive(lost.parse().unwrap()),
        "the lost worker's session lives on"
    );
}

#[test]
fn the_sessions_collect_the_suite_while_it_is_listed() {
    if !have_pytest() {
        return;
    }
    // Three files of three tests. Imported on a worker, each file appends `FILE PID JOB` to
    // the imports log (JOB: the job its session was importing it for); imported by the
    // runner's listing, the first waits until workers imported all three (a minute at most):
    // only warm-ups can, as no batch starts before the listing ends.
    let logs = tempfile::tempdir().unwrap();
    let imports = logs.path().join("imports.log");
    let files: Vec<(String, String)> = (0..3)
        .map(|f| {
            let mut body = format!(
                "import os\nimport time\n\nIMPORTS = {imports:?}\n\n\
                 if os.environ.get('CLUSTER_SESSION'):\n    \
                 with open(IMPORTS, 'a') as log:\n        \
                 log.write(f\"test_w{f}.py {{os.getpid()}} {{os.environ['CLUSTER_JOB_NAME']}}\\n\")\n\
                 else:\n    \
                 def warmed():\n        \
                 try:\n            \
                 return len({{line.split()[0] for line in open(IMPORTS)}}) == 3\n        \
                 except OSError:\n            \
                 return False\n\n    \
                 deadline = time.monotonic() + 60\n    \
                 while not warmed() and time.monotonic() < deadline:\n        \
                 time.sleep(0.05)\n"
            );
            for t in 0..3 {
                body.push_str(&format!("\n\ndef test_{t}():\n    pass\n"));
            }
            (format!("test_w{f}.py"), body)
        })
        .collect();
    let dir = project(&files);
    let log = logs.path().join("run.log");
    let run = run_suite(dir.path(), 2, &log, "", &[]);
    assert_eq!(run.code, 0, "{}", last_lines(&run.stderr));
    assert_eq!(run.statuses().len(), 9);
    assert!(run.statuses().values().all(|s| s == "passed"));
    // The warm-ups are no jobs of the report.
    assert_eq!(common::local::junit_counts(&run.junit), (9, 0, 0, 0));
    assert!(!run.junit.contains("warm-up"), "{}", run.junit);

    let text = std::fs::read_to_string(&imports).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(3, ' ').collect()).collect();
    // Every file was imported by a warm-up, before any batch needed it, and no session
    // imported a file twice.
    let warmed: std::collections::BTreeSet<&str> = (lines.iter())
        .filter(|l| l[2] == "py warm-up")
        .map(|l| l[0])
        .collect();
    assert_eq!(warmed.len(), 3, "{text}");
    let mut seen = std::collections::BTreeSet::new();
    for line in &lines {
        assert!(seen.insert((line[0], line[1])), "imported twice: {text}");
    }
}

#[test]
fn a_batch_stops_the_warm_up_it_finds_running() {
    if !have_pytest() {
        return;
    }
    // Twenty files of one test, of which the suite selects the first file's. Imported on the
    // worker, each file appends `FILE PID JOB` to the imports log, and each but the first
    // takes a second once the runner's listing is done with the last file. Imported by the
    // listing, the first file waits until a worker imported it (a minute at most), which only
    // a warm-up can do. So the batch comes while the warm-up imports the second file, some
    // twenty seconds before it would be done.
    let logs = tempfile::tempdir().unwrap();
    let imports = logs.path().join("imports.log");
    let listed = logs.path().join("listed");
    let files: Vec<(String, String)> = (0..20)
        .map(|f| {
            let body = format!(
                "import os\nimport time\n\nIMPORTS = {imports:?}\nLISTED = {listed:?}\n\n\
                 def await_file(path):\n    \
                 deadline = time.monotonic() + 60\n    \
                 while not os.path.exists(path) and time.monotonic() < deadline:\n        \
                 time.sleep(0.05)\n\n\n\
                 if os.environ.get('CLUSTER_SESSION'):\n    \
                 if {f} > 0:\n        \
                 await_file(LISTED)\n        \
                 time.sleep(1)\n    \
                 with open(IMPORTS, 'a') as log:\n        \
                 log.write(f\"test_x{f:02}.py {{os.getpid()}} {{os.environ['CLUSTER_JOB_NAME']}}\\n\")\n\
                 elif {f} == 0:\n    \
                 await_file(IMPORTS)\n\
                 elif {f} == 19:\n    \
                 open(LISTED, 'w').close()\n\n\n\
                 def test_{f:02}():\n    pass\n"
            );
            (format!("test_x{f:02}.py"), body)
        })
        .collect();
    let dir = project(&files);
    let log = logs.path().join("run.log");
    let run = run_suite(dir.path(), 1, &log, "    args: [-k, x00]\n", &[]);
    assert_eq!(run.code, 0, "{}", last_lines(&run.stderr));
    let statuses = run.statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses["test_x00.py::test_00"], "passed");
    let text = std::fs::read_to_string(&imports).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(3, ' ').collect()).collect();
    assert_eq!(lines[0][0], "test_x00.py", "{text}");
    assert_eq!(lines[0][2], "py warm-up", "{text}");
    assert!(lines.len() < 20, "the warm-up went on: {text}");
    assert!(
        lines
            .iter()
            .all(|l| l[0] != "test_x00.py" || l == &lines[0]),
        "imported twice: {text}"
    );
}
