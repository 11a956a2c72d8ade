//! Checks a parsed manifest and resolves it: defaults applied, durations parsed, layer globs
//! expanded against the manifest's directory. Every problem is collected, each with the node
//! it is about, so that one run of the tool shows the user all there is to fix.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::locate::{NodePath, node_path};
use super::{DEFAULT_RETRIES, DEFAULT_TIMEOUT, JobDef, LayerDef, schema};
use crate::credentials::SECRET_VAR;
use crate::duration::parse_duration;
use crate::layer::{self, Listed};
use crate::proto::{JobDefaults, SecretEnv};

/// The longest string a process can be given as one argument or one `NAME=value`
/// variable, with its terminating NUL (Linux's `MAX_ARG_STRLEN`): a longer `run` command
/// or value would pass validation and fail every attempt with "Argument list too long".
pub(super) const MAX_ARG_BYTES: usize = 128 * 1024;

/// What makes `run` impossible to hand to `bash -c`, as the end of a sentence about the
/// command, with a hint; `None` when it can be run.
pub(super) fn command_fault(run: &str) -> Option<(String, &'static str)> {
    if run.contains('\0') {
        Some((
            "with a NUL character".to_owned(),
            "commands cannot hold NUL characters; remove it (printf '\\0' writes one)",
        ))
    } else if run.len() + 1 > MAX_ARG_BYTES {
        Some((
            format!(
                "of {} bytes, over the {} KiB a process argument can hold",
                run.len(),
                MAX_ARG_BYTES >> 10
            ),
            "put the commands in a script file in a layer and run the script",
        ))
    } else {
        None
    }
}

/// One problem, before it is given a location.
#[derive(Debug)]
pub(super) struct Finding {
    /// The node it is about.
    pub at: NodePath,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// An earlier node it conflicts with, shown as "first at line N".
    pub first: Option<NodePath>,
}

/// The resolved contents of a valid manifest.
pub(super) type Resolved = (BTreeMap<String, LayerDef>, Vec<JobDef>, JobDefaults);

/// Checks `raw` and resolves it, or returns every problem found.
pub(super) fn resolve(raw: schema::Manifest, base_dir: &Path) -> Result<Resolved, Vec<Finding>> {
    let mut check = Checker::default();
    let defaults = &raw.defaults;
    let (shared, default_timeout) = check.defaults(defaults);
    let default_timeout = default_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let default_layers = defaults.layers.clone().unwrap_or_default();
    check.layer_refs(
        &default_layers,
        &raw.layers,
        &node_path!["defaults", "layers"],
        "defaults",
    );

    let layers = raw
        .layers
        .iter()
        .map(|(name, layer)| (name.clone(), check.layer(name, layer, base_dir)))
        .collect();

    if raw.jobs.is_empty() && raw.suites.is_empty() {
        check.problem(
            node_path!["jobs"],
            "the manifest defines no jobs",
            "add at least one entry under `jobs:`, each with a `name` and a `run` command, \
             or a test suite under `suites:`",
        );
    }
    let mut first_index: HashMap<String, usize> = HashMap::new();
    let mut jobs = Vec::with_capacity(raw.jobs.len());
    for (index, job) in raw.jobs.iter().enumerate() {
        let owner = match &job.name {
            Some(name) if !name.trim().is_empty() => format!("job '{name}'"),
            _ => format!("job #{}", index + 1),
        };
        check.unique_name(
            ("jobs", "job"),
            index,
            job.name.as_deref(),
            &mut first_index,
        );
        let run = check.run(index, job.run.as_deref(), &owner);
        let timeout = match &job.timeout {
            Some(text) => check.timeout(Some(text), node_path!["jobs", index, "timeout"], &owner),
            None => Some(default_timeout),
        };
        let estimate = job.estimate.as_deref().and_then(|text| {
            check.duration(
                text,
                node_path!["jobs", index, "estimate"],
                &owner,
                "estimate",
            )
        });
        let mut env = check.env(&job.env, &node_path!["jobs", index, "env"], &owner);
        let at = node_path!["jobs", index, "secret-env"];
        let mut secret_env = check.secret_env(&job.secret_env, at, &owner);
        shared.merge_into(&mut env, &mut secret_env);
        let layers = match &job.layers {
            Some(names) => {
                let at = node_path!["jobs", index, "layers"];
                check.layer_refs(names, &raw.layers, &at, &owner);
                names.clone()
            }
            None => default_layers.clone(),
        };
        for (i, output) in job.outputs.iter().enumerate() {
            let at = node_path!["jobs", index, "outputs", i];
            check.relative_glob(
                output,
                at,
                &format!("{owner} output"),
                "the job's directory",
            );
        }
        jobs.push(JobDef {
            name: job.name.clone().unwrap_or_default(),
            run,
            env,
            layers,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            retries: job.retries.or(defaults.retries).unwrap_or(DEFAULT_RETRIES),
            outputs: job.outputs.clone(),
            estimate,
            isolation: job.isolation.or(defaults.isolation).unwrap_or_default(),
            secret_env,
        });
    }
    if check.findings.is_empty() {
        Ok((layers, jobs, shared))
    } else {
        Err(check.findings)
    }
}

