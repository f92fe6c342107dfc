//! The toy server's settings, each declared once in [`SERVER_OPTIONS`]: its
//! limits, its keepalive policy and its largest message. A row gives the
//! `leaklab-server` flag (its name with `-` for `_`) and its help, the key of
//! a scenario's `[server]` table (its name) and its reference, how its value
//! is read and written, and the option it needs; [`ServerSettings::args`]
//! gives the arguments that hand a plan's settings to the server it starts.

use std::time::Duration;

use crate::keepalive::KeepalivePolicy;
use crate::limits::Limits;
use crate::values::{format_duration, parse_duration, parse_size};

/// Everything [`SERVER_OPTIONS`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Largest message, in bytes, the server decodes or encodes.
    pub max_message_bytes: u32,
    /// What one client may make the server hold.
    pub limits: Limits,
    /// Idle and age limits, server pings and the client ping policy.
    pub keepalive: KeepalivePolicy,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self { max_message_bytes: 4 << 20, limits: Limits::default(), keepalive: KeepalivePolicy::default() }
    }
}

/// What a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number from 1.
    Count,
    /// A limit: a whole number from 1, or `off`.
    CountLimit,
    /// A limit in bytes: a size from 1 byte (`16MiB`), or `off`.
    SizeLimit,
    /// A limit in time: a duration longer than 0, or `off`.
    DurationLimit,
    /// A duration longer than 0; unset: never.
    Duration,
    /// On or off; unset: off.
    Switch,
}

/// A setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Number(u64),
    Duration(Duration),
    /// No limit, or no duration set.
    Off,
    Switch(bool),
}

/// Which of the server's settings an option is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Message,
    /// What one client may make the server hold.
    Limits,
    /// grpc-go's keepalive parameters and ping policy.
    Keepalive,
}

/// One setting of the toy server.
#[derive(Debug, Clone, Copy)]
pub struct ServerOption {
    /// The scenario key under `[server]`; with `-` for `_`, the `leaklab-server` flag.
    pub name: &'static str,
    pub kind: Kind,
    pub group: Group,
    /// An older name of the flag, still read.
    pub alias: Option<&'static str>,
    /// What it does, for the scenario reference and `--help`.
    pub doc: &'static str,
    /// Another option this one needs, and why.
    pub needs: Option<(&'static str, &'static str)>,
    get: fn(&ServerSettings) -> Value,
    set: fn(&mut ServerSettings, Value),
}

const fn option(
    name: &'static str,
    kind: Kind,
    doc: &'static str,
    get: fn(&ServerSettings) -> Value,
    set: fn(&mut ServerSettings, Value),
) -> ServerOption {
    let group = match kind {
        Kind::Count => Group::Message,
        Kind::CountLimit | Kind::SizeLimit | Kind::DurationLimit => Group::Limits,
        Kind::Duration | Kind::Switch => Group::Keepalive,
    };
    ServerOption { name, kind, group, alias: None, doc, needs: None, get, set }
}

impl ServerOption {
    const fn needs(mut self, other: &'static str, why: &'static str) -> Self {
        self.needs = Some((other, why));
        self
    }

    const fn alias(mut self, alias: &'static str) -> Self {
        self.alias = Some(alias);
        self
    }

    const fn limit(mut self) -> Self {
        self.group = Group::Limits;
        self
    }
}

/// A limit's value in a [`Value`], and back.
fn count(value: Option<u32>) -> Value {
    value.map_or(Value::Off, |n| Value::Number(n.into()))
}
fn bytes(value: Option<u64>) -> Value {
    value.map_or(Value::Off, Value::Number)
}
fn duration(value: Option<Duration>) -> Value {
    value.map_or(Value::Off, Value::Duration)
}
fn to_count(value: Value) -> Option<u32> {
    to_bytes(value).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}
fn to_bytes(value: Value) -> Option<u64> {
    match value {
        Value::Number(n) => Some(n),
        _ => None,
    }
}
fn to_duration(value: Value) -> Option<Duration> {
    match value {
        Value::Duration(duration) => Some(duration),
        _ => None,
    }
}
fn switch(value: Value) -> bool {
    value == Value::Switch(true)
}

