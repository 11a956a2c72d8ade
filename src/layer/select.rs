//! Selecting the files under a root that globs name, for layers on the runner and for a job's
//! outputs on a worker: a walk that never follows a symlink (a link to `.` or to `/` is an
//! entry, not a directory to enter), prunes directories no pattern can reach into, and stops
//! at a bound on entries, at a deadline and when cancelled. The `glob` crate follows
//! symlinks, so `ln -s . a; ln -s . b` with `**/*.xml` walked forever.
//!
//! Patterns are relative, `/`-separated globs (`*`, `?`, `[…]`, `**` for any number of
//! directories); `*` does not cross `/`, and a leading `.` needs no literal match. `.` names
//! the root itself.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use glob::{MatchOptions, Pattern};

use super::rules::link_target;

/// How matches are matched: case-sensitive, `*` within one name, dot files included.
const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// The bounds of one selection.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'c> {
    /// At most this many entries are looked at.
    pub max_entries: usize,
    /// Give up at this instant.
    pub deadline: Option<Instant>,
    /// Give up when this becomes true (the job was cancelled, the process is stopping).
    pub cancel: Option<&'c AtomicBool>,
}

/// What a selection does with a matching directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directories {
    /// Returned as one path: a layer packs it with all it contains.
    Whole,
    /// Replaced by what it contains (files, symlinks, empty directories), so that each entry
    /// is checked on its own: outputs leave out what they cannot carry.
    Contents,
}

/// The entries a selection found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Matching paths relative to the root, sorted, without duplicates (`.` is the root).
    pub paths: Vec<PathBuf>,
    /// With [`Directories::Contents`]: matching symlinks whose target leaves the root, left
    /// out (never followed), with the reason.
    pub escaping_links: Vec<(PathBuf, String)>,
}

/// Why a selection stopped.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A pattern is not a glob.
    #[error("'{pattern}' is not a valid glob: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// More entries than the bound.
    #[error(
        "more than {0} entries were looked at; name the files more precisely (a directory \
         instead of **)"
    )]
    TooManyEntries(usize),
    /// The deadline passed.
    #[error("listing the files took longer than the {0:?} it had")]
    Deadline(Duration),
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A directory could not be listed.
    #[error("cannot list '{}': {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The entries under `root` that match any of `patterns`, within `bounds`.
pub fn select(
    root: &Path,
    patterns: &[String],
    directories: Directories,
    bounds: Bounds<'_>,
) -> Result<Selection, SelectError> {
    let started = Instant::now();
    let compiled = patterns
        .iter()
        .map(|p| Glob::new(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut walk = Walk {
        root,
        globs: &compiled,
        directories,
        bounds,
        started,
        seen: 0,
        found: Selection::default(),
    };
    if compiled.iter().any(|g| g.parts.is_empty()) {
        walk.matched(PathBuf::new(), true)?;
    } else {
        walk.dir(&PathBuf::new(), false)?;
    }
    let mut found = walk.found;
    for path in &mut found.paths {
        if path.as_os_str().is_empty() {
            *path = PathBuf::from(".");
        }
    }
    found.paths.sort();
    found.paths.dedup();
    Ok(found)
}

/// One pattern split into its `/`-separated parts (`.` parts dropped).
struct Glob {
    parts: Vec<Part>,
    whole: Pattern,
}

/// One part of a pattern.
enum Part {
    /// `**`: any number of directories.
    Any,
    /// One name.
    Name(Pattern),
}

impl Glob {
    fn new(pattern: &str) -> Result<Glob, SelectError> {
        let bad = |e: glob::PatternError| SelectError::Pattern {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        };
        let kept: Vec<&str> = pattern
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let parts = kept
            .iter()
            .map(|p| match *p {
                "**" => Ok(Part::Any),
                p => Pattern::new(p).map(Part::Name).map_err(bad),
            })
            .collect::<Result<_, _>>()?;
        Ok(Glob {
            parts,
            whole: Pattern::new(&kept.join("/")).map_err(bad)?,
        })
    }

    /// Whether the entry at `rel` matches.
    fn matches(&self, rel: &Path) -> bool {
        !self.parts.is_empty() && self.whole.matches_path_with(rel, OPTIONS)
    }

    /// Whether something below the directory at `rel` may match.
    fn reaches_below(&self, rel: &Path) -> bool {
        let mut names = rel.components();
        for part in &self.parts {
            match (part, names.next()) {
                (Part::Any, _) => return true,
                (Part::Name(_), None) => return true,
                (Part::Name(p), Some(name)) => {
                    let name = name.as_os_str().to_string_lossy();
                    if !p.matches_with(&name, OPTIONS) {
                        return false;
                    }
                }
            }
        }
        false
    }
}

/// The state of one selection.
struct Walk<'a> {
    root: &'a Path,
    globs: &'a [Glob],
    directories: Directories,
    bounds: Bounds<'a>,
    started: Instant,
    seen: usize,
    found: Selection,
}

impl Walk<'_> {
    /// Looks at the entries of the directory at `rel`; `inside_match` when an ancestor (or
    /// `rel` itself) matched and its contents are being listed.
    fn dir(&mut self, rel: &Path, inside_match: bool) -> Result<(), SelectError> {
        let full = self.root.join(rel);
        let io = |source| SelectError::Io {
            path: full.clone(),
            source,
        };
        let mut empty = true;
        for entry in fs::read_dir(&full).map_err(io)? {
            empty = false;
            self.tick()?;
            let entry = entry.map_err(io)?;
            let child = rel.join(entry.file_name());
            let is_dir = entry.file_type().map_err(io)?.is_dir();
            let matched = inside_match || self.globs.iter().any(|g| g.matches(&child));
            if matched {
                self.matched(child, is_dir)?;
            } else if is_dir && self.globs.iter().any(|g| g.reaches_below(&child)) {
                self.dir(&child, false)?;
            }
        }
        if empty && inside_match {
            self.found.paths.push(rel.to_path_buf());
        }
        Ok(())
    }

    /// Records the matching entry at `rel` (a real directory when `is_dir`).
    fn matched(&mut self, rel: PathBuf, is_dir: bool) -> Result<(), SelectError> {
        match (is_dir, self.directories) {
            (true, Directories::Contents) => self.dir(&rel, true),
            (true, Directories::Whole) => {
                self.found.paths.push(rel);
                Ok(())
            }
            (false, Directories::Contents) => {
                if let Ok(target) = fs::read_link(self.root.join(&rel))
                    && let Err(reason) = link_target(&normal(&rel), &target)
                {
                    self.found.escaping_links.push((rel, reason));
                } else {
                    self.found.paths.push(rel);
                }
                Ok(())
            }
            (false, Directories::Whole) => {
                self.found.paths.push(rel);
                Ok(())
            }
        }
    }

    /// Counts one entry and checks every bound.
    fn tick(&mut self) -> Result<(), SelectError> {
        self.seen += 1;
        if self.seen > self.bounds.max_entries {
            return Err(SelectError::TooManyEntries(self.bounds.max_entries));
        }
        if self
            .bounds
            .cancel
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(SelectError::Cancelled);
        }
        if let Some(deadline) = self.bounds.deadline
            && Instant::now() >= deadline
        {
            return Err(SelectError::Deadline(deadline - self.started));
        }
        Ok(())
    }
}

