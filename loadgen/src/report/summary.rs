//! `summary.json`: one record per run, every field documented with its unit.
//! Its JSON Schema is committed at `schema/summary.schema.json` and checked
//! against this type by a test, so the two cannot drift apart.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use leaklab_probe::control::ServerLifecycle;
use leaklab_probe::procfs::FdLimits;

use crate::fault::FaultLog;
use crate::load::{LEAK_MODEL, LimitHit, LoadReport, StopReason};
use crate::report::units::format_mib;
use crate::sample::Sample;
use crate::scenario::{ChannelPolicy, Plan, Transport};
use crate::stats::lifecycle::{Attribution, TimelineEvent, attribute, timeline};
use crate::stats::{Latency, LoadWindow, Span};
use crate::verdict::Verdicts;

/// Bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 2;

/// Everything one run measured, as written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "leaklab run summary")]
pub struct Summary {
    /// Version of this format.
    pub schema_version: u32,
    /// Scenario name (the scenario file's stem).
    pub scenario: String,
    /// The scenario's one-line description.
    pub description: String,
    /// Path of the scenario file, as given.
    pub scenario_file: String,
    /// Channel policy: `reused`, `leak`, `per-request-close` or `pool`.
    pub policy: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// Why the load stopped.
    pub stopped_by: StopReason,
    /// The cap or limit of the machine that stopped the load, where it was then; `null` otherwise.
    pub stopped_at: Option<LimitHit>,
    /// The server that was loaded.
    pub target: TargetInfo,
    /// The plan the run followed, after command-line overrides.
    pub plan: PlanInfo,
    /// Request counts, warm-up included.
    pub requests: Requests,
    /// Duration of the load phase in seconds, first request sent to last answered, without the
    /// pauses for checkpoints between rounds.
    pub load_duration_s: f64,
    /// Requests answered OK per second of load (`requests.ok / load_duration_s`).
    pub throughput_rps: f64,
    /// Latency of successful calls in microseconds, from when each was sent.
    pub latency_us: Latency,
    /// Open loop only (`null` in closed loop): latency from when each call was due by the rate,
    /// corrected for coordinated omission. When a stall holds the load generator back, the calls
    /// it sends late waited too; `latency_us` leaves that wait out, this includes it.
    pub latency_from_intended_us: Option<Latency>,
    /// The load generator process.
    pub client: ProcessSummary,
    /// The server process; `null` when its figures are not available (`--target`).
    pub server: Option<ProcessSummary>,
    /// Growth over the loaded part of the run (after warm-up, until the load ended) per request completed in it.
    pub growth: Growth,
    /// Does each process leak? From the checkpoints between rounds (see the verdict module's rules).
    pub verdict: Verdicts,
    /// `true` when every expectation of the scenario is met, `false` when one is contradicted or could
    /// not be decided, `null` when the scenario sets none.
    pub expectation_met: Option<bool>,
    /// About the samples file.
    pub samples: SamplesInfo,
    /// Limits of the machine each process ran under.
    pub limits: Limits,
    /// What happened to the run's connections: the server's keepalive policy,
    /// the GOAWAYs and reconnects the client saw, TIME_WAIT sockets, faults.
    #[serde(default)]
    pub lifecycle: LifecycleSummary,
    /// With `--heap-profile`: the allocation stacks that grew most between the
    /// checkpoint after warm-up and the one after the load, in each process.
    #[serde(default)]
    pub heap_profile: Option<crate::report::heap::HeapReport>,
    /// Sentences a reader needs to interpret the figures.
    pub notes: Vec<String>,
}

/// What happened to the run's connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LifecycleSummary {
    /// What the server's keepalive policy did, counted by the server (absent for an external target).
    pub server: Option<ServerLifecycle>,
    /// GOAWAY frames the client received, by code and debug data.
    pub goaways_received: BTreeMap<String, u64>,
    /// Connections the client's channels dialled again after losing one.
    pub reconnects: u64,
    /// TCP sockets in TIME_WAIT towards the server's port: at the start, at the end, and at the peak.
    pub time_wait: Option<Span>,
    /// What the fault proxy did, when the scenario has a `[fault]`.
    pub fault: Option<FaultLog>,
    /// Seconds from the blackhole's start until the client dialled a new connection;
    /// absent when it never did during the run.
    pub time_to_detect_s: Option<f64>,
    /// For a leak whose connections the server reaps: the client's memory per
    /// leaked channel that stays, and per open connection that reaping gives back.
    pub attribution: Option<Attribution>,
    /// Events on the timeline, in time order.
    pub events: Vec<TimelineEvent>,
}

