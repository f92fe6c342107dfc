//! The typed, validated plan a scenario file becomes. Nothing downstream
//! re-checks these values: if a `Plan` exists, it is runnable.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use leaklab_wire::ServerSettings;

use super::values::PolicyName;
use leaklab_verdict::VerdictPlan;

use super::attack::AttackSpec;
use super::client::ClientPlan;

/// Everything one run needs to know, decided before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Scenario name: the file's stem (`leak` for `scenarios/leak.toml`).
    pub name: String,
    /// The file the plan came from.
    pub source: PathBuf,
    /// The scenario's one-line description.
    pub description: String,
    pub policy: ChannelPolicy,
    pub load: LoadPlan,
    pub sampling: SamplingPlan,
    pub server: ServerPlan,
    pub verdict: VerdictPlan,
    pub caps: CapsPlan,
    /// Loopback source addresses the client's connections are spread over
    /// (127.0.0.2, 127.0.0.3, …); 0: one, chosen by the kernel.
    pub source_addresses: u8,
    /// How the client's channels dial and keep their connections alive.
    pub client: ClientPlan,
    /// Network faults between client and server, if any.
    pub fault: FaultPlan,
    /// The method the client calls, when it is not the toy server's `Echo`.
    pub call: Option<CallSpec>,
    /// An abusive client run against the server beside the load.
    pub attack: Option<AttackSpec>,
    /// What the plan was made from, so a run can be rebuilt from its directory.
    pub origin: Origin,
}

impl CapsPlan {
    /// What is left with the caps lifted: either process may use half of the
    /// machine's memory, and fds are bounded only by the fd limit.
    pub fn machine_guard() -> CapsPlan {
        let half = leaklab_probe::procfs::total_memory_bytes().ok().map(|total| total / 2);
        CapsPlan { client_rss_bytes: half, server_rss_bytes: half, fds: None }
    }
}

/// The scenario text and the command-line overrides a plan was made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    pub text: String,
    pub overrides: super::options::Overrides,
    /// The share of the scenario this run is, when it is one of several (`--segment`).
    pub segment: Option<Segment>,
}

/// One of `count` load generators running one scenario together: segment `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub index: u32,
    pub count: u32,
}

impl Segment {
    /// `I/N`, with 1 ≤ I ≤ N.
    pub fn parse(text: &str) -> Result<Segment, String> {
        let bad = || format!("{text:?}: expected I/N, segment I (from 1) of N, like 2/3");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) =
            (index.trim().parse::<u32>().map_err(|_| bad())?, count.trim().parse::<u32>().map_err(|_| bad())?);
        if count == 0 || index == 0 || index > count {
            return Err(format!("{text:?}: the segment must be between 1 and its count, like 1/{}", count.max(1)));
        }
        Ok(Segment { index, count })
    }

    /// This segment's share of `total`: the shares of all segments add up to `total`, and differ by at most one.
    pub fn share(self, total: u64) -> u64 {
        let (index, count) = (u64::from(self.index), u64::from(self.count));
        total * index / count - total * (index - 1) / count
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Described as the string it is written as.
impl schemars::JsonSchema for Segment {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Segment".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9]+/[0-9]+$" })
    }
}

/// Written as files and the command line write it: `I/N`.
impl serde::Serialize for Segment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Segment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Segment::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Faults a loopback proxy between client and server injects, timed from the start of the load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub blackhole: Option<Blackhole>,
    /// Every open connection is reset (RST to both ends) at this time.
    pub reset_at: Option<Duration>,
}

impl FaultPlan {
    /// Whether the client must go through the fault proxy.
    pub fn any(&self) -> bool {
        self.blackhole.is_some() || self.reset_at.is_some()
    }
}

/// The connections open at `at` stop forwarding in both directions, and nothing is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blackhole {
    pub at: Duration,
    /// Forwarding resumes after this long; `None`: not before the run ends.
    pub duration: Option<Duration>,
}

/// Where the run stops its load, so a leak never endangers the machine.
/// `None`: no cap of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsPlan {
    /// The load generator's resident set size, bytes.
    pub client_rss_bytes: Option<u64>,
    /// The server's resident set size, bytes.
    pub server_rss_bytes: Option<u64>,
    /// Open file descriptors of either process (each connection holds one).
    pub fds: Option<u64>,
}

/// Requests after warm-up in the quick profile of `loadgen compare --quick`.
pub const QUICK_MEASURED_REQUESTS: u64 = 3_200;
/// Longest cool-down in the quick profile.
pub const QUICK_COOLDOWN: Duration = Duration::from_secs(1);

