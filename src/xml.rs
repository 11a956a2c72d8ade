//! XML text as JUnit reports need it: escaped character data and attribute values, and times
//! in seconds. Shared by the jobs' report and the suites' merged JUnit.

/// Milliseconds as seconds with three decimals.
pub fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// `text` as XML character data, or as an attribute value (where line breaks and tabs must be
/// character references to survive). Characters XML 1.0 cannot hold at all (most control
/// characters, U+FFFE, U+FFFF) are dropped.
pub fn escape(text: &str, attribute: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\r' => escaped.push_str("&#13;"),
            '\n' if attribute => escaped.push_str("&#10;"),
            '\t' if attribute => escaped.push_str("&#9;"),
            '\t' | '\n' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'.. => {
                escaped.push(c)
            }
            _ => {}
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_what_xml_cannot_hold() {
        assert_eq!(
            escape("a<b>&\"c\"'d'", false),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(
            escape("x\u{0}\u{8}\u{b}\u{c}\u{1b}\u{1f}\u{fffe}\u{ffff}y", false),
            "xy"
        );
        assert_eq!(escape("l1\r\n\tl2", false), "l1&#13;\n\tl2");
        assert_eq!(escape("l1\r\n\tl2", true), "l1&#13;&#10;&#9;l2");
        assert_eq!(escape("ünïcödé 🦀 \u{7f}", false), "ünïcödé 🦀 \u{7f}");
    }

    #[test]
    fn seconds_have_three_decimals() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(1_234), "1.234");
        assert_eq!(seconds(60_005), "60.005");
    }
}
