//! The commands file (`--commands FILE`): the quickest way in, one shell command per line,
//! each a job with the default settings and no layers.

use crate::proto::Isolation;
use std::collections::BTreeMap;
use std::path::Path;

use super::validate::command_fault;
use super::{
    DEFAULT_RETRIES, DEFAULT_TIMEOUT, JobDef, Location, MAX_PROBLEMS, Manifest, ManifestError,
    Problem, base_dir_of, read,
};

/// Longest job name derived from a command, in characters.
const MAX_NAME_CHARS: usize = 60;

/// Reads a commands file: one shell command per line; blank lines and lines starting with `#`
/// are skipped; a line that cannot be run (a NUL, over 128 KiB) is refused with its number. Job `L12: cargo test -p foo` runs the command on line 12 (names are cut to 60
/// characters and stay unique through the line number).
pub fn from_commands(path: &Path) -> Result<Manifest, ManifestError> {
    let text = read(path, Some("--commands"))?;
    let mut problems = Vec::new();
    let mut jobs = Vec::new();
    let lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    for (number, command) in lines {
        if let Some((message, hint)) = command_fault(command) {
            problems.push(Problem {
                location: Some(Location {
                    line: number,
                    column: 1,
                }),
                message: format!("the command {message}"),
                hint: Some(hint.to_owned()),
            });
            continue;
        }
        jobs.push(JobDef {
            name: job_name(number, command),
            run: command.to_owned(),
            env: BTreeMap::new(),
            layers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            outputs: Vec::new(),
            estimate: None,
            isolation: Isolation::default(),
            secret_env: Default::default(),
        });
    }
    if !problems.is_empty() {
        let omitted = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            problems,
            omitted,
        });
    }
    if jobs.is_empty() {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                location: None,
                message: "the commands file lists no commands".to_owned(),
                hint: Some(
                    "write one shell command per line; blank lines and lines starting with # \
                     are skipped"
                        .to_owned(),
                ),
            }],
            omitted: 0,
        });
    }
    Ok(Manifest {
        path: path.to_path_buf(),
        base_dir: base_dir_of(path),
        layers: BTreeMap::new(),
        jobs,
        suites: Vec::new(),
        defaults: Default::default(),
    })
}

/// `L<line>: <command>`, control characters as spaces, cut with `…` to [`MAX_NAME_CHARS`].
fn job_name(line: usize, command: &str) -> String {
    let full: String = format!("L{line}: {command}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if full.chars().count() <= MAX_NAME_CHARS {
        return full;
    }
    let mut cut: String = full.chars().take(MAX_NAME_CHARS - 1).collect();
    cut.push('…');
    cut
}
