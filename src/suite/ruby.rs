//! The part RSpec and Minitest suites share: each runs through a small Ruby script of
//! cluster-action's ([`Script`]), embedded in the binary, written beside the suite's builds on
//! the runner for its listing and shipped to the workers for the batches. A script loads its
//! framework itself (after the project's bundle, when it has a Gemfile), so a framework Ruby
//! cannot load is named with how to install it, as a missing command is.

use std::path::{Path, PathBuf};

use super::process::{Tool, run};
use super::{Shipped, Suite, SuiteError, shell_quote, ship_dest};

/// The start of every [`Script`]: the bundle, and `cluster_action_require`, which loads the
/// framework or says it cannot.
const PRELUDE: &str = include_str!("ruby_prelude.rb");

/// A Ruby script of cluster-action's that runs a framework.
pub(super) struct Script {
    /// Its file name, on the runner and among the shipped files.
    pub file: &'static str,
    /// Its text, after [`PRELUDE`].
    pub text: &'static str,
    /// Ruby, with how to install it and the framework.
    pub ruby: Tool,
    /// The framework's gem, with how to install it.
    pub gem: Tool,
    /// What the script loads with `cluster_action_require`, which prints `cluster-action:
    /// cannot load FEATURE` when it cannot.
    pub feature: &'static str,
}

impl Script {
    /// Writes the script under `work` and runs it with `args` in `dir`: its output, or the
    /// framework missing ([`SuiteError::ToolMissing`]), or how it failed
    /// ([`SuiteError::ListFailed`], for the caller to read more closely).
    pub fn run_listing(
        &self,
        suite: &Suite,
        dir: &Path,
        work: &Path,
        args: &[String],
    ) -> Result<std::process::Output, SuiteError> {
        let ruby = self.ruby.find(suite)?;
        let script = self.path(work);
        std::fs::write(&script, [PRELUDE, self.text].concat()).map_err(|source| {
            SuiteError::Io {
                path: script.clone(),
                source,
            }
        })?;
        let mut all = vec![script.display().to_string()];
        all.extend(args.iter().cloned());
        match run(suite, dir, &ruby, &all, &[]) {
            Err(SuiteError::ListFailed { stderr_tail, .. })
                if stderr_tail
                    .contains(&format!("cluster-action: cannot load {}", self.feature)) =>
            {
                let looked = format!(
                    "`{} -e 'require \"{}\"'`: cannot load it",
                    ruby.display(),
                    self.feature
                );
                Err(self.gem.missing(suite, looked))
            }
            result => result,
        }
    }

    /// Where [`Script::run_listing`] writes it under `work`.
    fn path(&self, work: &Path) -> PathBuf {
        work.join(self.file)
    }

    /// The script, written under `work`, as a file to ship with every batch.
    pub fn shipped(&self, suite: &Suite, work: &Path) -> Shipped {
        Shipped {
            source: self.path(work),
            dest: ship_dest(suite, self.file),
        }
    }

    /// The shell words that run the shipped script in a batch (arguments to follow).
    pub fn batch_words(&self, suite: &Suite) -> String {
        let dest = ship_dest(suite, self.file).display().to_string();
        format!("ruby \"$PWD\"/{}", shell_quote(&dest))
    }
}
