//! The scenario options a run can override, declared once in [`OPTIONS`].
//!
//! Everything about an override comes from its row: the `loadgen run` flag
//! and its help (cli.rs builds the flags from the table), the scenario key it
//! sets (overrides are written into the file's table before it is read, so
//! they are validated exactly as the file's own values are), the arguments
//! that hand it to a child run (`compare`, `demo`), the key of a demo
//! chapter's `fast` table, and the scenario reference in `docs/scenarios.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::values::{format_duration, parse_duration, parse_size};

/// An overridable option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Opt {
    Requests,
    Duration,
    Concurrency,
    Rate,
    WarmupRequests,
    Rounds,
    IdleBetweenRounds,
    Interval,
    Cooldown,
    SourceAddresses,
    CapClientRss,
    CapServerRss,
    CapFds,
    NoCaps,
    HeapProfile,
    Call,
    Proto,
    ImportPaths,
    Data,
    DataFile,
    Metadata,
    StreamMessages,
    Tls,
    Cacert,
    Cert,
    Key,
    Cname,
    Insecure,
}

/// What an option's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number.
    Count,
    /// A duration like `20s`.
    Duration,
    /// Requests per second; 0 removes the file's rate (closed loop).
    Rate,
    /// Bytes, or a size like `300MiB`.
    Size,
    /// A flag without a value.
    Switch,
    /// Text, taken as it is.
    Text,
    /// A path; a relative one is taken from the current directory (in a scenario file, from the file's).
    Path,
    /// Paths, the flag repeated or its values separated by commas; relative ones are taken from the
    /// current directory (in a scenario file, from the file's).
    Paths,
    /// gRPC metadata: on the command line a JSON object of header names to values, in a file a table.
    Metadata,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub opt: Opt,
    /// The flag without its dashes (`warmup-requests`); with `_` for `-`, the key of a demo chapter's `fast` table.
    pub flag: &'static str,
    /// The scenario key the option sets; `None` for `no-caps`, which lifts every cap.
    pub key: Option<&'static str>,
    pub kind: Kind,
    pub value_name: &'static str,
    pub help: &'static str,
    /// Flags this one cannot be given with.
    pub conflicts: &'static [&'static str],
    /// A one-letter flag too (ghz's `-d` and `-m`).
    pub short: Option<char>,
}

const fn row(
    opt: Opt,
    flag: &'static str,
    key: &'static str,
    kind: Kind,
    value_name: &'static str,
    help: &'static str,
) -> OptionSpec {
    OptionSpec { opt, flag, key: Some(key), kind, value_name, help, conflicts: &[], short: None }
}

impl OptionSpec {
    const fn short(mut self, letter: char) -> Self {
        self.short = Some(letter);
        self
    }

    const fn conflicts(mut self, flags: &'static [&'static str]) -> Self {
        self.conflicts = flags;
        self
    }
}

