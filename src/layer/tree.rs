//! A sorted walk of a local tree that never follows symlinks. Packing and materializing both
//! need every entry, parents before children, in a stable order, and both refuse special files.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::LayerError;

/// What a layer entry is; permission bits only (no setuid/setgid/sticky).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir { mode: u32 },
    File { mode: u32, len: u64 },
    Symlink { target: PathBuf },
}

/// Entries by path relative to the walked root. `PathBuf` orders component by component, so
/// a directory comes right before its contents.
pub(crate) type Tree = BTreeMap<PathBuf, Node>;

/// Adds `rel` (relative to `root`; the empty path is the root itself, which is walked but not
/// added) and everything below it to `tree`.
pub(crate) fn walk(root: &Path, rel: &Path, tree: &mut Tree) -> Result<(), LayerError> {
    walk_from(root, rel, node(&root.join(rel))?, tree)
}

/// [`walk`], with `node` taken as what `rel` is (so a caller may resolve `rel` first).
pub(crate) fn walk_from(
    root: &Path,
    rel: &Path,
    node: Node,
    tree: &mut Tree,
) -> Result<(), LayerError> {
    let full = root.join(rel);
    let is_dir = matches!(node, Node::Dir { .. });
    if !rel.as_os_str().is_empty() {
        tree.insert(rel.to_path_buf(), node);
    }
    if is_dir {
        let context = || format!("listing '{}'", full.display());
        for child in fs::read_dir(&full).map_err(|e| LayerError::io(context(), e))? {
            let child = child.map_err(|e| LayerError::io(context(), e))?;
            walk(root, &rel.join(child.file_name()), tree)?;
        }
    }
    Ok(())
}

/// What is at `path` (not following a final symlink); special files are refused.
pub(crate) fn node(path: &Path) -> Result<Node, LayerError> {
    let context = || format!("reading '{}'", path.display());
    let meta = fs::symlink_metadata(path).map_err(|e| LayerError::io(context(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    let file_type = meta.file_type();
    if file_type.is_dir() {
        Ok(Node::Dir { mode })
    } else if file_type.is_file() {
        Ok(Node::File {
            mode,
            len: meta.len(),
        })
    } else if file_type.is_symlink() {
        let target = fs::read_link(path).map_err(|e| LayerError::io(context(), e))?;
        Ok(Node::Symlink { target })
    } else {
        Err(LayerError::InvalidPath {
            path: path.display().to_string(),
            reason: "it is a socket, fifo or device; layers hold only files, directories and \
                     symlinks"
                .into(),
        })
    }
}
