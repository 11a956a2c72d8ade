//! Extraction of a layer archive, entry by entry, refusing anything that could write outside
//! the destination. tar's own `unpack` is not used: every entry is checked and written here.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use flate2::read::GzDecoder;
use tar::{Archive, Entry, EntryType};

use super::rules::{entry_path, link_target};
use super::{Digest, LayerError};

/// Bytes read from the archive at a time, and written to a file at a time.
const READ_BUFFER: usize = 256 * 1024;

/// Extracts the tar.gz `archive` of layer `layer` (used in messages) into `dest` (created if
/// missing; meant to be a fresh directory).
///
/// Refused, with [`LayerError::UnsafeEntry`] naming the entry: absolute paths, `..`
/// components, symlinks whose target is absolute or leaves the root (see `rules`), hard links,
/// devices and fifos, entries below a symlink (so nothing is ever written through a link), and
/// a second entry at a path already extracted. Files and directories get the archive's
/// permission bits, except that directories are always owner-rwx so a tree can be filled,
/// copied and removed; files get modification time 0, as in the archive. An error can leave a partial tree in `dest`; nothing is written outside.
pub fn extract(archive: &Path, dest: &Path, layer: &Digest) -> Result<(), LayerError> {
    let file = File::open(archive).map_err(|e| {
        LayerError::io(
            format!("reading layer {layer} from '{}'", archive.display()),
            e,
        )
    })?;
    extract_from(file, dest, layer)
}

/// [`extract`] of the tar.gz bytes `archive` yields (a file, or a download as it arrives).
/// Reading stops at the tar end marker: the caller drains what follows, if it must.
pub(crate) fn extract_from(
    archive: impl Read,
    dest: &Path,
    layer: &Digest,
) -> Result<(), LayerError> {
    let reading = |e| LayerError::io(format!("reading layer {layer}"), e);
    fs::create_dir_all(dest)
        .map_err(|e| LayerError::io(format!("creating '{}'", dest.display()), e))?;
    let gunzip = GzDecoder::new(BufReader::with_capacity(READ_BUFFER, archive));
    let mut tar = Archive::new(gunzip);
    for entry in tar.entries().map_err(reading)? {
        unpack(entry.map_err(reading)?, dest, layer)?;
    }
    Ok(())
}

/// One entry of the archive being extracted, for messages.
struct Named<'a> {
    layer: &'a Digest,
    entry: String,
}

impl Named<'_> {
    fn refuse(&self, reason: impl Into<String>) -> LayerError {
        LayerError::UnsafeEntry {
            layer: self.layer.0.clone(),
            entry: self.entry.clone(),
            reason: reason.into(),
        }
    }

    fn io(&self, source: io::Error) -> LayerError {
        LayerError::io(
            format!("extracting '{}' of layer {}", self.entry, self.layer),
            source,
        )
    }
}

/// Checks one entry and writes it below `dest`.
fn unpack<R: Read>(mut entry: Entry<'_, R>, dest: &Path, layer: &Digest) -> Result<(), LayerError> {
    let raw = entry.path_bytes().into_owned();
    let named = Named {
        layer,
        entry: String::from_utf8_lossy(&raw).into_owned(),
    };
    let kind = entry.header().entry_type();
    let rel = entry_path(Path::new(OsStr::from_bytes(&raw))).map_err(|r| named.refuse(r))?;
    if rel.as_os_str().is_empty() {
        // The root itself (`./`): nothing to create; its mode is the cache's business.
        return match kind {
            EntryType::Directory => Ok(()),
            _ => Err(named.refuse("the entry has an empty path")),
        };
    }
    match kind {
        EntryType::Directory | EntryType::Regular | EntryType::Continuous | EntryType::Symlink => {}
        EntryType::Link => {
            return Err(
                named.refuse("it is a hard link; layers hold files, directories and symlinks")
            );
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            return Err(
                named.refuse("it is a device or fifo; layers hold files, directories and symlinks")
            );
        }
        other => return Err(named.refuse(format!("unsupported entry type {other:?}"))),
    }
    make_parents(dest, &rel, &named)?;
    let path = dest.join(&rel);
    let mode = entry.header().mode().map_err(|e| named.io(e))? & 0o777;
    let duplicate = || named.refuse("an earlier entry has the same path");
    match kind {
        EntryType::Directory => {
            match fs::create_dir(&path) {
                Ok(()) => {}
                // A parent made implicitly for an earlier entry: fine; anything else is not.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let existing = fs::symlink_metadata(&path).map_err(|e| named.io(e))?;
                    if !existing.is_dir() {
                        return Err(duplicate());
                    }
                }
                Err(e) => return Err(named.io(e)),
            }
            fs::set_permissions(&path, Permissions::from_mode(mode | 0o700))
                .map_err(|e| named.io(e))?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .map(|t| PathBuf::from(OsStr::from_bytes(&t)))
                .ok_or_else(|| named.refuse("the symlink has no target"))?;
            link_target(&rel, &target).map_err(|r| named.refuse(r))?;
            symlink(&target, &path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => duplicate(),
                _ => named.io(e),
            })?;
        }
        _ => {
            // `create_new` never follows a symlink and never reuses an existing file.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => duplicate(),
                    _ => named.io(e),
                })?;
            let mut writer = BufWriter::with_capacity(READ_BUFFER, file);
            io::copy(&mut entry, &mut writer).map_err(|e| named.io(e))?;
            let file = writer.into_inner().map_err(|e| named.io(e.into_error()))?;
            // The archive's time (0): any later write to the file moves it, however coarse
            // the clock, which is how the cache notices a job writing into it.
            file.set_modified(UNIX_EPOCH).map_err(|e| named.io(e))?;
            file.set_permissions(Permissions::from_mode(mode))
                .map_err(|e| named.io(e))?;
        }
    }
    Ok(())
}

/// Makes sure every parent of `rel` below `dest` is a real directory, creating missing ones;
/// a parent that is a symlink (or a file) refuses the entry.
fn make_parents(dest: &Path, rel: &Path, named: &Named<'_>) -> Result<(), LayerError> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut dir = dest.to_path_buf();
    let mut shown = PathBuf::new();
    for component in parent.components() {
        dir.push(component);
        shown.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(named.refuse(format!(
                    "it would be written through the symlink '{}'",
                    shown.display()
                )));
            }
            Ok(_) => {
                return Err(named.refuse(format!(
                    "its parent '{}' is not a directory",
                    shown.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(|e| named.io(e))?;
            }
            Err(e) => return Err(named.io(e)),
        }
    }
    Ok(())
}
