//! Packing: a deterministic tar + gzip of local paths, hashed while it is written.
//!
//! Deterministic means the bytes depend only on the paths, contents, permission bits and
//! symlink targets: entries are sorted, mtimes are 0, owners are uid/gid 0 with empty names, the
//! gzip header has no name or time, and each file's compression level is chosen from its own
//! first bytes. So identical trees packed anywhere, at any time, get the same digest (with the
//! same flate2 backend).
//!
//! Speed over size: files are deflated at level 1, and a file whose first bytes do not
//! shrink by a tenth at that level (compressed media, archives, random data) is stored, which
//! costs no more than a copy. Layers cross a fast store once per machine; a slow deflate of
//! data that does not compress was most of the time a layer took.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::{Compress, Compression, FlushCompress};
use tar::{EntryType, Header};

use super::digest::HashingWriter;
use super::gzip::GzipWriter;
use super::rules::{entry_path, link_target};
use super::tree::{Node, Tree, node, walk, walk_from};
use super::{Digest, LayerError};

/// The deflate level of compressible files: the fastest.
const FAST_LEVEL: u32 = 1;

/// The level of incompressible files: stored, not deflated.
const STORED_LEVEL: u32 = 0;

/// How much of a file's start decides its level.
const SAMPLE: usize = 32 * 1024;

/// Files smaller than this are deflated without sampling (there is little to gain).
const SAMPLE_MIN: u64 = 4 * 1024;

/// Packs `paths` (relative to `root`; files and directories, recursively; `.` is all of `root`)
/// into a deterministic tar.gz at `out` and returns its digest.
///
/// Symlinks are packed as links, never followed, and must point inside the root (the rules
/// `extract` applies). The parent directories of each path are packed too, so their modes
/// travel. Absolute paths, `..`, paths below a symlink and special files are refused;
/// setuid/setgid/sticky bits are dropped. Overlapping paths are packed once. The archive is
/// streamed to `out`; on error `out` is removed.
pub fn pack(root: &Path, paths: &[PathBuf], out: &Path) -> Result<Digest, LayerError> {
    pack_listed(root, paths, Listed::Entries, out)
}

/// How the paths given to [`pack_listed`] and [`check`] are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// As entries of the root: a symlink is packed as a link, nothing below a symlink is
    /// packed.
    Entries,
    /// Resolved through symlinks (theirs and their parents'): what a path points to is packed
    /// under the path's name, wherever it is. Below a listed path, symlinks are entries again.
    Resolved,
}

/// [`pack`], with the listed paths read as `listed` says.
pub fn pack_listed(
    root: &Path,
    paths: &[PathBuf],
    listed: Listed,
    out: &Path,
) -> Result<Digest, LayerError> {
    let started = Instant::now();
    let tree = collect(root, paths, listed)?;
    let file = File::create(out)
        .map_err(|e| LayerError::io(format!("creating '{}'", out.display()), e))?;
    let packed = write_archive(root, &tree, file, out);
    match &packed {
        Ok(digest) => tracing::info!(
            layer = %digest,
            entries = tree.len(),
            ms = started.elapsed().as_millis() as u64,
            "layer packed"
        ),
        // Best effort: the error that matters is the one being returned.
        Err(_) => drop(fs::remove_file(out)),
    }
    packed
}

/// Checks that `paths` (relative to `root`) can be packed, without writing anything: the
/// rules [`pack`] applies, so that a manifest is refused before anything starts.
pub fn check(root: &Path, paths: &[PathBuf], listed: Listed) -> Result<(), LayerError> {
    collect(root, paths, listed).map(drop)
}

/// The entries to pack, validated: the given paths, their parents and everything below them.
fn collect(root: &Path, paths: &[PathBuf], listed: Listed) -> Result<Tree, LayerError> {
    let mut tree = Tree::new();
    for path in paths {
        let invalid = |reason: String| LayerError::InvalidPath {
            path: path.display().to_string(),
            reason,
        };
        let rel = entry_path(path).map_err(invalid)?;
        if let Err(e) = fs::symlink_metadata(root.join(&rel)) {
            return Err(invalid(format!(
                "it cannot be read in '{}': {e}",
                root.display()
            )));
        }
        // Parents first, top down, so a symlinked parent is refused before anything below it
        // is read.
        let mut parent = PathBuf::new();
        for component in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(component);
            let parent_node = match listed {
                Listed::Entries => node(&root.join(&parent))?,
                Listed::Resolved => resolved_node(&root.join(&parent))?,
            };
            if let Node::Symlink { .. } = parent_node {
                return Err(invalid(format!(
                    "its parent '{}' is a symlink, and a layer holds nothing below a symlink",
                    parent.display()
                )));
            }
            tree.insert(parent.clone(), parent_node);
        }
        match listed {
            Listed::Entries => walk(root, &rel, &mut tree)?,
            Listed::Resolved => walk_from(root, &rel, resolved_node(&root.join(&rel))?, &mut tree)?,
        }
    }
    for (rel, node) in &tree {
        if let Node::Symlink { target } = node {
            link_target(rel, target).map_err(|reason| LayerError::InvalidPath {
                path: root.join(rel).display().to_string(),
                reason,
            })?;
        }
    }
    Ok(tree)
}

