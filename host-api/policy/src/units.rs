//! Human-readable units used in `airlock.toml` and on the command line: byte sizes
//! (`"64 MiB"`) and durations (`"1m30s"`, `"90d"`).
//!
//! [`HumanDuration`] is the one duration grammar: manifests (`timeout = "90m"`), every CLI
//! duration flag (`--expires 1h30m`, `--ceiling-timeout 2m`, `--since 7d`) and the API's
//! `expires` and `since` all parse with it.
//!
//! Both types implement [`FromStr`], [`Display`](fmt::Display), `Serialize` (as the display
//! string) and `Deserialize`, and `Display` output always parses back to the same value.
//!
//! Error messages quote the offending input with Rust string escaping (`{:?}`), so control
//! characters from untrusted manifests cannot reach a terminal unescaped.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const KB: u64 = 1_000;
const MB: u64 = 1_000_000;
const GB: u64 = 1_000_000_000;

/// Byte-size units, case-sensitive. Binary units come first: `Display` prefers them.
const BYTE_UNITS: [(&str, u64); 7] = [
    ("GiB", GIB),
    ("MiB", MIB),
    ("KiB", KIB),
    ("GB", GB),
    ("MB", MB),
    ("KB", KB),
    ("B", 1),
];

/// A number of bytes.
///
/// Parses a whole number followed by a unit, with optional whitespace between them:
/// `"64 MiB"`, `"512KiB"`, `"1 GiB"`, `"100 B"`, `"2 MB"`. Units are case-sensitive:
/// `B`, `KiB`/`MiB`/`GiB` (powers of 1024) and `KB`/`MB`/`GB` (powers of 1000).
/// In TOML a plain non-negative integer is also accepted and means bytes.
///
/// Rejected: empty input, a missing unit in a string (`"64"` is ambiguous; use `"64 B"` or
/// the integer `64`), negative numbers, fractions (`"1.5 MiB"` — write `"1536 KiB"`; this
/// keeps parsing exact, with no float rounding), unknown units and values above `u64::MAX`.
/// Zero is accepted here; callers that need a positive size check it themselves.
///
/// `Display` uses the largest unit that represents the value exactly, preferring binary
/// units: `64 MiB`, `1 KiB`, `2 MB`, `1500 B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> u64 {
        size.0
    }
}

