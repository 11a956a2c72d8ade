//! pytest: node ids from `python -m pytest --collect-only -q` on the runner, batches run by
//! node id with pytest's own JUnit. The Python environment is the user's on every machine.

use std::path::Path;

use super::process::{Tool, on_path, run};
use super::{Listing, Suite, SuiteError, TestCase, shell_quote};

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
    // Verbosity would change the listing's format; it still applies to the batches.
    args.extend(suite.args.iter().filter(|arg| !is_verbosity(arg)).cloned());
    let stdout = match run(suite, dir, &python, &args) {
        Ok(out) => out.stdout,
        Err(SuiteError::ListFailed { stderr_tail, .. })
            if stderr_tail.contains("No module named pytest") =>
        {
            return Err(PYTEST.missing(suite));
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
    listing.run_args = suite
        .args
        .iter()
        .filter(|arg| !arg.contains("::") && !dir.join(arg).exists())
        .cloned()
        .collect();
    Ok(listing)
}

/// Whether `arg` sets pytest's verbosity (`-q`, `-vv`, `--quiet`, `--verbose`).
fn is_verbosity(arg: &str) -> bool {
    matches!(arg, "--quiet" | "--verbose")
        || arg
            .strip_prefix('-')
            .is_some_and(|flags| !flags.is_empty() && flags.bytes().all(|b| b == b'q' || b == b'v'))
}

/// Runs the batch's node ids with the suite's options, JUnit to the report file.
pub(super) fn batch_command(listing: &Listing, batch: &[TestCase]) -> String {
    let words: Vec<String> = listing
        .run_args
        .iter()
        .map(String::as_str)
        .chain(batch.iter().map(|case| case.id.as_str()))
        .map(shell_quote)
        .collect();
    format!(
        "py=$(command -v python || command -v python3)\n\
         exec \"$py\" -m pytest --junitxml=\"${}\" {}\n",
        super::REPORT_ENV,
        words.join(" ")
    )
}

/// pytest's JUnit names a test by a class name made from its node id and a name.
pub(super) fn junit_key(classname: &str, name: &str) -> Vec<String> {
    vec![format!("{classname}\u{0}{name}")]
}

/// The key [`junit_key`] gives `case`: its node id mangled as pytest's junitxml plugin does
/// (`dir/test_a.py::Class::test[p]` is class `dir.test_a.Class`, name `test[p]`).
pub(super) fn case_key(case: &TestCase) -> String {
    let (path, params) = match case.id.find('[') {
        Some(open) => case.id.split_at(open),
        None => (case.id.as_str(), ""),
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
    fn node_ids_mangle_as_junitxml_does() {
        assert_eq!(key("test_a.py::test_x"), "test_a | test_x");
        assert_eq!(
            key("tests/sub/test_a.py::TestC::test_x[a::b/c]"),
            "tests.sub.test_a.TestC | test_x[a::b/c]"
        );
    }
}
