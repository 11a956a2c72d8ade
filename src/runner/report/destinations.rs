//! Where reports and outputs are written, checked before a run starts: a report path that
//! cannot be created, or an outputs directory that names a file, is bad input found at once,
//! not after an hour of jobs (when one bad path used to lose the other report too).

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// Checks that each of `reports` can be written (creating missing parent directories) and
/// that `outputs_dir` is, or can be made, a writable directory. Nothing is left behind but
/// those directories. `Err` says which path and why, for the user.
pub fn check_destinations(
    reports: &[Option<&Path>],
    outputs_dir: Option<&Path>,
) -> Result<(), String> {
    for path in reports.iter().flatten() {
        check_report(path)?;
    }
    if let Some(dir) = outputs_dir {
        check_outputs_dir(dir)?;
    }
    Ok(())
}

/// A report file: its directory exists or is created, and the file can be opened for writing.
fn check_report(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!(
            "report path {shown} is a directory: give a file name"
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory of report {shown}: {e}"))?;
    }
    let existed = path.exists();
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot write report {shown}: {e}"))?;
    if !existed {
        // Written at the end of the run; until then nothing is there.
        fs::remove_file(path).map_err(|e| format!("cannot write report {shown}: {e}"))?;
    }
    Ok(())
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
