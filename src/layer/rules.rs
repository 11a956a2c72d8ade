//! What a layer may contain. `pack` applies these rules to refuse a bad tree early, with the
//! user's path in the message; `extract` applies the same rules to whatever an archive holds.

use std::path::{Component, Path, PathBuf};

/// The normal form of an entry path: relative, without `..`, with `.` components dropped
/// (empty for the root itself). `Err` holds the reason for refusing it.
pub(crate) fn entry_path(path: &Path) -> Result<PathBuf, String> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => normal.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains a '..' component".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("the path is absolute".into());
            }
        }
    }
    Ok(normal)
}

/// Checks that the symlink at entry path `link` (in normal form) with `target` stays inside
/// the layer: the target must be relative and made of leading `..` components that do not
/// climb above the root (counted from the link's own directory) followed by plain names.
///
/// Why no `..` after a name: in `x/..` the kernel goes to the parent of whatever `x` resolves
/// to, so if `x` is itself a symlink (say to `.`, at the root) `x/..` leaves the tree although
/// it looks harmless. Leading `..` climb real directories only, because no entry is ever
/// written below a symlink, and every symlink reached by the plain names that follow obeys
/// this same rule, so resolution stays inside the root.
pub(crate) fn link_target(link: &Path, target: &Path) -> Result<(), String> {
    let shown = target.display();
    if target.as_os_str().is_empty() {
        return Err("the symlink has an empty target".into());
    }
    let link_depth = link.components().count().saturating_sub(1);
    let mut ups = 0;
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("the symlink target '{shown}' is absolute"));
            }
            Component::CurDir => {}
            Component::ParentDir if descended => {
                return Err(format!(
                    "the symlink target '{shown}' has '..' after a name; only leading '..' are allowed"
                ));
            }
            Component::ParentDir => ups += 1,
            Component::Normal(_) => descended = true,
        }
    }
    if ups > link_depth {
        return Err(format!("the symlink target '{shown}' leaves the layer"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalized_or_refused() {
        assert_eq!(entry_path(Path::new("./a/./b/")).unwrap(), Path::new("a/b"));
        assert_eq!(entry_path(Path::new(".")).unwrap(), Path::new(""));
        assert!(entry_path(Path::new("/etc/passwd")).is_err());
        assert!(entry_path(Path::new("a/../../b")).is_err());
        assert!(entry_path(Path::new("a/..")).is_err());
    }

    #[test]
    fn link_targets_must_stay_inside() {
        let ok = [
            ("l", "x"),
            ("l", "./x/y"),
            ("a/l", ".."),
            ("a/b/l", "../../x"),
            ("l", "."),
        ];
        for (link, target) in ok {
            assert!(
                link_target(Path::new(link), Path::new(target)).is_ok(),
                "{link} -> {target}"
            );
        }
        let bad = [
            ("l", ".."),
            ("a/l", "../../x"),
            ("l", "/etc"),
            ("l", ""),
            ("l", "x/../y"),
            ("e", "l/.."),
        ];
        for (link, target) in bad {
            assert!(
                link_target(Path::new(link), Path::new(target)).is_err(),
                "{link} -> {target}"
            );
        }
    }
}