/// Every setting of the toy server, in the order of the scenario reference and `--help`.
pub const SERVER_OPTIONS: [ServerOption; 17] = [
    option(
        "max_message_size",
        Kind::Count,
        "Largest message the server accepts, in bytes. Default: 4 MiB.",
        |s| Value::Number(s.max_message_bytes.into()),
        |s, v| s.max_message_bytes = to_count(v).unwrap_or(u32::MAX),
    ),
    option(
        "max_concurrent_streams",
        Kind::CountLimit,
        "HTTP/2 streams a connection may have open at once, or `\"off\"`. Default: 100.",
        |s| count(s.limits.max_concurrent_streams),
        |s, v| s.limits.max_concurrent_streams = to_count(v),
    ),
    option(
        "max_concurrent_streams_total",
        Kind::CountLimit,
        "Streams open at once over all connections, or `\"off\"`; beyond it, a connection's new stream is\n\
         reset unless the connection holds less than its fair share of them. Default: 1000.",
        |s| count(s.limits.max_concurrent_streams_total),
        |s, v| s.limits.max_concurrent_streams_total = to_count(v),
    ),
    option(
        "max_connections",
        Kind::CountLimit,
        "Connections open at once, or `\"off\"`; beyond it, a new connection is closed at once. Default: off.",
        |s| count(s.limits.max_connections),
        |s, v| s.limits.max_connections = to_count(v),
    ),
    option(
        "request_timeout",
        Kind::DurationLimit,
        "A stream whose request has not arrived in full this long after its headers is reset, or `\"off\"`.\n\
         Default: 5s.",
        |s| duration(s.limits.request_timeout),
        |s, v| s.limits.request_timeout = to_duration(v),
    ),
    option(
        "max_incomplete_requests",
        Kind::CountLimit,
        "Requests still arriving over all connections, or `\"off\"`; beyond it, the oldest is reset. Default: 1000.",
        |s| count(s.limits.max_incomplete_requests),
        |s, v| s.limits.max_incomplete_requests = to_count(v),
    ),
    option(
        "unread_response_timeout",
        Kind::DurationLimit,
        "A response waiting this long behind a closed flow-control window is reset, or `\"off\"`. Default: 10s.",
        |s| duration(s.limits.unread_response_timeout),
        |s, v| s.limits.unread_response_timeout = to_duration(v),
    ),
    option(
        "max_unread_response_bytes",
        Kind::SizeLimit,
        "Response bytes one connection may have waiting for window (16 KiB more per response), or `\"off\"`;\n\
         beyond it, its oldest waiting response is reset. Default: 16 MiB.",
        |s| bytes(s.limits.max_unread_response_bytes),
        |s, v| s.limits.max_unread_response_bytes = to_bytes(v),
    ),
    option(
        "max_unread_response_bytes_total",
        Kind::SizeLimit,
        "The same bound over all connections, or `\"off\"`. Default: 64 MiB.",
        |s| bytes(s.limits.max_unread_response_bytes_total),
        |s, v| s.limits.max_unread_response_bytes_total = to_bytes(v),
    ),
    option(
        "trust_length_prefix",
        Kind::Switch,
        "Reserve a request message's memory when its length prefix arrives, as tonic does, instead of as\n\
         its bytes arrive.",
        |s| Value::Switch(!s.limits.gather_messages),
        |s, v| s.limits.gather_messages = !switch(v),
    )
    .limit(),
    option(
        "max_connection_idle",
        Kind::Duration,
        "A connection with no RPC in flight for this long gets GOAWAY and is closed. Default: never.",
        |s| duration(s.keepalive.max_connection_idle),
        |s, v| s.keepalive.max_connection_idle = to_duration(v),
    ),
    option(
        "max_connection_age",
        Kind::Duration,
        "GOAWAY at this age. Default: never.",
        |s| duration(s.keepalive.max_connection_age),
        |s, v| s.keepalive.max_connection_age = to_duration(v),
    ),
    option(
        "max_connection_age_grace",
        Kind::Duration,
        "A connection still open this long after its GOAWAY at `max_connection_age` is closed. Needs it.",
        |s| duration(s.keepalive.max_connection_age_grace),
        |s, v| s.keepalive.max_connection_age_grace = to_duration(v),
    )
    .needs("max_connection_age", "the grace starts at the age limit"),
    option(
        "keepalive_time",
        Kind::Duration,
        "The server pings an inactive connection every this long. Default: never.",
        |s| duration(s.keepalive.keepalive_time),
        |s, v| s.keepalive.keepalive_time = to_duration(v),
    )
    .alias("http2-keepalive-interval"),
    option(
        "keepalive_timeout",
        Kind::Duration,
        "An unanswered server ping closes the connection after this long. Needs `keepalive_time`.",
        |s| duration(s.keepalive.keepalive_timeout),
        |s, v| s.keepalive.keepalive_timeout = to_duration(v),
    )
    .alias("http2-keepalive-timeout")
    .needs("keepalive_time", "without pings there is nothing to time out"),
    option(
        "min_ping_interval",
        Kind::Duration,
        "Client pings closer than this are strikes; the third gets GOAWAY `ENHANCE_YOUR_CALM` \"too_many_pings\".\n\
         Default: no ping policy.",
        |s| duration(s.keepalive.min_ping_interval),
        |s, v| s.keepalive.min_ping_interval = to_duration(v),
    ),
    option(
        "permit_without_stream",
        Kind::Switch,
        "Allow client pings while no RPC is in flight. Needs `min_ping_interval`.",
        |s| Value::Switch(s.keepalive.permit_without_stream),
        |s, v| s.keepalive.permit_without_stream = switch(v),
    )
    .needs("min_ping_interval", "without a ping policy there is nothing to permit"),
];

