//! The job manifest (YAML) and the commands file: what to run, checked completely before
//! anything is uploaded or scheduled.
//!
//! ```yaml
//! defaults:            # optional; every job and suite inherits these
//!   timeout: 10m       # per attempt (default 30m)
//!   retries: 1         # extra attempts after a failure (default 0)
//!   env: { RUST_BACKTRACE: "1" }
//!   secret-env: [API_TOKEN]   # passed from the runner's environment, masked in output;
//!                             # needs CLUSTER_SECRET (values travel sealed)
//!   layers: [app]
//!   quarantine: { auto: true }   # flaky tests that fail no run; see `flaky.rs`
//! layers:              # named file sets; paths relative to the manifest's directory, globs allowed
//!   app:
//!     paths: [target/release/myapp, tests/fixtures]
//!     allow-outside: false   # true: paths may resolve (through symlinks) outside it
//! jobs:
//!   - name: unit-1     # unique, printable
//!     run: ./target/release/myapp --suite unit-1   # `bash -c` in the job's directory
//!     estimate: 30s    # optional; the queue runs the longest first
//!     outputs: [reports/*.xml]   # files brought back to the runner
//!     # also per job: timeout, retries, env (merged over defaults.env), secret-env (added
//!     # to defaults.secret-env), layers (replaces defaults.layers), isolation (none | process | sandbox | sandbox-no-network)
//! suites:              # test suites the runner lists and batches itself; see `suites.rs`
//!   - name: rust
//!     framework: nextest    # nextest | pytest | go | jest | vitest | playwright | rspec | minitest | command
//! ```
//!
//! A manifest needs jobs, suites or both.
//!
//! Durations are whole numbers with units `ms`, `s`, `m`, `h` (`1h30m`), or a plain number of
//! seconds; see [`parse_duration`](crate::duration::parse_duration). Scalars are
//! taken as written: `VERSION: 1.10` sets `1.10`. Before any of that, `limits` bounds what
//! the YAML may cost to read (flow nesting depth, alias expansion).

mod commands;
mod error;
mod flaky;
mod limits;
mod locate;
mod schema;
mod suites;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use commands::from_commands;
pub use error::{Location, ManifestError, Problem};
pub use flaky::FlakySetting;
pub use suites::{DEFAULT_TEST_TIMEOUT, SuiteDef};

use crate::duration::millis;
use crate::input_file::{self, InputFileError};
use crate::layer::{Digest, Listed};
use crate::proto::{Isolation, JobDefaults, JobIndex, JobSpec, SecretEnv, Submission};

/// Time limit of one attempt when neither the job nor `defaults` sets one: long enough for
/// real test suites, short enough that a hung job does not hold a runner for hours.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Extra attempts after a failure when neither the job nor `defaults` sets them: a failing
/// test fails. (Jobs of a lost worker are requeued by the broker regardless.)
pub const DEFAULT_RETRIES: u32 = 0;

/// At most this many problems are shown, so that a broken generated manifest of 100,000 jobs
/// gives a readable message; the rest are counted.
const MAX_PROBLEMS: usize = 20;

/// A checked manifest: every job resolved against the defaults, every layer path expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The file it was read from, as given (for messages).
    pub path: PathBuf,
    /// The directory layer paths are relative to: the manifest's own.
    pub base_dir: PathBuf,
    /// Named file sets.
    pub layers: BTreeMap<String, LayerDef>,
    /// The jobs, in manifest order (a job's index is its [`JobIndex`]).
    pub jobs: Vec<JobDef>,
    /// The test suites, in manifest order.
    pub suites: Vec<SuiteDef>,
    /// What `defaults:` gives every job's environment (already merged into each
    /// [`JobDef`]); the runner sends it once and each job only what it sets itself.
    pub defaults: JobDefaults,
}

