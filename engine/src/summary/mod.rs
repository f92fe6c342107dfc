//! `summary.json`: one record per run of any kind — a built-in scenario, an
//! external client's, or `loadgen watch` — every field documented with its
//! unit. Its JSON Schema is committed at `schema/summary.schema.json` and
//! checked against this type by a test, so the two cannot drift apart.
//!
//! A figure a kind of run does not have is `null`, never 0: a foreign client
//! has no allocator leaklab can read, no latency it measured, and no
//! request counts unless it reports them.

mod build;
mod kinds;
pub mod lifecycle;
pub mod note;
pub mod record;
pub mod series;
mod sides;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use leaklab_probe::procfs::FdLimits;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use build::RunFacts;
pub use kinds::{BuiltinRun, ClientRun, ForeignRun, Header};
pub use lifecycle::{Attribution, EventKind, LifecycleSummary, TimelineEvent};
pub use note::{AtStop, Note};
pub use sides::{GrowthPerRequest, Side, Sides};

use crate::halt::{LimitHit, StopReason};
use crate::heap::HeapReport;
use crate::latency::Latency;
use crate::scenario::{PolicyName, Segment, Transport};
use leaklab_verdict::stats::Span;
use leaklab_verdict::{Outcome, Verdicts};

/// Bumped when a field changes meaning or disappears; the README says what changed in each version
/// (5: a process leaklab did not write is judged on its anonymous memory; 6: a JVM or Node process on
/// the heap it keeps alive).
pub const SCHEMA_VERSION: u32 = 6;

/// Everything one run measured, as written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "leaklab run summary")]
pub struct Summary {
    /// Version of this format.
    pub schema_version: u32,
    /// What kind of run: `builtin` (the load generator's own client), `external` (a scenario's `[external]`
    /// command against the toy server) or `watch` (`loadgen watch`).
    pub kind: RunKind,
    /// The scenario's name (the scenario file's stem), or `watch-` and the watched process's name.
    pub scenario: String,
    /// The scenario's one-line description, or what was watched.
    pub description: String,
    /// Path of the scenario file, as given; `null` for `loadgen watch`.
    pub scenario_file: Option<String>,
    /// The built-in client's channel policy: `reused`, `leak`, `per-request-close`, `pool`, `stream-leak` or
    /// `stream-cancel`; `null` otherwise.
    #[schemars(with = "Option<String>")]
    pub policy: Option<PolicyName>,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// Why the load (or the watch) stopped.
    pub stopped_by: StopReason,
    /// The cap or limit of the machine that stopped the load, where it was then; `null` otherwise.
    pub stopped_at: Option<LimitHit>,
    /// The server that was loaded.
    pub target: TargetInfo,
    /// The built-in client's plan, after command-line overrides; `null` for a foreign client.
    pub plan: Option<PlanInfo>,
    /// The foreign client's process; `null` for the built-in client.
    pub command: Option<CommandInfo>,
    /// Request counts, warm-up included; `null` when a foreign client reported none.
    pub requests: Option<Requests>,
    /// Duration of the load phase in seconds: first request sent to last answered, without the pauses
    /// for checkpoints between rounds; for a foreign client, its first sample to its last.
    pub load_duration_s: f64,
    /// Requests answered OK per second of load (`requests.ok / load_duration_s`); `null` without request counts.
    pub throughput_rps: Option<f64>,
    /// Latency of successful calls in microseconds, from when each was sent; `null` when the run did not
    /// measure it (a foreign client, or a run rebuilt by `loadgen report`).
    pub latency_us: Option<Latency>,
    /// Open loop only (`null` otherwise): latency from when each call was due by the rate, corrected for
    /// coordinated omission. When a stall holds the load generator back, the calls it sends late waited too;
    /// `latency_us` leaves that wait out, this includes it.
    pub latency_from_intended_us: Option<Latency>,
    /// The client process: the load generator, or the foreign process watched.
    pub client: ProcessSummary,
    /// The server process; `null` when its figures are not available (`--target`, or a watch without the toy server).
    pub server: Option<ProcessSummary>,
    /// The metrics recorded from the server's `--server-metrics` endpoint (see `samples.jsonl`'s
    /// `server_metrics`), each over the run; empty without an endpoint.
    #[serde(default)]
    pub server_metrics: BTreeMap<String, MetricSpan>,
    /// Growth over the loaded part of the run (after warm-up, until the load ended) per request completed in it.
    pub growth: Growth,
    /// Does each process leak? See the verdict module's rules.
    pub verdict: Verdicts,
    /// How the verdicts compare with the scenario's expectations: `met`, `inconclusive` or `contradicted`.
    pub outcome: Outcome,
    /// `true` when every expectation of the scenario is met (`failed_requests` included), `false` when one
    /// is contradicted or could not be decided, `null` when the scenario sets none.
    pub expectation_met: Option<bool>,
    /// What the scenario's `[attack]` did and what the server did to it; `null` without one.
    #[serde(default)]
    pub attack: Option<crate::attack::AttackReport>,
    /// About the samples file.
    pub samples: SamplesInfo,
    /// Limits of the machine each process ran under.
    pub limits: Limits,
    /// What happened to the run's connections: the server's keepalive policy,
    /// the GOAWAYs and reconnects the client saw, TIME_WAIT sockets, faults.
    pub lifecycle: LifecycleSummary,
    /// With `--heap-profile`: the allocation stacks that grew most between the
    /// checkpoint after warm-up and the one after the load, in each process.
    pub heap_profile: Option<HeapReport>,
    /// The client's own profiles compared (`pprof` for Go and Rust, `call_sites` for Node and Python, and a
    /// JVM whenever grpc-java reports dropped channels): what grew between the profile after warm-up and the
    /// last of the load, and where its own code created it; `null` without, or when a profile is missing.
    #[serde(default)]
    pub profiles: Option<crate::heap::profiles::Profiles>,
    /// With `--server-pprof` (a Go server under `--target`): the same, of the server.
    #[serde(default)]
    pub server_profiles: Option<crate::heap::profiles::Profiles>,
    /// `loadgen merge`: the load generators the scenario was split over, one per segment, each judged on its
    /// own; `client` above is their sum, judged together, and `server` is judged against all their requests.
    /// `[]` for a run of one load generator.
    #[serde(default)]
    pub segments: Vec<SegmentSummary>,
    /// What a reader needs to know to interpret the figures.
    pub notes: Vec<Note>,
}

