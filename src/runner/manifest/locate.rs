//! Where a node of a YAML document starts, for error messages. serde_yaml keeps positions to
//! itself except on errors, so we walk to the node with serde and fail there on purpose: the
//! error carries the exact line and column, from the same parser that read the manifest.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::Location;

/// One step from a node to one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// The value of this key in a mapping.
    Key(String),
    /// This element of a sequence.
    Index(usize),
}

impl From<&str> for Step {
    fn from(key: &str) -> Self {
        Step::Key(key.to_owned())
    }
}

impl From<usize> for Step {
    fn from(index: usize) -> Self {
        Step::Index(index)
    }
}

/// The path of steps from the document root to a node.
pub(super) type NodePath = Vec<Step>;

/// Builds a [`NodePath`] from keys and indices: `node_path!["jobs", 3, "run"]`.
macro_rules! node_path {
    ($($step:expr),* $(,)?) => { vec![$($crate::runner::manifest::locate::Step::from($step)),*] };
}
pub(super) use node_path;

/// The text of the error raised at the node we look for; nothing else produces it.
const FOUND: &str = "\u{0}located";

/// The first prefix of the text searched, in bytes (rounded up to a whole line).
const FIRST_PREFIX: usize = 64 * 1024;

/// The location of the node at `path` in `text`, if the document has it.
///
/// The parser reads a whole document before serde sees any of it, so searching the full text
/// of a 100,000-job manifest for each problem would take seconds. Problems shown are the
/// first ones, near the top, so we search growing prefixes cut at line ends: a prefix that
/// holds the node locates it exactly as the whole text would (events before a cut or a
/// syntax error still reach serde), and the total cost is a few times the node's offset.
pub(super) fn locate(text: &str, path: &[Step]) -> Option<Location> {
    let mut len = FIRST_PREFIX;
    loop {
        let end = text
            .as_bytes()
            .get(len..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(text.len(), |newline| len + newline + 1);
        if let Some(found) = locate_in(&text[..end], path) {
            return Some(found);
        }
        if end == text.len() {
            return None;
        }
        len = len.saturating_mul(4);
    }
}

/// The location of the node at `path` in `text`, which may end in the middle of the document.
fn locate_in(text: &str, path: &[Step]) -> Option<Location> {
    let error = Walk(path)
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    if !error.to_string().contains(FOUND) {
        return None;
    }
    error.location().map(|at| Location {
        line: at.line(),
        column: at.column(),
    })
}

/// Descends along the remaining path; fails with [`FOUND`] on reaching its end.
struct Walk<'p>(&'p [Step]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            deserializer.deserialize_any(Found)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping or a sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(wanted), rest)) = self.0.split_first() else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == *wanted {
                return map.next_value_seed(Walk(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(wanted), rest)) = self.0.split_first() else {
            return Ok(());
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk(rest)).map(|_| ())
    }
}

/// Refuses every node (serde's default for each visit method), with [`FOUND`] as the message.
struct Found;

impl Visitor<'_> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
jobs:
  - name: a
    run: echo a
  - {name: b, run: echo b}
env:
  K: v
";

    fn at(path: NodePath) -> Option<(usize, usize)> {
        at_in(DOC, path)
    }

    #[test]
    fn finds_block_and_flow_nodes() {
        assert_eq!(at(node_path!["jobs"]), Some((2, 3)));
        assert_eq!(at(node_path!["jobs", 0]), Some((2, 5)));
        assert_eq!(at(node_path!["jobs", 0, "run"]), Some((3, 10)));
        assert_eq!(at(node_path!["jobs", 1, "name"]), Some((4, 12)));
        assert_eq!(at(node_path!["env", "K"]), Some((6, 6)));
    }

    #[test]
    fn finds_nodes_beyond_the_first_prefix() {
        let mut doc = String::from("jobs:\n");
        for i in 0..10_000 {
            doc.push_str(&format!("  - name: job-{i}\n    run: echo {i}\n"));
        }
        let line = |i: usize| at_in(&doc, node_path!["jobs", i, "run"]).map(|(line, _)| line);
        assert!(doc.len() > 4 * FIRST_PREFIX);
        assert_eq!(line(0), Some(3));
        assert_eq!(line(9_999), Some(20_001));
        assert_eq!(line(10_000), None);
    }

    #[test]
    fn finds_nodes_before_a_syntax_error() {
        let doc = "jobs:\n  - name: a\n  run: [unclosed\n";
        assert_eq!(at_in(doc, node_path!["jobs", 0, "name"]), Some((2, 11)));
    }

    fn at_in(doc: &str, path: NodePath) -> Option<(usize, usize)> {
        locate(doc, &path).map(|l| (l.line, l.column))
    }

    #[test]
    fn missing_nodes_have_no_location() {
        assert_eq!(at(node_path!["jobs", 2]), None);
        assert_eq!(at(node_path!["jobs", 0, "timeout"]), None);
        assert_eq!(at(node_path!["jobs", "x"]), None);
        assert_eq!(at(node_path!["env", "K", "deeper"]), None);
    }
}
