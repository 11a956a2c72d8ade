//! Limits on what a manifest's YAML may cost to read, checked before the document is turned
//! into jobs: the parser's time grows with the nesting depth of flow collections times the
//! text's length (200 KB of `[` took over 30 s), and anchors let a 1 MB file stand for
//! gigabytes (a 1 MiB anchor used 3,000 times). A manifest needs neither: its schema nests
//! five levels deep, and a generated one with 100,000 jobs uses no anchors at all.
//!
//! The depth check is a scan of the raw text that knows just enough YAML to find where flow
//! collections open (quoted scalars, comments and block scalars are skipped), so it runs
//! before the parser. The size check walks the parsed document once without copying it,
//! counting every node an alias repeats; it runs only when the scan saw an anchor.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::Location;

/// The largest manifest or commands file read: a generated manifest of 100,000 jobs is about
/// 10 MB; past this the file is refused unread (`/dev/zero` given as a manifest once grew the
/// runner to 8 GB in 8 s).
pub(crate) const MAX_FILE_BYTES: u64 = 64 << 20;

/// The deepest nesting of flow collections (`[…]`, `{…}`) accepted.
pub(super) const MAX_FLOW_DEPTH: usize = 32;

/// The most bytes a document may stand for once its aliases are expanded: every scalar's
/// length plus [`NODE_COST`] per node. Far above any real manifest (100,000 jobs are about
/// 10 MB), far below what exhausts a runner's memory.
pub(super) const MAX_EXPANDED_BYTES: usize = 256 << 20;

/// What one node costs in memory beyond its text, for [`MAX_EXPANDED_BYTES`].
const NODE_COST: usize = 32;

/// Why a document is refused before it is read into jobs.
#[derive(Debug)]
pub(super) struct Excess {
    /// Where, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: &'static str,
}

/// Checks `text` against both limits.
pub(super) fn check(text: &str) -> Result<(), Excess> {
    let scan = scan(text);
    if let Some(location) = scan.too_deep {
        return Err(Excess {
            location: Some(location),
            message: format!(
                "flow collections ('[' and '{{') nest more than {MAX_FLOW_DEPTH} deep"
            ),
            hint: "a manifest nests a few levels only: close the brackets, or write the lists \
                   in block style (one `- item` per line)",
        });
    }
    if scan.has_anchor {
        expanded_size_within(text, MAX_EXPANDED_BYTES)?;
    }
    Ok(())
}

/// What the raw-text scan found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// The first `[` or `{` beyond [`MAX_FLOW_DEPTH`].
    too_deep: Option<Location>,
    /// Whether an anchor (`&name`) may be defined.
    has_anchor: bool,
}

/// Scans `text` for flow nesting and anchors, skipping quoted scalars, comments and block
/// scalars. Where a character is or is not an indicator depends on whether a node may start
/// there (`[` in `run: echo a[1]` is text); the scan errs on the side of counting.
fn scan(text: &str) -> Scan {
    let mut lexer = Lexer {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
        line_start: 0,
        depth: 0,
        node_start: true,
        found: Scan::default(),
    };
    lexer.run();
    lexer.found
}

/// The scan's state: a position in the text and what may come there.
struct Lexer<'t> {
    bytes: &'t [u8],
    pos: usize,
    line: usize,
    line_start: usize,
    /// Open flow collections.
    depth: usize,
    /// Whether a node may start at the next non-blank character.
    node_start: bool,
    found: Scan,
}