/// Every overridable option.
pub const OPTIONS: [OptionSpec; 28] = [
    row(Opt::Requests, "requests", "load.requests", Kind::Count, "N", "Override load.requests."),
    row(Opt::Duration, "duration", "load.duration", Kind::Duration, "DURATION", "Override load.duration, e.g. `20s`."),
    row(Opt::Concurrency, "concurrency", "load.concurrency", Kind::Count, "N", "Override load.concurrency."),
    row(
        Opt::Rate,
        "rate",
        "load.rate",
        Kind::Rate,
        "PER_SECOND",
        "Override load.rate (requests per second, open loop); 0 for closed loop.",
    ),
    row(
        Opt::WarmupRequests,
        "warmup-requests",
        "load.warmup_requests",
        Kind::Count,
        "N",
        "Override load.warmup_requests.",
    ),
    row(Opt::Rounds, "rounds", "load.rounds", Kind::Count, "N", "Override load.rounds (6 or more)."),
    row(
        Opt::IdleBetweenRounds,
        "idle-between-rounds",
        "load.idle_between_rounds",
        Kind::Duration,
        "DURATION",
        "Override load.idle_between_rounds, e.g. `3s`: the client idles this long before each checkpoint.",
    ),
    row(
        Opt::Interval,
        "interval",
        "sampling.interval",
        Kind::Duration,
        "DURATION",
        "Override sampling.interval, e.g. `50ms`.",
    ),
    row(
        Opt::Cooldown,
        "cooldown",
        "sampling.cooldown",
        Kind::Duration,
        "DURATION",
        "Override sampling.cooldown, e.g. `5s`.",
    ),
    row(
        Opt::SourceAddresses,
        "source-addresses",
        "client.source_addresses",
        Kind::Count,
        "N",
        "Override client.source_addresses: spread connections over 127.0.0.2 … 127.0.0.(N+1).",
    ),
    row(
        Opt::CapClientRss,
        "cap-client-rss",
        "caps.client_rss",
        Kind::Size,
        "SIZE",
        "Override caps.client_rss, e.g. `300MiB`: the load stops when the load generator's RSS reaches it.",
    ),
    row(
        Opt::CapServerRss,
        "cap-server-rss",
        "caps.server_rss",
        Kind::Size,
        "SIZE",
        "Override caps.server_rss, e.g. `1GiB`.",
    ),
    row(Opt::CapFds, "cap-fds", "caps.fds", Kind::Count, "N", "Override caps.fds: open fds of either process."),
    OptionSpec {
        opt: Opt::NoCaps,
        flag: "no-caps",
        key: None,
        kind: Kind::Switch,
        value_name: "",
        help: "Lift the caps: no fd cap, and RSS caps of half the machine's memory (a guard that stays), \
               so a leak runs into the limits of the machine (the fd limit, ephemeral ports).",
        conflicts: &["cap-client-rss", "cap-server-rss", "cap-fds"],
        short: None,
    },
    row(
        Opt::HeapProfile,
        "heap-profile",
        "sampling.heap_profile",
        Kind::Switch,
        "",
        "Profile the heap of both processes (jemalloc sampling, one per 128 KiB) and report where the memory \
         that grew was allocated (sampling.heap_profile).",
    ),
    row(
        Opt::Call,
        "call",
        "call.method",
        Kind::Text,
        "SERVICE/METHOD",
        "Call this method instead of the toy server's Echo: `package.Service/Method` (or `package.Service.Method`), \
         unary or server-streaming, described by --proto or by the server's reflection service (call.method).",
    ),
    row(
        Opt::Proto,
        "proto",
        "call.proto",
        Kind::Paths,
        "FILE",
        "A .proto file that defines --call's service, compiled at run time; repeatable (call.proto). \
         Without it, the server's reflection service is asked.",
    ),
    row(
        Opt::ImportPaths,
        "import-paths",
        "call.import_paths",
        Kind::Paths,
        "DIR,…",
        "Directories --proto's imports are found in, comma-separated, before each file's own directory \
         (call.import_paths).",
    ),
    row(
        Opt::Data,
        "data",
        "call.data",
        Kind::Text,
        "JSON",
        "The request message as JSON, in the canonical protobuf mapping (call.data). Default: `{}`.",
    )
    .short('d')
    .conflicts(&["data-file"]),
    row(
        Opt::DataFile,
        "data-file",
        "call.data_file",
        Kind::Path,
        "FILE.jsonl",
        "Request messages, one JSON object per line, sent in turn and cycled through (call.data_file).",
    ),
    row(
        Opt::Metadata,
        "metadata",
        "call.metadata",
        Kind::Metadata,
        "JSON",
        "Metadata sent with every call, a JSON object of header names to values, e.g. \
         `{\"authorization\":\"Bearer x\"}`; a `-bin` header's value is base64 (call.metadata).",
    )
    .short('m'),
    row(
        Opt::StreamMessages,
        "stream-messages",
        "call.stream_messages",
        Kind::Count,
        "N",
        "A server-streaming call reads this many messages, then cancels the stream (call.stream_messages). \
         Default: every message, to the end.",
    ),
    row(
        Opt::Tls,
        "tls",
        "client.tls.enabled",
        Kind::Switch,
        "",
        "TLS on every connection, the server verified against --cacert or the Mozilla roots ([client.tls]). \
         --cacert, --cert, --cname and --insecure turn it on too.",
    ),
    row(
        Opt::Cacert,
        "cacert",
        "client.tls.cacert",
        Kind::Path,
        "FILE",
        "PEM CA certificates the server's certificate must chain to (client.tls.cacert).",
    )
    .conflicts(&["insecure"]),
    row(
        Opt::Cert,
        "cert",
        "client.tls.cert",
        Kind::Path,
        "FILE",
        "PEM certificate chain the client presents, for mutual TLS; needs --key (client.tls.cert).",
    ),
    row(Opt::Key, "key", "client.tls.key", Kind::Path, "FILE", "PEM private key of --cert (client.tls.key)."),
    row(
        Opt::Cname,
        "cname",
        "client.tls.cname",
        Kind::Text,
        "NAME",
        "The name the server's certificate must be valid for. Default: the target's host (client.tls.cname).",
    ),
    row(
        Opt::Insecure,
        "insecure",
        "client.tls.insecure",
        Kind::Switch,
        "",
        "TLS without verifying the server's certificate; only when you ask (client.tls.insecure).",
    ),
];

