//! The captured output of a job: only its tail is kept, in bounded memory, whatever it prints.
//!
//! The end of a log is where a failure is explained, so the first bytes are the ones given up.
//! A marker at the start of the result says how much was cut. Before the output leaves the
//! worker, [`mask`] replaces the values of the job's secret variables.

use crate::proto::SecretEnv;

/// What a secret value becomes in captured output (as on GitHub).
const MASK: &str = "***";

/// The words of the marker line of a cut output.
const CUT_NOTE: &str = "bytes of output cut";

/// `output` with every non-empty value of `secrets` replaced by `***`; longer values first,
/// so that a secret containing another is masked whole. When the start of a long output was
/// cut, the end of a secret the cut went through is masked too.
pub fn mask(mut output: String, secrets: &SecretEnv) -> String {
    let mut values: Vec<&str> = secrets
        .0
        .values()
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for value in &values {
        if output.contains(value) {
            output = output.replace(value, MASK);
        }
    }
    mask_cut_secret(output, &values)
}

/// Masks the longest end of a secret that a cut output starts with.
fn mask_cut_secret(output: String, values: &[&str]) -> String {
    let Some((marker, kept)) = output.split_once('\n') else {
        return output;
    };
    if !(marker.starts_with("[cluster-action: ") && marker.contains(CUT_NOTE)) {
        return output;
    }
    let tail = values
        .iter()
        .filter_map(|value| {
            (1..value.len())
                .filter(|&i| value.is_char_boundary(i))
                .map(|i| &value[i..])
                .find(|tail| kept.starts_with(tail))
        })
        .max_by_key(|tail| tail.len());
    match tail {
        Some(tail) => format!("{marker}\n{MASK}{}", &kept[tail.len()..]),
        None => output,
    }
}

/// A byte ring keeping the last `limit` bytes written to it and counting the rest.
#[derive(Debug)]
pub struct TailBuffer {
    /// The bytes kept; once it holds `limit` bytes it is written circularly from `head`.
    ring: Vec<u8>,
    /// The most bytes kept.
    limit: usize,
    /// The oldest byte once `ring` is full (where the next byte overwrites).
    head: usize,
    /// Every byte ever pushed.
    total: u64,
}

impl TailBuffer {
    /// An empty buffer keeping at most `limit` bytes. The memory is reserved up front (and
    /// touched only as output arrives), so it never grows past `limit`.
    pub fn new(limit: usize) -> Self {
        TailBuffer {
            ring: Vec::with_capacity(limit),
            limit,
            head: 0,
            total: 0,
        }
    }

    /// Appends `data`, forgetting the oldest bytes beyond the limit.
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let mut data = &data[data.len().saturating_sub(self.limit)..];
        if self.ring.len() < self.limit {
            let (fits, rest) = data.split_at(data.len().min(self.limit - self.ring.len()));
            self.ring.extend_from_slice(fits);
            data = rest;
        }
        while !data.is_empty() {
            let n = data.len().min(self.limit - self.head);
            self.ring[self.head..self.head + n].copy_from_slice(&data[..n]);
            self.head = (self.head + n) % self.limit;
            data = &data[n..];
        }
    }

    /// The kept bytes as text (invalid UTF-8 replaced), preceded by a marker line stating how
    /// many bytes were cut when there were. The cut never splits a character.
    pub fn into_string(mut self) -> String {
        self.ring.rotate_left(self.head);
        let mut cut = self.total - self.ring.len() as u64;
        let start = if cut > 0 {
            // Skip the continuation bytes of a character whose first byte was cut.
            self.ring
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xC0 == 0x80)
                .count()
        } else {
            0
        };
        cut += start as u64;
        let kept = &self.ring[start..];
        let text = String::from_utf8_lossy(kept);
        if cut == 0 {
            return text.into_owned();
        }
        format!(
            "[cluster-action: {cut} {CUT_NOTE}, the last {} bytes follow]\n{text}",
            kept.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{SecretEnv, TailBuffer, mask};

    #[test]
    fn masks_every_secret_value_whole() {
        let secrets = SecretEnv(
            [
                ("A".to_string(), "hunter2".to_string()),
                ("B".to_string(), "hunter2-long".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
            .into(),
        );
        let out = mask("x hunter2 y hunter2-long z hunter2".into(), &secrets);
        assert_eq!(out, "x *** y *** z ***");
        assert_eq!(mask("nothing here".into(), &secrets), "nothing here");
    }

    #[test]
    fn masks_the_end_of_a_secret_the_cut_went_through() {
        let secrets = SecretEnv([("A".to_string(), "hunter2".to_string())].into());
        let mut buf = TailBuffer::new(14);
        buf.push(b"xx hunter2 and more");
        // The last 14 bytes are "nter2 and more": the end of the secret survived the cut.
        let out = mask(buf.into_string(), &secrets);
        assert!(out.ends_with("\n*** and more"), "{out}");
        assert!(!out.contains("ter2"), "{out}");
        // Without a cut, only whole secrets are masked.
        let uncut = mask("ter2 is not a secret".into(), &secrets);
        assert_eq!(uncut, "ter2 is not a secret");
    }

    fn tail_of(limit: usize, pushes: &[&[u8]]) -> String {
        let mut buffer = TailBuffer::new(limit);
        for data in pushes {
            buffer.push(data);
        }
        buffer.into_string()
    }

    #[test]
    fn keeps_everything_under_the_limit() {
        assert_eq!(tail_of(10, &[b"abc", b"def"]), "abcdef");
        assert_eq!(tail_of(6, &[b"abc", b"def"]), "abcdef");
        assert_eq!(tail_of(4, &[]), "");
    }

    #[test]
    fn keeps_the_last_bytes_across_wraps() {
        let marker = |cut, kept| {
            format!("[cluster-action: {cut} bytes of output cut, the last {kept} bytes follow]\n")
        };
        assert_eq!(tail_of(4, &[b"abc", b"def"]), marker(2, 4) + "cdef");
        assert_eq!(
            tail_of(4, &[b"a", b"b", b"c", b"d", b"e", b"f", b"g"]),
            marker(3, 4) + "defg"
        );
        assert_eq!(
            tail_of(4, &[b"ab", b"0123456789", b"xyz"]),
            marker(11, 4) + "9xyz"
        );
        assert_eq!(tail_of(0, &[b"abc"]), marker(3, 0));
    }

    #[test]
    fn never_starts_inside_a_character() {
        // "é" is two bytes; keeping 5 of "aéé" + "é" would start in the middle of the second.
        let text = tail_of(5, &["aéé".as_bytes(), "é".as_bytes()]);
        assert_eq!(
            text,
            "[cluster-action: 3 bytes of output cut, the last 4 bytes follow]\néé"
        );
    }

    #[test]
    fn replaces_invalid_utf8() {
        assert_eq!(tail_of(10, &[b"a\xFFb"]), "a\u{FFFD}b");
    }
}