/// Why a string is not a valid [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseByteSizeError {
    #[error("invalid byte size: empty; expected a number and a unit like \"64 MiB\"")]
    Empty,
    #[error("invalid byte size {0:?}: must not be negative")]
    Negative(String),
    #[error(
        "invalid byte size {0:?}: fractions are not supported; use a smaller unit (e.g. \"1536 KiB\" instead of \"1.5 MiB\")"
    )]
    Fractional(String),
    #[error("invalid byte size {0:?}: expected a whole number followed by a unit, like \"64 MiB\"")]
    Malformed(String),
    #[error("invalid byte size {0:?}: missing unit; write e.g. \"{0} B\" or \"{0} MiB\"")]
    MissingUnit(String),
    #[error(
        "invalid byte size {input:?}: unknown unit {unit:?} (expected one of B, KB, MB, GB, KiB, MiB, GiB; units are case-sensitive)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("invalid byte size {0:?}: too large (at most 18446744073709551615 bytes)")]
    Overflow(String),
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ParseByteSizeError::Empty);
        }
        if s.starts_with('-') {
            return Err(ParseByteSizeError::Negative(input.to_owned()));
        }
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, rest) = s.split_at(digits_end);
        if digits.is_empty() {
            return Err(ParseByteSizeError::Malformed(input.to_owned()));
        }
        if rest.starts_with(['.', ',']) {
            return Err(ParseByteSizeError::Fractional(input.to_owned()));
        }
        let unit = rest.trim_start();
        if unit.is_empty() {
            return Err(ParseByteSizeError::MissingUnit(input.to_owned()));
        }
        let Some(&(_, multiplier)) = BYTE_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(ParseByteSizeError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(ByteSize)
            .ok_or_else(|| ParseByteSizeError::Overflow(input.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes == 0 {
            return f.write_str("0 B");
        }
        // BYTE_UNITS ends with ("B", 1), so a unit is always found.
        let (unit, multiplier) = BYTE_UNITS
            .iter()
            .copied()
            .find(|(_, m)| bytes.is_multiple_of(*m))
            .unwrap_or(("B", 1));
        write!(f, "{} {unit}", bytes / multiplier)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;

        impl Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size like \"64 MiB\" or a whole number of bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(ParseByteSizeError::Negative(v.to_string())))
            }
        }

        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// A strictly positive duration written with units.
///
/// Parses one or more `<whole number><unit>` parts with no spaces, largest unit first and each
/// unit at most once: `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"1m30s"`, `"1h30m"`, `"90d"`.
/// Units: `d` (24 hours), `h`, `m`, `s`, `ms`, `us`, `ns`. Rejected: zero in total, negatives,
/// fractions (`"1.5s"` — write `"1s500ms"`), unknown units, out-of-order or repeated units,
/// and overflow. Bare numbers are rejected (seconds or milliseconds would be a guess), also in
/// TOML.
///
/// `Display` prints the same form, e.g. `10s`, `500ms`, `1m30s`, `2d12h`, and parses back to
/// the same value. A zero duration (constructible only directly, or parsed by
/// [`HumanDuration::parse_allowing_zero`]) displays as `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// The same grammar, where zero in total (`"0s"`) is a value: for spans such as an overlap,
    /// where "none" is a valid answer, unlike a timeout.
    pub fn parse_allowing_zero(input: &str) -> Result<Duration, ParseDurationError> {
        parse_duration(input)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

/// Why a string is not a valid [`HumanDuration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    #[error("invalid duration: empty; expected a number and a unit like \"10s\"")]
    Empty,
    #[error("invalid duration {0:?}: must not be negative")]
    Negative(String),
    #[error("invalid duration {0:?}: must be greater than zero")]
    Zero(String),
    #[error(
        "invalid duration {0:?}: fractions are not supported; combine units instead (e.g. \"1s500ms\" instead of \"1.5s\")"
    )]
    Fractional(String),
    #[error("invalid duration {0:?}: missing unit; write e.g. \"{0}s\" or \"{0}ms\"")]
    MissingUnit(String),
    #[error(
        "invalid duration {input:?}: unknown unit {unit:?} (expected d, h, m, s, ms, us or ns)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error(
        "invalid duration {0:?}: expected numbers with units, largest unit first and each unit once, like \"1m30s\""
    )]
    Malformed(String),
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// Duration units, largest first; parts must follow this order.
const DURATION_UNITS: [(&str, Duration); 7] = [
    ("d", Duration::from_secs(86_400)),
    ("h", Duration::from_secs(3600)),
    ("m", Duration::from_secs(60)),
    ("s", Duration::from_secs(1)),
    ("ms", Duration::from_millis(1)),
    ("us", Duration::from_micros(1)),
    ("ns", Duration::from_nanos(1)),
];

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match parse_duration(input)? {
            Duration::ZERO => Err(ParseDurationError::Zero(input.to_owned())),
            duration => Ok(HumanDuration(duration)),
        }
    }
}