/// A named file set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDef {
    /// Existing files and directories (directories mean all they contain), relative to the
    /// manifest's directory, sorted, without duplicates; `.` is the directory itself.
    pub paths: Vec<PathBuf>,
    /// How the paths are packed: as entries of the manifest's directory, or (with
    /// `allow-outside: true`) resolved through symlinks, wherever they lead.
    pub listed: Listed,
}

/// One job with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDef {
    /// Unique, printable name.
    pub name: String,
    /// Shell command, run by `bash -c` in the job's directory.
    pub run: String,
    /// Environment: `defaults.env` overridden by the job's `env`.
    pub env: BTreeMap<String, String>,
    /// Names of the layers assembled into the job's directory, in order (later win).
    pub layers: Vec<String>,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Extra attempts after a failure.
    pub retries: u32,
    /// Globs, relative to the job's directory, of files brought back to the runner.
    pub outputs: Vec<String>,
    /// Expected duration; the queue runs the longest first.
    pub estimate: Option<Duration>,
    /// How far the job is kept apart from its worker and the other jobs.
    pub isolation: Isolation,
    /// `defaults.secret-env` and the job's `secret-env`, with their values from the runner's
    /// environment.
    pub secret_env: SecretEnv,
}

impl Manifest {
    /// The layers its jobs use, each counted once: the layer artifacts the runner's job
    /// uploads (see [`crate::budget::check_layers`]).
    pub fn layers_used(&self) -> u32 {
        let used: std::collections::BTreeSet<&String> = self
            .jobs
            .iter()
            .flat_map(|j| &j.layers)
            .filter(|l| self.layers.contains_key(*l))
            .collect();
        u32::try_from(used.len()).unwrap_or(u32::MAX)
    }
}

impl JobDef {
    /// The job as submitted to the broker. `layer_digests` are the digests of
    /// [`JobDef::layers`], in the same order.
    pub fn to_spec(&self, index: JobIndex, layer_digests: &[Digest]) -> Submission {
        self.clone().into_spec(index, layer_digests)
    }

    /// [`JobDef::to_spec`], giving this definition away (no copy of its strings).
    pub fn into_spec(self, index: JobIndex, layer_digests: &[Digest]) -> Submission {
        let spec = JobSpec {
            name: self.name,
            run: self.run,
            env: self.env,
            layers: layer_digests.to_vec(),
            timeout_ms: millis(self.timeout),
            retries: self.retries,
            outputs: self.outputs,
            estimate_ms: self.estimate.map(millis),
            expected_ms: None,
            isolation: self.isolation,
            secret_env: self.secret_env,
            inherits: false,
            avoid_workers: Vec::new(),
            session: None,
            progress: None,
        };
        Submission { index, spec }
    }
}

/// Reads and checks the manifest at `path`; layer paths are relative to its directory.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = read(path, None)?;
    parse(&text, path, &base_dir_of(path))
}

/// Checks the manifest `text`; `path` names it in messages, layer paths are relative to
/// `base_dir` (which must exist for them to match).
pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Manifest, ManifestError> {
    let base_dir = if base_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base_dir
    };
    let invalid = |problems: Vec<Problem>, omitted| ManifestError::Invalid {
        path: path.to_path_buf(),
        problems,
        omitted,
    };
    if let Err(excess) = limits::check(text) {
        let problem = Problem {
            location: excess.location,
            message: excess.message,
            hint: Some(excess.hint.to_owned()),
        };
        return Err(invalid(vec![problem], 0));
    }
    let raw: schema::Manifest =
        serde_yaml::from_str(text).map_err(|e| invalid(vec![syntax_problem(&e)], 0))?;
    let suites = suites::resolve(&raw);
    let wrote_layers: Vec<bool> = raw.suites.iter().map(|s| s.layers.is_some()).collect();
    let resolved = match (validate::resolve(raw, base_dir), suites) {
        (Ok((layers, jobs, defaults)), Ok(suites)) => {
            let findings = suites::check_workspaces(&suites, &layers, &wrote_layers);
            match findings.is_empty() {
                true => Ok((layers, jobs, defaults, suites)),
                false => Err(findings),
            }
        }
        (jobs, suites) => Err([jobs.err(), suites.err()]
            .into_iter()
            .flatten()
            .flatten()
            .collect()),
    };
    match resolved {
        Ok((layers, jobs, defaults, suites)) => Ok(Manifest {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            layers,
            jobs,
            suites,
            defaults,
        }),
        Err(findings) => {
            let omitted = findings.len().saturating_sub(MAX_PROBLEMS);
            let mut problems: Vec<Problem> = findings
                .into_iter()
                .take(MAX_PROBLEMS)
                .map(|finding| place(text, finding))
                .collect();
            problems.sort_by_key(|p| p.location);
            Err(invalid(problems, omitted))
        }
    }
}