impl Lexer<'_> {
    fn run(&mut self) {
        while let Some(&c) = self.bytes.get(self.pos) {
            if self.found.too_deep.is_some() {
                return;
            }
            match c {
                b'\n' => {
                    self.newline();
                    self.pos += 1;
                    continue;
                }
                b' ' | b'\t' | b'\r' => {}
                b'#' if self.after_blank() => {
                    self.skip_while(|b| b != b'\n');
                    continue;
                }
                _ if self.node_start => {
                    self.node(c);
                    continue;
                }
                _ => self.inside_scalar(c),
            }
            self.pos += 1;
        }
    }

    /// A character where a node may start.
    fn node(&mut self, c: u8) {
        match c {
            b'[' | b'{' => self.open(),
            b']' | b'}' => self.close(),
            b',' if self.depth > 0 => {}
            b'\'' => self.skip_quoted(b'\''),
            b'"' => self.skip_quoted(b'"'),
            b'&' | b'!' | b'*' => {
                self.found.has_anchor |= c == b'&';
                self.pos += 1;
                self.skip_while(|b| !b.is_ascii_whitespace() && !b",[]{}".contains(&b));
                // After an anchor or a tag the node itself follows; after an alias, nothing.
                self.node_start = c != b'*';
                return;
            }
            b'|' | b'>' if self.depth == 0 => return self.skip_block_scalar(),
            b'-' | b'?' | b':' if self.blank_at(self.pos + 1) => {}
            b'-' if self.document_marker() => self.pos += 2,
            _ => self.node_start = false,
        }
        self.pos += 1;
    }

    /// A character inside a plain scalar (or after a closed collection).
    fn inside_scalar(&mut self, c: u8) {
        match c {
            b':' if self.blank_at(self.pos + 1) || self.depth > 0 => self.node_start = true,
            b',' if self.depth > 0 => self.node_start = true,
            // Not allowed in a flow scalar: the parser opens or closes a collection.
            b'[' | b'{' if self.depth > 0 => self.open(),
            b']' | b'}' if self.depth > 0 => self.close(),
            _ => {}
        }
    }

    fn open(&mut self) {
        self.depth += 1;
        self.node_start = true;
        if self.depth > MAX_FLOW_DEPTH {
            self.found.too_deep = Some(Location {
                line: self.line,
                column: self.pos - self.line_start + 1,
            });
        }
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.node_start = false;
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.pos + 1;
        if self.depth == 0 {
            self.node_start = true;
        }
    }

    /// Whether the byte at `at` is blank or the end of the text.
    fn blank_at(&self, at: usize) -> bool {
        self.bytes.get(at).is_none_or(u8::is_ascii_whitespace)
    }

    /// Whether the current byte follows a blank or starts the text.
    fn after_blank(&self) -> bool {
        self.pos == 0 || self.blank_at(self.pos - 1)
    }

    /// Whether `---` followed by a blank starts at the current byte, at a line's start.
    fn document_marker(&self) -> bool {
        self.pos == self.line_start
            && self.bytes[self.pos..].starts_with(b"---")
            && self.blank_at(self.pos + 3)
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) {
        while self.bytes.get(self.pos).is_some_and(|&b| keep(b)) {
            self.pos += 1;
        }
    }

    /// Skips a quoted scalar starting at the current byte (`''` and `\"` escape the quote).
    fn skip_quoted(&mut self, quote: u8) {
        self.pos += 1;
        while let Some(&b) = self.bytes.get(self.pos) {
            self.pos += 1;
            match b {
                b'\n' => {
                    self.pos -= 1;
                    self.newline();
                    self.pos += 1;
                }
                b'\\' if quote == b'"' => self.pos += 1,
                b'\'' if quote == b'\'' && self.bytes.get(self.pos) == Some(&b'\'') => {
                    self.pos += 1;
                }
                _ if b == quote => break,
                _ => {}
            }
        }
        self.pos -= 1;
        self.node_start = false;
    }

    /// Skips a block scalar (`|` or `>`): the rest of its header line and every following
    /// line that is blank or indented deeper than the line the scalar starts on.
    fn skip_block_scalar(&mut self) {
        let indent = self.indent_of(self.line_start);
        self.skip_while(|b| b != b'\n');
        while self.pos < self.bytes.len() {
            let next = self.pos + 1;
            let rest = &self.bytes[next..];
            let line_len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let blank = rest[..line_len].iter().all(u8::is_ascii_whitespace);
            if !blank && self.indent_of(next) <= indent {
                break;
            }
            self.newline();
            self.pos = next + line_len;
        }
        self.node_start = false;
    }

    /// The number of spaces at the start of the line beginning at `start`.
    fn indent_of(&self, start: usize) -> usize {
        self.bytes[start..]
            .iter()
            .take_while(|&&b| b == b' ')
            .count()
    }
}

