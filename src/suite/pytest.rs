//! pytest: node ids from `python -m pytest --collect-only` on the runner, batches run by node
//! id with pytest's own JUnit. The Python environment is the user's on every machine.
//!
//! A project's configuration (`addopts`, plugins) applies as it does to `pytest` alone: its
//! `-m`, `-k` or `--ignore` decide what is collected. What it prints does not matter: the
//! listing reads the collected items through a plugin of ours ([`COLLECT_PLUGIN`]), not
//! pytest's output, and a batch's own options come after everything else, so that its
//! verbosity and its JUnit (path and prefix) win over the project's.
//!
//! A worker may keep a warm pytest per slot for a suite ([`session_command`]): a batch it
//! gives one hands its node ids over instead of starting pytest, and gets back the same
//! progress lines and JUnit, so that its report reads as any batch's.

use std::path::Path;

use super::process::{Tool, on_path, run};
use super::{
    Listing, SESSION_ENV, Suite, SuiteError, TestCase, TestStatus, WarmUp, ids_path, shell_quote,
    shell_words, write_lines,
};

/// The interpreter, looked up as `python`, then as this.
const PYTHON: Tool = Tool {
    program: "python3",
    install: "install Python 3 (in CI, actions/setup-python) and pytest (`python -m pip \
              install pytest`)",
};

/// pytest itself, when the interpreter lacks it.
const PYTEST: Tool = Tool {
    program: "pytest",
    install: "install it into the Python on PATH: `python -m pip install pytest`",
};

/// Pins pytest's rootdir to the directory the runner lists in and the batches run in: node
/// ids are relative to the rootdir, which pytest otherwise takes from an ini file or the
/// arguments' common ancestor (`tests/` for `--pytest tests/`), so a batch run from the
/// checkout would name files that are not there.
const ROOTDIR: &str = "--rootdir=.";

/// pytest's exit code when it collected no tests.
const NO_TESTS_COLLECTED: i32 = 5;

/// The listing's plugin (module `cluster_action_collect`): writes the collected node ids to
/// the file named by [`COLLECT_ENV`].
const COLLECT_PLUGIN: &str = include_str!("pytest_collect.py");

/// The module name [`COLLECT_PLUGIN`] is loaded under with `-p`.
const COLLECT_MODULE: &str = "cluster_action_collect";

/// The variable naming the file [`COLLECT_PLUGIN`] writes.
const COLLECT_ENV: &str = "CLUSTER_ACTION_COLLECT";

/// Collects the suite's node ids in `dir`.
pub(super) fn list(suite: &Suite, dir: &Path) -> Result<Listing, SuiteError> {
    let python = match on_path("python") {
        Some(python) => python,
        None => PYTHON.find(suite)?,
    };
    let parsed = parse(&suite.args);
    let text = collect(suite, dir, &python, listing_args(&parsed))?;
    let mut tests = Vec::new();
    for line in text.lines() {
        let id: String = serde_json::from_str(line).map_err(|e| SuiteError::BadListing {
            suite: suite.name.clone(),
            command: format!("{} -m pytest --collect-only", python.display()),
            why: format!("a node id that is not a JSON string ({e}): {line}"),
        })?;
        let (file, name) = id.split_once("::").unwrap_or((&id, &id));
        tests.push(TestCase {
            group: file.to_owned(),
            name: name.to_owned(),
            file: Some(file.to_owned()),
            id: id.clone(),
        });
    }
    let mut listing = Listing::new(suite, tests);
    listing.run_args = run_args(&parsed, |path| dir.join(path).exists());
    Ok(listing)
}