impl Plan {
    /// This plan's share as `segment`: its part of the requests, the warm-up, the workers and the rate,
    /// with the same rounds, so that the checkpoints of every segment fall at the same fractions of the load.
    pub fn segment(mut self, segment: Segment) -> Result<Plan, String> {
        let load = &mut self.load;
        let workers = segment.share(load.concurrency.get() as u64);
        let warmup = segment.share(load.warmup_requests);
        let measured = segment.share(load.measured_requests());
        let split = format!("segment {segment}");
        load.concurrency = NonZeroUsize::new(workers as usize).ok_or_else(|| {
            format!("{split}: load.concurrency ({}) is less than the segments: each needs a worker", load.concurrency)
        })?;
        if measured < u64::from(load.rounds.get()) {
            return Err(format!(
                "{split}: {measured} requests after warm-up are fewer than load.rounds ({}); raise load.requests",
                load.rounds
            ));
        }
        load.max_requests = NonZeroU64::new(warmup + measured).expect("more requests than rounds");
        load.warmup_requests = warmup;
        load.rate_per_s = load.rate_per_s.map(|rate| rate / f64::from(segment.count));
        self.origin.segment = Some(segment);
        Ok(self)
    }

    /// The quick profile: at most [`QUICK_MEASURED_REQUESTS`] after warm-up,
    /// in the same rounds, and a cool-down of at most [`QUICK_COOLDOWN`]. The
    /// result is as valid as `self` (rounds never exceed the measured requests).
    pub fn quick(mut self) -> Plan {
        let measured = self.load.measured_requests().min(QUICK_MEASURED_REQUESTS);
        self.load.max_requests = NonZeroU64::new(self.load.warmup_requests + measured).expect("measured is at least 1");
        let rounds = self.load.rounds.get().min(measured as u32);
        self.load.rounds = NonZeroU32::new(rounds).expect("at least 1");
        self.sampling.cooldown = self.sampling.cooldown.min(QUICK_COOLDOWN);
        self
    }
}

/// How the client gets a channel for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPolicy {
    /// One channel (one HTTP/2 connection) shared by every request.
    Reused,
    /// A new channel per request, kept reachable forever: the bug.
    Leak,
    /// A new channel per request, dropped after its call.
    PerRequestClose,
    /// A fixed set of channels, used round-robin.
    Pool { size: NonZeroUsize },
    /// One channel; each request opens a server stream, reads its first message and keeps the stream
    /// unfinished forever: the abandoned stream.
    StreamLeak,
    /// One channel; each request opens a server stream, reads its first message and drops it, which
    /// cancels it (RST_STREAM CANCEL).
    StreamCancel,
}

impl ChannelPolicy {
    /// The policy's name, without its parameters.
    pub fn kind(self) -> PolicyName {
        match self {
            ChannelPolicy::Reused => PolicyName::Reused,
            ChannelPolicy::Leak => PolicyName::Leak,
            ChannelPolicy::PerRequestClose => PolicyName::PerRequestClose,
            ChannelPolicy::Pool { .. } => PolicyName::Pool,
            ChannelPolicy::StreamLeak => PolicyName::StreamLeak,
            ChannelPolicy::StreamCancel => PolicyName::StreamCancel,
        }
    }

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    /// Whether each request is a server stream on one reused channel.
    pub fn streams(self) -> bool {
        self.kind().streams()
    }
}

impl fmt::Display for ChannelPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelPolicy::Pool { size } => write!(f, "pool of {size}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The load: who sends, how fast, and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Workers, each with at most one request in flight.
    pub concurrency: NonZeroUsize,
    /// Stop after this many requests (warm-up included)…
    pub max_requests: NonZeroU64,
    /// …or after this long, whichever comes first.
    pub max_duration: Duration,
    /// Open-loop pacing: request `i` is not sent before `start + i / rate`.
    /// `None`: closed loop, each worker sends as soon as its last call returned.
    pub rate_per_s: Option<f64>,
    /// Requests whose memory effect is not counted as growth (connection set-up,
    /// allocator and buffer warm-up). Always below `max_requests`.
    pub warmup_requests: u64,
    /// The requests after warm-up run in this many rounds of (nearly) equal
    /// size; between rounds the load pauses until nothing is in flight, and
    /// both processes are measured at rest. At most the measured request count.
    pub rounds: NonZeroU32,
    /// The request every call sends.
    pub request: RequestShape,
    /// A call not answered within this long fails as `deadline_exceeded`.
    pub request_timeout: Duration,
    /// After warm-up and after every round, the client sends nothing for this
    /// long before the checkpoint (its channels may ping; servers may reap).
    pub idle_between_rounds: Duration,
}