/// Refuses `text` when its nodes, aliases expanded, cost more than `limit` bytes. A document
/// that does not parse passes: the parser that reads it next says what is wrong.
fn expanded_size_within(text: &str, limit: usize) -> Result<(), Excess> {
    let left = Cell::new(limit);
    match Count(&left).deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(e) if left.get() == 0 => Err(Excess {
            location: e.location().map(|at| Location {
                line: at.line(),
                column: at.column(),
            }),
            message: format!(
                "with its aliases (*name) expanded, the manifest stands for more than {} MiB",
                limit >> 20
            ),
            hint: "use each anchor (&name) fewer times, or move what jobs share into \
                   `defaults:` (it is written once)",
        }),
        _ => Ok(()),
    }
}

/// Visits every node, taking its cost from the budget; fails when the budget runs out.
#[derive(Clone, Copy)]
struct Count<'b>(&'b Cell<usize>);

impl Count<'_> {
    fn take<E: de::Error>(self, bytes: usize) -> Result<(), E> {
        let cost = bytes.saturating_add(NODE_COST);
        match self.0.get().checked_sub(cost) {
            Some(left) if left > 0 => {
                self.0.set(left);
                Ok(())
            }
            _ => {
                self.0.set(0);
                Err(E::custom("the expanded document is too large"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.take(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.take(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.take(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.take(0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.take(text.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.take(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), variant) = data.variant_seed(self)?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<(usize, usize)> {
        scan(text).too_deep.map(|at| (at.line, at.column))
    }

    #[test]
    fn deep_flow_nesting_is_found_where_it_exceeds_the_limit() {
        let deep = format!("jobs: {}", "[".repeat(MAX_FLOW_DEPTH + 1));
        assert_eq!(depth_error(&deep), Some((1, 7 + MAX_FLOW_DEPTH)));
        let nested_maps = format!("jobs:\n  - {}", "{a: ".repeat(MAX_FLOW_DEPTH + 1));
        assert_eq!(depth_error(&nested_maps), Some((2, 5 + 4 * MAX_FLOW_DEPTH)));
        let at_limit = format!(
            "jobs: {}{}",
            "[".repeat(MAX_FLOW_DEPTH),
            "]".repeat(MAX_FLOW_DEPTH)
        );
        assert_eq!(depth_error(&at_limit), None);
    }

    #[test]
    fn brackets_in_scalars_comments_and_block_scalars_are_text() {
        let many = "[".repeat(MAX_FLOW_DEPTH + 1);
        let texts = [
            format!("run: echo {many}\n"),
            format!("run: '{many}'\n"),
            format!("run: \"a\\\"{many}\"\n"),
            format!("run: 'it''s {many}'\n"),
            format!("run: 'multi\n  line {many}'\n"),
            format!("# {many}\njobs: []\n"),
            format!("run: x # {many}\n"),
            format!("jobs:\n  - run: |\n      [[ -f x ]] {many}\n\n      {many}\n    name: a\n"),
            format!("jobs: [{{run: 'x {many}'}}]\n"),
        ];
        for text in texts {
            assert_eq!(depth_error(&text), None, "{text}");
        }
        let after_block = format!("a: |\n  text\nb: {many}\n");
        assert_eq!(depth_error(&after_block), Some((3, 4 + MAX_FLOW_DEPTH)));
    }

    #[test]
    fn anchors_are_seen_only_where_a_node_starts() {
        assert!(!scan("run: a && b 2>&1\n").has_anchor);
        assert!(!scan("run: 'x &y'\n").has_anchor);
        assert!(scan("env: &common {A: b}\n").has_anchor);
        assert!(scan("jobs: [&j {name: a}]\n").has_anchor);
        assert!(scan("- &x a\n").has_anchor);
    }

    #[test]
    fn expansion_counts_every_alias() {
        let value = "x".repeat(1000);
        let text = format!("a: &big '{value}'\nb: [{}]\n", vec!["*big"; 100].join(", "));
        assert!(expanded_size_within(&text, 200 * 1000).is_ok());
        let refused = expanded_size_within(&text, 50 * 1000).unwrap_err();
        assert!(refused.message.contains("aliases"), "{}", refused.message);
        assert!(expanded_size_within("a: [unclosed", 1000).is_ok());
    }
}
