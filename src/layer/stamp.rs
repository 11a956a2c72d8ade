//! What a tree in the layer cache was when the cache made it, so that a change since (a job
//! writing into the cache through a relative path, a hard link or a chmod) is noticed before
//! the tree is used again.
//!
//! Every entry is stamped with its inode, link count, type and mode, size, and modification
//! and change times. Extracted files are modified at time 0, so writing one moves its time
//! however coarse the clock; replacing it changes its inode or times, a hard link its link
//! count, adding or removing an entry the set of paths, and the change time (ctime) cannot be
//! set back from user space. A tree whose stamps all match is the tree that was extracted
//! from verified bytes.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One entry's identity and the fields any change to it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    links: u64,
    mode: u32,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// The stamps of every entry of a tree (the root included, as the empty path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot(BTreeMap<PathBuf, Stamp>);

impl Snapshot {
    /// Stamps the tree at `root` as it is now (symlinks are stamped, never followed).
    pub(crate) fn take(root: &Path) -> io::Result<Self> {
        let mut stamps = BTreeMap::new();
        visit(root, Path::new(""), &mut stamps)?;
        Ok(Self(stamps))
    }

    /// Whether the tree at `root` is still exactly as stamped (an unreadable tree is not).
    pub(crate) fn matches(&self, root: &Path) -> bool {
        Self::take(root).is_ok_and(|now| now == *self)
    }
}

fn visit(root: &Path, rel: &Path, stamps: &mut BTreeMap<PathBuf, Stamp>) -> io::Result<()> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path)?;
    stamps.insert(
        rel.to_path_buf(),
        Stamp {
            inode: meta.ino(),
            links: meta.nlink(),
            mode: meta.mode(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        },
    );
    if meta.is_dir() {
        for child in fs::read_dir(&path)? {
            visit(root, &rel.join(child?.file_name()), stamps)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A tree, its snapshot, and a change to it: the snapshot must notice.
    fn notices(change: impl Fn(&Path)) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/data.txt"), "original").unwrap();
        // As extraction leaves files: modified at time 0.
        fs::File::options()
            .write(true)
            .open(root.join("sub/data.txt"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        std::os::unix::fs::symlink("sub/data.txt", root.join("link")).unwrap();
        let snapshot = Snapshot::take(root).unwrap();
        assert!(snapshot.matches(root), "an untouched tree matches");
        change(root);
        !snapshot.matches(root)
    }

    #[test]
    fn any_change_to_the_tree_is_noticed() {
        let data = |root: &Path| root.join("sub/data.txt");
        assert!(notices(|r| fs::write(data(r), "tampered").unwrap()));
        assert!(
            notices(|r| fs::write(data(r), "original").unwrap()),
            "same bytes, new times"
        );
        assert!(notices(|r| fs::set_permissions(
            data(r),
            fs::Permissions::from_mode(0o777)
        )
        .unwrap()));
        assert!(notices(|r| {
            fs::remove_file(data(r)).unwrap();
            fs::write(data(r), "original").unwrap();
        }));
        assert!(notices(|r| fs::write(r.join("sub/new"), "").unwrap()));
        assert!(notices(|r| fs::hard_link(data(r), r.join("alias")).unwrap()));
        assert!(notices(|r| {
            fs::remove_file(r.join("link")).unwrap();
            std::os::unix::fs::symlink("sub", r.join("link")).unwrap();
        }));
    }
}