/// What kind of run a summary is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// The load generator's own client, from a scenario.
    Builtin,
    /// A scenario's `[external]` command, run against the toy server.
    External,
    /// `loadgen watch`: a command or a running process, with no server of leaklab's.
    Watch,
}

/// The server that was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetInfo {
    /// `spawned`: started by this run, measured over its side channel; `external`: `--target`, not measured;
    /// `none`: a watch, which starts no server.
    pub kind: TargetKind,
    /// `host:port` the load was sent to; `null` without a server.
    pub address: Option<String>,
    /// Process id of the server whose memory was measured, when it is a process on this machine (a spawned
    /// server, or `--server-pid`).
    pub server_pid: Option<u32>,
    /// Where the server's figures came from: `side_channel` (the toy server this run started, which measures
    /// itself), `process` (`--server-pid`: read from `/proc` and the kernel's socket table), `metrics`
    /// (`--server-metrics` alone: scraped from its endpoint); `null`: not measured.
    #[serde(default)]
    pub server_measured_by: Option<ServerSource>,
    /// The `--server-metrics` endpoint scraped at every sample, with or without `--server-pid`; `null` without one.
    #[serde(default)]
    pub server_metrics_url: Option<String>,
    /// The `--server-pprof` base URL the server's profiles were fetched from; `null` without one.
    #[serde(default)]
    pub server_pprof_url: Option<String>,
}

/// How a run reads its server's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServerSource {
    SideChannel,
    Process,
    Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Spawned,
    External,
    None,
}