/// The grammar of [`HumanDuration`], zero included.
fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(ParseDurationError::Negative(input.to_owned()));
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    // Index into DURATION_UNITS of the next allowed unit: enforces order and uniqueness.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(ParseDurationError::Malformed(input.to_owned()));
        }
        if after.starts_with(['.', ',']) {
            return Err(ParseDurationError::Fractional(input.to_owned()));
        }
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if unit.is_empty() {
            return Err(if after.is_empty() {
                ParseDurationError::MissingUnit(input.to_owned())
            } else {
                ParseDurationError::Malformed(input.to_owned())
            });
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(ParseDurationError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        };
        if index < next_unit {
            return Err(ParseDurationError::Malformed(input.to_owned()));
        }
        next_unit = index + 1;
        let overflow = || ParseDurationError::Overflow(input.to_owned());
        let count: u64 = digits.parse().map_err(|_| overflow())?;
        // u64 * (nanoseconds in a day) fits in u128, so only the sum can overflow.
        let part = u128::from(count) * DURATION_UNITS[index].1.as_nanos();
        total_nanos = total_nanos.checked_add(part).ok_or_else(overflow)?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| ParseDurationError::Overflow(input.to_owned()))?;
    // The remainder is below 1_000_000_000, so it always fits in u32.
    let nanos = u32::try_from(total_nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        let parts = [
            (secs / 86_400, "d"),
            (secs % 86_400 / 3600, "h"),
            (secs % 3600 / 60, "m"),
            (secs % 60, "s"),
            (u64::from(nanos / 1_000_000), "ms"),
            (u64::from(nanos / 1_000 % 1_000), "us"),
            (u64::from(nanos % 1_000), "ns"),
        ];
        let mut wrote = false;
        for (value, unit) in parts {
            if value != 0 {
                write!(f, "{value}{unit}")?;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"10s\", \"500ms\" or \"1m30s\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input and a check on the error it must produce.
    type Case<E> = (&'static str, fn(&E) -> bool);

    #[test]
    fn byte_size_parses_accepted_forms() {
        let cases = [
            ("64 MiB", 64 * MIB),
            ("512KiB", 512 * KIB),
            ("1 GiB", GIB),
            ("100 B", 100),
            ("2 MB", 2_000_000),
            ("3KB", 3_000),
            ("1 GB", 1_000_000_000),
            ("0 B", 0),
            ("  7   MiB ", 7 * MIB),
            ("16383 GiB", 16383 * GIB),
        ];
        for (input, bytes) in cases {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{input}");
        }
    }

    #[test]
    fn byte_size_rejects_invalid_forms() {
        use ParseByteSizeError as E;
        let cases: [Case<E>; 13] = [
            ("", |e| matches!(e, E::Empty)),
            ("   ", |e| matches!(e, E::Empty)),
            ("-1 MiB", |e| matches!(e, E::Negative(_))),
            ("1.5 MiB", |e| matches!(e, E::Fractional(_))),
            ("64", |e| matches!(e, E::MissingUnit(_))),
            (
                "64 mib",
                |e| matches!(e, E::UnknownUnit { unit, .. } if unit == "mib"),
            ),
            ("64 kb", |e| matches!(e, E::UnknownUnit { .. })),
            ("1 TiB", |e| matches!(e, E::UnknownUnit { .. })),
            ("64 MiB extra", |e| matches!(e, E::UnknownUnit { .. })),
            ("MiB", |e| matches!(e, E::Malformed(_))),
            ("+5 B", |e| matches!(e, E::Malformed(_))),
            ("17179869184 GiB", |e| matches!(e, E::Overflow(_))),
            ("99999999999999999999999 B", |e| matches!(e, E::Overflow(_))),
        ];
        for (input, is_expected) in cases {
            let err = input
                .parse::<ByteSize>()
                .expect_err(&format!("{input:?} should be rejected"));
            assert!(is_expected(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn byte_size_error_messages_quote_input_and_list_units() {
        let err = "64 mib".parse::<ByteSize>().expect_err("unknown unit");
        assert_eq!(
            err.to_string(),
            "invalid byte size \"64 mib\": unknown unit \"mib\" (expected one of B, KB, MB, GB, KiB, MiB, GiB; units are case-sensitive)"
        );
        let err = "1\u{1b}[31m B".parse::<ByteSize>().expect_err("escape");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }

    #[test]
    fn byte_size_displays_most_natural_unit() {
        let cases = [
            (0, "0 B"),
            (1, "1 B"),
            (1500, "1500 B"),
            (1000, "1 KB"),
            (1024, "1 KiB"),
            (64 * MIB, "64 MiB"),
            (1536 * KIB, "1536 KiB"),
            (2 * GIB, "2 GiB"),
            (2_000_000, "2 MB"),
            (u64::MAX, "18446744073709551615 B"),
        ];
        for (bytes, text) in cases {
            assert_eq!(ByteSize(bytes).to_string(), text);
        }
    }

    #[test]
    fn byte_size_display_round_trips() {
        for bytes in [
            0,
            1,
            999,
            1000,
            1024,
            4096,
            10 * MB,
            3 * GIB,
            u64::MAX,
            u64::MAX - 1,
        ] {
            let size = ByteSize(bytes);
            assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size));
        }
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Sizes {
        size: ByteSize,
    }

    #[test]
    fn byte_size_deserializes_from_toml_strings_and_integers() {
        let parsed: Sizes = toml::from_str("size = \"2 MiB\"").expect("string");
        assert_eq!(parsed.size, ByteSize(2 * MIB));
        let parsed: Sizes = toml::from_str("size = 4096").expect("integer");
        assert_eq!(parsed.size, ByteSize(4096));
        for bad in ["size = -1", "size = 1.5", "size = true", "size = \"12 XB\""] {
            assert!(toml::from_str::<Sizes>(bad).is_err(), "{bad}");
        }
        let err = toml::from_str::<Sizes>("size = -1").expect_err("negative");
        assert!(err.message().contains("must not be negative"), "{err}");
    }

    #[test]
    fn byte_size_serializes_as_display_string() {
        let text = toml::to_string(&Sizes {
            size: ByteSize(64 * MIB),
        })
        .expect("serialize");
        assert_eq!(text.trim(), "size = \"64 MiB\"");
    }

    #[test]
    fn duration_parses_accepted_forms() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("0m5s", Duration::from_secs(5)),
            (
                "5124095576030431h",
                Duration::from_secs(5124095576030431 * 3600),
            ),
            (" 10s ", Duration::from_secs(10)),
            ("90s", Duration::from_secs(90)),
            ("3d", Duration::from_secs(3 * 86_400)),
            ("90d", Duration::from_secs(90 * 86_400)),
            ("1d12h", Duration::from_secs(36 * 3600)),
            ("2d0h30m", Duration::from_secs(2 * 86_400 + 1800)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                input.parse::<HumanDuration>(),
                Ok(HumanDuration(expected)),
                "{input}"
            );
        }
    }

    #[test]
    fn duration_rejects_invalid_forms() {
        use ParseDurationError as E;
        let cases: [Case<E>; 17] = [
            ("", |e| matches!(e, E::Empty)),
            ("0s", |e| matches!(e, E::Zero(_))),
            ("0h0m0s", |e| matches!(e, E::Zero(_))),
            ("-5s", |e| matches!(e, E::Negative(_))),
            ("1.5s", |e| matches!(e, E::Fractional(_))),
            ("10", |e| matches!(e, E::MissingUnit(_))),
            ("10 s", |e| matches!(e, E::Malformed(_))),
            (
                "10S",
                |e| matches!(e, E::UnknownUnit { unit, .. } if unit == "S"),
            ),
            ("3w", |e| matches!(e, E::UnknownUnit { .. })),
            ("3D", |e| matches!(e, E::UnknownUnit { .. })),
            ("1h1d", |e| matches!(e, E::Malformed(_))),
            ("30s1m", |e| matches!(e, E::Malformed(_))),
            ("1s1s", |e| matches!(e, E::Malformed(_))),
            ("s", |e| matches!(e, E::Malformed(_))),
            ("5s-", |e| matches!(e, E::Malformed(_))),
            ("5124095576030432h", |e| matches!(e, E::Overflow(_))),
            ("99999999999999999999h", |e| matches!(e, E::Overflow(_))),
        ];
        for (input, is_expected) in cases {
            let err = input
                .parse::<HumanDuration>()
                .expect_err(&format!("{input:?} should be rejected"));
            assert!(is_expected(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn duration_displays_compactly() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(90 * 86_400), "90d"),
            (Duration::from_secs(93_784), "1d2h3m4s"),
            (Duration::ZERO, "0s"),
        ];
        for (duration, text) in cases {
            assert_eq!(HumanDuration(duration).to_string(), text);
        }
    }

    #[test]
    fn duration_display_round_trips() {
        for d in [
            Duration::from_secs(1),
            Duration::new(3723, 4_005_006),
            Duration::from_millis(999),
            Duration::from_secs(7 * 86_400 + 1),
            Duration::MAX,
        ] {
            let d = HumanDuration(d);
            assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d), "{d}");
        }
    }

    #[test]
    fn zero_is_a_value_only_where_asked_for() {
        for zero in ["0s", "0d0h", "0ms"] {
            assert_eq!(HumanDuration::parse_allowing_zero(zero), Ok(Duration::ZERO));
            assert!(matches!(
                zero.parse::<HumanDuration>(),
                Err(ParseDurationError::Zero(_))
            ));
        }
        assert_eq!(
            HumanDuration::parse_allowing_zero("1h30m"),
            Ok(Duration::from_secs(5400))
        );
        for bad in ["0", "-1s", "1x", ""] {
            assert!(HumanDuration::parse_allowing_zero(bad).is_err(), "{bad}");
        }
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Timeouts {
        timeout: HumanDuration,
    }

    #[test]
    fn duration_deserializes_only_from_strings() {
        let parsed: Timeouts = toml::from_str("timeout = \"1m30s\"").expect("string");
        assert_eq!(parsed.timeout, HumanDuration(Duration::from_secs(90)));
        let err = toml::from_str::<Timeouts>("timeout = 10").expect_err("integer");
        assert!(
            err.message().contains("expected a duration string"),
            "{err}"
        );
        let text = toml::to_string(&parsed).expect("serialize");
        assert_eq!(text.trim(), "timeout = \"1m30s\"");
    }
}
