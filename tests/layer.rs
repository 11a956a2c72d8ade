//! Layers as users rely on them: packing is deterministic, a round trip keeps the tree, the
//! cache refuses corrupt archives, extraction refuses hostile ones, job directories are built
//! from layers in order.

// Helpers of a test crate unwrap like its tests: a failure there is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes, Permissions};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cluster_action::layer::{Digest, LayerCache, LayerError, extract, materialize, pack};
use cluster_action::seal::ClusterKeys;
use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};
use tempfile::TempDir;

mod common;
use common::{entries, mkfifo};

/// Writes `rel` below `root` with `contents` and `mode`, creating parents.
fn write(root: &Path, rel: &str, contents: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
}

/// What a tree holds, as a user sees it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Dir(u32),
    File(u32, String),
    Link(PathBuf),
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Seen>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                out.insert(rel, Seen::Link(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Seen::Dir(mode));
                visit(root, &path, out);
            } else {
                out.insert(rel, Seen::File(mode, fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

/// A tree with the things that matter: plain, executable and read-only files, symlinks (to a
/// file and up to a parent), an empty directory with its own mode, a long path and a long
/// symlink target (> 100 bytes, beyond the plain tar header).
fn sample_tree(root: &Path) {
    write(root, "src/main.rs", "fn main() {}\n", 0o644);
    write(root, "bin/tool", "#!/bin/sh\necho hi\n", 0o755);
    write(root, "data/readonly.txt", "do not touch\n", 0o444);
    let long = format!("{}/{}/leaf.txt", "d".repeat(60), "e".repeat(60));
    write(root, &long, "deep\n", 0o600);
    symlink(&long, root.join("deep-link")).unwrap();
    symlink("bin/tool", root.join("tool")).unwrap();
    symlink("../src/main.rs", root.join("data/main.rs")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::set_permissions(root.join("empty"), Permissions::from_mode(0o750)).unwrap();
}

fn all() -> Vec<PathBuf> {
    vec![PathBuf::from(".")]
}

#[test]
fn identical_trees_made_at_different_times_have_identical_digests() {
    let (a, b, out) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    sample_tree(a.path());
    sample_tree(b.path());
    // Make b's files look years older, as a checkout elsewhere would.
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for rel in ["src/main.rs", "bin/tool", "empty", "src"] {
        let file = File::open(b.path().join(rel)).unwrap();
        file.set_times(FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
    }
    let da = pack(a.path(), &all(), &out.path().join("a.tgz")).unwrap();
    // Overlapping paths in another order name the same entries.
    let paths: Vec<PathBuf> = ["src/main.rs", ".", "bin", "src"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let db = pack(b.path(), &paths, &out.path().join("b.tgz")).unwrap();
    assert_eq!(da, db);
    assert_eq!(
        fs::read(out.path().join("a.tgz")).unwrap(),
        fs::read(out.path().join("b.tgz")).unwrap()
    );
    assert_eq!(Digest::of_file(&out.path().join("a.tgz")).unwrap(), da);
}

#[test]
fn content_and_mode_change_the_digest() {
    let (tree, out) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write(tree.path(), "run.sh", "echo 1\n", 0o644);
    let first = pack(tree.path(), &all(), &out.path().join("1.tgz")).unwrap();
    fs::set_permissions(tree.path().join("run.sh"), Permissions::from_mode(0o755)).unwrap();
    let executable = pack(tree.path(), &all(), &out.path().join("2.tgz")).unwrap();
    write(tree.path(), "run.sh", "echo 2\n", 0o755);
    let edited = pack(tree.path(), &all(), &out.path().join("3.tgz")).unwrap();
    assert_ne!(first, executable);
    assert_ne!(executable, edited);
    assert_ne!(first, edited);
}

#[test]
fn round_trip_keeps_contents_modes_symlinks_and_empty_dirs() {
    let (tree, out) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    sample_tree(tree.path());
    let archive = out.path().join("layer.tgz");
    let digest = pack(tree.path(), &all(), &archive).unwrap();
    let dest = out.path().join("dest");
    extract(&archive, &dest, &digest).unwrap();
    assert_eq!(snapshot(&dest), snapshot(tree.path()));
}

#[test]
fn packing_a_subpath_brings_its_parents() {
    let (tree, out) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    sample_tree(tree.path());
    let archive = out.path().join("layer.tgz");
    let digest = pack(tree.path(), &[PathBuf::from("bin/tool")], &archive).unwrap();
    let dest = out.path().join("dest");
    extract(&archive, &dest, &digest).unwrap();
    let seen = snapshot(&dest);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[Path::new("bin/tool")],
        Seen::File(0o755, "#!/bin/sh\necho hi\n".into())
    );
}

/// Packs `paths` of a sample tree (plus `setup`) and returns the error message.
fn pack_error(setup: impl Fn(&Path), paths: &[&str]) -> String {
    let (tree, out) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    sample_tree(tree.path());
    setup(tree.path());
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let archive = out.path().join("layer.tgz");
    let err = pack(tree.path(), &paths, &archive).unwrap_err().to_string();
    eprintln!("{err}");
    assert!(!archive.exists(), "a failed pack leaves no archive");
    err
}

#[test]
fn pack_refuses_paths_that_cannot_be_layer_entries() {
    let nothing = |_: &Path| {};
    assert!(pack_error(nothing, &["/etc/hosts"]).contains("'/etc/hosts'"));
    assert!(pack_error(nothing, &["src/../../x"]).contains("'src/../../x'"));
    assert!(pack_error(nothing, &["no/such/file"]).contains("'no/such/file'"));
    let escaping = |root: &Path| symlink("/etc/hosts", root.join("src/hosts")).unwrap();
    assert!(pack_error(escaping, &["src"]).contains("src/hosts"));
    let link_dir = |root: &Path| symlink("src", root.join("alias")).unwrap();
    assert!(pack_error(link_dir, &["alias/main.rs"]).contains("'alias'"));
    let fifo = |root: &Path| mkfifo(&root.join("src/pipe"));
    assert!(pack_error(fifo, &["."]).contains("src/pipe"));
}

/// One hand-made tar entry, with raw bytes where `tar::Builder` would refuse them.
struct Raw<'a> {
    path: &'a [u8],
    kind: EntryType,
    link: &'a [u8],
    data: &'a [u8],
}

fn file(path: &str) -> Raw<'_> {
    Raw {
        path: path.as_bytes(),
        kind: EntryType::Regular,
        link: b"",
        data: b"pwned\n",
    }
}

fn link<'a>(path: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        path: path.as_bytes(),
        kind: EntryType::Symlink,
        link: target.as_bytes(),
        data: b"",
    }
}

fn special(path: &str, kind: EntryType) -> Raw<'_> {
    Raw {
        path: path.as_bytes(),
        kind,
        link: b"",
        data: b"",
    }
}

