//! The local timing history: `--timings FILE` read before a run and `--write-timings FILE`
//! written after it, a `ca-timings` JSON document like the artifact's, for runs that keep
//! their history in a file (outside GitHub, or to pin the estimates).
//!
//! The file read is a regular file of at most [`MAX_DOCUMENT_BYTES`] (like the artifact's
//! document). The file written is replaced atomically: the history goes to a temporary file
//! of a name no one else uses, in the directory of the file it replaces (a symbolic link's
//! target: the link stays a link), then is renamed over it. A FIFO, a device or a directory is
//! refused before the run starts and again when writing.

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use super::ArtifactDocument;
use super::document::MAX_DOCUMENT_BYTES;
use super::timings::Timings;
use crate::input_file::{self, InputFileError};

/// The most symbolic links followed from `--write-timings` to the file written (Linux's own
/// limit).
const MAX_LINKS: usize = 40;

/// A timings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimingsFileError {
    /// `--timings FILE` cannot be read.
    #[error("--timings {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: InputFileError,
    },
    /// The file is not a `ca-timings` JSON document this build reads.
    #[error("--timings {path} is not a ca-timings JSON file: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--write-timings FILE` names (or links to) something that cannot hold a history.
    #[error("--write-timings {path} is {kind}: give a regular file (it is created if missing)")]
    NotAFile {
        /// The path given.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// Writing `--write-timings FILE` failed (a full disk, a directory that cannot be written).
    #[error("cannot write --write-timings {path}: {source}")]
    Write {
        /// The path given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads `--timings FILE`: none when the file does not exist yet (a first run), an error
/// naming the file when it cannot be read or is not a timings file.
pub fn read(path: &Path) -> Result<Option<Timings>, TimingsFileError> {
    let shown = path.display().to_string();
    match input_file::read_bounded(path, MAX_DOCUMENT_BYTES) {
        Ok(bytes) => {
            Timings::from_json(&bytes)
                .map(Some)
                .map_err(|reason| TimingsFileError::Format {
                    path: shown,
                    reason,
                })
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(TimingsFileError::Read {
            path: shown,
            source,
        }),
    }
}

/// Checks, before a run, that `--write-timings FILE` can take a history: it is (or links to)
/// a regular file, or nothing yet, in a directory where files can be created.
pub fn check_writable(path: &Path) -> Result<(), TimingsFileError> {
    let target = destination(path)?;
    tempfile::tempfile_in(directory_of(&target))
        .map(drop)
        .map_err(|source| TimingsFileError::Write {
            path: path.display().to_string(),
            source,
        })
}

/// Writes `--write-timings FILE` atomically (a reader never sees half), through a symbolic
/// link, keeping the permissions of the file it replaces; a write error is an error.
pub fn write(path: &Path, timings: &Timings) -> Result<(), TimingsFileError> {
    let io = |source| TimingsFileError::Write {
        path: path.display().to_string(),
        source,
    };
    let target = destination(path)?;
    let permissions = match std::fs::metadata(&target) {
        Ok(meta) => meta.permissions(),
        // A new file: what `std::fs::write` would give (0666 less the umask).
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o666),
    };
    let mut partial = tempfile::Builder::new()
        .prefix(".ca-timings.")
        .suffix(".partial")
        .permissions(permissions)
        .tempfile_in(directory_of(&target))
        .map_err(io)?;
    partial.write_all(&timings.to_json()).map_err(io)?;
    partial.as_file().sync_all().map_err(io)?;
    partial.persist(&target).map_err(|e| io(e.error))?;
    Ok(())
}

/// The directory of the file at `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The file `--write-timings path` replaces: `path`, or the end of its chain of symbolic
/// links; refused when that is not a regular file (or nothing yet).
fn destination(path: &Path) -> Result<PathBuf, TimingsFileError> {
    let shown = || path.display().to_string();
    let mut target = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&target) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(target),
            Err(source) => {
                return Err(TimingsFileError::Write {
                    path: shown(),
                    source,
                });
            }
        };
        if !meta.file_type().is_symlink() {
            return match input_file::special_kind(meta.file_type()) {
                None => Ok(target),
                Some(kind) => Err(TimingsFileError::NotAFile {
                    path: shown(),
                    kind,
                }),
            };
        }
        let link = std::fs::read_link(&target).map_err(|source| TimingsFileError::Write {
            path: shown(),
            source,
        })?;
        target = match target.parent() {
            Some(dir) => dir.join(link),
            None => link,
        };
    }
    Err(TimingsFileError::Write {
        path: shown(),
        source: std::io::Error::other(format!("more than {MAX_LINKS} symbolic links")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt as _;

    fn timings() -> Timings {
        let json = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[3]}]}"#;
        Timings::from_json(json).unwrap()
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_missing_file_is_a_first_run_and_a_garbled_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        assert!(read(&path).unwrap().is_none());
        std::fs::write(&path, b"not json").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("t.json") && err.contains("not a ca-timings"),
            "{err}"
        );
        write(&path, &timings()).unwrap();
        assert_eq!(read(&path).unwrap(), Some(timings()));
    }

    #[test]
    fn a_symbolic_link_stays_a_link_and_its_target_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/t.json");
        std::fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real/t.json", &link).unwrap();
        write(&link, &timings()).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(read(&target).unwrap(), Some(timings()));
        // A dangling link: its target is created.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("real/new.json", &dangling).unwrap();
        write(&dangling, &timings()).unwrap();
        assert!(
            dangling
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            read(&dir.path().join("real/new.json")).unwrap(),
            Some(timings())
        );
    }

    #[test]
    fn an_existing_partial_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let partial = dir.path().join("t.partial");
        std::fs::write(&partial, b"the user's").unwrap();
        write(&path, &timings()).unwrap();
        assert_eq!(std::fs::read(&partial).unwrap(), b"the user's");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }

    #[test]
    fn a_device_or_fifo_is_refused_and_a_write_error_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let link = dir.path().join("to-full");
        std::os::unix::fs::symlink("/dev/full", &link).unwrap();
        // /dev/full itself only checked: a broken writer must not replace the machine's device.
        let err = check_writable(Path::new("/dev/full"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/full is a character device"), "{err}");
        for path in [fifo.as_path(), &link, dir.path()] {
            let err = check_writable(path).unwrap_err();
            assert!(matches!(err, TimingsFileError::NotAFile { .. }), "{err}");
            let err = write(path, &timings()).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
        let nowhere = dir.path().join("no/such/dir/t.json");
        let err = check_writable(&nowhere).unwrap_err();
        assert!(matches!(err, TimingsFileError::Write { .. }), "{err}");
        let err = write(&nowhere, &timings()).unwrap_err();
        assert!(matches!(err, TimingsFileError::Write { .. }), "{err}");
        // --timings: a FIFO is refused without waiting for a writer.
        let err = read(&fifo).unwrap_err().to_string();
        assert!(err.contains("--timings") && err.contains("FIFO"), "{err}");
    }
}