impl ServerOption {
    /// The `leaklab-server` flag, without its dashes.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// What `--help` shows the value as.
    pub fn value_name(&self) -> &'static str {
        match self.kind {
            Kind::Count => "N",
            Kind::CountLimit => "N|off",
            Kind::SizeLimit => "BYTES|off",
            Kind::DurationLimit => "DURATION|off",
            Kind::Duration => "DURATION",
            Kind::Switch => "",
        }
    }

    /// This option's value in `settings`.
    pub fn get(&self, settings: &ServerSettings) -> Value {
        (self.get)(settings)
    }

    /// Sets this option in `settings` to `value`, which [`ServerOption::parse`] or
    /// [`ServerOption::number`] read for it.
    pub fn set(&self, settings: &mut ServerSettings, value: Value) {
        (self.set)(settings, value)
    }

    /// The value from a number (a scenario file's integer).
    pub fn number(&self, number: i64) -> Result<Value, String> {
        let off = "; write \"off\" for no limit";
        match self.kind {
            Kind::Count => match u32::try_from(number) {
                Ok(n) if n > 0 => Ok(Value::Number(n.into())),
                _ if number < 1 => Err(format!("must be at least 1, got {number}")),
                _ => Err(format!("must be at most {}, got {number}", u32::MAX)),
            },
            Kind::CountLimit => match u32::try_from(number) {
                Ok(n) if n > 0 => Ok(Value::Number(n.into())),
                _ => Err(format!("{number} is not between 1 and {}{off}", u32::MAX)),
            },
            Kind::SizeLimit => match u64::try_from(number) {
                Ok(n) if n > 0 => Ok(Value::Number(n)),
                _ => Err(format!("{number} is not a positive size{off}")),
            },
            Kind::DurationLimit => Err(format!("{number} is not a duration like \"5s\" or \"off\"")),
            Kind::Duration => Err(format!("{number} is not a duration like \"5s\"")),
            Kind::Switch => Err(format!("{number} is not true or false")),
        }
    }

    /// The value from its text, as the command line or a scenario's string writes it.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        let text = text.trim();
        let limit = matches!(self.kind, Kind::CountLimit | Kind::SizeLimit | Kind::DurationLimit);
        if limit && text == "off" {
            return Ok(Value::Off);
        }
        let positive = |duration: Duration| {
            if duration.is_zero() { Err("must be longer than 0".to_owned()) } else { Ok(Value::Duration(duration)) }
        };
        match self.kind {
            Kind::Count | Kind::CountLimit => match text.parse::<i64>() {
                Ok(number) => self.number(number),
                Err(_) if limit => Err(format!("{text:?} is not a whole number or \"off\"")),
                Err(_) => Err(format!("{text:?} is not a whole number")),
            },
            Kind::SizeLimit => parse_size(text).and_then(|bytes| self.number(i64::try_from(bytes).unwrap_or(i64::MAX))),
            Kind::DurationLimit | Kind::Duration => parse_duration(text).and_then(positive),
            Kind::Switch => match text {
                "true" => Ok(Value::Switch(true)),
                "false" => Ok(Value::Switch(false)),
                _ => Err(format!("{text:?} is not true or false")),
            },
        }
    }

    /// The value as the command line writes it; `None` for a switch, which is a flag alone.
    pub fn text(value: Value) -> Option<String> {
        match value {
            Value::Number(n) => Some(n.to_string()),
            Value::Duration(duration) => Some(format_duration(duration)),
            Value::Off => Some("off".to_owned()),
            Value::Switch(_) => None,
        }
    }
}