impl Opt {
    pub fn spec(self) -> &'static OptionSpec {
        OPTIONS.iter().find(|spec| spec.opt == self).expect("every option has a row")
    }
}

/// An option's value, as its [`Kind`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Count(u64),
    Duration(Duration),
    Rate(f64),
    Size(u64),
    On,
    Text(String),
    Paths(Vec<String>),
    Metadata(BTreeMap<String, String>),
}

impl OptionSpec {
    /// The option's value from its text, as on a command line.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        match self.kind {
            Kind::Count => text.parse().map(Value::Count).map_err(|_| format!("{text:?} is not a whole number")),
            Kind::Duration => parse_duration(text).map(Value::Duration),
            Kind::Rate => match text.parse::<f64>() {
                Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(Value::Rate(rate)),
                _ => Err(format!("{text:?} is not a rate in requests per second (0 or more)")),
            },
            Kind::Size => parse_size(text).map(Value::Size),
            Kind::Switch => Ok(Value::On),
            Kind::Text => Ok(Value::Text(text.to_owned())),
            Kind::Path => absolute(text).map(Value::Text),
            Kind::Paths => text
                .split(',')
                .filter(|path| !path.is_empty())
                .map(absolute)
                .collect::<Result<_, _>>()
                .map(Value::Paths),
            Kind::Metadata => parse_metadata(text).map(Value::Metadata),
        }
    }

    /// The option's value from a TOML value (a demo chapter's `fast` table).
    pub fn parse_toml(&self, value: &toml::Value) -> Result<Value, String> {
        match (self.kind, value) {
            (Kind::Switch, toml::Value::Boolean(true)) => Ok(Value::On),
            (Kind::Switch, _) => Err("can only be `true`".to_owned()),
            (_, toml::Value::Integer(n)) => self.parse(&n.to_string()),
            (Kind::Rate, toml::Value::Float(rate)) => self.parse(&rate.to_string()),
            (Kind::Duration | Kind::Size | Kind::Text | Kind::Path, toml::Value::String(text)) => self.parse(text),
            (Kind::Paths, toml::Value::Array(items)) => {
                let texts: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
                let texts = texts.ok_or_else(|| "expected an array of paths".to_owned())?;
                self.parse(&texts.join(","))
            }
            (Kind::Metadata, toml::Value::Table(table)) => table
                .iter()
                .map(|(name, value)| match value.as_str() {
                    Some(text) => Ok((name.clone(), text.to_owned())),
                    None => Err(format!("{name}: expected a string, got {}", value.type_str())),
                })
                .collect::<Result<_, _>>()
                .map(Value::Metadata),
            (_, other) => Err(format!("expected {}, got {}", self.value_name, other.type_str())),
        }
    }

    /// The value as the flag's argument; `None` for a switch.
    fn text(value: &Value) -> Option<String> {
        match value {
            Value::Count(n) | Value::Size(n) => Some(n.to_string()),
            Value::Duration(duration) => Some(format_duration(*duration)),
            Value::Rate(rate) => Some(rate.to_string()),
            Value::On => None,
            Value::Text(text) => Some(text.clone()),
            Value::Paths(paths) => Some(paths.join(",")),
            Value::Metadata(metadata) => Some(serde_json::to_string(metadata).expect("strings serialize")),
        }
    }
}

/// A path given on the command line, made absolute so that a scenario file's directory does not change it.
fn absolute(path: &str) -> Result<String, String> {
    std::path::absolute(path).map(|path| path.display().to_string()).map_err(|error| format!("{path:?}: {error}"))
}

/// `--metadata`'s JSON object of header names to string values.
fn parse_metadata(text: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(text).map_err(|error| {
        format!(
            "expected a JSON object of header names to string values, like {{\"authorization\":\"Bearer x\"}}: {error}"
        )
    })
}

/// Values given on the command line (or a chapter's `fast` table), applied
/// over the scenario file's before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides(BTreeMap<Opt, Value>);

