//! Why a suite could not be listed. Every case is bad input for the user to fix (exit 2):
//! the message names the command and what to do.

use std::path::PathBuf;

/// A suite that cannot be listed. Nothing is scheduled then.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The framework's command is not installed.
    #[error("suite '{suite}': `{command}` is not installed ({looked}); {install}")]
    ToolMissing {
        /// The suite.
        suite: String,
        /// The command looked for.
        command: String,
        /// Where it was looked for ("not found on PATH").
        looked: String,
        /// How to install it.
        install: &'static str,
    },
    /// The framework is installed in a version that lacks what a batch needs.
    #[error("suite '{suite}': `{command}` {found} is too old: {why}; {install}")]
    TooOld {
        /// The suite.
        suite: String,
        /// The framework's command.
        command: String,
        /// The version found, and where.
        found: String,
        /// What it lacks.
        why: &'static str,
        /// How to upgrade it.
        install: &'static str,
    },
    /// The listing (or build) command failed.
    #[error(
        "suite '{suite}': `{command}` failed ({status}); the end of its output:\n{stderr_tail}"
    )]
    ListFailed {
        /// The suite.
        suite: String,
        /// The command, as it would be typed.
        command: String,
        /// How it ended.
        status: String,
        /// The last lines of its standard error (or output).
        stderr_tail: String,
    },
    /// The listing ran but printed something it should not have.
    #[error("suite '{suite}': cannot read the output of `{command}`: {why}")]
    BadListing {
        /// The suite.
        suite: String,
        /// The command.
        command: String,
        /// What was wrong.
        why: String,
    },
    /// Nothing to run.
    #[error(
        "suite '{suite}': no tests match (arguments: {args:?}); check the suite's `args:` or \
         add tests"
    )]
    NoTests {
        /// The suite.
        suite: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// A file or directory for the suite's builds could not be made.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