/// The built-in client's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanInfo {
    /// Workers, one request in flight each.
    pub concurrency: u64,
    /// Request budget, warm-up included.
    pub max_requests: u64,
    /// Longest load phase, in seconds.
    pub max_duration_s: f64,
    /// Open-loop target in requests per second; `null` for closed loop.
    pub rate_rps: Option<f64>,
    /// Requests before growth is measured.
    pub warmup_requests: u64,
    /// Rounds the requests after warm-up were split into, with a checkpoint after each.
    pub rounds: u64,
    /// Growth at or below this many bytes per request is not a leak.
    pub tolerance_bytes_per_request: f64,
    /// Request payload size in bytes.
    pub payload_bytes: u64,
    /// Response size in bytes; 0 echoes the payload.
    pub response_bytes: u64,
    /// Server-side delay per request in milliseconds…
    pub delay_ms: u64,
    /// …on every this-many-th request (1: all of them).
    pub delay_every: u64,
    /// Channels in the pool (`pool` policy only).
    pub pool_size: Option<u64>,
    /// What carried the calls: `channel` (tonic's `Channel`) or `h2` (the tonic client straight on one h2 connection).
    #[schemars(with = "String")]
    pub transport: Transport,
    /// Loopback source addresses the client's connections were spread over; 0: one, chosen by the kernel.
    pub source_addresses: u64,
    /// Sampling interval in milliseconds; `null` samples only at phase changes.
    pub sample_interval_ms: Option<u64>,
    /// Cool-down after the load, in seconds.
    pub cooldown_s: f64,
    /// The toy server's limit of concurrent streams per connection (`server.max_concurrent_streams`, its
    /// SETTINGS_MAX_CONCURRENT_STREAMS); `null` when it has none, or the server is not leaklab's.
    #[serde(default)]
    pub max_concurrent_streams: Option<u64>,
    /// `expect.failed_requests`: the most requests that may fail; `null` when the scenario sets none.
    #[serde(default)]
    pub max_failed_requests: Option<u64>,
    /// `--segment`: this run's share of a scenario split over several load generators, `I/N`; `null` for
    /// the whole scenario. The figures above are the segment's.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub segment: Option<Segment>,
}

impl PlanInfo {
    /// The transport, when it is not the default `channel`: reports name it after the policy.
    pub fn other_transport(&self) -> Option<Transport> {
        (self.transport != Transport::Channel).then_some(self.transport)
    }
}

/// A foreign client's process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandInfo {
    /// Its process id.
    pub pid: u32,
    /// Its command line, when the run started it; `null` for `--pid`.
    pub argv: Option<Vec<String>>,
    /// Its exit code, when it exited by itself with one.
    pub exit_code: Option<i32>,
    /// The watch would have ended after this many seconds.
    pub max_duration_s: f64,
    /// Samples from its first this-many seconds were not judged.
    pub warmup_s: f64,
    /// Nor were samples before it reported this many requests; 0 when the warm-up is in seconds alone.
    #[serde(default)]
    pub warmup_requests: u64,
    /// Sampling interval in milliseconds.
    pub sample_interval_ms: u64,
    /// Whether it reported its requests on `leaklab-progress ok=N failed=M` lines.
    pub reported_progress: bool,
    /// Its TCP sockets by state at the end.
    pub tcp_states_at_end: BTreeMap<String, u64>,
}

/// Request counts, warm-up included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Requests {
    /// Answered OK.
    pub ok: u64,
    /// Failed for any reason.
    pub failed: u64,
    /// Failed requests per kind: an OS reason (`too_many_open_files`, `address_not_available`,
    /// `connection_refused`…), an HTTP/2 frame and reason (`goaway_enhance_your_calm`,
    /// `reset_refused_stream`…), or else the gRPC status (`unavailable`, `deadline_exceeded`…);
    /// `null` when the run does not know them (a foreign client, a rebuilt run).
    pub errors: Option<BTreeMap<String, u64>>,
    /// The first failure, if any was seen.
    pub first_error: Option<FirstError>,
    /// Requests of the warm-up (included in `ok` and `failed`); `null` for a foreign client, whose warm-up is a time.
    pub warmup: Option<u64>,
}

/// The first failed request of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FirstError {
    /// Its kind, as in `requests.errors`.
    pub kind: String,
    /// When it was sent, in seconds since the load started.
    pub at_s: f64,
}

