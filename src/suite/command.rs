//! A suite of any tool: `list` prints one test id a line; `run` gets a batch's ids as its
//! arguments (`"$@"`) and writes JUnit to the report file.

use std::path::{Path, PathBuf};

use super::process::output;
use super::{Listing, Suite, SuiteError, TestCase, shell_quote};

/// Runs the suite's `list` command in `dir`; each non-blank line is a test id.
pub(super) fn list(suite: &Suite, list: &str, dir: &Path) -> Result<Listing, SuiteError> {
    let bash = PathBuf::from("bash");
    let stdout = output(suite, dir, &bash, &["-c".to_owned(), list.to_owned()])?;
    let tests = String::from_utf8_lossy(&stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|id| TestCase {
            id: id.to_owned(),
            group: suite.name.clone(),
            name: id.to_owned(),
            file: None,
        })
        .collect();
    Ok(Listing::new(suite, tests))
}

/// Runs the suite's `run` command with the batch's ids as positional arguments.
pub(super) fn batch_command(run: &str, batch: &[TestCase]) -> String {
    let ids: Vec<String> = batch.iter().map(|case| shell_quote(&case.id)).collect();
    format!("set -- {}\n{run}\n", ids.join(" "))
}

/// A test id may be a JUnit test case's name, or its class name and name joined by `.`,
/// `::`, `/` or a space: whichever the tool writes.
pub(super) fn junit_key(classname: &str, name: &str) -> Vec<String> {
    let mut keys = vec![name.to_owned()];
    if !classname.is_empty() {
        keys.extend([".", "::", "/", " "].map(|sep| format!("{classname}{sep}{name}")));
    }
    keys
}