impl LoadPlan {
    /// Requests after warm-up: the part the verdict measures.
    pub fn measured_requests(&self) -> u64 {
        self.max_requests.get() - self.warmup_requests
    }

    /// Where each round ends, as a count of requests sent since the start
    /// (warm-up included). Rounds differ in size by at most one request.
    pub fn round_ends(&self) -> Vec<u64> {
        let rounds = u64::from(self.rounds.get());
        let measured = self.measured_requests();
        (1..=rounds).map(|round| self.warmup_requests + measured * round / rounds).collect()
    }
}

/// What each `Unary` call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    /// Sent in every request; cloning `Bytes` does not copy it.
    pub payload: Bytes,
    /// Response size; 0 echoes the payload.
    pub response_bytes: u32,
    /// Server-side delay before answering…
    pub delay_ms: u32,
    /// …asked of every this-many-th request (request 0, N, 2N…); 1: every request.
    pub delay_every: u64,
}

/// An empty request, answered at once.
impl Default for RequestShape {
    fn default() -> Self {
        RequestShape { payload: Bytes::new(), response_bytes: 0, delay_ms: 0, delay_every: 1 }
    }
}

/// A method of any service, as the scenario (or the command line) names it. It becomes a callable method
/// when the run starts: its protos are compiled or the server's reflection is asked, and its JSON
/// data encoded, before any load is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// The service's full name, `package.Service`.
    pub service: String,
    /// The method's name within it.
    pub method: String,
    /// `.proto` files (absolute); empty: ask the server's reflection service.
    pub protos: Vec<PathBuf>,
    /// Where imports are found, before each file's own directory.
    pub import_paths: Vec<PathBuf>,
    pub data: CallData,
    /// Header names and values sent with every call.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// A server-streaming call is cancelled after this many messages; `None`: read to the end.
    pub stream_messages: Option<NonZeroU64>,
    /// What an error about each key names: the flag that set it, or the file, line and key.
    pub origins: CallOrigins,
}

impl CallSpec {
    /// `package.Service/Method`, as gRPC paths and grpcurl write it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.service, self.method)
    }
}

/// The request messages of a [`CallSpec`], as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallData {
    /// One message, sent with every call.
    Inline(String),
    /// One message per line of this file, sent in turn.
    File(PathBuf),
}

/// Where each key of a [`CallSpec`] was set, for errors found when it is resolved:
/// `--data`, or `scenarios/mine.toml:7: call.data`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallOrigins {
    pub method: String,
    pub proto: String,
    pub data: String,
    pub metadata: String,
}

/// How memory is sampled around the load.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    /// Time between two periodic samples. `None` samples only at phase changes
    /// (used to measure what sampling itself costs).
    pub interval: Option<Duration>,
    /// Sampling continues this long after the load stops, with no load.
    pub cooldown: Duration,
    /// Dump both processes' heap profiles after warm-up and at the end of the load.
    pub heap_profile: bool,
}

/// The toy server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTlsPlan {
    /// From PEM files; with `client_ca`, client certificates are required.
    Files { cert: std::path::PathBuf, key: std::path::PathBuf, client_ca: Option<std::path::PathBuf> },
    /// Made at run time by a throwaway CA; with `client_auth`, client certificates are required.
    Generated { client_auth: bool },
}

/// The server the run starts (ignored with `--target`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerPlan {
    /// Its largest message, limits and keepalive policy.
    pub settings: ServerSettings,
    /// TLS, if any.
    pub tls: Option<ServerTlsPlan>,
}

impl ServerPlan {
    /// The `leaklab-server` arguments that apply this plan.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.settings.args();
        // Generated files exist only once the run has its directory; the run adds their flags.
        if let Some(ServerTlsPlan::Files { cert, key, client_ca }) = &self.tls {
            args.extend(["--tls-cert".to_owned(), cert.display().to_string()]);
            args.extend(["--tls-key".to_owned(), key.display().to_string()]);
            if let Some(ca) = client_ca {
                args.extend(["--tls-client-ca".to_owned(), ca.display().to_string()]);
            }
        }
        args
    }
}
