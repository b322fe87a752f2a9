//! Durations (`30s`, `1m30s`) and quantities (`512Mi`, `1G`, `0.5` cpus) as written in
//! manifests, and the parsers that turn them into numbers the Docker API takes.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration or quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The value was empty.
    #[error("empty value")]
    Empty,
    /// The number part is not a plain non-negative decimal number.
    #[error("{0:?} is not a number")]
    BadNumber(String),
    /// The unit is not one berth knows.
    #[error("unknown unit {unit:?} (expected one of: {expected})")]
    BadUnit {
        /// The unit as written.
        unit: String,
        /// The units that would have been accepted.
        expected: &'static str,
    },
    /// A duration without a unit (`30` instead of `30s`).
    #[error("{0:?} has no unit (write for example 30s, 2m, 1h30m, 500ms)")]
    MissingUnit(String),
    /// The value is too large to represent.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// The value is zero where zero means nothing.
    #[error("must be greater than zero")]
    Zero,
}

const DURATION_UNITS: &str = "ns, us, ms, s, m, h";
const MEMORY_UNITS: &str =
    "Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000)";

/// A non-negative decimal number split into its digits: `value = mantissa / 10^scale`.
struct Decimal {
    mantissa: u128,
    scale: u32,
}

impl Decimal {
    fn parse(s: &str) -> Result<Decimal, QuantityError> {
        let bad = || QuantityError::BadNumber(s.to_owned());
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // 30 significant digits are plenty and keep the arithmetic inside u128.
        if int.len() + frac.len() > 30 {
            return Err(QuantityError::TooLarge(s.to_owned()));
        }
        let mut mantissa: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa * 10 + u128::from(b - b'0');
        }
        let scale = u32::try_from(frac.len()).map_err(|_| bad())?;
        Ok(Decimal { mantissa, scale })
    }

    /// `self * factor`, rounded down to a whole number.
    fn times(&self, factor: u128, original: &str) -> Result<u128, QuantityError> {
        let product = self
            .mantissa
            .checked_mul(factor)
            .ok_or_else(|| QuantityError::TooLarge(original.to_owned()))?;
        Ok(product / 10u128.pow(self.scale))
    }
}

/// Splits `12.5Mi` into (`12.5`, `Mi`).
fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses a duration such as `30s`, `2m`, `1h30m`, `1.5s` or `500ms` (the units of Go's
/// `time.ParseDuration`: `ns`, `us`, `ms`, `s`, `m`, `h`). `0` alone is allowed; any other
/// number needs a unit.
///
/// # Errors
///
/// [`QuantityError`] when the text is empty, a number or unit is malformed, a unit is missing,
/// or the total overflows.
pub fn parse_duration(s: &str) -> Result<Duration, QuantityError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let (number, tail) = split_number(rest);
        if number.is_empty() {
            return Err(QuantityError::BadNumber(s.to_owned()));
        }
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let factor: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(QuantityError::MissingUnit(s.to_owned())),
            other => {
                return Err(QuantityError::BadUnit {
                    unit: other.to_owned(),
                    expected: DURATION_UNITS,
                });
            }
        };
        let ns = Decimal::parse(number)?.times(factor, s)?;
        total_ns = total_ns.checked_add(ns).ok_or_else(|| QuantityError::TooLarge(s.to_owned()))?;
        rest = next;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000)
        .map_err(|_| QuantityError::TooLarge(s.to_owned()))?;
    let nanos = u32::try_from(total_ns % 1_000_000_000)
        .map_err(|_| QuantityError::TooLarge(s.to_owned()))?;
    Ok(Duration::new(secs, nanos))
}

/// Parses a memory size in bytes, Kubernetes style: `512Mi` (binary: `Ki`, `Mi`, `Gi`, `Ti`,
/// `Pi`, `Ei`), `1G` (decimal: `k`, `M`, `G`, `T`, `P`, `E`), or a plain number of bytes.
/// Fractions are allowed (`1.5Gi`) and rounded down to whole bytes.
///
/// Note that, as in Kubernetes, `1G` is 1 000 000 000 bytes and `1Gi` is 1 073 741 824 bytes;
/// Docker's `1g` means the latter, so lower-case `m`/`g` are refused rather than guessed.
///
/// # Errors
///
/// [`QuantityError`] when the text is empty, malformed, has an unknown unit, or does not fit
/// in a `u64`.
pub fn parse_memory(s: &str) -> Result<u64, QuantityError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (number, unit) = split_number(s);
    let factor: u128 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        other => {
            return Err(QuantityError::BadUnit { unit: other.to_owned(), expected: MEMORY_UNITS });
        }
    };
    let bytes = Decimal::parse(number)?.times(factor, s)?;
    u64::try_from(bytes).map_err(|_| QuantityError::TooLarge(s.to_owned()))
}