/// Reads a manifest or commands file (named by `flag`, if by one): a regular file of at most
/// [`limits::MAX_FILE_BYTES`], in UTF-8.
fn read(path: &Path, flag: Option<&'static str>) -> Result<String, ManifestError> {
    let refused = |source| ManifestError::Read {
        path: path.to_path_buf(),
        flag,
        source,
    };
    let bytes = input_file::read_bounded(path, limits::MAX_FILE_BYTES).map_err(refused)?;
    String::from_utf8(bytes).map_err(|e| {
        let invalid = std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error());
        refused(InputFileError::Io(invalid))
    })
}

/// The directory of the file at `path` (`.` for a bare file name).
fn base_dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A finding with its location looked up in `text`.
fn place(text: &str, finding: validate::Finding) -> Problem {
    let mut message = finding.message;
    if let Some(first) = finding.first.and_then(|at| locate::locate(text, &at)) {
        message.push_str(&format!(" (first at line {})", first.line));
    }
    Problem {
        location: locate::locate(text, &finding.at),
        message,
        hint: finding.hint,
    }
}

/// Hints for serde_yaml's messages, by a phrase they contain; the first match wins.
const SYNTAX_HINTS: [(&str, &str); 5] = [
    (
        "unknown field",
        "check the spelling; the keys allowed here are listed above",
    ),
    ("written twice", "remove one of them"),
    ("duplicate field", "remove one of them"),
    ("expected u32", "retries is a whole number, 0 or more"),
    (
        "invalid type",
        "check the value's type and the indentation above it",
    ),
];

/// A YAML syntax or schema error (stops the parse) as a problem.
fn syntax_problem(error: &serde_yaml::Error) -> Problem {
    let location = error.location().map(|at| Location {
        line: at.line(),
        column: at.column(),
    });
    let mut message = error.to_string();
    if let Some(Location { line, column }) = location {
        // The location is shown in front; drop serde_yaml's copy of it.
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    let hint = SYNTAX_HINTS
        .iter()
        .find(|(symptom, _)| message.contains(symptom))
        .map_or(
            "check the indentation and quoting near this line",
            |(_, hint)| hint,
        );
    Problem {
        location,
        message,
        hint: Some(hint.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_shared_by_jobs_counts_once() {
        let names: Vec<String> = (0..3).map(|i| format!("l{i}")).collect();
        let job = |layers: Vec<String>| JobDef {
            name: "j".into(),
            run: "true".into(),
            env: BTreeMap::new(),
            layers,
            timeout: Duration::from_secs(1),
            retries: 0,
            outputs: vec![],
            estimate: None,
            isolation: Default::default(),
            secret_env: Default::default(),
        };
        let layer = || LayerDef {
            paths: vec![],
            listed: Listed::Entries,
        };
        let manifest = Manifest {
            path: PathBuf::from("m.yml"),
            base_dir: PathBuf::from("."),
            layers: names.iter().map(|n| (n.clone(), layer())).collect(),
            jobs: vec![job(names.clone()), job(names)],
            suites: Vec::new(),
            defaults: Default::default(),
        };
        assert_eq!(manifest.layers_used(), 3);
    }
}
