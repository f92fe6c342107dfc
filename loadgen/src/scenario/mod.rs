//! Scenario files: their format, where they are found, and their validation
//! into a [`Plan`].
//!
//! A scenario is a TOML file in `scenarios/`. Every key is optional except
//! `description` and `client.policy`; unknown keys are errors, so a typo
//! cannot silently fall back to a default.
//!
//! ```toml
//! description = "One line shown by `loadgen list`."
//! [client]
//! policy = "leak"            # reused | leak | per-request-close | pool
//! pool_size = 4              # pool only
//! source_addresses = 4       # spread connections over 127.0.0.2…127.0.0.5 (each has its own ephemeral ports)
//! connect_timeout = "1s"     # give up dialling after this long
//! keepalive_interval = "1s"  # HTTP/2 pings every interval…
//! keepalive_timeout = "1s"   # …a ping unanswered this long closes the connection
//! keepalive_while_idle = true # ping even with no call in flight
//! tcp_keepalive = "10s"      # SO_KEEPALIVE idle time
//! transport = "channel"      # channel (tonic's Channel) | h2 (the tonic client straight on h2; reused only)
//! [load]
//! concurrency = 4            # workers, one request in flight each
//! requests = 4000            # stop after this many requests…
//! duration = "60s"           # …or this long, whichever comes first
//! rate = 400                 # open-loop target in requests/s (omit: closed loop)
//! warmup_requests = 400      # not counted in growth
//! rounds = 8                 # the rest runs in this many rounds, measured at rest between them (6 or more)
//! payload_bytes = 64
//! response_bytes = 0         # 0: echo the payload
//! delay_ms = 0               # server-side delay per request…
//! delay_every = 1            # …on every N-th request only (a stall on a share of requests)
//! request_timeout = "10s"    # each call's deadline
//! idle_between_rounds = "5s" # the client sits idle after warm-up and each round, before its checkpoint
//! [sampling]
//! interval = "100ms"
//! cooldown = "3s"            # sampling continues this long after load stops
//! heap_profile = false       # jemalloc heap profiles of both processes after warm-up and at the end
//! [server]                   # flags of the server the run starts
//! max_message_size = 4194304
//! max_concurrent_streams = 200
//! max_connection_idle = "2s" # grpc-go's keepalive.ServerParameters…
//! max_connection_age = "30s"
//! max_connection_age_grace = "5s"
//! keepalive_time = "30s"     # server pings
//! keepalive_timeout = "20s"
//! min_ping_interval = "5s"   # …and EnforcementPolicy: pings closer are strikes
//! permit_without_stream = true
//! [fault]                    # the client goes through a loopback proxy that misbehaves on schedule
//! blackhole_at = "3s"        # after the load starts, the open connections stop forwarding, silently…
//! blackhole_for = "4s"       # …for this long (omit: until the run ends)
//! reset_at = "3s"            # or: reset every open connection (RST) at this time
//! [caps]                     # the load stops at the first one reached (exit code 5)
//! client_rss = "2GiB"        # sizes: bytes, or with KiB, MiB, GiB (or KB, MB, GB)
//! server_rss = "2GiB"
//! fds = 10000                # open fds of either process
//! [verdict]
//! tolerance = 256            # bytes per request that do not count as a leak
//! [expect]                   # what each process's memory should do: leak | no-leak | bounded
//! client = "leak"
//! server = "leak"
//! ```

mod plan;

use std::fmt;
use std::fs;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

pub use plan::{
    Blackhole, CapsPlan, ChannelPolicy, ClientKeepalive, ClientPlan, Expectation, ExternalPlan, FaultPlan,
    KeepalivePolicy, LoadPlan, Origin, Plan, QUICK_COOLDOWN, QUICK_MEASURED_REQUESTS, RequestShape, SamplingPlan,
    ServerPlan, Transport, VerdictPlan,
};

/// Defaults for keys a scenario file leaves out. Small on purpose: a run
/// with no settings must be safe on a laptop.
pub mod defaults {
    use std::time::Duration;
    pub const CONCURRENCY: i64 = 4;
    pub const REQUESTS: i64 = 2_000;
    pub const DURATION: Duration = Duration::from_secs(60);
    pub const WARMUP_REQUESTS: i64 = 200;
    pub const PAYLOAD_BYTES: i64 = 64;
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
    pub const COOLDOWN: Duration = Duration::from_secs(3);
    pub const ROUNDS: i64 = 8;
    pub const CAP_CLIENT_RSS: u64 = 2 << 30;
    pub const CAP_SERVER_RSS: u64 = 2 << 30;
    pub const CAP_FDS: i64 = 10_000;
    pub const TOLERANCE_BYTES_PER_REQUEST: f64 = 256.0;
}

/// Fewer rounds give the slope's confidence interval too few points to decide.
pub const MIN_ROUNDS: u32 = 6;