/// Parses a CPU quantity into nano-CPUs (Docker's `NanoCpus`): `0.5` → 500 000 000, `2` →
/// 2 000 000 000, and Kubernetes millicores `1500m` → 1 500 000 000.
///
/// # Errors
///
/// [`QuantityError`] when the text is empty, malformed, zero, has an unknown unit or is
/// absurdly large.
pub fn parse_cpus(s: &str) -> Result<i64, QuantityError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (number, unit) = split_number(s);
    let factor: u128 = match unit {
        "" => 1_000_000_000,
        "m" => 1_000_000,
        other => {
            return Err(QuantityError::BadUnit {
                unit: other.to_owned(),
                expected: "no unit (cpus, e.g. 0.5) or m (millicpus, e.g. 500m)",
            });
        }
    };
    let nanos = Decimal::parse(number)?.times(factor, s)?;
    if nanos == 0 {
        return Err(QuantityError::Zero);
    }
    i64::try_from(nanos).map_err(|_| QuantityError::TooLarge(s.to_owned()))
}

/// A quantity as written in a manifest: a string such as `512Mi` or `0.5`, or a bare YAML/JSON
/// number (`cpus: 2`), which is kept in its decimal text form. Interpret it with
/// [`parse_memory`] or [`parse_cpus`] (or [`Quantity::memory_bytes`], [`Quantity::nano_cpus`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity(pub String);

impl Quantity {
    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quantity as a memory size in bytes; see [`parse_memory`].
    ///
    /// # Errors
    ///
    /// As [`parse_memory`].
    pub fn memory_bytes(&self) -> Result<u64, QuantityError> {
        parse_memory(&self.0)
    }

    /// The quantity as nano-CPUs; see [`parse_cpus`].
    ///
    /// # Errors
    ///
    /// As [`parse_cpus`].
    pub fn nano_cpus(&self) -> Result<i64, QuantityError> {
        parse_cpus(&self.0)
    }
}

#[cfg(feature = "graphql")]
async_graphql::scalar!(
    Quantity,
    "Quantity",
    "A CPU count or a memory size as written in the manifest: `0.5`, `500m`, `512Mi`, `1G`."
);

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_owned())
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 512Mi, 1G or 0.5 (a string or a number)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if v.is_finite() {
                    Ok(Quantity(v.to_string()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A quantity: memory as 512Mi, 1Gi, 1G or bytes; cpus as 0.5, 2 or 500m.",
            "anyOf": [
                { "type": "string", "pattern": "^([0-9]+\\.?[0-9]*|\\.[0-9]+)([kKMGTPE]|[KMGTPE]i|m)?$" },
                { "type": "number", "exclusiveMinimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_go_syntax() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_unit_or_with_unknown_unit_are_refused() {
        assert_eq!(parse_duration("30"), Err(QuantityError::MissingUnit("30".into())));
        assert!(matches!(parse_duration("3d"), Err(QuantityError::BadUnit { .. })));
        assert!(matches!(parse_duration("s"), Err(QuantityError::BadNumber(_))));
        assert!(matches!(parse_duration("-1s"), Err(QuantityError::BadNumber(_))));
        assert_eq!(parse_duration(""), Err(QuantityError::Empty));
        assert!(matches!(
            parse_duration("99999999999999999999999999h"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn memory_parses_binary_and_decimal_units() {
        assert_eq!(parse_memory("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("1.5Ki"), Ok(1536));
        assert_eq!(parse_memory("4096"), Ok(4096));
        assert_eq!(parse_memory("100k"), Ok(100_000));
    }

    #[test]
    fn memory_refuses_docker_lower_case_units_and_overflow() {
        assert!(matches!(parse_memory("512m"), Err(QuantityError::BadUnit { .. })));
        assert!(matches!(parse_memory("1g"), Err(QuantityError::BadUnit { .. })));
        assert!(matches!(parse_memory("100Ei"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(parse_memory("Mi"), Err(QuantityError::BadNumber(_))));
    }

    #[test]
    fn cpus_parse_as_nano_cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("1500m"), Ok(1_500_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert_eq!(parse_cpus("0"), Err(QuantityError::Zero));
        assert!(matches!(parse_cpus("1 cpu"), Err(QuantityError::BadUnit { .. })));
    }
}
