//! Directory names for free-text names: the directory, under `--outputs-dir`, that a job's
//! outputs are brought back to (one per job name, never shared), and a suite's own directory
//! for the files it ships. Job names are free text (`a b`, `a/b`, `ü`, `..`, 300 characters),
//! directory names are not, and a file system may fold case (macOS) or limit a name to 255
//! bytes; a name mapped to a plain slug alone let `a b`, `a_b` and `a/b` overwrite each
//! other's outputs.
//!
//! A name that is already a plain directory name (lowercase ASCII letters, digits, `-`, `_`,
//! `.`, at most [`MAX_PLAIN`] bytes, not `.` or `..`) is used as it is. Any other name becomes
//! a readable slug of it, a `+` (which no plain name has) and 16 hex digits of the SHA-256 of
//! the exact name. So the mapping is injective (up to a 64-bit hash collision), stays
//! injective when case is folded (plain names have no capitals, hashes are lowercase), and no
//! result is longer than [`MAX_PLAIN`] bytes.

use sha2::{Digest as _, Sha256};

/// The longest plain name kept as it is, and the longest directory name made.
pub const MAX_PLAIN: usize = 64;

/// Hex digits of the hash in a hashed name.
const HASH_HEX: usize = 16;

/// The directory name, relative to `--outputs-dir`, of the job called `name`.
pub fn dir_name(name: &str) -> String {
    if is_plain(name) {
        return name.to_owned();
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let mut slug: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .take(MAX_PLAIN - HASH_HEX - 1)
        .collect();
    if slug.starts_with('.') {
        // Not hidden, and never `.` or `..`.
        slug.replace_range(..1, "_");
    }
    format!("{slug}+{}", &hash[..HASH_HEX])
}

/// Whether `name` can be a directory name as it is, on every file system we run on.
fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PLAIN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn plain_names_are_kept() {
        for name in ["unit-1", "a_b", "v1.2", "x"] {
            assert_eq!(dir_name(name), name);
        }
    }

    #[test]
    fn other_names_get_a_readable_slug_and_a_hash() {
        let dir = dir_name("Unit Tests/1");
        assert!(dir.starts_with("unit_tests_1+"), "{dir}");
        assert_eq!(dir.len(), "unit_tests_1+".len() + HASH_HEX);
        assert!(dir_name("..").starts_with("_.+"), "{}", dir_name(".."));
        assert!(dir_name("").starts_with('+'));
    }

    #[test]
    fn distinct_names_get_distinct_directories_even_with_case_folded() {
        let names = [
            "a b",
            "a_b",
            "a/b",
            "a:b",
            "ü",
            "é",
            "_",
            ".",
            "..",
            "",
            "A_B",
            "a_B",
            "unit",
            "Unit",
            "UNIT",
            "a_b+0000000000000000",
        ];
        let folded: BTreeSet<String> = names.iter().map(|n| dir_name(n).to_lowercase()).collect();
        assert_eq!(folded.len(), names.len(), "{folded:?}");
    }

    #[test]
    fn long_names_stay_within_the_limit_and_distinct() {
        let long = "x".repeat(300);
        let longer = format!("{long}y");
        for name in [&long, &longer] {
            let dir = dir_name(name);
            assert!(dir.len() <= MAX_PLAIN, "{dir}");
            assert!(!dir.contains('/'));
        }
        assert_ne!(dir_name(&long), dir_name(&longer));
    }
}