/// One process over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessSummary {
    /// Its process id; `null` for a server read from its metrics endpoint.
    pub pid: Option<u32>,
    /// Resident set size in bytes.
    pub rss_bytes: Span,
    /// Anonymous resident bytes (`RssAnon`): the heap, stacks and other private memory. What a foreign
    /// process is judged on. `null` for a server read from its metrics endpoint.
    #[serde(default)]
    pub rss_anon_bytes: Option<Span>,
    /// File-backed resident bytes (`RssFile`): the program, shared libraries, mapped files; `null` as above.
    #[serde(default)]
    pub rss_file_bytes: Option<Span>,
    /// Shared resident bytes (`RssShmem`); `null` as above.
    #[serde(default)]
    pub rss_shmem_bytes: Option<Span>,
    /// Bytes held by the application per jemalloc (`stats.allocated`); `null` for a process whose allocator
    /// leaklab cannot read.
    pub allocated_bytes: Option<Span>,
    /// Open TCP connections: counted exactly by leaklab's own processes, ESTABLISHED sockets of a foreign one;
    /// `null` for a server read from a metrics endpoint other than the toy server's.
    pub connections: Option<Span>,
    /// TCP connections the run used: those open at its first sample plus those opened after it; `null` for a
    /// foreign process (the kernel keeps no such count).
    pub connections_opened: Option<u64>,
    /// Open file descriptors; `null` when a metrics endpoint did not say.
    pub fds: Option<Span>,
    /// Threads; `null` when a metrics endpoint did not say.
    pub threads: Option<Span>,
    /// Open gRPC streams (the client's unfinished server streams, the toy server's RPCs in flight); `null` for
    /// a process that does not count them.
    #[serde(default)]
    pub streams: Option<Span>,
    /// The counters a foreign client reported on its `leaklab-progress` lines (`goroutines`, `streams`…),
    /// and those read from its channelz service (`channelz_channels`, `channelz_subchannels`,
    /// `channelz_sockets`), by name; `{}` when there were none.
    #[serde(default)]
    pub counters: BTreeMap<String, CounterSummary>,
    /// With `--channelz` (a scenario's `external.channelz`): the client's channels by target, as its gRPC
    /// runtime's channelz service counted them last, and how the readings went; `null` without.
    #[serde(default)]
    pub channelz: Option<crate::sample::ChannelzSummary>,
    /// Bytes a garbage-collected runtime (the JVM, V8) still used after each full collection leaklab asked
    /// for: what the process keeps alive, and what its verdict judges. `null` for other processes.
    #[serde(default)]
    pub live_heap_bytes: Option<Span>,
    /// Bytes that runtime held for its heap (committed) at those readings; `null` as above.
    #[serde(default)]
    pub heap_committed_bytes: Option<Span>,
    /// How the readings of that runtime's heap went: the runtime, how many, what failed, what they cost it.
    /// `null` when no runtime's heap was read.
    #[serde(default)]
    pub runtime_heap: Option<crate::sample::runtime::HeapWatchSummary>,
    /// grpc-java's own reports of channels dropped without `shutdown()` (its `*~*~*~ Channel … was not
    /// shutdown properly!!!` warnings on the command's output), with the service's code that asked for
    /// them; `null` when there were none. The count is also the counter `orphaned_channels`.
    #[serde(default)]
    pub orphaned_channels: Option<crate::heap::orphans::OrphanReport>,
}

/// One load generator of a merged run (`loadgen merge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentSummary {
    /// Its segment, `I/N`.
    #[schemars(with = "String")]
    pub segment: Segment,
    /// Its run directory, as given to `loadgen merge`.
    pub dir: String,
    /// When it started, RFC 3339 in UTC.
    pub started_at: String,
    /// Its requests, warm-up included.
    pub requests: Requests,
    /// Requests answered OK per second of its load.
    pub throughput_rps: Option<f64>,
    /// Its client process.
    pub client: ProcessSummary,
    /// Its client's growth per request of its own, over its loaded window.
    pub client_allocated_bytes_per_request: Option<f64>,
    /// Its client judged on its own checkpoints, as its own `summary.json` has it.
    pub client_verdict: leaklab_verdict::ProcessVerdict,
}

/// A client's own counter over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CounterSummary {
    /// Its first, last and largest reported value.
    pub start: u64,
    pub end: u64,
    pub peak: u64,
    /// Theil–Sen slope per request over the samples of the loaded part of the run; `null` with fewer than
    /// two of them at different request counts.
    pub per_request: Option<f64>,
}

