//! Job directories assembled from extracted layers. Files are copied, never hard-linked: a job
//! may modify its files, and a hard link would let it damage the shared cache.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::LayerError;
use super::tree::{Node, Tree, walk};

/// Builds `dest` (created if missing) from the extracted trees `layers`, in order: where two
/// layers have the same path the later one wins, whatever either entry is. Files are copied with
/// their permission bits, symlinks are recreated as symlinks, directories get their layer's mode
/// (cache trees keep directories owner-writable, so a directory's contents can follow it).
pub fn materialize(layers: &[PathBuf], dest: &Path) -> Result<(), LayerError> {
    fs::create_dir_all(dest)
        .map_err(|e| LayerError::io(format!("creating '{}'", dest.display()), e))?;
    for layer in layers {
        let mut tree = Tree::new();
        walk(layer, Path::new(""), &mut tree)?;
        // Parents come before their contents, so every parent below `dest` has already been
        // made a real directory by this layer: nothing is written through a symlink.
        for (rel, node) in &tree {
            let target = dest.join(rel);
            place(&layer.join(rel), &target, node).map_err(|e| {
                LayerError::io(
                    format!(
                        "copying '{}' to '{}'",
                        layer.join(rel).display(),
                        target.display()
                    ),
                    e,
                )
            })?;
        }
    }
    Ok(())
}

/// Puts `node` (found at `source`) at `target`, replacing what an earlier layer put there.
fn place(source: &Path, target: &Path, node: &Node) -> io::Result<()> {
    let existing = match fs::symlink_metadata(target) {
        Ok(meta) => Some(meta.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match (node, existing) {
        (Node::Dir { .. }, Some(true)) => {}
        (_, Some(true)) => fs::remove_dir_all(target)?,
        (_, Some(false)) => fs::remove_file(target)?,
        (_, None) => {}
    }
    match node {
        Node::Dir { mode } => {
            if existing != Some(true) {
                fs::create_dir(target)?;
            }
            fs::set_permissions(target, fs::Permissions::from_mode(*mode))
        }
        Node::File { .. } => fs::copy(source, target).map(drop),
        Node::Symlink { target: link } => symlink(link, target),
    }
}