/// `rel` without `.` components, as [`link_target`] expects.
fn normal(rel: &Path) -> PathBuf {
    rel.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    const UNBOUNDED: Bounds<'static> = Bounds {
        max_entries: 10_000,
        deadline: None,
        cancel: None,
    };

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, file).unwrap();
        }
        dir
    }

    fn paths(root: &Path, patterns: &[&str], directories: Directories) -> Vec<String> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        select(root, &patterns, directories, UNBOUNDED)
            .unwrap()
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }

    #[test]
    fn globs_match_as_documented() {
        let dir = tree(&[
            "a.xml",
            "r/b.xml",
            "r/s/c.xml",
            "r/s/d.txt",
            ".e.xml",
            "x/y",
        ]);
        let root = dir.path();
        let whole = Directories::Whole;
        assert_eq!(
            paths(root, &["**/*.xml"], whole),
            [".e.xml", "a.xml", "r/b.xml", "r/s/c.xml"]
        );
        assert_eq!(paths(root, &["*.xml"], whole), [".e.xml", "a.xml"]);
        assert_eq!(paths(root, &["r/*"], whole), ["r/b.xml", "r/s"]);
        assert_eq!(paths(root, &["./r/s"], whole), ["r/s"]);
        assert_eq!(paths(root, &["."], whole), ["."]);
        assert_eq!(
            paths(root, &["r"], Directories::Contents),
            ["r/b.xml", "r/s/c.xml", "r/s/d.txt"]
        );
        assert!(paths(root, &["nothing/*"], whole).is_empty());
    }

    #[test]
    fn symlinks_are_entries_never_followed() {
        let dir = tree(&["r/a.xml"]);
        let root = dir.path();
        symlink(".", root.join("a")).unwrap();
        symlink(".", root.join("b")).unwrap();
        symlink("/", root.join("r/slash")).unwrap();
        symlink("a.xml", root.join("r/ok.xml")).unwrap();
        let patterns = vec!["**/*".to_string()];
        let found = select(root, &patterns, Directories::Contents, UNBOUNDED).unwrap();
        let shown: Vec<String> = found
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(shown, ["a", "b", "r/a.xml", "r/ok.xml"]);
        let escaping: Vec<&Path> = found
            .escaping_links
            .iter()
            .map(|(p, _)| p.as_path())
            .collect();
        assert_eq!(escaping, [Path::new("r/slash")]);
    }

    #[test]
    fn bounds_stop_the_walk() {
        let dir = tree(&["a/1", "a/2", "a/3"]);
        let patterns = vec!["**/*.xml".to_string()];
        let few = Bounds {
            max_entries: 2,
            ..UNBOUNDED
        };
        let err = select(dir.path(), &patterns, Directories::Whole, few).unwrap_err();
        assert!(matches!(err, SelectError::TooManyEntries(2)), "{err}");
        let cancel = AtomicBool::new(true);
        let cancelled = Bounds {
            cancel: Some(&cancel),
            ..UNBOUNDED
        };
        let err = select(dir.path(), &patterns, Directories::Whole, cancelled).unwrap_err();
        assert!(matches!(err, SelectError::Cancelled), "{err}");
        let late = Bounds {
            deadline: Some(Instant::now()),
            ..UNBOUNDED
        };
        let err = select(dir.path(), &patterns, Directories::Whole, late).unwrap_err();
        assert!(matches!(err, SelectError::Deadline(_)), "{err}");
    }
}