/// A scraped metric over the run, as its endpoint gave it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricSpan {
    /// In the first sample that had it.
    pub start: f64,
    /// In the last sample that had it.
    pub end: f64,
    /// Its largest value.
    pub peak: f64,
}

impl MetricSpan {
    /// The span of `values` in order; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<MetricSpan> {
        let mut values = values.into_iter();
        let first = values.next()?;
        let (end, peak) = values.fold((first, first), |(_, peak), value| (value, peak.max(value)));
        Some(MetricSpan { start: first, end, peak })
    }
}

/// Growth over the loaded part of the run: from the sample taken when warm-up
/// ended to the one taken when the load ended, divided by the requests
/// completed in between. `null` when that part is empty or the figure was not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Growth {
    /// Requests completed in the window; `null` without request counts.
    pub loaded_requests: Option<u64>,
    /// Length of the window in seconds.
    pub window_s: f64,
    /// Client jemalloc-allocated bytes per request.
    pub client_allocated_bytes_per_request: Option<f64>,
    /// Server jemalloc-allocated bytes per request.
    pub server_allocated_bytes_per_request: Option<f64>,
    /// Client RSS bytes per request (coarser: pages, allocator caching).
    pub client_rss_bytes_per_request: Option<f64>,
    /// Server RSS bytes per request.
    pub server_rss_bytes_per_request: Option<f64>,
    /// Client anonymous resident bytes (`RssAnon`) per request: RSS without the file-backed pages.
    #[serde(default)]
    pub client_rss_anon_bytes_per_request: Option<f64>,
    /// Server anonymous resident bytes per request; `null` for a server read from its metrics endpoint.
    #[serde(default)]
    pub server_rss_anon_bytes_per_request: Option<f64>,
    /// Client open connections per request (1.0 when every request leaves a connection open).
    pub client_connections_per_request: Option<f64>,
    /// Server open connections per request.
    pub server_connections_per_request: Option<f64>,
    /// Client open gRPC streams per request (1.0 when every request leaves a stream unfinished); `null`
    /// for a client that does not count them (a foreign one).
    #[serde(default)]
    pub client_streams_per_request: Option<f64>,
    /// Server RPCs in flight per request; `null` for a server that does not count them.
    #[serde(default)]
    pub server_streams_per_request: Option<f64>,
}

/// Limits of the machine each process ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// The client's fd limits (the load generator's soft limit is raised to the hard one at start); `null` if unreadable.
    pub client_fds: Option<FdLimits>,
    /// The spawned server's fd limits, raised the same way; `null` without a spawned server or if unreadable.
    pub server_fds: Option<FdLimits>,
}

/// About the samples file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SamplesInfo {
    /// File name in the run directory (JSON lines, one sample each).
    pub file: String,
    /// Samples taken.
    pub count: u64,
    /// Samples without server figures although the server was measured (a spawned server's side channel did not
    /// answer in time; a `--server-pid` process or `--server-metrics` endpoint could not be read).
    pub server_misses: u64,
    /// Seconds spent taking samples, the server's answers and the socket counts taken beside the sampler
    /// included: an upper bound on what sampling cost.
    pub busy_s: f64,
}

impl Summary {
    /// Requests completed, OK or not; `None` when the run has no request counts.
    pub fn requests_done(&self) -> Option<u64> {
        self.requests.as_ref().map(|r| r.ok + r.failed)
    }
}

/// The JSON Schema of `summary.json`, as committed in `schema/summary.schema.json`.
///
/// Every field is always written (absent values as `null`), so the schema
/// lists every property of every object as required.
pub fn json_schema() -> String {
    use schemars::generate::SchemaSettings;
    use schemars::transform::RecursiveTransform;
    let every_property_required = RecursiveTransform(|schema: &mut schemars::Schema| {
        let names: Option<Vec<serde_json::Value>> = schema
            .get("properties")
            .and_then(|properties| properties.as_object())
            .map(|properties| properties.keys().map(|name| serde_json::Value::String(name.clone())).collect());
        if let Some(names) = names {
            schema.insert("required".to_owned(), serde_json::Value::Array(names));
        }
    });
    let schema = SchemaSettings::draft2020_12()
        .with_transform(every_property_required)
        .into_generator()
        .into_root_schema_for::<Summary>();
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}