/// Runs pytest's collection with the suite's arguments `suite_args` in `dir`, with
/// [`COLLECT_PLUGIN`] loaded, and returns what the plugin wrote: one JSON string (a node id)
/// a line.
fn collect(
    suite: &Suite,
    dir: &Path,
    python: &Path,
    suite_args: Vec<String>,
) -> Result<String, SuiteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SuiteError::Io { path, source }
    };
    let plugin = tempfile::tempdir().map_err(io(&std::env::temp_dir()))?;
    let module = plugin.path().join(format!("{COLLECT_MODULE}.py"));
    std::fs::write(&module, COLLECT_PLUGIN).map_err(io(&module))?;
    let collected = plugin.path().join("collected");
    std::fs::write(&collected, "").map_err(io(&collected))?;
    let mut args: Vec<String> = ["-m", "pytest", "-p", COLLECT_MODULE, "--collect-only"]
        .map(str::to_owned)
        .to_vec();
    args.extend(suite_args);
    // The plugin's directory first on PYTHONPATH, so that `-p` finds it.
    let inherited = std::env::var_os("PYTHONPATH").unwrap_or_default();
    let python_path = std::env::join_paths(
        std::iter::once(plugin.path().to_path_buf())
            .chain(std::env::split_paths(&inherited).filter(|p| !p.as_os_str().is_empty())),
    )
    .unwrap_or_else(|_| plugin.path().as_os_str().to_owned());
    let env = [
        (COLLECT_ENV, collected.as_os_str()),
        ("PYTHONPATH", python_path.as_os_str()),
    ];
    match run(suite, dir, python, &args, &env) {
        Ok(_) => {}
        Err(SuiteError::ListFailed { stderr_tail, .. })
            if stderr_tail.contains("No module named pytest") =>
        {
            let looked = format!("`{} -m pytest`: no module named pytest", python.display());
            return Err(PYTEST.missing(suite, looked));
        }
        Err(SuiteError::ListFailed { status, .. })
            if status.ends_with(&format!("exit status: {NO_TESTS_COLLECTED}")) => {}
        Err(e) => return Err(e),
    }
    std::fs::read_to_string(&collected).map_err(io(&collected))
}

/// pytest's options that take a value, which may be the next word (`-k EXPR`, `--rootdir
/// DIR`): pytest's own (9.x, `pytest --help`) and those of plugins users commonly pass
/// (xdist, pytest-cov, pytest-timeout, pytest-rerunfailures). The value of an option not
/// named here still reaches the batches unless it is an existing path or a node id.
const VALUE_OPTIONS: &[&str] = &[
    "-k",
    "-m",
    "-c",
    "-p",
    "-o",
    "-W",
    "-r",
    "-n",
    "--maxfail",
    "--pythonwarnings",
    "--max-warnings",
    "--ignore",
    "--ignore-glob",
    "--deselect",
    "--confcutdir",
    "--import-mode",
    "--config-file",
    "--rootdir",
    "--basetemp",
    "--durations",
    "--durations-min",
    "--debug",
    "--override-ini",
    "--verbosity",
    "--report-chars",
    "--tb",
    "--show-capture",
    "--color",
    "--code-highlight",
    "--pdbcls",
    "--capture",
    "--pastebin",
    "--assert",
    "--junitxml",
    "--junit-xml",
    "--junitprefix",
    "--junit-prefix",
    "--doctest-report",
    "--doctest-glob",
    "--cache-show",
    "--lfnf",
    "--last-failed-no-failures",
    "--log-level",
    "--log-format",
    "--log-date-format",
    "--log-cli-level",
    "--log-cli-format",
    "--log-cli-date-format",
    "--log-file",
    "--log-file-mode",
    "--log-file-level",
    "--log-file-format",
    "--log-file-date-format",
    "--log-auto-indent",
    "--log-disable",
    "--numprocesses",
    "--maxprocesses",
    "--dist",
    "--cov",
    "--cov-report",
    "--cov-config",
    "--cov-fail-under",
    "--cov-context",
    "--timeout",
    "--timeout-method",
    "--reruns",
    "--reruns-delay",
    "--only-rerun",
];

/// One argument of a suite as pytest's parser reads it: an option with its value when the
/// value is the next word, or a positional (a path or node id to collect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg<'a> {
    /// An option: its words (one, or the option and its value).
    Option(&'a [String]),
    /// A positional argument.
    Positional(&'a str),
}

impl Arg<'_> {
    /// The option's name (`--rootdir` of `--rootdir=x`), `None` for a positional.
    fn option_name(&self) -> Option<&str> {
        match self {
            Arg::Option(words) => words.first().map(|w| w.split('=').next().unwrap_or(w)),
            Arg::Positional(_) => None,
        }
    }

    /// Whether it sets pytest's verbosity (`-q`, `-vv`, `--quiet`, `--verbose`,
    /// `--verbosity N`).
    fn is_verbosity(&self) -> bool {
        match self.option_name() {
            Some("--quiet" | "--verbose" | "--verbosity") => true,
            Some(name) => name.strip_prefix('-').is_some_and(|flags| {
                !flags.is_empty() && flags.bytes().all(|b| b == b'q' || b == b'v')
            }),
            None => false,
        }
    }
}

