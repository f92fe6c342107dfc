//! The kinds of value a scenario file holds besides numbers and booleans:
//! durations (`"500ms"`), sizes (`"300MiB"`) and names (`"leak"`), each read
//! by serde with an error that says what was expected.

use std::borrow::Cow;
use std::time::Duration;

pub use leaklab_wire::values::{format_duration, parse_duration, parse_size};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// A Go process's `net/http/pprof` base URL: `http://HOST:PORT/debug/pprof`, `{pprof_addr}` allowed for
/// the port of a command leaklab starts.
pub fn pprof_url(text: &str) -> Result<String, String> {
    match text.trim() {
        url if url.starts_with("http://") => Ok(url.to_owned()),
        _ => Err("expected http://HOST:PORT/debug/pprof".to_owned()),
    }
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