/// Collects findings while checking.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) findings: Vec<Finding>,
}

impl Checker {
    pub(super) fn problem(
        &mut self,
        at: NodePath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.findings.push(Finding {
            at,
            message: message.into(),
            hint: Some(hint.into()),
            first: None,
        });
    }

    /// The name of entry `index` of `section` (`jobs`, `suites`), a `kind` (`job`, `suite`):
    /// present, printable, unique among those in `first` (name → index, where it is added).
    /// Returns it when it is all three.
    pub(super) fn unique_name<'a>(
        &mut self,
        (section, kind): (&str, &str),
        index: usize,
        name: Option<&'a str>,
        first: &mut HashMap<String, usize>,
    ) -> Option<&'a str> {
        let at = node_path![section, index, "name"];
        let number = index + 1;
        let hint = format!("give every {kind} a unique `name:`");
        match name {
            None => self.problem(
                node_path![section, index],
                format!("{kind} #{number} has no name"),
                hint,
            ),
            Some(name) if name.trim().is_empty() => {
                self.problem(at, format!("{kind} #{number} has an empty name"), hint);
            }
            Some(name) if name.chars().any(char::is_control) => self.problem(
                at,
                format!("{kind} #{number} has a name with a control character: {name:?}"),
                format!("use printable characters only in {kind} names"),
            ),
            Some(name) => {
                if let Some(&earlier) = first.get(name) {
                    self.findings.push(Finding {
                        at,
                        message: format!("{kind} '{name}' is defined twice"),
                        hint: Some(format!("{kind} names must be unique; rename one of them")),
                        first: Some(node_path![section, earlier, "name"]),
                    });
                } else {
                    first.insert(name.to_owned(), index);
                }
                return Some(name);
            }
        }
        None
    }

    /// What `defaults:` gives every job and suite: the shared environment, and the time limit
    /// when it sets one.
    pub(super) fn defaults(
        &mut self,
        defaults: &schema::Defaults,
    ) -> (JobDefaults, Option<Duration>) {
        let timeout = self.timeout(
            defaults.timeout.as_deref(),
            node_path!["defaults", "timeout"],
            "defaults",
        );
        let at = node_path!["defaults", "secret-env"];
        let shared = JobDefaults {
            env: self.env(&defaults.env, &node_path!["defaults", "env"], "defaults"),
            secret_env: self.secret_env(&defaults.secret_env, at, "defaults"),
        };
        (shared, timeout)
    }

    /// A job's command: present and not blank.
    fn run(&mut self, index: usize, run: Option<&str>, owner: &str) -> String {
        match run {
            None => self.problem(
                node_path!["jobs", index],
                format!("{owner} has no `run` command"),
                "add `run: <shell command>`; it runs with `bash -c` in the job's directory",
            ),
            Some(run) if run.trim().is_empty() => self.problem(
                node_path!["jobs", index, "run"],
                format!("{owner} has an empty `run` command"),
                "give the shell command to run; it runs with `bash -c` in the job's directory",
            ),
            Some(run) => match command_fault(run) {
                Some((message, hint)) => self.problem(
                    node_path!["jobs", index, "run"],
                    format!("{owner} has a `run` command {message}"),
                    hint,
                ),
                None => return run.to_owned(),
            },
        }
        String::new()
    }

    /// A duration as written, or `None` after recording why it is not one.
    pub(super) fn duration(
        &mut self,
        text: &str,
        at: NodePath,
        owner: &str,
        key: &str,
    ) -> Option<Duration> {
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(why) => {
                self.findings.push(Finding {
                    at,
                    message: format!("{owner} has a bad {key}: {why}"),
                    hint: None,
                    first: None,
                });
                None
            }
        }
    }

    /// A time limit: a duration greater than zero (or unset).
    pub(super) fn timeout(
        &mut self,
        text: Option<&str>,
        at: NodePath,
        owner: &str,
    ) -> Option<Duration> {
        let timeout = self.duration(text?, at.clone(), owner, "timeout")?;
        if timeout.is_zero() {
            self.problem(
                at,
                format!("{owner} has a timeout of zero"),
                "give a time limit greater than zero, such as 10m, or leave it out for the default",
            );
            return None;
        }
        Some(timeout)
    }

    /// Environment variables a process can be given; returns those with a value.
    pub(super) fn env(
        &mut self,
        env: &BTreeMap<String, Option<String>>,
        at: &NodePath,
        owner: &str,
    ) -> BTreeMap<String, String> {
        let mut checked = BTreeMap::new();
        for (name, value) in env {
            let mut at = at.clone();
            at.push(name.as_str().into());
            if name.is_empty() || name.contains(['=', '\0']) {
                self.problem(
                    at,
                    format!("{owner} has an invalid environment variable name {name:?}"),
                    "variable names must be non-empty and contain no '=' or NUL",
                );
                continue;
            }
            let Some(value) = value else {
                self.problem(
                    at,
                    format!("{owner} leaves {name} without a value (null)"),
                    format!(
                        "write {name}: \"\" for an empty value, or quote it ({name}: \"~\") \
                         for the text"
                    ),
                );
                continue;
            };
            if value.contains('\0') {
                self.problem(
                    at,
                    format!("{owner} sets {name} to a value with a NUL character"),
                    "environment values cannot hold NUL characters",
                );
            } else if name.len() + value.len() + 2 > MAX_ARG_BYTES {
                self.problem(
                    at,
                    format!(
                        "{owner} sets {name} to a value of {} bytes, over the {} KiB a \
                         variable can hold",
                        value.len(),
                        MAX_ARG_BYTES >> 10
                    ),
                    "put the value in a file of a layer and read it from there",
                );
            } else {
                checked.insert(name.clone(), value.clone());
            }
        }
        checked
    }

    /// `secret-env` names, with their values from this process's environment. Allowed only
    /// with a cluster secret, which seals them on their way to the worker.
    pub(super) fn secret_env(&mut self, names: &[String], at: NodePath, owner: &str) -> SecretEnv {
        let mut found = SecretEnv::default();
        if names.is_empty() {
            return found;
        }
        if std::env::var_os(SECRET_VAR).is_none() {
            self.problem(
                at,
                format!("{owner} sets secret-env, but no cluster secret is set: the values would travel in plain text"),
                format!("set {SECRET_VAR} (action input `secret: ${{{{ secrets.CLUSTER_SECRET }}}}`) on every job of the cluster, or remove secret-env"),
            );
            return found;
        }
        for (i, name) in names.iter().enumerate() {
            let mut at = at.clone();
            at.push(i.into());
            match std::env::var(name) {
                Ok(value) if !name.is_empty() && !name.contains(['=', '\0']) => {
                    found.0.insert(name.clone(), value);
                }
                _ => self.problem(
                    at,
                    format!("{owner} passes secret-env {name:?}, which is not set (as UTF-8) in the runner's environment"),
                    "set the variable in the step's `env:` (e.g. from `secrets.`), or remove it from secret-env",
                ),
            }
        }
        found
    }

    /// Layer names that must be defined under `layers:`.
    pub(super) fn layer_refs(
        &mut self,
        names: &[String],
        defined: &BTreeMap<String, schema::Layer>,
        at: &NodePath,
        owner: &str,
    ) {
        for (i, name) in names.iter().enumerate() {
            if defined.contains_key(name) {
                continue;
            }
            let mut at = at.clone();
            at.push(i.into());
            let known = if defined.is_empty() {
                "none is defined".to_owned()
            } else {
                let names: Vec<&str> = defined.keys().map(String::as_str).collect();
                format!("defined: {}", names.join(", "))
            };
            self.problem(
                at,
                format!("{owner} uses layer '{name}', which is not defined"),
                format!("define it under `layers:` or fix the name ({known})"),
            );
        }
    }

    /// A layer: its paths checked and expanded, relative to `base_dir`, sorted.
    fn layer(&mut self, name: &str, layer: &schema::Layer, base_dir: &Path) -> LayerDef {
        let owner = format!("layer '{name}'");
        if layer.paths.is_empty() {
            self.problem(
                node_path!["layers", name, "paths"],
                format!("{owner} lists no paths"),
                "list files, directories or globs under `paths:`",
            );
        }
        let listed = if layer.allow_outside {
            Listed::Resolved
        } else {
            Listed::Entries
        };
        let mut paths = Vec::new();
        for (i, pattern) in layer.paths.iter().enumerate() {
            let at = node_path!["layers", name, "paths", i];
            if !self.relative_glob(pattern, at.clone(), &owner, "the manifest's directory") {
                continue;
            }
            match expand(base_dir, pattern) {
                Ok(found) if found.is_empty() => self.problem(
                    at,
                    format!(
                        "{owner}: '{pattern}' matches nothing in {}",
                        base_dir.display()
                    ),
                    "create the files first (for example, build before running) or fix the \
                     path; layer paths are relative to the manifest's directory",
                ),
                Ok(found) => {
                    if listed == Listed::Entries {
                        self.inside(&owner, &found, base_dir, &at);
                    }
                    paths.extend(found);
                }
                Err(why) => self.problem(
                    at,
                    format!("{owner}: cannot expand '{pattern}': {why}"),
                    "check the permissions of the directories it names",
                ),
            }
        }
        paths.sort();
        paths.dedup();
        if let Err(e) = layer::check(base_dir, &paths, listed) {
            self.problem(
                node_path!["layers", name, "paths"],
                format!("{owner}: {e}"),
                "a layer holds files, directories and symlinks that stay inside it; \
                 replace the symlink by what it points to, or leave it out",
            );
        }
        LayerDef { paths, listed }
    }

    /// Refuses each of `paths` that resolves, through symlinks, outside `base_dir`.
    fn inside(&mut self, owner: &str, paths: &[PathBuf], base_dir: &Path, at: &NodePath) {
        let Ok(base) = base_dir.canonicalize() else {
            return;
        };
        for path in paths {
            let Ok(real) = base_dir.join(path).canonicalize() else {
                continue;
            };
            if !real.starts_with(&base) {
                self.problem(
                    at.clone(),
                    format!(
                        "{owner}: '{}' resolves to {}, outside the manifest's directory",
                        path.display(),
                        real.display()
                    ),
                    "copy it inside, or set `allow-outside: true` on the layer to pack what \
                     its paths point to",
                );
            }
        }
    }

    /// A glob naming files under a directory: relative, not leaving it, well-formed. Returns
    /// whether it is all three.
    fn relative_glob(&mut self, pattern: &str, at: NodePath, owner: &str, root: &str) -> bool {
        let path = Path::new(pattern);
        let (message, hint) = if pattern.trim().is_empty() {
            (
                format!("{owner} has an empty path"),
                "remove it or name a file".to_owned(),
            )
        } else if path.is_absolute() {
            (
                format!("{owner}: path '{pattern}' is absolute"),
                format!("write it relative to {root}"),
            )
        } else if path.components().any(|c| c == Component::ParentDir) {
            (
                format!("{owner}: path '{pattern}' uses '..'"),
                format!("only files under {root} can be named; remove the '..'"),
            )
        } else if let Err(why) = glob::Pattern::new(pattern) {
            (
                format!("{owner}: '{pattern}' is not a valid glob: {why}"),
                "globs use *, ?, ** and [...]; put a special character inside [] to match it \
                 literally"
                    .to_owned(),
            )
        } else {
            return true;
        };
        self.problem(at, message, hint);
        false
    }
}