/// What `path` resolves to (following symlinks), as a directory or a file.
fn resolved_node(path: &Path) -> Result<Node, LayerError> {
    let real = fs::canonicalize(path)
        .map_err(|e| LayerError::io(format!("resolving '{}'", path.display()), e))?;
    node(&real)
}

/// Streams the archive of `tree` into `file` (which is `out`), hashing the compressed bytes.
fn write_archive(root: &Path, tree: &Tree, file: File, out: &Path) -> Result<Digest, LayerError> {
    let writing = |e| LayerError::io(format!("writing layer '{}'", out.display()), e);
    let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gzip = GzipWriter::new(hashing, FAST_LEVEL).map_err(writing)?;
    let mut builder = tar::Builder::new(gzip);
    let mut sampler = Sampler::new();
    for (rel, node) in tree {
        let full = root.join(rel);
        let packing = |e| LayerError::io(format!("packing '{}'", full.display()), e);
        match node {
            Node::Dir { mode } => {
                let mut header = header(EntryType::Directory, *mode, 0);
                builder
                    .append_data(&mut header, rel, io::empty())
                    .map_err(packing)?;
            }
            Node::File { mode, len } => {
                let mut file = File::open(&full).map_err(packing)?;
                let level = sampler.level(&mut file, *len).map_err(packing)?;
                builder.get_mut().set_level(level).map_err(packing)?;
                let mut data = file.take(*len);
                let mut header = header(EntryType::Regular, *mode, *len);
                builder
                    .append_data(&mut header, rel, &mut data)
                    .map_err(packing)?;
                if data.limit() != 0 {
                    let shrank = io::Error::other("the file shrank while it was being packed");
                    return Err(packing(shrank));
                }
            }
            Node::Symlink { target } => {
                let mut header = header(EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut header, rel, target)
                    .map_err(packing)?;
            }
        }
    }
    let gzip = builder.into_inner().map_err(writing)?;
    let (buffered, digest) = gzip.finish().map_err(writing)?.finish();
    buffered.into_inner().map_err(|e| writing(e.into_error()))?;
    Ok(digest)
}

/// Chooses each file's level from a trial deflate of its first bytes.
struct Sampler {
    deflate: Compress,
    sample: Vec<u8>,
    compressed: Vec<u8>,
}

impl Sampler {
    fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::new(FAST_LEVEL), false),
            sample: Vec::with_capacity(SAMPLE),
            // Room for the worst a level-1 deflate makes of a sample (fixed codes spend 9 bits
            // on some bytes): zlib-rs 0.6 reused with too little room panicked inside the
            // library on incompressible data (seen on git objects) instead of saying so.
            compressed: Vec::with_capacity(2 * SAMPLE),
        }
    }

    /// The level for `file` (of `len` bytes), read from its start; the file is rewound.
    fn level(&mut self, file: &mut File, len: u64) -> io::Result<u32> {
        if len < SAMPLE_MIN {
            return Ok(FAST_LEVEL);
        }
        self.sample.clear();
        file.by_ref()
            .take(SAMPLE as u64)
            .read_to_end(&mut self.sample)?;
        io::Seek::rewind(file)?;
        self.deflate.reset();
        self.compressed.clear();
        self.deflate
            .compress_vec(&self.sample, &mut self.compressed, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        // An output buffer filled to the brim did not shrink at all.
        let shrunk = self.compressed.len() * 10 < self.sample.len() * 9;
        Ok(if shrunk { FAST_LEVEL } else { STORED_LEVEL })
    }
}

/// A header carrying only what a layer keeps: type, permission bits and size.
fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Bytes that deflate cannot shrink (random ones), as in archives and media.
    fn incompressible(len: usize, seed: u64) -> Vec<u8> {
        let mut bytes = vec![0; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
        bytes
    }

    #[test]
    fn incompressible_and_compressible_files_get_their_levels() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = Sampler::new();
        for (i, len) in [SAMPLE_MIN as usize, SAMPLE - 1, SAMPLE, 3 * SAMPLE]
            .into_iter()
            .enumerate()
        {
            let random = dir.path().join(format!("random-{i}"));
            fs::write(
                &random,
                incompressible(len, 0x9e37_79b9_7f4a_7c15 + i as u64),
            )
            .unwrap();
            let mut file = File::open(&random).unwrap();
            assert_eq!(
                sampler.level(&mut file, len as u64).unwrap(),
                STORED_LEVEL,
                "{len} random bytes"
            );
            let text = dir.path().join(format!("text-{i}"));
            fs::write(&text, "a line of text that repeats\n".repeat(len / 28 + 1)).unwrap();
            let mut file = File::open(&text).unwrap();
            assert_eq!(
                sampler.level(&mut file, len as u64).unwrap(),
                FAST_LEVEL,
                "{len} bytes of text"
            );
        }
    }
}
