//! pytest: node ids from `python -m pytest --collect-only -q` on the runner, batches run by
//! node id with pytest's own JUnit. The Python environment is the user's on every machine.

use std::path::Path;

use super::process::{Tool, on_path, run};
use super::{Listing, Suite, SuiteError, TestCase, TestStatus, shell_quote};

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

/// Collects the suite's node ids in `dir`.
pub(super) fn list(suite: &Suite, dir: &Path) -> Result<Listing, SuiteError> {
    let python = match on_path("python") {
        Some(python) => python,
        None => PYTHON.find(suite)?,
    };
    let mut args: Vec<String> = ["-m", "pytest", "--collect-only", "-q"]
        .map(str::to_owned)
        .to_vec();
    let rootdir = own_rootdir(&suite.args);
    args.extend(rootdir.map(str::to_owned));
    // Verbosity would change the listing's format; it still applies to the batches.
    args.extend(suite.args.iter().filter(|arg| !is_verbosity(arg)).cloned());
    let stdout = match run(suite, dir, &python, &args) {
        Ok(out) => out.stdout,
        Err(SuiteError::ListFailed { stderr_tail, .. })
            if stderr_tail.contains("No module named pytest") =>
        {
            let looked = format!("`{} -m pytest`: no module named pytest", python.display());
            return Err(PYTEST.missing(suite, looked));
        }
        Err(SuiteError::ListFailed { status, .. })
            if status.ends_with(&format!("exit status: {NO_TESTS_COLLECTED}")) =>
        {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&stdout);
    let tests = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.contains("::"))
        .map(|id| {
            let (file, name) = id.split_once("::").unwrap_or((id, id));
            TestCase {
                id: id.to_owned(),
                group: file.to_owned(),
                name: name.to_owned(),
                file: Some(file.to_owned()),
            }
        })
        .collect();
    let mut listing = Listing::new(suite, tests);
    // Paths among the arguments select what to collect; the rest are options for every run.
    listing.run_args = rootdir
        .into_iter()
        .map(str::to_owned)
        .chain(
            suite
                .args
                .iter()
                .filter(|arg| !arg.contains("::") && !dir.join(arg).exists())
                .cloned(),
        )
        .collect();
    Ok(listing)
}

/// [`ROOTDIR`], unless the suite's arguments choose a rootdir themselves.
fn own_rootdir(args: &[String]) -> Option<&'static str> {
    let chosen = args
        .iter()
        .any(|arg| arg == "--rootdir" || arg.starts_with("--rootdir="));
    (!chosen).then_some(ROOTDIR)
}

/// Whether `arg` sets pytest's verbosity (`-q`, `-vv`, `--quiet`, `--verbose`).
fn is_verbosity(arg: &str) -> bool {
    matches!(arg, "--quiet" | "--verbose")
        || arg
            .strip_prefix('-')
            .is_some_and(|flags| !flags.is_empty() && flags.bytes().all(|b| b == b'q' || b == b'v'))
}

/// Runs the batch's node ids with the suite's options (verbosity aside: the batch's own `-v`
/// prints the progress lines that stand in for the report until pytest's JUnit replaces it).
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let words: Vec<String> = listing
        .run_args
        .iter()
        .filter(|arg| !is_verbosity(arg))
        .map(String::as_str)
        .chain(batch.iter().map(|case| case.id.as_str()))
        .map(shell_quote)
        .collect();
    format!(
        "py=$(command -v python || command -v python3)\n\
         r=\"${}\"\n\
         \"$py\" -u -m pytest -v --junitxml=\"$r.xml\" {} | tee \"$r\"\n\
         status=${{PIPESTATUS[0]}}\n\
         if [ -f \"$r.xml\" ]; then mv \"$r.xml\" \"$r\"; fi\n\
         exit $status\n",
        super::REPORT_ENV,
        words.join(" ")
    )
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

    #[test]
    fn the_rootdir_is_the_listing_directory_unless_the_arguments_choose_one() {
        let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(own_rootdir(&args(&["tests/", "-x"])), Some("--rootdir=."));
        assert_eq!(own_rootdir(&args(&["--rootdir=tests"])), None);
        assert_eq!(own_rootdir(&args(&["--rootdir", "tests"])), None);
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