/// The most entries of the manifest's directory looked at to expand one layer path.
const MAX_LAYER_ENTRIES: usize = 1_000_000;

/// The longest one layer path may take to expand: a directory tree that takes longer to list
/// is on a hung file system, or far bigger than a layer should be.
const LAYER_LISTING_TIME: Duration = Duration::from_secs(120);

/// The paths under `base_dir` that `pattern` matches, relative to `base_dir` (`.` for itself).
/// Symlinks are matched as entries and never followed, so a link to `.` or `/` cannot make
/// the expansion endless.
fn expand(base_dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !pattern.contains(['*', '?', '[']) {
        // A plain path names one entry, wherever its parents' symlinks lead: whether that is
        // allowed is for the caller to say.
        let path: PathBuf = Path::new(pattern)
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        return Ok(if base_dir.join(&path).exists() {
            vec![if path.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                path
            }]
        } else {
            Vec::new()
        });
    }
    let bounds = layer::Bounds {
        max_entries: MAX_LAYER_ENTRIES,
        deadline: Instant::now().checked_add(LAYER_LISTING_TIME),
        cancel: None,
    };
    let patterns = [pattern.to_owned()];
    layer::select(base_dir, &patterns, layer::Directories::Whole, bounds)
        .map(|found| found.paths)
        .map_err(|e| e.to_string())
}
