//! The runner's side of a framework: running its listing and build commands in the checkout,
//! and turning "not installed" and "failed" into errors that name the command and the fix.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Suite, SuiteError};

/// Lines of a failed command's output shown in its error.
const TAIL_LINES: usize = 20;

/// A program a framework needs on the runner, and how to install it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tool {
    /// The program, looked up on PATH.
    pub program: &'static str,
    /// What the user should do when it is missing.
    pub install: &'static str,
}

impl Tool {
    /// The program's path on PATH, or the error naming it and its install command.
    pub fn find(self, suite: &Suite) -> Result<PathBuf, SuiteError> {
        on_path(self.program).ok_or_else(|| self.missing(suite, "not found on PATH".into()))
    }

    /// The error for this tool being absent (`looked`: where it was looked for).
    pub fn missing(self, suite: &Suite, looked: String) -> SuiteError {
        SuiteError::ToolMissing {
            suite: suite.name.clone(),
            command: self.program.to_owned(),
            looked,
            install: self.install,
        }
    }
}

/// The first executable file called `program` in the directories of PATH.
pub(super) fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `program args` in `dir` and returns its standard output; a failure is
/// [`SuiteError::ListFailed`] with the tail of its standard error (or output).
pub(super) fn output(
    suite: &Suite,
    dir: &Path,
    program: &Path,
    args: &[String],
) -> Result<Vec<u8>, SuiteError> {
    Ok(run(suite, dir, program, args, &[])?.stdout)
}

/// Runs `program args` in `dir` with the variables `env` added: its output when it exits 0,
/// otherwise [`SuiteError::ListFailed`] with the tail of its standard error (or standard
/// output), which the caller may read more closely first.
pub(super) fn run(
    suite: &Suite,
    dir: &Path,
    program: &Path,
    args: &[String],
    env: &[(&str, &OsStr)],
) -> Result<std::process::Output, SuiteError> {
    let shown = shown_command(program, args);
    let result = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            return Err(SuiteError::ListFailed {
                suite: suite.name.clone(),
                command: shown,
                status: format!("could not start it in {}", dir.display()),
                stderr_tail: e.to_string(),
            });
        }
    };
    if out.status.success() {
        return Ok(out);
    }
    let text = if out.stderr.iter().all(u8::is_ascii_whitespace) {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    Err(SuiteError::ListFailed {
        suite: suite.name.clone(),
        command: shown,
        status: out.status.to_string(),
        stderr_tail: tail(&text),
    })
}

/// The command as a user would type it.
fn shown_command(program: &Path, args: &[String]) -> String {
    let name = program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    std::iter::once(name)
        .chain(args.iter().map(|a| super::shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last [`TAIL_LINES`] lines of `text`, trimmed.
pub(super) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 11\n"), "{t}");
        assert!(t.ends_with("line 30"), "{t}");
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(on_path("bash").is_some());
        assert!(on_path("surely-not-a-program-here").is_none());
    }

    #[test]
    fn a_missing_tool_is_named_with_its_install_command() {
        let suite = Suite {
            name: "rust".into(),
            framework: super::super::Framework::Nextest,
            args: vec![],
        };
        let tool = Tool {
            program: "surely-not-a-program-here",
            install: "install it with `make magic`",
        };
        let message = tool.find(&suite).unwrap_err().to_string();
        assert_eq!(
            message,
            "suite 'rust': `surely-not-a-program-here` is not installed (not found on PATH); \
             install it with `make magic`"
        );
    }
}