impl ServerSettings {
    /// The `leaklab-server` arguments that set these where they differ from the defaults.
    pub fn args(&self) -> Vec<String> {
        let defaults = ServerSettings::default();
        let mut args = Vec::new();
        for option in &SERVER_OPTIONS {
            let value = option.get(self);
            if value == option.get(&defaults) {
                continue;
            }
            args.push(format!("--{}", option.flag()));
            args.extend(ServerOption::text(value));
        }
        args
    }

    /// The first option set without the option it needs: it, and why it needs the other.
    pub fn unmet_need(&self) -> Option<(&'static ServerOption, &'static str, &'static str)> {
        let defaults = ServerSettings::default();
        let set = |name: &str| {
            SERVER_OPTIONS.iter().find(|o| o.name == name).is_some_and(|o| o.get(self) != o.get(&defaults))
        };
        SERVER_OPTIONS.iter().find_map(|option| {
            let (needed, why) = option.needs?;
            (set(option.name) && !set(needed)).then_some((option, needed, why))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings where every option differs from its default.
    fn every_option_changed() -> ServerSettings {
        let mut settings = ServerSettings::default();
        for option in &SERVER_OPTIONS {
            let value = match (option.kind, option.get(&settings)) {
                (Kind::Switch, Value::Switch(on)) => Value::Switch(!on),
                (Kind::Duration, _) => Value::Duration(Duration::from_millis(1500)),
                (_, Value::Off) => Value::Number(7),
                (_, _) => Value::Off,
            };
            let value = if option.kind == Kind::Count { Value::Number(9) } else { value };
            option.set(&mut settings, value);
        }
        settings
    }

    #[test]
    fn every_option_has_its_own_name_and_each_need_names_an_option() {
        let mut names: Vec<&str> = SERVER_OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SERVER_OPTIONS.len());
        for option in &SERVER_OPTIONS {
            if let Some((needed, _)) = option.needs {
                assert!(names.contains(&needed), "{} needs {needed}, which is not an option", option.name);
            }
        }
    }

    #[test]
    fn the_arguments_name_only_what_differs_and_read_back_through_each_option() {
        assert_eq!(ServerSettings::default().args(), Vec::<String>::new());
        let changed = every_option_changed();
        let args = changed.args();
        let mut read = ServerSettings::default();
        let mut rest = args.iter().peekable();
        while let Some(flag) = rest.next() {
            let name = flag.trim_start_matches("--").replace('-', "_");
            let option = SERVER_OPTIONS.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("{flag}"));
            let value = match option.kind {
                Kind::Switch => Value::Switch(true),
                _ => option.parse(rest.next().unwrap()).unwrap(),
            };
            option.set(&mut read, value);
        }
        // A switch on by default (none is) could only be turned off by its absence.
        assert_eq!(read, changed, "{args:?}");
    }

    #[test]
    fn values_are_read_as_people_write_them_and_zero_is_not_a_limit() {
        let option = |name: &str| SERVER_OPTIONS.iter().find(|o| o.name == name).unwrap();
        assert_eq!(option("max_concurrent_streams").parse("off"), Ok(Value::Off));
        assert_eq!(option("max_unread_response_bytes").parse("16MiB"), Ok(Value::Number(16 << 20)));
        assert_eq!(option("request_timeout").parse("1s 500ms"), Ok(Value::Duration(Duration::from_millis(1500))));
        let zero = option("max_concurrent_streams").parse("0").unwrap_err();
        assert!(zero.contains("write \"off\" for no limit"), "{zero}");
        assert_eq!(option("max_connection_idle").parse("0s").unwrap_err(), "must be longer than 0");
        assert!(option("max_connection_idle").parse("off").is_err(), "a policy has no `off`: it is unset");
        assert!(option("request_timeout").parse("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn an_option_without_the_one_it_needs_is_named() {
        let mut settings = ServerSettings::default();
        settings.keepalive.keepalive_timeout = Some(Duration::from_secs(1));
        let (option, needed, _) = settings.unmet_need().unwrap();
        assert_eq!((option.name, needed), ("keepalive_timeout", "keepalive_time"));
        settings.keepalive.keepalive_time = Some(Duration::from_secs(1));
        assert!(settings.unmet_need().is_none());
    }
}