impl Overrides {
    pub fn set(&mut self, opt: Opt, value: Value) -> &mut Self {
        self.0.insert(opt, value);
        self
    }

    /// `self` with `opt` set.
    pub fn with(mut self, opt: Opt, value: Value) -> Self {
        self.set(opt, value);
        self
    }

    pub fn get(&self, opt: Opt) -> Option<&Value> {
        self.0.get(&opt)
    }

    pub fn is_set(&self, opt: Opt) -> bool {
        self.0.contains_key(&opt)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `other`'s values over `self`'s.
    pub fn merged(mut self, other: &Overrides) -> Self {
        self.0.extend(other.0.iter().map(|(opt, value)| (*opt, value.clone())));
        self
    }

    /// The `loadgen run` arguments that give these overrides to a child run.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (opt, value) in &self.0 {
            args.push(format!("--{}", opt.spec().flag));
            args.extend(OptionSpec::text(value));
        }
        args
    }

    /// The scenario keys these overrides set, with the flag that set each.
    pub(crate) fn keys(&self) -> Vec<(&'static str, String)> {
        self.0.keys().filter_map(|opt| Some((opt.spec().key?, format!("--{}", opt.spec().flag)))).collect()
    }

    /// Writes the values into a scenario file's table at their keys, as the
    /// file would hold them; `--rate 0` removes the rate (closed loop).
    pub(crate) fn apply(&self, file: &mut toml::Table) {
        for (opt, value) in &self.0 {
            let Some(key) = opt.spec().key else { continue };
            let (tables, leaf) = key.rsplit_once('.').expect("every key is section.leaf");
            let mut section = Some(&mut *file);
            for name in tables.split('.') {
                let table = section.take().expect("walked into a table");
                let entry = table.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                // A section that is not a table is the file's error, reported when it is read.
                section = entry.as_table_mut();
                if section.is_none() {
                    break;
                }
            }
            let Some(section) = section else { continue };
            let toml_value = match value {
                Value::Rate(rate) if *rate == 0.0 => {
                    section.remove(leaf);
                    continue;
                }
                Value::Rate(rate) => toml::Value::Float(*rate),
                Value::Count(n) | Value::Size(n) => toml::Value::Integer(i64::try_from(*n).unwrap_or(i64::MAX)),
                Value::Duration(duration) => toml::Value::String(format_duration(*duration)),
                Value::On => toml::Value::Boolean(true),
                Value::Text(text) => toml::Value::String(text.clone()),
                Value::Paths(paths) => toml::Value::Array(paths.iter().cloned().map(toml::Value::String).collect()),
                Value::Metadata(metadata) => toml::Value::Table(
                    metadata.iter().map(|(name, value)| (name.clone(), toml::Value::String(value.clone()))).collect(),
                ),
            };
            section.insert(leaf.to_owned(), toml_value);
        }
    }

    /// Overrides from a table keyed by option (`requests = 500`, `cooldown = "1s"`),
    /// as a demo chapter's `fast` table holds them; an error names the key.
    pub fn from_table(table: &toml::Table) -> Result<Overrides, (String, String)> {
        let mut overrides = Overrides::default();
        for (key, value) in table {
            let spec = OPTIONS.iter().find(|spec| spec.flag.replace('-', "_") == *key).ok_or_else(|| {
                let known: Vec<String> = OPTIONS.iter().map(|spec| spec.flag.replace('-', "_")).collect();
                (key.clone(), format!("unknown option; expected one of {}", known.join(", ")))
            })?;
            let value = spec.parse_toml(value).map_err(|reason| (key.clone(), reason))?;
            overrides.set(spec.opt, value);
        }
        Ok(overrides)
    }
}

/// `run.json` keeps overrides as the flags that set them, with their text.
impl serde::Serialize for Overrides {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, String> =
            self.0.iter().map(|(opt, value)| (opt.spec().flag, OptionSpec::text(value).unwrap_or_default())).collect();
        map.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Overrides {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        let mut overrides = Overrides::default();
        for (flag, text) in map {
            let spec = OPTIONS
                .iter()
                .find(|spec| spec.flag == flag)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown option {flag:?}")))?;
            let value = spec.parse(&text).map_err(|reason| serde::de::Error::custom(format!("--{flag}: {reason}")))?;
            overrides.set(spec.opt, value);
        }
        Ok(overrides)
    }
}

#[cfg(test)]
mod tests;
