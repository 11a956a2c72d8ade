//! Files the runner reads or writes on a user's word (a manifest, a commands file, a timings
//! file, the reports) and files a batch hands back (its framework's report), treated as
//! untrusted: only a regular file is read (a FIFO blocks its reader until someone writes,
//! `/dev/zero` never ends), and never more than a stated number of bytes, so a huge or endless
//! input is an error naming the limit rather than a hang or an exhausted memory.
//!
//! [`read_bounded`] is the one way such a file is read; [`special_kind`] names what a path is
//! when it is not a regular file, for the checks of where reports and history are written.

use std::fs::{FileType, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file given to read was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputFileError {
    /// It cannot be opened or read (it may not exist: [`InputFileError::is_not_found`]).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// It is not a regular file: nothing was read from it.
    #[error("it is {0}, not a regular file (write the contents to a file and give that)")]
    NotRegular(&'static str),
    /// It holds more than the limit: it was not kept.
    #[error("it is larger than {}, the most this file may hold", shown_size(*limit))]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl InputFileError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == ErrorKind::NotFound)
    }
}

/// The contents of the regular file at `path` (a symbolic link is followed), at most `limit`
/// bytes. A FIFO, a device, a socket or a directory is refused without waiting for it (the
/// file is opened non-blocking and its type checked on the opened file, so no rename in
/// between can slip one in); a file longer than `limit` is refused without reading it whole.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, InputFileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if let Some(kind) = special_kind(meta.file_type()) {
        return Err(InputFileError::NotRegular(kind));
    }
    if meta.len() > limit {
        return Err(InputFileError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read (a /proc file says 0 bytes): read one byte past the
    // limit to tell.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputFileError::TooLarge { limit });
    }
    Ok(bytes)
}

/// What a file of `file_type` is, for a message ("a FIFO"), when it is not a regular file.
pub fn special_kind(file_type: FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// A byte count as limits are written: whole MiB where it is, else bytes.
pub fn shown_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"12345");
        let err = read_bounded(&path, 4).unwrap_err();
        assert!(
            matches!(err, InputFileError::TooLarge { limit: 4 }),
            "{err}"
        );
        assert!(err.to_string().contains("4 bytes"), "{err}");
        assert!(
            read_bounded(&dir.path().join("none"), 5)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, kind) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "character device"),
            (dir.path(), "directory"),
        ] {
            let err = read_bounded(path, 1 << 20).unwrap_err().to_string();
            assert!(err.contains(kind), "{}: {err}", path.display());
        }
    }

    #[test]
    fn sizes_are_shown_in_mib_when_whole() {
        assert_eq!(shown_size(64 << 20), "64 MiB");
        assert_eq!(shown_size(1000), "1000 bytes");
    }
}
