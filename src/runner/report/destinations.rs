//! Where reports and outputs are written, checked before a run starts: a report path that
//! cannot be created, or an outputs directory that names a file, is bad input found at once,
//! not after an hour of jobs (when one bad path used to lose the other report too). A report
//! goes to a regular file, a character device (`/dev/null`, a terminal) or this process's own
//! standard output or error (`/dev/stdout` in a pipeline); any other FIFO (which blocks its
//! writer until someone reads, forever if no one does), a block device or a socket is refused.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::input_file::special_kind;

/// Checks that each of `reports` (each named by what gives it: `--report-json`,
/// `GITHUB_STEP_SUMMARY`) can be written (creating missing parent directories) and that
/// `outputs_dir` is, or can be made, a writable directory. Nothing is left behind but those
/// directories. `Err` says which path and why, for the user.
pub fn check_destinations(
    reports: &[(&str, Option<&Path>)],
    outputs_dir: Option<&Path>,
) -> Result<(), String> {
    for (name, path) in reports {
        if let Some(path) = path {
            check_report(name, path)?;
        }
    }
    if let Some(dir) = outputs_dir {
        check_outputs_dir(dir)?;
    }
    Ok(())
}

/// A report file named by `name`: its directory exists or is created, and the file is a
/// regular file or a character device (or nothing yet) that can be opened for writing.
fn check_report(name: &str, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt as _;
    let shown = path.display();
    if let Ok(meta) = fs::metadata(path)
        && !meta.file_type().is_char_device()
        && !is_own_output(&meta)
        && let Some(kind) = special_kind(meta.file_type())
    {
        return Err(format!(
            "{name} {shown} is {kind}: give a file name (or /dev/stdout, /dev/stderr, /dev/null)"
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory of report {shown} ({name}): {e}"))?;
    }
    let existed = path.exists();
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot write report {shown} ({name}): {e}"))?;
    if !existed {
        // Written at the end of the run; until then nothing is there.
        fs::remove_file(path).map_err(|e| format!("cannot write report {shown} ({name}): {e}"))?;
    }
    Ok(())
}

/// Whether `meta` is this process's standard output or error (whatever they are: a pipe, a
/// socket), which the user can read.
fn is_own_output(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    ["/dev/stdout", "/dev/stderr"].iter().any(|own| {
        fs::metadata(own).is_ok_and(|own| own.dev() == meta.dev() && own.ino() == meta.ino())
    })
}

/// The outputs directory: a directory (created if missing) where files can be created.
fn check_outputs_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "--outputs-dir {shown} is a file: give a directory (it is created if missing)"
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create --outputs-dir {shown}: {e}"))?,
        Err(e) => return Err(format!("cannot use --outputs-dir {shown}: {e}")),
    }
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("cannot write in --outputs-dir {shown}: {e}"))
}