/// The suite's arguments read as pytest's parser reads them (no abbreviated long options, as
/// pytest sets): an option in [`VALUE_OPTIONS`] takes the next word unless it has its value
/// (`--rootdir=x`, `-kEXPR`, `-xkEXPR`) or the next word is an option; after `--` every word
/// is a positional.
fn parse(args: &[String]) -> Vec<Arg<'_>> {
    let mut parsed = Vec::with_capacity(args.len());
    let mut at = 0;
    while let Some(word) = args.get(at) {
        if word == "--" {
            parsed.extend(args[at + 1..].iter().map(|w| Arg::Positional(w)));
            break;
        }
        let takes_next = word.starts_with('-')
            && wants_next_word(word)
            && args.get(at + 1).is_some_and(|next| !next.starts_with('-'));
        let len = if takes_next { 2 } else { 1 };
        parsed.push(match word.starts_with('-') && word.len() > 1 {
            true => Arg::Option(&args[at..at + len]),
            false => Arg::Positional(word),
        });
        at += len;
    }
    parsed
}

/// Whether the option `word` takes its value from the next word: a long option in
/// [`VALUE_OPTIONS`] without `=value`, or short flags whose first value-taking letter ends
/// the word (`-k`, `-xk`; not `-kEXPR`).
fn wants_next_word(word: &str) -> bool {
    if word.starts_with("--") {
        return !word.contains('=') && VALUE_OPTIONS.contains(&word);
    }
    let letters = word.trim_start_matches('-');
    letters
        .char_indices()
        .find(|(_, c)| VALUE_OPTIONS.contains(&format!("-{c}").as_str()))
        .is_some_and(|(at, c)| at + c.len_utf8() == letters.len())
}