/// Largest payload or response a scenario may ask for (the server's default max message size).
const MAX_MESSAGE_BYTES: i64 = 4 << 20;
/// The longest single load phase a scenario may ask for.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// The file as written. Integers are signed so that a negative value gets
/// "must be at least 1" rather than a type error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub description: Option<String>,
    #[serde(default)]
    pub client: ClientSection,
    #[serde(default)]
    pub load: LoadSection,
    #[serde(default)]
    pub sampling: SamplingSection,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub verdict: VerdictSection,
    #[serde(default)]
    pub expect: ExpectSection,
    #[serde(default)]
    pub caps: CapsSection,
    #[serde(default)]
    pub fault: FaultSection,
    /// A client command of its own instead of the built-in load generator.
    pub external: Option<ExternalSection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSection {
    pub command: Option<Vec<String>>,
    pub duration: Option<String>,
    pub warmup: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    pub blackhole_at: Option<String>,
    pub blackhole_for: Option<String>,
    pub reset_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsSection {
    pub client_rss: Option<String>,
    pub server_rss: Option<String>,
    pub fds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub policy: Option<String>,
    pub pool_size: Option<i64>,
    pub source_addresses: Option<i64>,
    pub connect_timeout: Option<String>,
    pub keepalive_interval: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub keepalive_while_idle: Option<bool>,
    pub tcp_keepalive: Option<String>,
    pub transport: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    pub concurrency: Option<i64>,
    pub requests: Option<i64>,
    pub duration: Option<String>,
    pub rate: Option<f64>,
    pub warmup_requests: Option<i64>,
    pub rounds: Option<i64>,
    pub payload_bytes: Option<i64>,
    pub response_bytes: Option<i64>,
    pub delay_ms: Option<i64>,
    pub delay_every: Option<i64>,
    pub request_timeout: Option<String>,
    pub idle_between_rounds: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSection {
    pub interval: Option<String>,
    pub cooldown: Option<String>,
    pub heap_profile: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub max_message_size: Option<i64>,
    pub max_concurrent_streams: Option<i64>,
    pub max_connection_idle: Option<String>,
    pub max_connection_age: Option<String>,
    pub max_connection_age_grace: Option<String>,
    pub keepalive_time: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub min_ping_interval: Option<String>,
    pub permit_without_stream: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSection {
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSection {
    pub client: Option<String>,
    pub server: Option<String>,
}

/// A scenario that cannot become a plan, with the file and the key to blame.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}{}: {key}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { path: PathBuf, line: Option<usize>, key: String, reason: String },
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax { path: PathBuf, line: Option<usize>, reason: String },
    #[error("no scenario named {name:?} in {}; available: {}", dir.display(), available.join(", "))]
    UnknownName { name: String, dir: PathBuf, available: Vec<String> },
}

/// Values given on the command line, applied over the file's before validation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(default)]
pub struct Overrides {
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub concurrency: Option<u64>,
    /// Requests per second; 0 removes the file's rate (closed loop).
    pub rate: Option<f64>,
    pub warmup_requests: Option<u64>,
    pub rounds: Option<u64>,
    pub idle_between_rounds: Option<Duration>,
    pub interval: Option<Duration>,
    pub cooldown: Option<Duration>,
    /// `caps.client_rss`, in bytes.
    pub cap_client_rss: Option<u64>,
    /// `caps.server_rss`, in bytes.
    pub cap_server_rss: Option<u64>,
    pub cap_fds: Option<u64>,
    /// `client.source_addresses`.
    pub source_addresses: Option<u64>,
    /// Lift the caps: RSS caps become half the machine's memory (a guard that stays), no fd cap.
    pub no_caps: bool,
    /// `sampling.heap_profile = true`.
    pub heap_profile: bool,
}

impl Overrides {
    /// The scenario keys these overrides set, with the flag that set each.
    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        let mut keys = Vec::new();
        let mut note = |set: bool, key, flag| {
            if set {
                keys.push((key, flag));
            }
        };
        note(self.requests.is_some(), "load.requests", "--requests");
        note(self.duration.is_some(), "load.duration", "--duration");
        note(self.concurrency.is_some(), "load.concurrency", "--concurrency");
        note(self.rate.is_some(), "load.rate", "--rate");
        note(self.warmup_requests.is_some(), "load.warmup_requests", "--warmup-requests");
        note(self.rounds.is_some(), "load.rounds", "--rounds");
        note(self.idle_between_rounds.is_some(), "load.idle_between_rounds", "--idle-between-rounds");
        note(self.interval.is_some(), "sampling.interval", "--interval");
        note(self.cooldown.is_some(), "sampling.cooldown", "--cooldown");
        note(self.cap_client_rss.is_some(), "caps.client_rss", "--cap-client-rss");
        note(self.cap_server_rss.is_some(), "caps.server_rss", "--cap-server-rss");
        note(self.cap_fds.is_some(), "caps.fds", "--cap-fds");
        note(self.source_addresses.is_some(), "client.source_addresses", "--source-addresses");
        note(self.heap_profile, "sampling.heap_profile", "--heap-profile");
        keys
    }

    /// The `loadgen run` flags that give these overrides to a child run.
    pub fn to_args(&self) -> Vec<String> {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        let values: [(&str, Option<String>); 14] = [
            ("--requests", self.requests.map(|n| n.to_string())),
            ("--duration", self.duration.map(text)),
            ("--concurrency", self.concurrency.map(|n| n.to_string())),
            ("--rate", self.rate.map(|rate| rate.to_string())),
            ("--warmup-requests", self.warmup_requests.map(|n| n.to_string())),
            ("--rounds", self.rounds.map(|n| n.to_string())),
            ("--idle-between-rounds", self.idle_between_rounds.map(text)),
            ("--interval", self.interval.map(text)),
            ("--cooldown", self.cooldown.map(text)),
            ("--cap-client-rss", self.cap_client_rss.map(|n| n.to_string())),
            ("--cap-server-rss", self.cap_server_rss.map(|n| n.to_string())),
            ("--cap-fds", self.cap_fds.map(|n| n.to_string())),
            ("--source-addresses", self.source_addresses.map(|n| n.to_string())),
            ("--heap-profile", self.heap_profile.then(String::new)),
        ];
        let mut args = Vec::new();
        for (flag, value) in values {
            let Some(value) = value else { continue };
            args.push(flag.to_owned());
            if !value.is_empty() {
                args.push(value);
            }
        }
        if self.no_caps {
            args.push("--no-caps".to_owned());
        }
        args
    }

    fn apply(&self, file: &mut ScenarioFile) {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(n) = self.requests {
            file.load.requests = Some(int(n));
        }
        if let Some(d) = self.duration {
            file.load.duration = Some(text(d));
        }
        if let Some(n) = self.concurrency {
            file.load.concurrency = Some(int(n));
        }
        match self.rate {
            Some(0.0) => file.load.rate = None,
            Some(rate) => file.load.rate = Some(rate),
            None => {}
        }
        if let Some(n) = self.warmup_requests {
            file.load.warmup_requests = Some(int(n));
        }
        if let Some(n) = self.rounds {
            file.load.rounds = Some(int(n));
        }
        if let Some(d) = self.idle_between_rounds {
            file.load.idle_between_rounds = Some(text(d));
        }
        if let Some(d) = self.interval {
            file.sampling.interval = Some(text(d));
        }
        if let Some(d) = self.cooldown {
            file.sampling.cooldown = Some(text(d));
        }
        if let Some(bytes) = self.cap_client_rss {
            file.caps.client_rss = Some(bytes.to_string());
        }
        if let Some(bytes) = self.cap_server_rss {
            file.caps.server_rss = Some(bytes.to_string());
        }
        if let Some(n) = self.cap_fds {
            file.caps.fds = Some(int(n));
        }
        if let Some(n) = self.source_addresses {
            file.client.source_addresses = Some(int(n));
        }
        if self.heap_profile {
            file.sampling.heap_profile = Some(true);
        }
    }
}

/// A scenario: the built-in load generator's, or an external client's.
#[derive(Debug, Clone)]
pub enum Scenario {
    Builtin(Box<Plan>),
    External(Box<ExternalPlan>),
}

impl Scenario {
    pub fn description(&self) -> &str {
        match self {
            Scenario::Builtin(plan) => &plan.description,
            Scenario::External(plan) => &plan.description,
        }
    }
}

/// Reads and validates the scenario at `path`, of either kind. Overrides
/// apply to built-in scenarios only.
pub fn load_any(path: &Path, overrides: &Overrides) -> Result<Scenario, ScenarioError> {
    let text = fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    let file = parse_file(path, &text)?;
    if file.external.is_none() {
        return parse(path, &text, overrides).map(|plan| Scenario::Builtin(Box::new(plan)));
    }
    if *overrides != Overrides::default() {
        return Err(ScenarioError::Invalid {
            path: path.to_owned(),
            line: None,
            key: "external".to_owned(),
            reason: "an external client runs its own load: load, sampling and caps flags do not apply".to_owned(),
        });
    }
    Validator { path, text: &text, overridden: Vec::new() }
        .external(path, file)
        .map(|plan| Scenario::External(Box::new(plan)))
}

/// Reads and validates the scenario at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Plan, ScenarioError> {
    let text = fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    parse(path, &text, overrides)
}

/// Validates scenario text; `path` names it in errors and gives the scenario its name.
pub fn parse(path: &Path, text: &str, overrides: &Overrides) -> Result<Plan, ScenarioError> {
    let mut file = parse_file(path, text)?;
    overrides.apply(&mut file);
    let mut plan = Validator { path, text, overridden: overrides.keys() }.plan(path, file)?;
    if overrides.no_caps {
        plan.caps = CapsPlan::machine_guard();
    }
    plan.origin = Origin { text: text.to_owned(), overrides: overrides.clone() };
    Ok(plan)
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

fn parse_file(path: &Path, text: &str) -> Result<ScenarioFile, ScenarioError> {
    parse_toml(path, text)
}

/// TOML text as a `T`, an error naming the file, the line and the key.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ScenarioError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|error| ScenarioError::Syntax {
        path: path.to_owned(),
        line: error.span().map(|span| line_of(text, span.start)),
        reason: format!("invalid TOML: {}", error.message()),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let inner = error.into_inner();
        let line = inner.span().map(|span| line_of(text, span.start));
        let reason = inner.message().to_owned();
        if key == "." {
            ScenarioError::Syntax { path: path.to_owned(), line, reason }
        } else {
            ScenarioError::Invalid { path: path.to_owned(), line, key, reason }
        }
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Turns raw values into a [`Plan`], naming the key of the first bad one.
struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    /// Keys whose value came from a command-line flag, and that flag.
    overridden: Vec<(&'static str, &'static str)>,
}

impl Validator<'_> {
    /// An error on `key`, pointing at the line that sets it, or at the flag when one did.
    fn invalid(&self, key: &str, reason: impl fmt::Display) -> ScenarioError {
        let flag = self.overridden.iter().find(|(overridden, _)| *overridden == key).map(|(_, flag)| *flag);
        ScenarioError::Invalid {
            path: self.path.to_owned(),
            line: if flag.is_some() { None } else { self.line_of_key(key) },
            key: flag.map_or_else(|| key.to_owned(), |flag| format!("{key} (set by {flag})")),
            reason: reason.to_string(),
        }
    }

    /// The line that sets `key`, found by its last segment inside its table.
    fn line_of_key(&self, key: &str) -> Option<usize> {
        let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        let mut in_table = table.is_empty();
        for (index, line) in self.text.lines().enumerate() {
            let line = line.trim();
            if let Some(header) = line.strip_prefix('[') {
                in_table = header.trim_end_matches(']').trim() == table;
            } else if in_table && line.split('=').next().is_some_and(|name| name.trim() == leaf) && line.contains('=') {
                return Some(index + 1);
            }
        }
        None
    }

    fn at_least(&self, key: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> Result<i64, ScenarioError> {
        let value = value.unwrap_or(default);
        if value < min {
            return Err(self.invalid(key, format!("must be at least {min}, got {value}")));
        }
        if value > max {
            return Err(self.invalid(key, format!("must be at most {max}, got {value}")));
        }
        Ok(value)
    }

    fn duration(&self, key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ScenarioError> {
        match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text).map_err(|error| {
                self.invalid(key, format!("{text:?} is not a duration like \"500ms\" or \"30s\" ({error})"))
            }),
        }
    }

    fn positive_duration(&self, key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ScenarioError> {
        let duration = self.duration(key, value, default)?;
        if duration.is_zero() {
            return Err(self.invalid(key, "must be longer than 0"));
        }
        Ok(duration)
    }

    fn plan(&self, path: &Path, file: ScenarioFile) -> Result<Plan, ScenarioError> {
        if file.external.is_some() {
            return Err(self.invalid(
                "external",
                "this scenario runs an external client; `loadgen run` and `loadgen compare` run it",
            ));
        }
        let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let description = match file.description {
            Some(text) if !text.trim().is_empty() => text.trim().to_owned(),
            Some(_) => return Err(self.invalid("description", "must not be empty")),
            None => return Err(self.invalid("description", "missing: say in one line what the scenario shows")),
        };
        let policy = self.policy(&file.client)?;
        let load = self.load(&file.load)?;
        let sampling = self.sampling(&file.sampling)?;
        let server = self.server(&file.server)?;
        let verdict = self.verdict(&file.verdict, &file.expect)?;
        let caps = self.caps(&file.caps)?;
        let source_addresses = self.at_least("client.source_addresses", file.client.source_addresses, 0, 0, 253)? as u8;
        let client = self.client(&file.client, policy)?;
        let fault = self.fault(&file.fault)?;
        if load.request.response_bytes as u64 > server.max_message_bytes.map_or(MAX_MESSAGE_BYTES as u64, u64::from)
            || load.request.payload.len() as u64 > server.max_message_bytes.map_or(MAX_MESSAGE_BYTES as u64, u64::from)
        {
            return Err(
                self.invalid("server.max_message_size", "is smaller than load.payload_bytes or load.response_bytes")
            );
        }
        let origin = Origin::default();
        Ok(Plan {
            name,
            source: path.to_owned(),
            description,
            policy,
            load,
            sampling,
            server,
            verdict,
            caps,
            source_addresses,
            client,
            fault,
            origin,
        })
    }

    fn policy(&self, client: &ClientSection) -> Result<ChannelPolicy, ScenarioError> {
        let Some(name) = client.policy.as_deref() else {
            return Err(self.invalid("client.policy", "missing: one of reused, leak, per-request-close, pool"));
        };
        let policy = match name {
            "reused" => ChannelPolicy::Reused,
            "leak" => ChannelPolicy::Leak,
            "per-request-close" => ChannelPolicy::PerRequestClose,
            "pool" => {
                let Some(size) = client.pool_size else {
                    return Err(
                        self.invalid("client.pool_size", "missing: policy \"pool\" needs the number of channels")
                    );
                };
                let size = self.at_least("client.pool_size", Some(size), 0, 1, 10_000)?;
                ChannelPolicy::Pool { size: NonZeroUsize::new(size as usize).expect("checked at least 1") }
            }
            other => {
                return Err(self.invalid(
                    "client.policy",
                    format!("unknown policy {other:?}; expected one of reused, leak, per-request-close, pool"),
                ));
            }
        };
        if client.pool_size.is_some() && !matches!(policy, ChannelPolicy::Pool { .. }) {
            return Err(self.invalid("client.pool_size", format!("only applies to policy \"pool\", not {name:?}")));
        }
        Ok(policy)
    }

    fn load(&self, load: &LoadSection) -> Result<LoadPlan, ScenarioError> {
        let concurrency = self.at_least("load.concurrency", load.concurrency, defaults::CONCURRENCY, 1, 10_000)?;
        let requests = self.at_least("load.requests", load.requests, defaults::REQUESTS, 1, i64::MAX)?;
        let max_duration = self.positive_duration("load.duration", load.duration.as_deref(), defaults::DURATION)?;
        if max_duration > MAX_DURATION {
            return Err(
                self.invalid("load.duration", format!("must be at most {}", humantime::format_duration(MAX_DURATION)))
            );
        }
        let rate_per_s = match load.rate {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
            Some(rate) => {
                return Err(
                    self.invalid("load.rate", format!("must be a positive number of requests per second, got {rate}"))
                );
            }
        };
        let warmup = self.at_least(
            "load.warmup_requests",
            load.warmup_requests,
            defaults::WARMUP_REQUESTS.min(requests / 2),
            0,
            i64::MAX,
        )?;
        if warmup >= requests {
            return Err(self.invalid(
                "load.warmup_requests",
                format!("({warmup}) must be less than load.requests ({requests}), or no request would be measured"),
            ));
        }
        let measured = requests - warmup;
        // Unset, rounds shrink to fit a tiny run (whose verdict then says it had too few);
        // set, they must be enough to decide.
        let rounds = match load.rounds {
            None => defaults::ROUNDS.min(measured),
            Some(rounds) => {
                let rounds = self.at_least("load.rounds", Some(rounds), 0, MIN_ROUNDS.into(), 10_000)?;
                if rounds > measured {
                    return Err(self.invalid(
                        "load.rounds",
                        format!(
                            "({rounds}) must not exceed the requests after warm-up ({measured}): \
                             each round needs at least one request"
                        ),
                    ));
                }
                rounds
            }
        };
        let payload_bytes =
            self.at_least("load.payload_bytes", load.payload_bytes, defaults::PAYLOAD_BYTES, 0, MAX_MESSAGE_BYTES)?;
        let response_bytes = self.at_least("load.response_bytes", load.response_bytes, 0, 0, MAX_MESSAGE_BYTES)?;
        let delay_ms = self.at_least("load.delay_ms", load.delay_ms, 0, 0, 60_000)?;
        let delay_every = self.at_least("load.delay_every", load.delay_every, 1, 1, i64::MAX)?;
        if load.delay_every.is_some() && delay_ms == 0 {
            return Err(self.invalid("load.delay_every", "needs load.delay_ms: there is no delay to spread"));
        }
        let request_timeout =
            self.positive_duration("load.request_timeout", load.request_timeout.as_deref(), defaults::REQUEST_TIMEOUT)?;
        let idle_between_rounds =
            self.duration("load.idle_between_rounds", load.idle_between_rounds.as_deref(), Duration::ZERO)?;
        if idle_between_rounds > MAX_IDLE_BETWEEN_ROUNDS {
            return Err(self.invalid(
                "load.idle_between_rounds",
                format!("must be at most {}", humantime::format_duration(MAX_IDLE_BETWEEN_ROUNDS)),
            ));
        }
        Ok(LoadPlan {
            concurrency: NonZeroUsize::new(concurrency as usize).expect("checked at least 1"),
            max_requests: NonZeroU64::new(requests as u64).expect("checked at least 1"),
            max_duration,
            rate_per_s,
            warmup_requests: warmup as u64,
            rounds: NonZeroU32::new(rounds as u32).expect("at least 1: measured requests are at least 1"),
            request: RequestShape {
                payload: Bytes::from(vec![b'x'; payload_bytes as usize]),
                response_bytes: response_bytes as u32,
                delay_ms: delay_ms as u32,
                delay_every: delay_every as u64,
            },
            request_timeout,
            idle_between_rounds,
        })
    }

    fn sampling(&self, sampling: &SamplingSection) -> Result<SamplingPlan, ScenarioError> {
        let interval =
            self.positive_duration("sampling.interval", sampling.interval.as_deref(), defaults::SAMPLE_INTERVAL)?;
        if interval < MIN_SAMPLE_INTERVAL {
            return Err(self.invalid(
                "sampling.interval",
                format!("must be at least {}", humantime::format_duration(MIN_SAMPLE_INTERVAL)),
            ));
        }
        let cooldown = self.duration("sampling.cooldown", sampling.cooldown.as_deref(), defaults::COOLDOWN)?;
        if cooldown > MAX_DURATION {
            return Err(self.invalid(
                "sampling.cooldown",
                format!("must be at most {}", humantime::format_duration(MAX_DURATION)),
            ));
        }
        Ok(SamplingPlan { interval: Some(interval), cooldown, heap_profile: sampling.heap_profile.unwrap_or(false) })
    }

    fn server(&self, server: &ServerSection) -> Result<ServerPlan, ScenarioError> {
        let optional = |key: &str, value: Option<i64>, max: i64| -> Result<Option<u32>, ScenarioError> {
            value.map(|v| self.at_least(key, Some(v), 0, 1, max).map(|v| v as u32)).transpose()
        };
        let duration = |key: &str, value: Option<&str>| {
            value.map(|text| self.positive_duration(key, Some(text), Duration::ZERO)).transpose()
        };
        let keepalive = KeepalivePolicy {
            max_connection_idle: duration("server.max_connection_idle", server.max_connection_idle.as_deref())?,
            max_connection_age: duration("server.max_connection_age", server.max_connection_age.as_deref())?,
            max_connection_age_grace: duration(
                "server.max_connection_age_grace",
                server.max_connection_age_grace.as_deref(),
            )?,
            keepalive_time: duration("server.keepalive_time", server.keepalive_time.as_deref())?,
            keepalive_timeout: duration("server.keepalive_timeout", server.keepalive_timeout.as_deref())?,
            min_ping_interval: duration("server.min_ping_interval", server.min_ping_interval.as_deref())?,
            permit_without_stream: server.permit_without_stream.unwrap_or(false),
        };
        if keepalive.keepalive_timeout.is_some() && keepalive.keepalive_time.is_none() {
            return Err(self.invalid(
                "server.keepalive_timeout",
                "needs server.keepalive_time: without pings there is nothing to time out",
            ));
        }
        if keepalive.max_connection_age_grace.is_some() && keepalive.max_connection_age.is_none() {
            return Err(self.invalid(
                "server.max_connection_age_grace",
                "needs server.max_connection_age: the grace starts at the age limit",
            ));
        }
        if server.permit_without_stream.is_some() && keepalive.min_ping_interval.is_none() {
            return Err(self.invalid(
                "server.permit_without_stream",
                "needs server.min_ping_interval: without a ping policy there is nothing to permit",
            ));
        }
        Ok(ServerPlan {
            max_message_bytes: optional("server.max_message_size", server.max_message_size, u32::MAX as i64)?,
            max_concurrent_streams: optional(
                "server.max_concurrent_streams",
                server.max_concurrent_streams,
                u32::MAX as i64,
            )?,
            keepalive,
        })
    }
}

/// The longest an external client may run: it must stop by itself in reasonable time.
const MAX_EXTERNAL_DURATION: Duration = Duration::from_secs(600);

impl Validator<'_> {
    fn external(&self, path: &Path, file: ScenarioFile) -> Result<ExternalPlan, ScenarioError> {
        let external = file.external.clone().unwrap_or_default();
        let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let description = match file.description {
            Some(text) if !text.trim().is_empty() => text.trim().to_owned(),
            _ => return Err(self.invalid("description", "missing: say in one line what the scenario shows")),
        };
        if file.client.policy.is_some() {
            return Err(self.invalid("client.policy", "an external scenario's client is its command, not a policy"));
        }
        let command = match external.command {
            Some(command) if !command.is_empty() && !command[0].trim().is_empty() => command,
            _ => {
                return Err(self.invalid(
                    "external.command",
                    "missing: the client's argv, as an array; {addr} is replaced by the server's HOST:PORT",
                ));
            }
        };
        let duration = self.positive_duration("external.duration", external.duration.as_deref(), defaults::DURATION)?;
        if duration > MAX_EXTERNAL_DURATION {
            return Err(self.invalid(
                "external.duration",
                format!("must be at most {}", humantime::format_duration(MAX_EXTERNAL_DURATION)),
            ));
        }
        let warmup = self.duration("external.warmup", external.warmup.as_deref(), Duration::from_secs(1))?;
        if warmup >= duration {
            return Err(self.invalid("external.warmup", "must be shorter than external.duration"));
        }
        let interval =
            self.positive_duration("sampling.interval", file.sampling.interval.as_deref(), defaults::SAMPLE_INTERVAL)?;
        if interval < MIN_SAMPLE_INTERVAL {
            return Err(self.invalid(
                "sampling.interval",
                format!("must be at least {}", humantime::format_duration(MIN_SAMPLE_INTERVAL)),
            ));
        }
        Ok(ExternalPlan {
            name,
            source: path.to_owned(),
            description,
            command,
            duration,
            warmup,
            interval,
            server: self.server(&file.server)?,
            verdict: self.verdict(&file.verdict, &file.expect)?,
            caps: self.caps(&file.caps)?,
        })
    }
}

