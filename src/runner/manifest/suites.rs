//! The manifest's `suites:` section: test suites the runner lists and splits into batches
//! itself, beside (or instead of) `jobs:`.
//!
//! ```yaml
//! suites:
//!   - name: rust
//!     framework: nextest     # nextest | pytest | go | jest | vitest | playwright | rspec | minitest | command
//!     args: [--workspace]    # for listing and running
//!     layers: [app]          # what workers need besides what the framework ships
//!     batch: 30s             # target time per batch (default: from the suite and the slots)
//!     retries: 2             # per test (default: defaults.retries, else 0)
//!     timeout: 2m            # per test (default: defaults.timeout, else 10m)
//!     env: { DB_URL: "sqlite://" }   # merged over defaults.env
//!     secret-env: [API_TOKEN]        # added to defaults.secret-env
//!     isolation: sandbox     # default: defaults.isolation, else process
//!     session: false         # a warm framework process per slot runs the batches (default:
//!                            # on where the framework has them (pytest) and isolation allows)
//!     quarantine: { auto: true, tests: [slow_test] }   # over defaults.quarantine (flaky.rs)
//!     detect-new-flakes: true   # new tests run 3 times (new-test-runs, new-test-share)
//!   - name: py
//!     framework: pytest
//!     args: [tests/]
//!     split: file            # test | file: a file's tests stay in one batch (default: the
//!                            # framework's, Framework::default_split)
//!   - name: anything
//!     framework: command
//!     list: ./list-tests.sh  # prints one test id a line
//!     run: ./run-tests.sh "$@"   # gets the ids as arguments, writes JUnit to $CLUSTER_JUNIT
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::flaky::FlakySettings;
use super::locate::node_path;
use super::validate::{Checker, Finding};
use super::{DEFAULT_RETRIES, LayerDef, schema};
use crate::history::quarantine::QuarantinePolicy;
use crate::proto::{Isolation, SecretEnv};
use crate::suite::new_tests::NewTestPolicy;
use crate::suite::{Framework, Split, Suite};

/// One entry of `suites:` as written. Everything is optional here so that every problem is
/// reported at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuite {
    pub name: Option<String>,
    pub framework: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    pub layers: Option<Vec<String>>,
    pub batch: Option<String>,
    pub retries: Option<u32>,
    pub split: Option<String>,
    pub list: Option<String>,
    pub run: Option<String>,
    pub timeout: Option<String>,
    #[serde(default, deserialize_with = "schema::unique_keys")]
    pub env: BTreeMap<String, Option<String>>,
    #[serde(default, rename = "secret-env")]
    pub secret_env: Vec<String>,
    pub isolation: Option<Isolation>,
    pub session: Option<bool>,
    pub quarantine: Option<super::flaky::RawQuarantine>,
    #[serde(rename = "detect-new-flakes")]
    pub detect_new_flakes: Option<bool>,
    #[serde(rename = "new-test-runs")]
    pub new_test_runs: Option<u32>,
    #[serde(rename = "new-test-share")]
    pub new_test_share: Option<String>,
}

/// The time limit of one test of a suite when neither the suite nor `defaults:` sets one:
/// `go test`'s own default for a test binary. A test still running after ten minutes has
/// almost always hung; a suite whose tests take longer says so with `timeout:`.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A checked suite with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteDef {
    /// Its name, framework and arguments: what [`Suite::list`] needs.
    pub suite: Suite,
    /// Names of the layers every batch gets, in order (later win).
    pub layers: Vec<String>,
    /// Target time per batch; `None` leaves it to the runner.
    pub batch: Option<Duration>,
    /// Extra attempts of a failed test.
    pub retries: u32,
    /// How tests may be grouped.
    pub split: Split,
    /// The time limit of one test (a batch's follows from its tests').
    pub timeout: Duration,
    /// Environment of every batch: `defaults.env` overridden by the suite's `env`.
    pub env: BTreeMap<String, String>,
    /// `defaults.secret-env` and the suite's `secret-env`, with their values from the
    /// runner's environment.
    pub secret_env: SecretEnv,
    /// How far each batch is kept apart from its worker and the other jobs.
    pub isolation: Isolation,
    /// Whether workers hand its batches to a warm session of its framework (one per slot)
    /// instead of starting the framework for each: see [`Framework::keeps_sessions`].
    pub session: bool,
    /// Which of its tests fail no run: `defaults.quarantine` with the suite's over it.
    pub quarantine: QuarantinePolicy,
    /// Whether (and how) new tests run several times to catch flaky ones early.
    pub new_tests: NewTestPolicy,
}