/// What the listing passes to pytest: the suite's arguments but verbosity (nothing the
/// listing prints is read), with [`ROOTDIR`] first unless they choose a rootdir themselves.
fn listing_args(parsed: &[Arg<'_>]) -> Vec<String> {
    let rootdir = own_rootdir(parsed).map(str::to_owned);
    rootdir
        .into_iter()
        .chain(
            parsed
                .iter()
                .filter(|arg| !arg.is_verbosity())
                .flat_map(words),
        )
        .collect()
}

/// What every batch passes to pytest before its node ids: [`ROOTDIR`] unless the arguments
/// choose one, and every option with its value (verbosity aside: the batch's own `-v` prints
/// the progress lines that stand in for the report until pytest's JUnit replaces it), but
/// not the positionals that selected what to collect: node ids and paths that `exists`.
fn run_args(parsed: &[Arg<'_>], exists: impl Fn(&str) -> bool) -> Vec<String> {
    let rootdir = own_rootdir(parsed).map(str::to_owned);
    let kept = parsed.iter().filter(|arg| match arg {
        Arg::Option(_) => !arg.is_verbosity(),
        Arg::Positional(word) => !selects(word, &exists),
    });
    rootdir.into_iter().chain(kept.flat_map(words)).collect()
}

/// Whether the positional argument `word` selects what to collect: a node id, or a path that
/// `exists` (the others are values pytest takes as they are).
fn selects(word: &str, exists: impl Fn(&str) -> bool) -> bool {
    word.contains("::") || exists(word)
}

/// The words of one argument.
fn words(arg: &Arg<'_>) -> Vec<String> {
    match arg {
        Arg::Option(words) => words.to_vec(),
        Arg::Positional(word) => vec![(*word).to_owned()],
    }
}

/// [`ROOTDIR`], unless the suite's arguments choose a rootdir themselves.
fn own_rootdir(parsed: &[Arg<'_>]) -> Option<&'static str> {
    let chosen = parsed
        .iter()
        .any(|arg| arg.option_name() == Some("--rootdir"));
    (!chosen).then_some(ROOTDIR)
}

/// The batch's own options, after the suite's and the configuration's `addopts` (which
/// pytest puts first), so that they win: the verbosity that prints the progress lines
/// [`progress_line`] reads (not a count a `-q` would lower), and a JUnit at the batch's path
/// with the class names [`junit_key`] expects (no `--junit-prefix`).
const BATCH_OPTIONS: &str = "--verbosity=1 --junitxml=\"$r.xml\" --junit-prefix=";

/// What a batch runs with `python -c`, given the file of its node ids and pytest's arguments:
/// pytest on the files of those ids, keeping only those tests. Neither the ids nor the files
/// are arguments of any process (there may be too many), and pytest does not have to find each
/// node id on its own, which takes time quadratic in their number (85 s for 20,000). The file
/// is split at line feeds alone (`newline=""`): a carriage return in an id (a raw parameter
/// id) is part of it.
const RUN_BATCH: &str = r#"import sys

import pytest

with open(sys.argv[1], encoding="utf-8", newline="") as lines:
    tests = lines.read().split("\n")[:-1]
files = list(dict.fromkeys(test.split("::", 1)[0] for test in tests))
tests = set(tests)


class Batch:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        others = [item for item in items if item.nodeid not in tests]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [item for item in items if item.nodeid in tests]


sys.exit(pytest.main(sys.argv[2:] + files, plugins=[Batch()]))
"#;

/// Runs the batch's tests: handed to the worker's warm session when it gives the batch one
/// ([`SESSION_ENV`], see [`session_command`]), through [`SESSION_CLIENT`]; otherwise with a
/// pytest of their own ([`RUN_BATCH`]), with the suite's options ([`run_args`]), then
/// [`BATCH_OPTIONS`].
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    format!(
        "{}py=$(command -v python || command -v python3)\n\
         r=\"${}\"\n\
         if [ -n \"${{{SESSION_ENV}:-}}\" ]; then\n\
         exec \"$py\" -u -c {} {} \"$r\"\n\
         fi\n\
         \"$py\" -u -c {} {} {} {BATCH_OPTIONS} | tee \"$r\"\n\
         status=${{PIPESTATUS[0]}}\n\
         if [ -f \"$r.xml\" ]; then mv \"$r.xml\" \"$r\"; fi\n\
         exit $status\n",
        write_lines(
            &ids_path(&listing.suite),
            batch.iter().map(|c| c.id.as_str())
        ),
        super::REPORT_ENV,
        shell_quote(SESSION_CLIENT),
        ids_path(&listing.suite),
        shell_quote(RUN_BATCH),
        ids_path(&listing.suite),
        shell_words(&listing.run_args),
    )
}

/// The warm session ([`SESSION_SERVER`]): one pytest that collects a file when a batch first
/// needs it and runs the batches it is handed over a unix socket, each with pytest's own
/// JUnit and progress, as a batch's own pytest would write them.
const SESSION_SERVER: &str = include_str!("pytest_session.py");

/// What a batch runs when the worker gave it a session: hands it the batch's node ids and
/// writes the report from what it sends back.
const SESSION_CLIENT: &str = include_str!("pytest_client.py");

/// The `bash -c` command a worker runs, in a directory holding the suite's layers and with
/// [`SESSION_ENV`] naming a fresh control directory, to start a warm session of the suite:
/// pytest with the suite's options and those of a batch (but its JUnit, which the session
/// writes per batch). It writes `ready` to its output once batches can connect.
pub(super) fn session_command(listing: &Listing) -> String {
    session_start(&listing.run_args)
}

/// [`session_command`] for a suite whose options ([`run_args`]) are `run_args`.
fn session_start(run_args: &[String]) -> String {
    format!(
        "py=$(command -v python || command -v python3)\n\
         exec \"$py\" -u -c {} {} --verbosity=1 --junit-prefix=\n",
        shell_quote(SESSION_SERVER),
        shell_words(run_args),
    )
}

/// The warm-up of `suite`'s sessions, known before it is listed in `dir`: the session that
/// [`session_command`] will start for its batches, and a job that has it collect what the
/// suite's arguments select (its paths and node ids; pytest's default without any), as
/// `pytest -n` collects in each of its processes. Run by a worker's free slots while the
/// runner lists the suite, it makes the batches find their files collected.
pub(super) fn warm_up(suite: &Suite, dir: &Path) -> WarmUp {
    let parsed = parse(&suite.args);
    let exists = |path: &str| dir.join(path).exists();
    let selected: Vec<String> = parsed
        .iter()
        .filter_map(|arg| match arg {
            Arg::Positional(word) if selects(word, exists) => Some(shell_quote(word)),
            _ => None,
        })
        .collect();
    WarmUp {
        session: session_start(&run_args(&parsed, exists)),
        run: format!(
            "if [ -n \"${{{SESSION_ENV}:-}}\" ]; then\n\
             py=$(command -v python || command -v python3)\n\
             exec \"$py\" -u -c {} --warm {}\n\
             fi\n",
            shell_quote(SESSION_CLIENT),
            selected.join(" "),
        ),
    }
}

/// A `-v` progress line, `path::test[p] PASSED   [ 50%]`: the test's key and status.
pub(super) fn progress_line(line: &str) -> Option<(String, TestStatus, u64)> {
    let line = match line.rfind(" [") {
        Some(at) if line.trim_end().ends_with("%]") => &line[..at],
        _ => line,
    };
    let (id, word) = line.trim_end().rsplit_once(' ')?;
    let status = match word {
        "PASSED" | "XPASS" => TestStatus::Passed,
        "FAILED" => TestStatus::Failed,
        "ERROR" => TestStatus::Error,
        "SKIPPED" | "XFAIL" => TestStatus::Skipped,
        _ => return None,
    };
    id.contains("::").then(|| (mangle(id.trim()), status, 0))
}

/// A line `-v` leaves when a test started and has not finished (its node id, the status
/// comes on the same line at its end): the test's key.
pub(super) fn started_line(line: &str) -> Option<String> {
    let id = line.trim();
    let plain = id.contains("::") && !id.contains(" - ") && progress_line(line).is_none();
    plain.then(|| mangle(id))
}

/// pytest's JUnit names a test by a class name made from its node id and a name.
pub(super) fn junit_key(classname: &str, name: &str) -> Vec<String> {
    vec![format!("{classname}\u{0}{name}")]
}

/// The key [`junit_key`] gives `case`: its node id mangled as pytest's junitxml plugin does
/// (`dir/test_a.py::Class::test[p]` is class `dir.test_a.Class`, name `test[p]`).
pub(super) fn case_key(case: &TestCase) -> String {
    mangle(&case.id)
}

/// A node id as the key [`junit_key`] makes of pytest's JUnit names.
fn mangle(id: &str) -> String {
    let (path, params) = match id.find('[') {
        Some(open) => id.split_at(open),
        None => (id, ""),
    };
    let mut names: Vec<String> = path.split("::").map(str::to_owned).collect();
    names[0] = names[0].replace('/', ".");
    if let Some(module) = names[0].strip_suffix(".py") {
        names[0] = module.to_owned();
    }
    let name = names.pop().unwrap_or_default() + params;
    format!("{}\u{0}{name}", names.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> String {
        case_key(&TestCase {
            id: id.into(),
            group: String::new(),
            name: String::new(),
            file: None,
        })
        .replace('\u{0}', " | ")
    }

    #[test]
    fn progress_lines_name_a_test_and_its_status() {
        let line = "sub/test_a.py::test_x[a b] FAILED                               [ 50%]";
        let (key, status, _) = progress_line(line).unwrap();
        assert_eq!(
            (key.as_str(), status),
            ("sub.test_a\u{0}test_x[a b]", TestStatus::Failed)
        );
        assert_eq!(
            progress_line("test_a.py::t PASSED").unwrap().1,
            TestStatus::Passed
        );
        assert!(progress_line("collected 7 items").is_none());
        assert!(progress_line("=== 1 failed, 6 passed in 1.6s ===").is_none());
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    /// The listing's and the batches' arguments for `args`, in a directory holding `tests/`,
    /// `sub/` and `pytest.ini`.
    fn split(args: &[&str]) -> (Vec<String>, Vec<String>) {
        let args = strings(args);
        let parsed = parse(&args);
        let exists = |path: &str| ["tests", "tests/", "sub", "pytest.ini", "."].contains(&path);
        (listing_args(&parsed), run_args(&parsed, exists))
    }

    #[test]
    fn the_rootdir_is_the_listing_directory_unless_the_arguments_choose_one() {
        let own = |list: &[&str]| own_rootdir(&parse(&strings(list)));
        assert_eq!(own(&["tests/", "-x"]), Some("--rootdir=."));
        assert_eq!(own(&["--rootdir=tests"]), None);
        assert_eq!(own(&["--rootdir", "tests"]), None);
        assert_eq!(own(&["-k", "rootdir", "--rootdir"]), None);
    }

    #[test]
    fn options_reach_the_batches_with_their_values_in_either_spelling() {
        for pair in [
            ["--rootdir", "sub"],
            ["-c", "pytest.ini"],
            ["--config-file", "pytest.ini"],
            ["-k", "tests"],
            ["-k", "a::b"],
            ["-m", "not slow"],
            ["-p", "no:cacheprovider"],
            ["--confcutdir", "tests"],
            ["--ignore", "tests/"],
            ["--deselect", "tests/test_a.py::test_x"],
            ["--basetemp", "."],
            ["-o", "xfail_strict=true"],
        ] {
            let (listing, run) = split(&["tests/", pair[0], pair[1], "-x"]);
            let rootdir = pair[0] != "--rootdir";
            let own: &[&str] = if rootdir { &["--rootdir=."] } else { &[] };
            let expect = |words: &[&str]| strings(&[own, words].concat());
            assert_eq!(
                listing,
                expect(&["tests/", pair[0], pair[1], "-x"]),
                "{pair:?}"
            );
            assert_eq!(run, expect(&[pair[0], pair[1], "-x"]), "{pair:?}");
            let glued = format!("{}={}", pair[0], pair[1]);
            let glued = match pair[0].starts_with("--") {
                true => glued,
                false => format!("{}{}", pair[0], pair[1]),
            };
            let (_, run) = split(&[glued.as_str(), "tests/"]);
            assert_eq!(run, expect(&[&glued]), "{glued}");
        }
    }

    #[test]
    fn paths_and_node_ids_select_and_only_the_listing_gets_them() {
        let (listing, run) = split(&["tests/", "sub", "tests/test_a.py::test_x", "-x"]);
        assert_eq!(
            listing,
            strings(&[
                "--rootdir=.",
                "tests/",
                "sub",
                "tests/test_a.py::test_x",
                "-x"
            ])
        );
        assert_eq!(run, strings(&["--rootdir=.", "-x"]));
        // A word pytest reads as a path after `--`, and flags before a value-taking letter.
        let (_, run) = split(&["-xk", "tests", "--", "-k"]);
        assert_eq!(run, strings(&["--rootdir=.", "-xk", "tests", "-k"]));
        let (_, run) = split(&["-kfoo", "tests"]);
        assert_eq!(
            run,
            strings(&["--rootdir=.", "-kfoo"]),
            "-k's value is glued"
        );
        // An unknown option's value that is not a path stays with it.
        let (_, run) = split(&["--plugin-opt", "value", "tests"]);
        assert_eq!(run, strings(&["--rootdir=.", "--plugin-opt", "value"]));
    }

    #[test]
    fn verbosity_is_left_out_of_the_listing_and_the_batches_but_not_a_value() {
        let (listing, run) = split(&["-vv", "--quiet", "--verbosity", "2", "-k", "v", "tests"]);
        assert_eq!(listing, strings(&["--rootdir=.", "-k", "v", "tests"]));
        assert_eq!(run, strings(&["--rootdir=.", "-k", "v"]));
    }

    #[test]
    fn the_batchs_own_options_come_after_the_suites() {
        let suite = Suite {
            name: "py".into(),
            framework: super::super::Framework::Pytest,
            args: strings(&["--junitxml=mine.xml", "-q", "tests/"]),
        };
        let case = TestCase {
            id: "tests/test_a.py::t".into(),
            group: String::new(),
            name: String::new(),
            file: None,
        };
        let mut listing = Listing::new(&suite, vec![case.clone()]);
        listing.run_args = run_args(&parse(&suite.args), |path| path == "tests/");
        let command = batch_command(&listing, &[case]);
        let run = command.lines().find(|l| l.contains(" | tee ")).unwrap();
        let at = |word: &str| run.find(word).unwrap();
        assert!(
            run.find("mine.xml")
                .is_none_or(|user| user < at(BATCH_OPTIONS)),
            "{command}"
        );
        assert!(
            !run.contains("tests/test_a.py::t"),
            "ids come in a file: {command}"
        );
        assert!(!command.contains(" -q "), "{command}");
    }

    #[test]
    fn node_ids_mangle_as_junitxml_does() {
        assert_eq!(key("test_a.py::test_x"), "test_a | test_x");
        assert_eq!(
            key("tests/sub/test_a.py::TestC::test_x[a::b/c]"),
            "tests.sub.test_a.TestC | test_x[a::b/c]"
        );
    }
}