impl LifecycleSummary {
    fn of(plan: &Plan, samples: &[Sample], fault: Option<FaultLog>) -> Self {
        let last = samples.last();
        let server = samples.iter().rev().find_map(|s| s.server).map(|s| s.lifecycle);
        let reaped = server.is_some_and(|s| s.reaped() > 0);
        Self {
            server,
            goaways_received: last.map(|s| s.network.goaways_received.clone()).unwrap_or_default(),
            reconnects: last.map_or(0, |s| s.network.reconnects),
            time_wait: Span::of(samples.iter().filter_map(|s| s.network.time_wait)),
            time_to_detect_s: fault.as_ref().and_then(FaultLog::time_to_detect).map(|d| d.as_secs_f64()),
            attribution: if plan.policy == ChannelPolicy::Leak && reaped { attribute(samples) } else { None },
            events: timeline(samples, fault.as_ref()),
            fault,
        }
    }
}

/// The server that was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetInfo {
    /// `spawned`: started by this run, measured over its side channel; `external`: `--target`, not measured.
    pub kind: TargetKind,
    /// `host:port` the load was sent to.
    pub address: String,
    /// Process id of a spawned server.
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Spawned,
    External,
}

/// The plan the run followed.
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
    /// What carried the calls: `channel` (tonic's `Channel`) or `h2` (the tonic client straight on one h2
    /// connection). Absent in summaries written before the key existed, which all used `channel`.
    #[serde(default = "channel_transport")]
    pub transport: String,
    /// Loopback source addresses the client's connections were spread over; 0: one, chosen by the kernel.
    pub source_addresses: u64,
    /// Sampling interval in milliseconds; `null` samples only at phase changes.
    pub sample_interval_ms: Option<u64>,
    /// Cool-down after the load, in seconds.
    pub cooldown_s: f64,
}

fn channel_transport() -> String {
    Transport::Channel.name().to_owned()
}

impl PlanInfo {
    /// The transport, when it is not the default `channel`: reports name it after the policy.
    pub fn other_transport(&self) -> Option<&str> {
        (self.transport != Transport::Channel.name()).then_some(self.transport.as_str())
    }
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
    /// `reset_refused_stream`…), or else the gRPC status (`unavailable`, `deadline_exceeded`…).
    pub errors: BTreeMap<String, u64>,
    /// The first failure, if any.
    pub first_error: Option<FirstError>,
    /// Requests of the warm-up (included in `ok` and `failed`).
    pub warmup: u64,
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
    /// Resident set size in bytes.
    pub rss_bytes: Span,
    /// Bytes held by the application per jemalloc (`stats.allocated`); `null` if jemalloc could not be read.
    pub allocated_bytes: Option<Span>,
    /// Open TCP connections, counted exactly by the process.
    pub connections: Span,
    /// TCP connections the run used: those open at its first sample plus those opened after it.
    pub connections_opened: u64,
    /// Open file descriptors.
    pub fds: Span,
    /// Threads.
    pub threads: Span,
}

/// Growth over the loaded part of the run: from the sample taken when warm-up
/// ended to the one taken when the load ended, divided by the requests
/// completed in between. `null` when that part is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Growth {
    /// Requests completed in the window.
    pub loaded_requests: u64,
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
    /// Client open connections per request (1.0 when every request leaves a connection open).
    pub client_connections_per_request: Option<f64>,
    /// Server open connections per request.
    pub server_connections_per_request: Option<f64>,
}

/// Limits of the machine each process ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// The load generator's fd limits (its soft limit raised to the hard one at start); `null` if unreadable.
    pub client_fds: Option<FdLimits>,
    /// The spawned server's fd limits, raised the same way; `null` for `--target` or if unreadable.
    pub server_fds: Option<FdLimits>,
}