fn raw_archive(entries: &[Raw<'_>], out: &Path) {
    let mut tar = Vec::new();
    for entry in entries {
        let mut header = Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..entry.path.len()].copy_from_slice(entry.path);
        old.linkname[..entry.link.len()].copy_from_slice(entry.link);
        header.set_entry_type(entry.kind);
        header.set_mode(0o644);
        header.set_size(entry.data.len() as u64);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(entry.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = GzEncoder::new(File::create(out).unwrap(), Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap();
}

/// Extracts a hostile archive into `<tmp>/dest`, expects a refusal of `entry`, and checks that
/// nothing appeared next to `dest`.
fn assert_refused(entries: &[Raw<'_>], entry: &str) {
    let outer = TempDir::new().unwrap();
    let archive = outer.path().join("layer.tgz");
    raw_archive(entries, &archive);
    let digest = Digest::of_file(&archive).unwrap();
    let err = extract(&archive, &outer.path().join("dest"), &digest).unwrap_err();
    eprintln!("{err}");
    match &err {
        LayerError::UnsafeEntry {
            entry: refused,
            layer,
            ..
        } => {
            assert_eq!(refused, entry, "{err}");
            assert_eq!(layer, &digest.0);
        }
        other => panic!("expected a refusal of '{entry}', got: {other}"),
    }
    let mut names: Vec<_> = fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "layer.tgz"],
        "something was written outside dest"
    );
}

#[test]
fn extract_refuses_absolute_paths() {
    let outer = TempDir::new().unwrap();
    let evil = outer.path().join("evil").display().to_string();
    assert_refused(&[file(&evil)], &evil);
    assert!(!outer.path().join("evil").exists());
}

#[test]
fn extract_refuses_parent_components() {
    assert_refused(&[file("ok.txt"), file("../evil")], "../evil");
    assert_refused(&[file("sub/../../evil")], "sub/../../evil");
}

#[test]
fn extract_refuses_escaping_symlinks() {
    assert_refused(&[link("sub/l", "../../x")], "sub/l");
    assert_refused(&[link("l", "/etc")], "l");
    // `l` -> `.` is the root; `l/..` would be the root's parent.
    assert_refused(&[link("l", "."), link("e", "l/.."), file("e/evil")], "e");
}

#[test]
fn extract_refuses_writing_through_symlinks() {
    let outer = TempDir::new().unwrap();
    let target = outer.path().display().to_string();
    assert_refused(&[link("a", &target), file("a/passwd")], "a");
    assert!(!outer.path().join("passwd").exists());
    // Even a link that stays inside is never written through, nor replaced by a file.
    assert_refused(&[link("a", "."), file("a/x")], "a/x");
    assert_refused(&[file("b"), link("a", "b"), file("a")], "a");
}

#[test]
fn extract_refuses_devices_fifos_and_hard_links() {
    assert_refused(&[special("dev", EntryType::Char)], "dev");
    assert_refused(&[special("blk", EntryType::Block)], "blk");
    assert_refused(&[special("fifo", EntryType::Fifo)], "fifo");
    let hard = Raw {
        path: b"h",
        kind: EntryType::Link,
        link: b"../../etc/passwd",
        data: b"",
    };
    assert_refused(&[hard], "h");
}

/// A packed sample layer in a temp dir: (dir, archive, digest).
fn sample_layer() -> (TempDir, PathBuf, Digest) {
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let archive = dir.path().join("layer.tgz");
    let digest = pack(&tree, &all(), &archive).unwrap();
    (dir, archive, digest)
}

#[test]
fn cache_insert_verifies_extracts_and_places_the_tree() {
    let (dir, archive, digest) = sample_layer();
    let cache_dir = dir.path().join("cache");
    let cache = LayerCache::open(&cache_dir).unwrap();
    let tree = cache.insert(&archive, &digest).unwrap();
    assert_eq!(tree, cache_dir.join(&digest.0));
    assert_eq!(snapshot(&tree), snapshot(&dir.path().join("tree")));
    // Again (as a second fetcher would): same tree, still only the tree in the cache.
    assert_eq!(cache.insert(&archive, &digest).unwrap(), tree);
    assert_eq!(entries(&cache_dir), [digest.0.as_str()]);
    assert!(archive.exists(), "the caller's archive is left alone");
}

#[test]
fn a_sealed_cache_opens_sealed_layers_and_refuses_tampered_ones() {
    let (dir, archive, _) = sample_layer();
    let keys = ClusterKeys::derive(b"secret", "run", "cluster").unwrap();
    let sealed_path = dir.path().join("sealed");
    let sealed = keys.layers().seal_file(&archive, &sealed_path).unwrap();
    let digest = Digest::parse(&sealed.name).unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = LayerCache::open(&cache_dir)
        .unwrap()
        .with_seal(Some(keys.layers()));
    // A sealed layer works only with the key: an unsealed cache sees a hash mismatch.
    let plain_cache = LayerCache::open(&dir.path().join("plain-cache")).unwrap();
    assert!(matches!(
        plain_cache.insert(&sealed_path, &digest),
        Err(LayerError::HashMismatch { .. })
    ));
    let mut bytes = fs::read(&sealed_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let tampered = dir.path().join("tampered");
    fs::write(&tampered, &bytes).unwrap();
    match cache.insert(&tampered, &digest) {
        Err(e @ LayerError::Refused { .. }) => {
            assert!(e.to_string().contains("failed authentication"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(entries(&cache_dir).is_empty(), "nothing of it is kept");
    let other = ClusterKeys::derive(b"other", "run", "cluster").unwrap();
    let wrong_key = LayerCache::open(&dir.path().join("other-cache"))
        .unwrap()
        .with_seal(Some(other.layers()));
    assert!(matches!(
        wrong_key.insert(&sealed_path, &digest),
        Err(LayerError::Refused { .. })
    ));
    let tree = cache.insert(&sealed_path, &digest).unwrap();
    assert_eq!(snapshot(&tree), snapshot(&dir.path().join("tree")));
    assert_eq!(entries(&cache_dir), [digest.0.as_str()]);
}

#[test]
fn cache_refuses_a_corrupt_archive_and_stays_clean() {
    let (dir, archive, digest) = sample_layer();
    let mut bytes = fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let corrupt = dir.path().join("downloaded");
    fs::write(&corrupt, &bytes).unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = LayerCache::open(&cache_dir).unwrap();
    match cache.insert(&corrupt, &digest) {
        Err(LayerError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, digest.0);
            assert_ne!(actual, digest.0);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(entries(&cache_dir).is_empty());
}

#[test]
fn cache_refuses_a_hostile_archive_and_stays_clean() {
    let dir = TempDir::new().unwrap();
    let archive = dir.path().join("layer.tgz");
    raw_archive(&[file("ok"), link("l", "/etc")], &archive);
    let digest = Digest::of_file(&archive).unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = LayerCache::open(&cache_dir).unwrap();
    let err = cache.insert(&archive, &digest).unwrap_err();
    assert!(matches!(err, LayerError::UnsafeEntry { .. }), "{err}");
    assert!(entries(&cache_dir).is_empty());
}

#[test]
fn cache_refuses_a_digest_that_is_not_one() {
    let (dir, archive, _) = sample_layer();
    let cache = LayerCache::open(&dir.path().join("cache")).unwrap();
    let err = cache
        .insert(&archive, &Digest("../escape".into()))
        .unwrap_err();
    assert!(matches!(err, LayerError::InvalidDigest(_)), "{err}");
}

#[test]
fn concurrent_inserts_of_one_layer_both_succeed() {
    let (dir, archive, digest) = sample_layer();
    let cache = LayerCache::open(&dir.path().join("cache")).unwrap();
    let trees: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| cache.insert(&archive, &digest).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(trees[0], trees[1]);
    assert_eq!(snapshot(&trees[0]), snapshot(&dir.path().join("tree")));
    assert_eq!(entries(&dir.path().join("cache")), [digest.0.as_str()]);
}

#[test]
fn materialize_applies_layers_in_order_and_copies() {
    let dir = TempDir::new().unwrap();
    let (base, top, job) = (
        dir.path().join("base"),
        dir.path().join("top"),
        dir.path().join("job"),
    );
    write(&base, "same.txt", "base\n", 0o644);
    write(&base, "only-base.txt", "base\n", 0o644);
    write(&base, "becomes-file/inner.txt", "base\n", 0o644);
    symlink("only-base.txt", base.join("becomes-dir")).unwrap();
    write(&top, "same.txt", "top\n", 0o755);
    write(&top, "becomes-file", "top\n", 0o644);
    write(&top, "becomes-dir/inner.txt", "top\n", 0o644);
    symlink("same.txt", top.join("link")).unwrap();

    materialize(&[base.clone(), top.clone()], &job).unwrap();
    let seen = snapshot(&job);
    assert_eq!(
        seen[Path::new("same.txt")],
        Seen::File(0o755, "top\n".into())
    );
    assert_eq!(
        seen[Path::new("only-base.txt")],
        Seen::File(0o644, "base\n".into())
    );
    assert_eq!(
        seen[Path::new("becomes-file")],
        Seen::File(0o644, "top\n".into())
    );
    assert_eq!(
        seen[Path::new("becomes-dir/inner.txt")],
        Seen::File(0o644, "top\n".into())
    );
    assert_eq!(seen[Path::new("link")], Seen::Link("same.txt".into()));
    assert!(!seen.contains_key(Path::new("becomes-file/inner.txt")));

    // A job writing its files leaves the layers intact.
    fs::write(job.join("same.txt"), "changed by the job\n").unwrap();
    assert_eq!(fs::read_to_string(top.join("same.txt")).unwrap(), "top\n");
}
