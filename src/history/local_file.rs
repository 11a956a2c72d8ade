//! The local timing history: `--timings FILE` read before a run and `--write-timings FILE`
//! written after it, a `ca-timings` JSON document like the artifact's, for runs that keep
//! their history in a file (outside GitHub, or to pin the estimates).

use std::path::Path;

use super::ArtifactDocument;
use super::timings::Timings;

/// A timings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimingsFileError {
    /// The file exists but cannot be read or written.
    #[error("timings file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a `ca-timings` JSON document this build reads.
    #[error("timings file {path} is not a ca-timings JSON file: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads `--timings FILE`: none when the file does not exist yet (a first run), an error
/// naming the file when it cannot be read or is not a timings file.
pub fn read(path: &Path) -> Result<Option<Timings>, TimingsFileError> {
    let shown = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            Timings::from_json(&bytes)
                .map(Some)
                .map_err(|reason| TimingsFileError::Format {
                    path: shown,
                    reason,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TimingsFileError::Io {
            path: shown,
            source,
        }),
    }
}

/// Writes `--write-timings FILE` (through a temporary file, so a reader never sees half).
pub fn write(path: &Path, timings: &Timings) -> Result<(), TimingsFileError> {
    let io = |source| TimingsFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let partial = path.with_extension("partial");
    std::fs::write(&partial, timings.to_json()).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let json = br#"{"version":1,"tests":[{"suite":"s","id":"a","durations_ms":[3]}]}"#;
        let timings = Timings::from_json(json).unwrap();
        write(&path, &timings).unwrap();
        assert_eq!(read(&path).unwrap(), Some(timings));
    }
}
