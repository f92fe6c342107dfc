//! The kinds of value a scenario file holds besides numbers and booleans:
//! durations (`"500ms"`), sizes (`"300MiB"`) and names (`"leak"`), each read
//! by serde with an error that says what was expected.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// A duration like `"500ms"`, `"30s"` or `"1m 30s"` (humantime's syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like \"500ms\" or \"30s\" ({error})"))
}

/// How a duration is written back: `1s 500ms`, which [`parse_duration`] reads.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Where a client serves channelz: `HOST:PORT`, or `{channelz_addr}` for a free loopback port that
/// leaklab picks and puts into the client's command too.
pub fn channelz_address(text: &str) -> Result<String, String> {
    const PLACEHOLDER: &str = "{channelz_addr}";
    let text = text.trim();
    if text == PLACEHOLDER {
        return Ok(text.to_owned());
    }
    let port = text.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, port)| port.parse::<u16>());
    match port {
        Some(Ok(port)) if port > 0 => Ok(text.to_owned()),
        _ => Err(format!("{text:?} is not HOST:PORT (or {PLACEHOLDER}, a free loopback port leaklab picks)")),
    }
}

/// A size like `300MiB`, `2GiB`, `512KB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => return Err(format!("{text:?}: unknown unit {other:?}; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 && value * multiplier < u64::MAX as f64 => {
            Ok((value * multiplier) as u64)
        }
        _ => Err(format!("{text:?} is not a size like \"300MiB\" or \"2GiB\"")),
    }
}

/// `#[serde(deserialize_with)]` for an optional duration key.
pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

/// `#[serde(deserialize_with)]` for an optional size key: bytes as a number, or a string with a unit.
pub(crate) fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Bytes(i64),
        Text(String),
    }
    let bytes = match Written::deserialize(deserializer) {
        Ok(Written::Bytes(bytes)) => u64::try_from(bytes).map_err(|_| format!("{bytes} is not a size: it is negative")),
        Ok(Written::Text(text)) => parse_size(&text),
        Err(_) => Err("expected a size: bytes as a number, or a string like \"300MiB\"".to_owned()),
    };
    bytes.map(Some).map_err(serde::de::Error::custom)
}

/// A limit's value as a scenario writes it: a number (a size may carry a unit), a duration, or `"off"`.
pub(crate) trait LimitValue: Sized {
    fn from_number(number: i64) -> Result<Self, String>;
    fn from_text(text: &str) -> Result<Self, String>;
}

impl LimitValue for u32 {
    fn from_number(number: i64) -> Result<Self, String> {
        u32::try_from(number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{number} is not between 1 and {}; write \"off\" for no limit", u32::MAX))
    }
    fn from_text(text: &str) -> Result<Self, String> {
        Err(format!("{text:?} is not a whole number or \"off\""))
    }
}

impl LimitValue for u64 {
    fn from_number(number: i64) -> Result<Self, String> {
        u64::try_from(number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{number} is not a positive size; write \"off\" for no limit"))
    }
    fn from_text(text: &str) -> Result<Self, String> {
        parse_size(text).and_then(|bytes| {
            if bytes == 0 { Err(format!("{text:?} is zero; write \"off\" for no limit")) } else { Ok(bytes) }
        })
    }
}

impl LimitValue for Duration {
    fn from_number(number: i64) -> Result<Self, String> {
        Err(format!("{number} is not a duration like \"5s\" or \"off\""))
    }
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text).and_then(|duration| {
            if duration.is_zero() { Err(format!("{text:?} is zero; write \"off\" for no limit")) } else { Ok(duration) }
        })
    }
}

/// `#[serde(deserialize_with)]` for a limit key: its value, or `"off"`.
pub(crate) fn limit<'de, D: Deserializer<'de>, T: LimitValue>(
    deserializer: D,
) -> Result<Option<leaklab_wire::limits::Setting<T>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(i64),
        Text(String),
    }
    let value = match Written::deserialize(deserializer) {
        Ok(Written::Number(number)) => T::from_number(number).map(Some),
        Ok(Written::Text(text)) if text.trim() == "off" => Ok(None),
        Ok(Written::Text(text)) => T::from_text(&text).map(Some),
        Err(_) => Err("expected a limit: a number, a string like \"5s\" or \"16MiB\", or \"off\"".to_owned()),
    };
    value.map(|value| Some(leaklab_wire::limits::Setting(value))).map_err(serde::de::Error::custom)
}

pub(crate) fn count_limit_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "oneOf": [{ "type": "integer", "minimum": 1, "maximum": 4294967295u32 }, { "const": "off" }] })
}

pub(crate) fn duration_limit_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "duration", "description": "a duration, or \"off\"" })
}

pub(crate) fn size_limit_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "integer"], "minimum": 1, "format": "size", "description": "a size, or \"off\"" })
}

/// The schema of a duration key, for editors.
pub(crate) fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "duration" })
}

/// The schema of a size key, for editors.
pub(crate) fn size_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["string", "integer"], "minimum": 0, "format": "size" })
}

leaklab_verdict::named! {
    /// A channel policy's name in `client.policy`.
    pub enum PolicyName, "policy" {
        Reused = "reused",
        Leak = "leak",
        PerRequestClose = "per-request-close",
        Pool = "pool",
        StreamLeak = "stream-leak",
        StreamCancel = "stream-cancel",
    }
}

impl PolicyName {
    /// Whether each request is a server stream on one reused channel.
    pub fn streams(self) -> bool {
        matches!(self, PolicyName::StreamLeak | PolicyName::StreamCancel)
    }
}

/// A list of strings, for a schema that `Vec<String>` would describe as well but without a name.
#[derive(Debug)]
pub(crate) struct Argv;

impl JsonSchema for Argv {
    fn schema_name() -> Cow<'static, str> {
        "Argv".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "array", "items": { "type": "string" }, "minItems": 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(parse_size("300MiB"), Ok(300 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("-1MiB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn durations_round_trip_through_their_text() {
        for duration in [Duration::from_millis(1500), Duration::from_secs(60), Duration::ZERO] {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        let err = parse_duration("3 parsecs").unwrap_err();
        assert!(err.starts_with("\"3 parsecs\" is not a duration like \"500ms\" or \"30s\""), "{err}");
    }

    #[test]
    fn a_name_that_does_not_exist_lists_those_that_do() {
        assert_eq!("pool".parse::<PolicyName>(), Ok(PolicyName::Pool));
        assert_eq!(
            "leaky".parse::<PolicyName>().unwrap_err(),
            "unknown policy \"leaky\"; expected one of reused, leak, per-request-close, pool, stream-leak, stream-cancel"
        );
        assert_eq!(serde_json::to_string(&PolicyName::PerRequestClose).unwrap(), "\"per-request-close\"");
    }
}