/// Checks the manifest's suites against its layers and defaults; job names are taken so that
/// a suite cannot share one. Returns the suites, or every problem found.
pub(super) fn resolve(raw: &schema::Manifest) -> Result<Vec<SuiteDef>, Vec<Finding>> {
    let suites = &raw.suites;
    let mut check = Checker::default();
    // The defaults' own problems are reported once, with the jobs'.
    let (shared, default_timeout) = Checker::default().defaults(&raw.defaults);
    let defaults = check.flaky_settings(
        &FlakySettings::default(),
        &raw.defaults,
        &node_path!["defaults"],
        "defaults",
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    let jobs: Vec<&str> = raw.jobs.iter().filter_map(|j| j.name.as_deref()).collect();
    let mut resolved = Vec::with_capacity(suites.len());
    for (index, suite) in suites.iter().enumerate() {
        let name = name(&mut check, index, suite.name.as_deref(), &mut seen, &jobs);
        let owner = format!("suite '{name}'");
        let framework = framework(&mut check, index, suite, &owner);
        let batch = suite.batch.as_deref().and_then(|text| {
            let at = node_path!["suites", index, "batch"];
            let batch = check.duration(text, at.clone(), &owner, "batch")?;
            if batch.is_zero() {
                check.problem(
                    at,
                    format!("{owner} has a batch time of zero"),
                    "give a target time per batch such as 30s, or leave it out",
                );
                return None;
            }
            Some(batch)
        });
        let split = match suite.split.as_deref() {
            None => framework
                .as_ref()
                .map_or(Split::Test, Framework::default_split),
            Some("test") => Split::Test,
            Some("file") => Split::File,
            Some(other) => {
                check.problem(
                    node_path!["suites", index, "split"],
                    format!("{owner} has an unknown split '{other}'"),
                    "use `split: test` (any test in any batch) or `split: file` (a file's tests \
                     in one batch)",
                );
                Split::Test
            }
        };
        let layers = match &suite.layers {
            Some(names) => {
                let at = node_path!["suites", index, "layers"];
                check.layer_refs(names, &raw.layers, &at, &owner);
                names.clone()
            }
            None => raw.defaults.layers.clone().unwrap_or_default(),
        };
        let timeout = match &suite.timeout {
            Some(text) => check.timeout(Some(text), node_path!["suites", index, "timeout"], &owner),
            None => default_timeout,
        };
        let mut env = check.env(&suite.env, &node_path!["suites", index, "env"], &owner);
        let at = node_path!["suites", index, "secret-env"];
        let mut secret_env = check.secret_env(&suite.secret_env, at, &owner);
        shared.merge_into(&mut env, &mut secret_env);
        let isolation = suite
            .isolation
            .or(raw.defaults.isolation)
            .unwrap_or_default();
        let session = session(&mut check, index, suite, framework.as_ref(), isolation);
        let at = node_path!["suites", index];
        let flaky = check.flaky_settings(&defaults, suite, &at, &owner);
        resolved.push(SuiteDef {
            suite: Suite {
                name,
                framework: framework.unwrap_or(Framework::Nextest),
                args: suite.args.clone(),
            },
            layers,
            batch,
            retries: suite
                .retries
                .or(raw.defaults.retries)
                .unwrap_or(DEFAULT_RETRIES),
            split,
            timeout: timeout.unwrap_or(DEFAULT_TEST_TIMEOUT),
            env,
            secret_env,
            isolation,
            session,
            quarantine: flaky.quarantine,
            new_tests: flaky.new_tests,
        });
    }
    if check.findings.is_empty() {
        Ok(resolved)
    } else {
        Err(check.findings)
    }
}

/// Refuses each nextest suite none of whose layers holds the workspace's `Cargo.toml` at its
/// root: a batch runs nextest's archive with the workspace remapped onto the batch's
/// directory, and nextest stops at once, in every batch, without it. `wrote_layers[i]` says
/// whether suite `i` has a `layers:` key (where the problem is shown).
pub(super) fn check_workspaces(
    suites: &[SuiteDef],
    layers: &BTreeMap<String, LayerDef>,
    wrote_layers: &[bool],
) -> Vec<Finding> {
    let mut check = Checker::default();
    for (index, suite) in suites.iter().enumerate() {
        let holds_manifest = |layer: &LayerDef| {
            layer
                .paths
                .iter()
                .any(|p| p == Path::new(".") || p == Path::new("Cargo.toml"))
        };
        if suite.suite.framework != Framework::Nextest
            || (suite.layers.iter())
                .filter_map(|name| layers.get(name))
                .any(holds_manifest)
        {
            continue;
        }
        let key = match wrote_layers.get(index) {
            Some(true) => "layers",
            _ => "framework",
        };
        check.problem(
            node_path!["suites", index, key],
            format!(
                "suite '{}' runs nextest on workers with its workspace remapped onto each \
                 batch's directory, and none of its layers holds the workspace's Cargo.toml",
                suite.suite.name
            ),
            "ship the workspace as `--nextest` does: define `workspace: {paths: [.]}` under \
             `layers:` (the manifest's directory, the workspace root) and give the suite \
             `layers: [workspace]`",
        );
    }
    check.findings
}

/// Whether a suite's batches run in warm sessions: as `session:` says, by default where its
/// framework keeps them and its isolation lets a process outlive a batch.
fn session(
    check: &mut Checker,
    index: usize,
    suite: &RawSuite,
    framework: Option<&Framework>,
    isolation: Isolation,
) -> bool {
    let keeps = framework.is_some_and(Framework::keeps_sessions);
    let shares = Framework::sessions_allowed(isolation);
    match suite.session {
        None => keeps && shares,
        Some(false) => false,
        Some(true) if !keeps => {
            check.problem(
                node_path!["suites", index, "session"],
                format!(
                    "suite '{}' asks for sessions, which its framework does not keep",
                    suite.name.as_deref().unwrap_or_default()
                ),
                "leave `session:` out: only pytest, Jest and Vitest suites run in warm sessions",
            );
            false
        }
        Some(true) if !shares => {
            check.problem(
                node_path!["suites", index, "session"],
                format!(
                    "suite '{}' asks for sessions under `isolation: sandbox`, where no \
                     process outlives its batch",
                    suite.name.as_deref().unwrap_or_default()
                ),
                "leave `session:` out, or use `isolation: process`",
            );
            false
        }
        Some(true) => true,
    }
}

/// A suite's name: present, printable, unique among suites and jobs.
fn name(
    check: &mut Checker,
    index: usize,
    name: Option<&str>,
    seen: &mut HashMap<String, usize>,
    jobs: &[&str],
) -> String {
    let Some(name) = check.unique_name(("suites", "suite"), index, name, seen) else {
        return format!("#{}", index + 1);
    };
    if jobs.contains(&name) {
        check.problem(
            node_path!["suites", index, "name"],
            format!("suite '{name}' has the name of a job"),
            "suites and jobs share one name space; rename one of them",
        );
    }
    name.to_owned()
}

/// A suite's framework, with `list` and `run` given exactly when it is `command`.
fn framework(
    check: &mut Checker,
    index: usize,
    suite: &RawSuite,
    owner: &str,
) -> Option<Framework> {
    let names = Framework::NAMES.join(", ");
    let is_command = suite.framework.as_deref() == Some("command");
    if !is_command {
        for (key, value) in [("list", &suite.list), ("run", &suite.run)] {
            if value.is_some() {
                check.problem(
                    node_path!["suites", index, key],
                    format!("{owner} sets `{key}`, which only `framework: command` uses"),
                    "remove it, or use `framework: command` with both `list` and `run`",
                );
            }
        }
    }
    let framework = match suite.framework.as_deref() {
        None => {
            check.problem(
                node_path!["suites", index],
                format!("{owner} has no framework"),
                format!("add `framework:`, one of {names}"),
            );
            return None;
        }
        Some("command") => Framework::Command {
            list: command(check, index, "list", suite.list.as_deref(), owner),
            run: command(check, index, "run", suite.run.as_deref(), owner),
        },
        Some(name) if let Some(framework) = Framework::named(name) => framework,
        Some(other) => {
            check.problem(
                node_path!["suites", index, "framework"],
                format!("{owner} has an unknown framework '{other}'"),
                format!("use one of {names}"),
            );
            return None;
        }
    };
    Some(framework)
}

/// The `list` or `run` command of a `command` suite: present and not blank.
fn command(
    check: &mut Checker,
    index: usize,
    key: &str,
    value: Option<&str>,
    owner: &str,
) -> String {
    let hint = match key {
        "list" => "`list:` is a shell command printing one test id a line",
        _ => {
            "`run:` is a shell command given the batch's ids as arguments (\"$@\"); it writes \
              JUnit to $CLUSTER_JUNIT"
        }
    };
    match value {
        Some(value) if !value.trim().is_empty() => return value.to_owned(),
        Some(_) => check.problem(
            node_path!["suites", index, key],
            format!("{owner} has an empty `{key}` command"),
            hint,
        ),
        None => check.problem(
            node_path!["suites", index],
            format!("{owner} has no `{key}` command"),
            hint,
        ),
    }
    String::new()
}
