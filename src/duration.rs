//! Durations as people write them in requests, policies and commands: `90s`, `45m`, `1h30m`, `2d`.
//!
//! humantime does the arithmetic, but it also accepts spellings such as `2 hours` or `1hour`
//! that are easy to misread in a review, so we first hold the input to the compact form and
//! give a precise message when it is not.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest duration anyone can ask for (a week): far beyond any sane break-glass grant, and it
/// keeps expiry arithmetic away from overflow whatever a file says.
pub const MAX: Duration = Duration::from_secs(7 * 24 * 3600);

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// A positive duration written in compact humantime form, e.g. `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

/// Why a piece of text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration `{0}` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`")]
    Malformed(String),
    #[error("duration `{0}` is zero; ask for the time you need, e.g. `30m`")]
    Zero(String),
    #[error("duration `{0}` is longer than the 7 days any grant may last")]
    TooLong(String),
}

impl HumanDuration {
    /// Parses the compact form: one or more `<digits><unit>` groups, units `d`, `h`, `m`, `s`,
    /// largest first, no spaces.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let malformed = || DurationError::Malformed(text.to_owned());
        if text.is_empty() || text.len() > 32 {
            return Err(malformed());
        }
        let mut last_unit = usize::MAX;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = UNITS
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(malformed)?;
            // `1h1h` or `30m1h` are almost certainly typos: reject them rather than guess.
            if digits.is_empty() || (last_unit != usize::MAX && unit <= last_unit) {
                return Err(malformed());
            }
            last_unit = unit;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(malformed());
        }
        let parsed = humantime::parse_duration(text).map_err(|_| malformed())?;
        if parsed.is_zero() {
            return Err(DurationError::Zero(text.to_owned()));
        }
        if parsed > MAX {
            return Err(DurationError::TooLong(text.to_owned()));
        }
        Ok(Self(parsed))
    }

    /// Builds one from a std duration, rounded down to whole seconds.
    pub fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_std(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The same span as a chrono duration, for expiry arithmetic.
    pub fn to_chrono(self) -> chrono::TimeDelta {
        // Bounded by MAX, so the conversion cannot fail.
        chrono::TimeDelta::seconds(self.0.as_secs() as i64)
    }
}

impl fmt::Display for HumanDuration {
    /// Writes the compact form back (`5400s` → `1h30m`), so messages quote what users write.
    /// Hours are the largest unit shown (`24h`, not `1d`): policies and SPEC speak of grants,
    /// reviews and expiries in hours.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        if rest == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in &UNITS[1..] {
            let (unit, size) = (*unit, *size);
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `45m` or `1h30m`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format_args!(
                    "duration `{v}` has no unit; write e.g. `{v}m` or `{v}s`"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format_args!(
                    "duration `{v}` is not a duration; write e.g. `1h`"
                )))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration in compact form: digits and a unit (d, h, m, s), largest unit first, no spaces. Examples: 90s, 45m, 1h, 1h30m.",
            "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
            // Every part of the pattern is optional: without this, "" would match.
            "minLength": 2,
            "maxLength": 32,
            "examples": ["1h", "45m", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_compact_forms() {
        for (text, secs) in [
            ("90s", 90),
            ("45m", 2700),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("1h0m5s", 3605),
        ] {
            assert_eq!(
                HumanDuration::parse(text).unwrap().as_secs(),
                secs,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_spellings_that_read_ambiguously() {
        for text in [
            "2 hours", "1hour", "1H", "h", "10", "", " 1h", "1h ", "1.5h", "-1h", "30m1h", "1h1h",
            "1w", "1h30",
        ] {
            assert!(
                matches!(HumanDuration::parse(text), Err(DurationError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn malformed_message_says_what_to_write() {
        let err = HumanDuration::parse("2 hours").unwrap_err();
        assert_eq!(
            err.to_string(),
            "duration `2 hours` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`"
        );
    }

    #[test]
    fn rejects_zero_and_absurd_lengths() {
        assert_eq!(
            HumanDuration::parse("0m"),
            Err(DurationError::Zero("0m".into()))
        );
        assert_eq!(
            HumanDuration::parse("8d"),
            Err(DurationError::TooLong("8d".into()))
        );
        assert!(HumanDuration::parse("99999999999999999999h").is_err());
    }

    #[test]
    fn displays_in_the_form_it_parses() {
        for text in ["90s", "1m30s", "45m", "1h", "1h30m", "2d", "1d2h3m4s"] {
            let d = HumanDuration::parse(text).unwrap();
            let shown = d.to_string();
            assert_eq!(HumanDuration::parse(&shown).unwrap(), d, "{text} → {shown}");
        }
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(HumanDuration::from_secs(86_400).to_string(), "24h");
        assert_eq!(HumanDuration::parse("2d").unwrap().to_string(), "48h");
    }
}