/// Longest idle spell between rounds: a run must stop by itself in reasonable time.
const MAX_IDLE_BETWEEN_ROUNDS: Duration = Duration::from_secs(60);

impl Validator<'_> {
    fn client(&self, client: &ClientSection, policy: ChannelPolicy) -> Result<ClientPlan, ScenarioError> {
        let duration = |key: &str, value: Option<&str>| {
            value.map(|text| self.positive_duration(key, Some(text), Duration::ZERO)).transpose()
        };
        let interval = duration("client.keepalive_interval", client.keepalive_interval.as_deref())?;
        let timeout = duration("client.keepalive_timeout", client.keepalive_timeout.as_deref())?;
        let keepalive = match interval {
            Some(interval) => {
                Some(ClientKeepalive { interval, timeout, while_idle: client.keepalive_while_idle.unwrap_or(false) })
            }
            None if timeout.is_some() => {
                return Err(self.invalid(
                    "client.keepalive_timeout",
                    "needs client.keepalive_interval: without pings there is nothing to time out",
                ));
            }
            None if client.keepalive_while_idle.is_some() => {
                return Err(self.invalid(
                    "client.keepalive_while_idle",
                    "needs client.keepalive_interval: without pings there is nothing to send while idle",
                ));
            }
            None => None,
        };
        let transport = match client.transport.as_deref() {
            None | Some("channel") => Transport::Channel,
            Some("h2") if policy != ChannelPolicy::Reused => {
                return Err(self.invalid(
                    "client.transport",
                    format!(
                        "\"h2\" carries one connection, so it only applies to policy \"reused\", not {:?}",
                        policy.name()
                    ),
                ));
            }
            Some("h2") if keepalive.is_some() => {
                return Err(self.invalid(
                    "client.transport",
                    "\"h2\" sends no keepalive pings: drop client.keepalive_interval or use transport \"channel\"",
                ));
            }
            Some("h2") => Transport::H2,
            Some(other) => {
                return Err(
                    self.invalid("client.transport", format!("unknown transport {other:?}; expected channel or h2"))
                );
            }
        };
        Ok(ClientPlan {
            connect_timeout: duration("client.connect_timeout", client.connect_timeout.as_deref())?,
            keepalive,
            tcp_keepalive: duration("client.tcp_keepalive", client.tcp_keepalive.as_deref())?,
            transport,
        })
    }

    fn fault(&self, fault: &FaultSection) -> Result<FaultPlan, ScenarioError> {
        let at = |key: &str, value: Option<&str>| {
            value.map(|text| self.duration(key, Some(text), Duration::ZERO)).transpose()
        };
        let blackhole_at = at("fault.blackhole_at", fault.blackhole_at.as_deref())?;
        let blackhole_for = fault
            .blackhole_for
            .as_deref()
            .map(|text| self.positive_duration("fault.blackhole_for", Some(text), Duration::ZERO))
            .transpose()?;
        let blackhole = match (blackhole_at, blackhole_for) {
            (Some(at), duration) => Some(Blackhole { at, duration }),
            (None, Some(_)) => {
                return Err(
                    self.invalid("fault.blackhole_for", "needs fault.blackhole_at: when does the blackhole start?")
                );
            }
            (None, None) => None,
        };
        Ok(FaultPlan { blackhole, reset_at: at("fault.reset_at", fault.reset_at.as_deref())? })
    }
}

