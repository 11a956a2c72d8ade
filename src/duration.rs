//! Durations as people write them (`500ms`, `30s`, `10m`, `1h30m`) and as reports show them,
//! shared by the manifest, command-line flags and reports so all three speak the same language.

use std::time::Duration;

/// The units a duration may use, largest first; a duration lists them in this order.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration: numbers with units `h`, `m`, `s`, `ms`, largest unit first and each at
/// most once (`500ms`, `30s`, `10m`, `1h`, `1h30m`, `2m15s`), or a plain number of seconds
/// (`90`). The error is a complete sentence naming the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration '{text}': use a whole number with a unit (500ms, 30s, 10m, 1h), \
             units combined largest first (1h30m, 2m15s), or a plain number of seconds (90)"
        )
    };
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| invalid())?;
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the next unit allowed: each must be smaller than the previous.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let position = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        let (_, unit_ms) = UNITS[next_unit + position];
        next_unit += position + 1;
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration '{text}' is too large"))?;
    }
    if next_unit == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_millis(total_ms))
}

/// Whole milliseconds, as the protocol carries durations (saturating; no real limit is near).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Formats a duration for people, short and in a form [`parse_duration`] reads back when it
/// has no fraction: `340ms`, `1.2s`, `45s`, `2m05s`, `10m`, `1h`, `1h05m` (hours drop seconds).
pub fn format_duration(duration: Duration) -> String {
    let ms = millis(duration);
    let (hours, minutes, seconds) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 if ms % 1_000 >= 100 => format!("{seconds}.{}s", ms % 1_000 / 100),
        1_000..60_000 => format!("{seconds}s"),
        60_000..3_600_000 if seconds == 0 => format!("{minutes}m"),
        60_000..3_600_000 => format!("{minutes}m{seconds:02}s"),
        _ if minutes == 0 => format!("{hours}h"),
        _ => format!("{hours}h{minutes:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("2m15s", 135_000),
            ("1s500ms", 1_500),
            ("90", 90_000),
            ("0", 0),
            (" 5m ", 300_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_it_does_not_document() {
        for text in [
            "", "m", "1.5s", "10 m", "10min", "30m1h", "1m1m", "-5s", "5d",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(&format!("'{text}'")), "{err}");
            assert!(
                err.contains("1h30m"),
                "the message names the accepted forms: {err}"
            );
        }
        assert!(
            parse_duration("99999999999999999h")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn formats_briefly_and_reads_back() {
        let cases = [
            (340, "340ms"),
            (1_234, "1.2s"),
            (45_000, "45s"),
            (125_000, "2m05s"),
            (600_000, "10m"),
            (3_600_000, "1h"),
            (3_900_000, "1h05m"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
            if !text.contains('.') {
                assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)));
            }
        }
    }
}
