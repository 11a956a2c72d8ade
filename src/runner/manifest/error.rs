//! What is wrong with a manifest, said so that a user can fix it without reading our code:
//! every problem names the file, the line and column where known, and a hint.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::input_file::InputFileError;

/// A position in the manifest, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, when the YAML text has the offending node.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Why a manifest or commands file was refused. Nothing is uploaded or scheduled then.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read (or is not a regular file, or is too large).
    #[error("cannot read {}{}: {source}", flag.map(|f| format!("{f} ")).unwrap_or_default(), path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The flag that named it (`--commands`); none for the manifest.
        flag: Option<&'static str>,
        /// The underlying error.
        #[source]
        source: InputFileError,
    },
    /// The file was read but is not a valid manifest.
    #[error("{}", Listing { path, problems, omitted: *omitted })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems shown, in document order.
        problems: Vec<Problem>,
        /// How many more problems were found but left out to keep the message readable.
        omitted: usize,
    },
}

/// Displays problems one per line as `file:line:column: message`, each followed by its hint.
struct Listing<'a> {
    path: &'a Path,
    problems: &'a [Problem],
    omitted: usize,
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(Location { line, column }) = problem.location {
                write!(f, ":{line}:{column}")?;
            }
            write!(f, ": {}", problem.message)?;
            if let Some(hint) = &problem.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        if self.omitted > 0 {
            write!(
                f,
                "\n... and {} more problem{} in {}",
                self.omitted,
                if self.omitted == 1 { "" } else { "s" },
                self.path.display()
            )?;
        }
        Ok(())
    }
}