/// The smallest RSS cap: below it a process could not even start its load.
const MIN_RSS_CAP: u64 = 16 << 20;

impl Validator<'_> {
    fn caps(&self, caps: &CapsSection) -> Result<CapsPlan, ScenarioError> {
        let size = |key: &str, value: Option<&str>, default: u64| -> Result<Option<u64>, ScenarioError> {
            let bytes = match value {
                None => default,
                Some(text) => parse_size(text).map_err(|reason| self.invalid(key, reason))?,
            };
            if bytes < MIN_RSS_CAP {
                return Err(self.invalid(key, format!("must be at least 16MiB, got {bytes} bytes")));
            }
            Ok(Some(bytes))
        };
        Ok(CapsPlan {
            client_rss_bytes: size("caps.client_rss", caps.client_rss.as_deref(), defaults::CAP_CLIENT_RSS)?,
            server_rss_bytes: size("caps.server_rss", caps.server_rss.as_deref(), defaults::CAP_SERVER_RSS)?,
            fds: Some(self.at_least("caps.fds", caps.fds, defaults::CAP_FDS, 64, i64::MAX)? as u64),
        })
    }

    fn verdict(&self, verdict: &VerdictSection, expect: &ExpectSection) -> Result<VerdictPlan, ScenarioError> {
        let tolerance = match verdict.tolerance {
            None => defaults::TOLERANCE_BYTES_PER_REQUEST,
            Some(bytes) if bytes.is_finite() && bytes > 0.0 => bytes,
            Some(bytes) => {
                return Err(self.invalid(
                    "verdict.tolerance",
                    format!("must be a positive number of bytes per request, got {bytes}"),
                ));
            }
        };
        let expectation = |key: &str, value: Option<&str>| -> Result<Option<Expectation>, ScenarioError> {
            match value {
                None => Ok(None),
                Some("leak") => Ok(Some(Expectation::Leak)),
                Some("no-leak") => Ok(Some(Expectation::NoLeak)),
                Some("bounded") => Ok(Some(Expectation::Bounded)),
                Some(other) => {
                    Err(self
                        .invalid(key, format!("unknown expectation {other:?}; expected one of leak, no-leak, bounded")))
                }
            }
        };
        Ok(VerdictPlan {
            tolerance_bytes_per_request: tolerance,
            expect_client: expectation("expect.client", expect.client.as_deref())?,
            expect_server: expectation("expect.server", expect.server.as_deref())?,
        })
    }
}