/// About the samples file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SamplesInfo {
    /// File name in the run directory (JSON lines, one sample each).
    pub file: String,
    /// Samples taken.
    pub count: u64,
    /// Samples without server figures although the server was spawned (its side channel did not answer in time).
    pub server_misses: u64,
    /// Seconds spent taking samples, the server's answers included: an upper bound on what sampling cost.
    pub busy_s: f64,
}

/// What a run knew besides its samples and load report.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub started_at: String,
    pub target: TargetInfo,
    pub samples_file: String,
    /// Wall time the sampler spent taking samples.
    pub sampling_busy: std::time::Duration,
    /// Notes from the run itself (a failed samples file, an interruption…).
    pub notes: Vec<String>,
    pub limits: Limits,
    /// The cap or limit of the machine that stopped the load.
    pub stopped_at: Option<LimitHit>,
    /// What the fault proxy did, if the run had one.
    pub fault: Option<FaultLog>,
}

impl Summary {
    /// Builds the record of a run from what it planned, sampled and measured.
    pub fn build(plan: &Plan, samples: &[Sample], load: &LoadReport, facts: RunFacts) -> Summary {
        let window = LoadWindow::find(samples);
        let server_samples: Vec<_> = samples.iter().filter_map(|s| s.server.as_ref()).collect();
        let growth_of =
            |value: &dyn Fn(&Sample) -> Option<u64>| window.and_then(|w| w.growth_per_request(samples, value));

        let mut notes = Vec::new();
        if plan.policy == ChannelPolicy::Leak {
            notes.push(LEAK_MODEL.to_owned());
        }
        if facts.target.kind == TargetKind::External {
            notes.push(format!(
                "The server at {} was started by someone else (--target): its memory, connections and fds \
                 are not measured, and the server figures are absent.",
                facts.target.address
            ));
        }
        // A spawned server answers every sample unless its side channel was late.
        let server_misses = match facts.target.kind {
            TargetKind::Spawned => samples.iter().filter(|s| s.server.is_none()).count() as u64,
            TargetKind::External => 0,
        };
        if server_misses > 0 {
            notes.push(format!(
                "{server_misses} samples lack server figures: the server did not answer its side channel in time."
            ));
        }
        if window.is_none() {
            notes.push("The run never got past its warm-up, so growth per request is not measured.".to_owned());
        }
        if let Some(hit) = &facts.stopped_at {
            notes.push(limit_note(load.stopped_by, hit, samples));
        }
        notes.extend(facts.notes);

        let verdict = Verdicts::of(samples, &plan.verdict);
        let load_duration_s = load.elapsed.as_secs_f64();
        Summary {
            schema_version: SCHEMA_VERSION,
            scenario: plan.name.clone(),
            description: plan.description.clone(),
            scenario_file: plan.source.display().to_string(),
            policy: plan.policy.name().to_owned(),
            started_at: facts.started_at,
            stopped_by: load.stopped_by,
            stopped_at: facts.stopped_at,
            target: facts.target,
            plan: PlanInfo {
                concurrency: plan.load.concurrency.get() as u64,
                max_requests: plan.load.max_requests.get(),
                max_duration_s: plan.load.max_duration.as_secs_f64(),
                rate_rps: plan.load.rate_per_s,
                warmup_requests: plan.load.warmup_requests,
                rounds: plan.load.rounds.get().into(),
                tolerance_bytes_per_request: plan.verdict.tolerance_bytes_per_request,
                payload_bytes: plan.load.request.payload.len() as u64,
                response_bytes: plan.load.request.response_bytes.into(),
                delay_ms: plan.load.request.delay_ms.into(),
                delay_every: plan.load.request.delay_every,
                pool_size: match plan.policy {
                    ChannelPolicy::Pool { size } => Some(size.get() as u64),
                    _ => None,
                },
                transport: plan.client.transport.name().to_owned(),
                source_addresses: plan.source_addresses.into(),
                sample_interval_ms: plan.sampling.interval.map(|d| d.as_millis() as u64),
                cooldown_s: plan.sampling.cooldown.as_secs_f64(),
            },
            requests: Requests {
                ok: load.ok,
                failed: load.failed,
                errors: load.errors.clone(),
                first_error: load
                    .first_error
                    .as_ref()
                    .map(|(kind, at)| FirstError { kind: kind.clone(), at_s: at.as_secs_f64() }),
                warmup: plan.load.warmup_requests.min(load.ok + load.failed),
            },
            load_duration_s,
            throughput_rps: if load_duration_s > 0.0 { load.ok as f64 / load_duration_s } else { 0.0 },
            latency_us: Latency::of(&load.latency_us),
            latency_from_intended_us: load.latency_from_intended_us.as_ref().map(Latency::of),
            client: ProcessSummary::of(samples.iter().map(|s| &s.client))
                .expect("a run has at least its baseline sample"),
            server: ProcessSummary::of(server_samples.iter().map(|s| &s.process)),
            growth: Growth {
                loaded_requests: window.map_or(0, |w| w.requests(samples)),
                window_s: window.map_or(0.0, |w| w.seconds(samples)),
                client_allocated_bytes_per_request: growth_of(&|s| s.client.jemalloc.map(|j| j.allocated_bytes)),
                server_allocated_bytes_per_request: growth_of(&|s| {
                    s.server?.process.jemalloc.map(|j| j.allocated_bytes)
                }),
                client_rss_bytes_per_request: growth_of(&|s| Some(s.client.rss_bytes)),
                server_rss_bytes_per_request: growth_of(&|s| s.server.map(|x| x.process.rss_bytes)),
                client_connections_per_request: growth_of(&|s| Some(s.client.connections.open)),
                server_connections_per_request: growth_of(&|s| s.server.map(|x| x.process.connections.open)),
            },
            expectation_met: verdict.expectation_met(&plan.verdict),
            verdict,
            samples: SamplesInfo {
                file: facts.samples_file,
                count: samples.len() as u64,
                server_misses,
                busy_s: facts.sampling_busy.as_secs_f64(),
            },
            limits: facts.limits,
            lifecycle: LifecycleSummary::of(plan, samples, facts.fault),
            heap_profile: None,
            notes,
        }
    }
}

