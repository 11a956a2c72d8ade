//! Checks a parsed manifest and resolves it: defaults applied, durations parsed, layer globs
//! expanded against the manifest's directory. Every problem is collected, each with the node
//! it is about, so that one run of the tool shows the user all there is to fix.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::locate::{NodePath, node_path};
use super::{DEFAULT_RETRIES, DEFAULT_TIMEOUT, JobDef, LayerDef, schema};
use crate::runner::duration::parse_duration;

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
pub(super) type Resolved = (BTreeMap<String, LayerDef>, Vec<JobDef>);

/// Checks `raw` and resolves it, or returns every problem found.
pub(super) fn resolve(raw: schema::Manifest, base_dir: &Path) -> Result<Resolved, Vec<Finding>> {
    let mut check = Checker::default();
    let defaults = &raw.defaults;
    let default_timeout = check
        .timeout(
            defaults.timeout.as_deref(),
            node_path!["defaults", "timeout"],
            "defaults",
        )
        .unwrap_or(DEFAULT_TIMEOUT);
    check.env(&defaults.env, &node_path!["defaults", "env"], "defaults");
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
        check.job_name(index, job.name.as_deref(), &mut first_index);
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
        check.env(&job.env, &node_path!["jobs", index, "env"], &owner);
        let mut env = defaults.env.clone();
        env.extend(job.env.clone());
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
        });
    }
    if check.findings.is_empty() {
        Ok((layers, jobs))
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

    /// A job's name: present, printable, unique.
    fn job_name(&mut self, index: usize, name: Option<&str>, first: &mut HashMap<String, usize>) {
        let at = node_path!["jobs", index, "name"];
        let number = index + 1;
        match name {
            None => self.problem(
                node_path!["jobs", index],
                format!("job #{number} has no name"),
                "give every job a unique `name:`",
            ),
            Some(name) if name.trim().is_empty() => self.problem(
                at,
                format!("job #{number} has an empty name"),
                "give every job a unique `name:`",
            ),
            Some(name) if name.chars().any(char::is_control) => self.problem(
                at,
                format!("job #{number} has a name with a control character: {name:?}"),
                "use printable characters only in job names",
            ),
            Some(name) => {
                if let Some(&earlier) = first.get(name) {
                    self.findings.push(Finding {
                        at,
                        message: format!("job '{name}' is defined twice"),
                        hint: Some("job names must be unique; rename one of them".into()),
                        first: Some(node_path!["jobs", earlier, "name"]),
                    });
                } else {
                    first.insert(name.to_owned(), index);
                }
            }
        }
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
            Some(run) => return run.to_owned(),
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
    fn timeout(&mut self, text: Option<&str>, at: NodePath, owner: &str) -> Option<Duration> {
        let timeout = self.duration(text?, at.clone(), owner, "timeout")?;
        if timeout.is_zero() {
            self.problem(
                at,
                format!("{owner} has a timeout of zero"),
                "give a time limit greater than zero, such as 10m, or leave it out for 30m",
            );
            return None;
        }
        Some(timeout)
    }

    /// Environment variables a process can be given.
    fn env(&mut self, env: &BTreeMap<String, String>, at: &NodePath, owner: &str) {
        for (name, value) in env {
            let mut at = at.clone();
            at.push(name.as_str().into());
            if name.is_empty() || name.contains(['=', '\0']) {
                self.problem(
                    at,
                    format!("{owner} has an invalid environment variable name {name:?}"),
                    "variable names must be non-empty and contain no '=' or NUL",
                );
            } else if value.contains('\0') {
                self.problem(
                    at,
                    format!("{owner} sets {name} to a value with a NUL character"),
                    "environment values cannot hold NUL characters",
                );
            }
        }
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
                Ok(found) => paths.extend(found),
                Err(why) => self.problem(
                    at,
                    format!("{owner}: cannot expand '{pattern}': {why}"),
                    "check the permissions of the directories it names",
                ),
            }
        }
        paths.sort();
        paths.dedup();
        LayerDef { paths }
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

/// The paths under `base_dir` that `pattern` matches, relative to `base_dir` (`.` for itself).
fn expand(base_dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let base = base_dir
        .to_str()
        .ok_or_else(|| format!("the directory {} is not valid UTF-8", base_dir.display()))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let full = format!("{}/{pattern}", glob::Pattern::escape(base));
    // glob drops `.` components from what it returns (`./a` comes back as `a`).
    let base_dir = without_cur_dir(base_dir);
    let mut found = Vec::new();
    for entry in glob::glob_with(&full, options).map_err(|e| e.to_string())? {
        let path = without_cur_dir(&entry.map_err(|e| e.to_string())?);
        let relative = path
            .strip_prefix(&base_dir)
            .map_err(|_| format!("{} is outside {base}", path.display()))?
            .to_path_buf();
        found.push(if relative.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            relative
        });
    }
    Ok(found)
}

/// `path` without its `.` components.
fn without_cur_dir(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}
