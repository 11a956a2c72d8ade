//! A suite of any tool: `list` prints one test id a line; `run` gets a batch's ids as its
//! arguments (`"$@"`) and in the file [`TESTS_FILE_ENV`] names, one a line, and writes JUnit to
//! the report file.

use std::path::{Path, PathBuf};

use super::process::output;
use super::{Listing, Suite, SuiteError, TestCase, ids_path, write_lines};

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

/// The variable naming the file that holds a batch's ids, one a line: a `run` that passes
/// `"$@"` to another program fails once the ids outgrow the kernel's limit on arguments
/// (about 2 MiB), one that reads this file does not.
pub const TESTS_FILE_ENV: &str = "CLUSTER_TESTS_FILE";

/// Runs the suite's `run` command with the batch's ids as positional arguments (set inside
/// bash, which has no limit on them) and in the file [`TESTS_FILE_ENV`] names.
pub(super) fn batch_command(suite: &Suite, run: &str, batch: &[TestCase]) -> String {
    let file = ids_path(suite);
    format!(
        "export {TESTS_FILE_ENV}={file}\n{}mapfile -t ids < \"${TESTS_FILE_ENV}\"\n\
         set -- \"${{ids[@]}}\"\nunset ids\n{run}\n",
        write_lines(&file, batch.iter().map(|case| case.id.as_str()))
    )
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