/// "Stopped at cap: client_rss, at 301.2 MiB after 8123 requests (cap 300.0 MiB)", with
/// both processes' memory and connections at that point.
fn limit_note(stopped_by: StopReason, hit: &LimitHit, samples: &[Sample]) -> String {
    let at = samples.iter().find(|s| s.requests() >= hit.requests).or(samples.last());
    let memory = at.map_or_else(String::new, |s| {
        let server = s.server.map_or_else(
            || "server not measured".to_owned(),
            |x| format!("server RSS {}, {} connections", format_mib(x.process.rss_bytes), x.process.connections.open),
        );
        format!(
            " At that point: client RSS {}, {} connections open; {server}.",
            format_mib(s.client.rss_bytes),
            s.client.connections.open
        )
    });
    let bytes = hit.which.ends_with("_rss");
    let show = |value: u64| if bytes { format_mib(value) } else { value.to_string() };
    match stopped_by {
        StopReason::MachineLimit => format!(
            "Stopped at a limit of the machine: the first `{}` after {} requests, with {} client connections open \
             (fd limit {}).{memory}",
            hit.which,
            hit.requests,
            hit.value,
            hit.limit.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
        ),
        _ => format!(
            "Stopped at cap: {}, at {} after {} requests (cap {}).{memory}",
            hit.which,
            show(hit.value),
            hit.requests,
            hit.limit.map_or_else(|| "?".to_owned(), show)
        ),
    }
}

impl ProcessSummary {
    fn of<'a>(snapshots: impl Iterator<Item = &'a leaklab_probe::ProcessSnapshot> + Clone) -> Option<ProcessSummary> {
        Some(ProcessSummary {
            rss_bytes: Span::of(snapshots.clone().map(|s| s.rss_bytes))?,
            allocated_bytes: {
                let allocated: Vec<u64> =
                    snapshots.clone().filter_map(|s| s.jemalloc.map(|j| j.allocated_bytes)).collect();
                Span::of(allocated)
            },
            connections: Span::of(snapshots.clone().map(|s| s.connections.open))?,
            connections_opened: {
                let first = snapshots.clone().next()?.connections;
                let last = snapshots.clone().last()?.connections;
                first.open + last.opened.saturating_sub(first.opened)
            },
            fds: Span::of(snapshots.clone().map(|s| s.fds))?,
            threads: Span::of(snapshots.map(|s| s.threads))?,
        })
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