/// Where scenario names are looked up.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
}

/// One line of `loadgen list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    /// The description, or why the file does not load.
    pub description: Result<String, String>,
}

impl Catalog {
    /// `./scenarios` when it exists, else the `scenarios/` of the source tree this binary was built from.
    pub fn locate(explicit: Option<PathBuf>) -> Self {
        let dir = explicit.unwrap_or_else(|| {
            let here = PathBuf::from("scenarios");
            if here.is_dir() { here } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios") }
        });
        Self { dir }
    }

    /// A path (anything with a `/` or ending in `.toml`) is used as is; a name is looked up in the catalog.
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf, ScenarioError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            return Ok(PathBuf::from(name_or_path));
        }
        let path = self.dir.join(format!("{name_or_path}.toml"));
        if path.is_file() {
            return Ok(path);
        }
        Err(ScenarioError::UnknownName {
            name: name_or_path.to_owned(),
            dir: self.dir.clone(),
            available: self.entries().into_iter().map(|entry| entry.name).collect(),
        })
    }

    /// Every `*.toml` in the catalog, sorted by name.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut entries: Vec<Entry> = dir
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .map(|path| Entry {
                name: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                description: load_any(&path, &Overrides::default())
                    .map(|scenario| scenario.description().to_owned())
                    .map_err(|e| e.to_string()),
                path,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Plan, String> {
        parse(Path::new("scenarios/t.toml"), text, &Overrides::default()).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = "description = \"d\"\n[client]\npolicy = \"reused\"\n";

    #[test]
    fn minimal_file_gets_small_safe_defaults() {
        let plan = parse_text(MINIMAL).unwrap();
        assert_eq!(plan.name, "t");
        assert_eq!(plan.policy, ChannelPolicy::Reused);
        assert_eq!(plan.load.max_requests.get(), defaults::REQUESTS as u64);
        assert_eq!(plan.load.concurrency.get(), defaults::CONCURRENCY as usize);
        assert_eq!(plan.load.request.payload.len(), defaults::PAYLOAD_BYTES as usize);
        assert_eq!(plan.sampling.interval, Some(defaults::SAMPLE_INTERVAL));
        assert!(plan.load.warmup_requests < plan.load.max_requests.get());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\n[load]\nconcurency = 3\n").unwrap_err();
        assert!(err.starts_with("scenarios/t.toml:5: load.concurency: unknown field `concurency`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\n[load]\nrequests = \"many\"\n")
            .unwrap_err();
        assert!(err.starts_with("scenarios/t.toml:5: load.requests: "), "{err}");
        assert!(err.contains("invalid type: string \"many\", expected i64"), "{err}");
    }

    #[test]
    fn zero_and_negative_values_are_refused_with_the_key() {
        let err = parse_text(&format!("{MINIMAL}[load]\nconcurrency = 0\n")).unwrap_err();
        assert_eq!(err, "scenarios/t.toml:5: load.concurrency: must be at least 1, got 0");
        let err = parse_text(&format!("{MINIMAL}[load]\nrequests = -5\n")).unwrap_err();
        assert_eq!(err, "scenarios/t.toml:5: load.requests: must be at least 1, got -5");
        let err = parse_text(&format!("{MINIMAL}[sampling]\ninterval = \"0s\"\n")).unwrap_err();
        assert_eq!(err, "scenarios/t.toml:5: sampling.interval: must be longer than 0");
    }

    #[test]
    fn contradictions_are_refused() {
        let err = parse_text(&format!("{MINIMAL}pool_size = 3\n")).unwrap_err();
        assert!(err.contains("client.pool_size: only applies to policy \"pool\""), "{err}");
        let err = parse_text(&format!("{MINIMAL}[load]\nrequests = 100\nwarmup_requests = 100\n")).unwrap_err();
        assert!(err.contains("load.warmup_requests: (100) must be less than load.requests (100)"), "{err}");
        let err = parse_text(&format!("{MINIMAL}[server]\nkeepalive_timeout = \"1s\"\n")).unwrap_err();
        assert!(err.contains("server.keepalive_timeout: needs server.keepalive_time"), "{err}");
        let err = parse_text(&format!("{MINIMAL}[server]\nmax_connection_age_grace = \"1s\"\n")).unwrap_err();
        assert!(err.contains("server.max_connection_age_grace: needs server.max_connection_age"), "{err}");
        let err = parse_text(&format!("{MINIMAL}[server]\npermit_without_stream = true\n")).unwrap_err();
        assert!(err.contains("server.permit_without_stream: needs server.min_ping_interval"), "{err}");
        let err = parse_text(&format!("{MINIMAL}keepalive_timeout = \"1s\"\n")).unwrap_err();
        assert!(err.contains("client.keepalive_timeout: needs client.keepalive_interval"), "{err}");
        let err = parse_text(&format!("{MINIMAL}[fault]\nblackhole_for = \"1s\"\n")).unwrap_err();
        assert!(err.contains("fault.blackhole_for: needs fault.blackhole_at"), "{err}");
        let err = parse_text(&format!("{MINIMAL}[load]\nidle_between_rounds = \"2h\"\n")).unwrap_err();
        assert!(err.contains("load.idle_between_rounds: must be at most 1m"), "{err}");
    }

    #[test]
    fn pool_needs_its_size() {
        let err = parse_text("description = \"d\"\n[client]\npolicy = \"pool\"\n").unwrap_err();
        assert!(err.contains("client.pool_size: missing"), "{err}");
        let plan = parse_text("description = \"d\"\n[client]\npolicy = \"pool\"\npool_size = 3\n").unwrap();
        assert_eq!(plan.policy, ChannelPolicy::Pool { size: NonZeroUsize::new(3).unwrap() });
    }

    #[test]
    fn the_h2_transport_is_for_one_reused_connection_without_pings() {
        let plan = parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\ntransport = \"h2\"\n").unwrap();
        assert_eq!(plan.client.transport, Transport::H2);
        assert_eq!(parse_text(MINIMAL).unwrap().client.transport, Transport::Channel);
        let err = parse_text("description = \"d\"\n[client]\npolicy = \"leak\"\ntransport = \"h2\"\n").unwrap_err();
        assert!(
            err.contains("client.transport: \"h2\" carries one connection") && err.contains("not \"leak\""),
            "{err}"
        );
        let err = parse_text(
            "description = \"d\"\n[client]\npolicy = \"reused\"\ntransport = \"h2\"\nkeepalive_interval = \"1s\"\n",
        )
        .unwrap_err();
        assert!(err.contains("client.transport: \"h2\" sends no keepalive pings"), "{err}");
        let err = parse_text("description = \"d\"\n[client]\npolicy = \"reused\"\ntransport = \"quic\"\n").unwrap_err();
        assert!(err.contains("client.transport: unknown transport \"quic\"; expected channel or h2"), "{err}");
    }

    #[test]
    fn bad_duration_and_unknown_policy_say_what_is_expected() {
        let err = parse_text(&format!("{MINIMAL}[load]\nduration = \"3 parsecs\"\n")).unwrap_err();
        assert!(err.contains("load.duration: \"3 parsecs\" is not a duration"), "{err}");
        let err = parse_text("description = \"d\"\n[client]\npolicy = \"leaky\"\n").unwrap_err();
        assert!(err.contains("client.policy: unknown policy \"leaky\""), "{err}");
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let err = parse_text("description = \"d\"\n[client\n").unwrap_err();
        assert!(err.starts_with("scenarios/t.toml:2: invalid TOML"), "{err}");
    }

    #[test]
    fn overrides_are_validated_like_the_file() {
        let overrides = Overrides { requests: Some(50), warmup_requests: Some(60), ..Overrides::default() };
        let err = parse(Path::new("t.toml"), MINIMAL, &overrides).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.toml: load.warmup_requests (set by --warmup-requests): (60) must be less than load.requests (50), \
             or no request would be measured"
        );
        let overrides = Overrides { requests: Some(50), rate: Some(10.0), ..Overrides::default() };
        let plan = parse(Path::new("t.toml"), MINIMAL, &overrides).unwrap();
        assert_eq!(plan.load.max_requests.get(), 50);
        assert_eq!(plan.load.rate_per_s, Some(10.0));
        let idle = Overrides { idle_between_rounds: Some(Duration::from_secs(3600)), ..Overrides::default() };
        let err = parse(Path::new("t.toml"), MINIMAL, &idle).unwrap_err().to_string();
        assert_eq!(err, "t.toml: load.idle_between_rounds (set by --idle-between-rounds): must be at most 1m");
        let idle = Overrides { idle_between_rounds: Some(Duration::from_millis(3500)), ..Overrides::default() };
        let plan = parse(Path::new("t.toml"), MINIMAL, &idle).unwrap();
        assert_eq!(plan.load.idle_between_rounds, Duration::from_millis(3500));
        let closed = Overrides { rate: Some(0.0), ..Overrides::default() };
        let plan = parse(Path::new("t.toml"), &format!("{MINIMAL}[load]\nrate = 400\n"), &closed).unwrap();
        assert_eq!(plan.load.rate_per_s, None, "--rate 0 means closed loop");
    }

    #[test]
    fn rounds_split_the_measured_requests() {
        let plan =
            parse_text(&format!("{MINIMAL}[load]\nrequests = 1000\nwarmup_requests = 100\nrounds = 7\n")).unwrap();
        let ends = plan.load.round_ends();
        assert_eq!(ends.len(), 7);
        assert_eq!(*ends.last().unwrap(), 1000);
        let sizes: Vec<u64> = std::iter::once(100)
            .chain(ends.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert!(sizes.iter().all(|&size| size == 128 || size == 129), "{sizes:?}");

        let err = parse_text(&format!("{MINIMAL}[load]\nrounds = 5\n")).unwrap_err();
        assert!(err.contains("load.rounds: must be at least 6, got 5"), "{err}");
        let err =
            parse_text(&format!("{MINIMAL}[load]\nrequests = 10\nwarmup_requests = 5\nrounds = 6\n")).unwrap_err();
        assert!(err.contains("load.rounds: (6) must not exceed the requests after warm-up (5)"), "{err}");
        // Unset, rounds shrink to fit a tiny run instead of refusing it.
        let plan = parse_text(&format!("{MINIMAL}[load]\nrequests = 4\nwarmup_requests = 1\n")).unwrap();
        assert_eq!(plan.load.rounds.get(), 3);
    }

    #[test]
    fn the_quick_profile_caps_requests_and_cooldown_and_stays_valid() {
        let text = format!(
            "{MINIMAL}[load]\nrequests = 10000\nwarmup_requests = 400\nrounds = 8\n[sampling]\ncooldown = \"5s\"\n"
        );
        let quick = parse_text(&text).unwrap().quick();
        assert_eq!(quick.load.max_requests.get(), 400 + QUICK_MEASURED_REQUESTS);
        assert_eq!(quick.load.rounds.get(), 8);
        assert_eq!(quick.sampling.cooldown, QUICK_COOLDOWN);
        // A scenario already smaller than the profile is left as it is.
        let small = parse_text(&format!("{MINIMAL}[load]\nrequests = 100\nwarmup_requests = 10\n")).unwrap();
        assert_eq!(small.clone().quick().load, small.load);
    }

    #[test]
    fn caps_have_safe_defaults_take_sizes_and_can_be_lifted() {
        let plan = parse_text(MINIMAL).unwrap();
        assert_eq!(plan.caps.client_rss_bytes, Some(2 << 30));
        assert_eq!(plan.caps.fds, Some(10_000));
        let plan = parse_text(&format!("{MINIMAL}[caps]\nclient_rss = \"300MiB\"\nfds = 500\n")).unwrap();
        assert_eq!((plan.caps.client_rss_bytes, plan.caps.fds), (Some(300 << 20), Some(500)));
        let err = parse_text(&format!("{MINIMAL}[caps]\nserver_rss = \"3 lots\"\n")).unwrap_err();
        assert!(err.contains(":5: caps.server_rss: \"3 lots\": unknown unit \"lots\""), "{err}");
        let err = parse_text(&format!("{MINIMAL}[caps]\nclient_rss = \"1MiB\"\n")).unwrap_err();
        assert!(err.contains("caps.client_rss: must be at least 16MiB"), "{err}");
        let lifted = parse(Path::new("t.toml"), MINIMAL, &Overrides { no_caps: true, ..Overrides::default() }).unwrap();
        assert_eq!(lifted.caps.fds, None);
        assert!(lifted.caps.client_rss_bytes.unwrap() > 2 << 30, "half of this machine's 24 GiB");
    }

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
    fn expectations_and_tolerance_are_checked() {
        let plan = parse_text(&format!("{MINIMAL}[expect]\nclient = \"leak\"\n[verdict]\ntolerance = 100\n")).unwrap();
        assert_eq!(plan.verdict.expect_client, Some(Expectation::Leak));
        assert_eq!(plan.verdict.expect_server, None);
        assert_eq!(plan.verdict.tolerance_bytes_per_request, 100.0);
        let err = parse_text(&format!("{MINIMAL}[expect]\nserver = \"leaks\"\n")).unwrap_err();
        assert!(err.contains(":5: expect.server: unknown expectation \"leaks\""), "{err}");
        let err = parse_text(&format!("{MINIMAL}[verdict]\ntolerance = -1\n")).unwrap_err();
        assert!(err.contains(":5: verdict.tolerance: must be a positive number"), "{err}");
        let err = parse_text(&format!("{MINIMAL}[expect]\nclients = \"leak\"\n")).unwrap_err();
        assert!(err.contains("expect.clients: unknown field"), "{err}");
    }

    /// Keys a fuzzed file draws from: every real one, and near misses.
    const KEYS: &[&str] = &[
        "description",
        "[client]",
        "policy",
        "pool_size",
        "[load]",
        "concurrency",
        "requests",
        "duration",
        "rate",
        "warmup_requests",
        "rounds",
        "payload_bytes",
        "response_bytes",
        "delay_ms",
        "request_timeout",
        "[sampling]",
        "interval",
        "cooldown",
        "[server]",
        "max_message_size",
        "max_concurrent_streams",
        "keepalive_time",
        "keepalive_timeout",
        "max_connection_idle",
        "min_ping_interval",
        "permit_without_stream",
        "[fault]",
        "blackhole_at",
        "idle_between_rounds",
        "keepalive_interval",
        "transport",
        "[verdict]",
        "tolerance",
        "[expect]",
        "client",
        "server",
        "[load",
        "polcy",
        "",
    ];
    const VALUES: &[&str] = &[
        "0",
        "-1",
        "1",
        "6",
        "400",
        "9223372036854775807",
        "99999999999999999999",
        "1.5",
        "-0.0",
        "nan",
        "inf",
        "\"reused\"",
        "\"leak\"",
        "\"pool\"",
        "\"h2\"",
        "\"no-leak\"",
        "\"bounded\"",
        "\"100ms\"",
        "\"0s\"",
        "\"3 parsecs\"",
        "\"\"",
        "true",
        "[1, 2]",
        "{ a = 1 }",
        "\"\\u00e9\"",
        "'''",
        "=",
    ];

    proptest::proptest! {
        /// Whatever the file holds, parsing ends in a plan or an error naming the file: never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            if let Err(error) = parse(Path::new("fuzz.toml"), &text, &Overrides::default()) {
                proptest::prop_assert!(error.to_string().starts_with("fuzz.toml"), "{}", error);
            }
        }

        /// Files made of real keys and awkward values, in any order: a plan, or an error naming the file.
        #[test]
        fn arbitrary_key_value_files_never_panic(
            lines in proptest::collection::vec((0..KEYS.len(), 0..VALUES.len(), proptest::bool::ANY), 0..24),
        ) {
            let text: String = lines
                .iter()
                .map(|&(key, value, header)| {
                    let key = KEYS[key];
                    if header || key.starts_with('[') { format!("{key}\n") } else { format!("{key} = {}\n", VALUES[value]) }
                })
                .collect();
            if let Err(error) = parse(Path::new("fuzz.toml"), &text, &Overrides::default()) {
                proptest::prop_assert!(error.to_string().starts_with("fuzz.toml"), "{}", error);
            }
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load(Path::new("no/such/scenario.toml"), &Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("no/such/scenario.toml: cannot read"), "{err}");
    }

    #[test]
    fn server_plan_becomes_server_flags() {
        let plan =
            parse_text(&format!("{MINIMAL}[server]\nmax_concurrent_streams = 10\nkeepalive_time = \"2s\"\nmax_connection_idle = \"500ms\"\nmin_ping_interval = \"5s\"\npermit_without_stream = true\n"))
                .unwrap();
        assert_eq!(
            plan.server.args(),
            [
                "--max-concurrent-streams",
                "10",
                "--max-connection-idle",
                "500ms",
                "--keepalive-time",
                "2s",
                "--min-ping-interval",
                "5s",
                "--permit-without-stream"
            ]
        );
    }
}
