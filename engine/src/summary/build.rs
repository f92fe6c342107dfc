//! A [`Summary`] from what a run sampled and knew, whatever its kind: the kind
//! of run hands over what only it knows ([`ClientRun`]), everything else comes
//! from the samples and the [`RunFacts`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use leaklab_probe::ProcessSnapshot;
use leaklab_verdict::stats::Span;
use leaklab_verdict::stats::trend::CONFIDENCE;
use leaklab_verdict::{Outcome, Quantity, VerdictPlan, Verdicts, judge, with_native};

use super::kinds::ClientRun;
use super::series::{self, Side};
use super::{
    AtStop, CounterSummary, Growth, LifecycleSummary, Limits, MetricSpan, Note, ProcessSummary, Requests,
    SCHEMA_VERSION, SamplesInfo, SegmentSummary, Summary, TargetInfo, TargetKind,
};
use crate::attack::AttackReport;
use crate::fault::FaultLog;
use crate::halt::{LimitHit, StopReason};
use crate::heap::HeapReport;
use crate::heap::orphans::OrphanReport;
use crate::heap::profiles::Profiles;
use crate::sample::runtime::HeapWatchSummary;
use crate::sample::{ChannelzSummary, LoadWindow, Phase, SAMPLES_FILE, Sample};
use crate::scenario::PolicyName;

/// What a run knew besides its samples, whatever its kind.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub started_at: String,
    pub target: TargetInfo,
    /// Wall time spent taking samples.
    pub sampling_busy: Duration,
    /// Notes from the run itself (a failed samples file, an interruption…).
    pub notes: Vec<Note>,
    pub limits: Limits,
    pub stopped_by: StopReason,
    /// The cap or limit of the machine that stopped the load.
    pub stopped_at: Option<LimitHit>,
    /// What the fault proxy did, if the run had one.
    pub fault: Option<FaultLog>,
    /// What the scenario's attack did, if it had one.
    pub attack: Option<AttackReport>,
    /// Where the memory that grew was allocated, with `--heap-profile`.
    pub heap_profile: Option<HeapReport>,
    /// A Go client's profiles, diffed down to its call sites.
    pub profiles: Option<Profiles>,
    /// A Go server's profiles (`--server-pprof`).
    pub server_profiles: Option<Profiles>,
    /// What the client's channelz service counted.
    pub channelz: Option<ChannelzSummary>,
    /// How the client's runtime heap readings went.
    pub runtime_heap: Option<HeapWatchSummary>,
    /// grpc-java's reports of the client's orphaned channels.
    pub orphaned_channels: Option<OrphanReport>,
    /// The load generators a merged run was split over.
    pub segments: Vec<SegmentSummary>,
}

impl RunFacts {
    /// The facts of a run that knows only when and against what it ran, and why it stopped.
    pub fn new(started_at: String, target: TargetInfo, limits: Limits, stopped_by: StopReason) -> RunFacts {
        RunFacts {
            started_at,
            target,
            sampling_busy: Duration::ZERO,
            notes: Vec::new(),
            limits,
            stopped_by,
            stopped_at: None,
            fault: None,
            attack: None,
            heap_profile: None,
            profiles: None,
            server_profiles: None,
            channelz: None,
            runtime_heap: None,
            orphaned_channels: None,
            segments: Vec::new(),
        }
    }
}

impl Summary {
    /// Builds the record of a run from what it sampled and knew.
    pub fn build(run: &dyn ClientRun, samples: &[Sample], facts: RunFacts) -> Summary {
        let header = run.header();
        let requests = run.requests(samples);
        let [latency_us, latency_from_intended_us] = run.latency();
        let load_duration_s = run.load_duration_s(samples);
        let verdict_plan = run.verdict_plan();
        let verdict = verdicts(run, samples, verdict_plan);
        let outcome = outcome(&verdict, verdict_plan, requests.as_ref());
        let window = LoadWindow::find(samples);
        let server_misses = server_misses(samples, &facts.target);
        let mut notes = run.notes(samples);
        notes.extend(run_notes(samples, &facts, window, server_misses));
        let leak = header.policy == Some(PolicyName::Leak);
        Summary {
            schema_version: SCHEMA_VERSION,
            kind: header.kind,
            scenario: header.scenario,
            description: header.description,
            scenario_file: header.scenario_file,
            policy: header.policy,
            started_at: facts.started_at,
            stopped_by: facts.stopped_by,
            stopped_at: facts.stopped_at,
            target: facts.target,
            plan: header.plan,
            command: header.command,
            throughput_rps: requests
                .as_ref()
                .filter(|_| load_duration_s > 0.0)
                .map(|requests| requests.ok as f64 / load_duration_s),
            load_duration_s,
            latency_us,
            latency_from_intended_us,
            client: ProcessSummary {
                counters: counter_summaries(samples),
                channelz: facts.channelz,
                runtime_heap: facts.runtime_heap,
                orphaned_channels: facts.orphaned_channels,
                ..ProcessSummary::of(samples.iter().map(|s| &s.client)).expect("a run has at least one sample")
            },
            server: ProcessSummary::of(samples.iter().filter_map(|s| s.server.as_ref().map(|server| &server.process))),
            server_metrics: metric_spans(samples),
            growth: Growth::of(samples, window, requests.is_some()),
            outcome,
            expectation_met: verdict_plan.sets_expectation().then_some(outcome == Outcome::Met),
            requests,
            attack: facts.attack,
            verdict,
            samples: SamplesInfo {
                file: SAMPLES_FILE.to_owned(),
                count: samples.len() as u64,
                server_misses,
                busy_s: facts.sampling_busy.as_secs_f64(),
            },
            limits: facts.limits,
            lifecycle: LifecycleSummary::of(samples, facts.fault, leak),
            heap_profile: facts.heap_profile,
            profiles: facts.profiles,
            server_profiles: facts.server_profiles,
            segments: facts.segments,
            notes,
        }
    }
}

/// Each process judged on the points its kind of run gives, against the scenario's expectations.
fn verdicts(run: &dyn ClientRun, samples: &[Sample], plan: &VerdictPlan) -> Verdicts {
    let judged = |side, expected| {
        let (series, tolerance) = run.series(samples, side);
        judge(&series, tolerance, expected)
    };
    let measured_server = samples.iter().any(|s| s.server.is_some());
    let client = judged(Side::Client, plan.expect_client);
    // A garbage-collected client is judged on its live heap; what its runtime holds outside it, on its own.
    let client_native = (client.quantity == Quantity::LiveHeapBytes)
        .then(|| series::native(samples, client.axis))
        .flatten()
        .map(|native| judge(&native, client.tolerance, None));
    Verdicts {
        client: match &client_native {
            Some(native) => with_native(client, native),
            None => client,
        },
        server: measured_server.then(|| judged(Side::Server, plan.expect_server)),
        client_native,
        confidence: CONFIDENCE,
    }
}

/// Samples without server figures although the server was measured: its side channel was late, or its
/// process or metrics endpoint could not be read.
fn server_misses(samples: &[Sample], target: &TargetInfo) -> u64 {
    match (target.kind, target.server_measured_by) {
        (TargetKind::Spawned, _) | (TargetKind::External, Some(_)) => {
            samples.iter().filter(|s| s.server.is_none()).count() as u64
        }
        _ => 0,
    }
}

/// What every kind of run may need to say about its figures, then what the run itself noted.
fn run_notes(samples: &[Sample], facts: &RunFacts, window: Option<LoadWindow>, server_misses: u64) -> Vec<Note> {
    let mut notes = Vec::new();
    if facts.target.kind == TargetKind::External && facts.target.server_measured_by.is_none() {
        notes.push(Note::ServerNotMeasured { address: facts.target.address.clone().unwrap_or_default() });
    }
    if server_misses > 0 {
        notes.push(Note::ServerMisses { samples: server_misses });
    }
    if window.is_none() {
        notes.push(Note::NeverPastWarmup);
    }
    if let Some(hit) = &facts.stopped_at {
        notes.push(stop_note(hit, samples));
    }
    notes.extend(facts.notes.iter().cloned());
    notes
}

impl Growth {
    /// Growth per request over `window`; the request count only when the run has request counts.
    fn of(samples: &[Sample], window: Option<LoadWindow>, counted: bool) -> Growth {
        let per_request = |value: &dyn Fn(&ProcessSnapshot) -> Option<u64>, side: Side| {
            window.and_then(|w| w.growth_per_request(samples, |s| value(s.process(side)?)))
        };
        let both = |value: &dyn Fn(&ProcessSnapshot) -> Option<u64>| {
            [per_request(value, Side::Client), per_request(value, Side::Server)]
        };
        let [client_allocated, server_allocated] = both(&|p| p.jemalloc.map(|j| j.allocated_bytes));
        let [client_rss, server_rss] = both(&|p| Some(p.rss_bytes));
        let [client_rss_anon, server_rss_anon] = both(&|p| p.rss_parts.map(|parts| parts.anon_bytes));
        let [client_connections, server_connections] = both(&ProcessSnapshot::open_connections);
        let [client_streams, server_streams] = both(&|p| p.streams);
        Growth {
            loaded_requests: window.filter(|_| counted).map(|w| w.requests(samples)),
            window_s: window.map_or(0.0, |w| w.seconds(samples)),
            client_allocated_bytes_per_request: client_allocated,
            server_allocated_bytes_per_request: server_allocated,
            client_rss_bytes_per_request: client_rss,
            server_rss_bytes_per_request: server_rss,
            client_rss_anon_bytes_per_request: client_rss_anon,
            server_rss_anon_bytes_per_request: server_rss_anon,
            client_connections_per_request: client_connections,
            server_connections_per_request: server_connections,
            client_streams_per_request: client_streams,
            server_streams_per_request: server_streams,
        }
    }
}

/// Each recorded server metric over the samples that have it.
fn metric_spans(samples: &[Sample]) -> BTreeMap<String, MetricSpan> {
    let names: BTreeSet<&String> = samples.iter().flat_map(|s| s.server_metrics.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let span = MetricSpan::of(samples.iter().filter_map(|s| s.server_metrics.get(name).copied()))?;
            Some((name.clone(), span))
        })
        .collect()
}

/// Each counter the client reported: its span, and its slope per request while loaded.
fn counter_summaries(samples: &[Sample]) -> BTreeMap<String, CounterSummary> {
    let names: BTreeSet<&String> = samples.iter().flat_map(|s| s.counters.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let span = Span::of(samples.iter().filter_map(|s| s.counters.get(name).copied()))?;
            let loaded: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.phase == Phase::Load)
                .filter_map(|s| Some((s.requests() as f64, *s.counters.get(name)? as f64)))
                .collect();
            let per_request = leaklab_verdict::stats::trend::theil_sen(&loaded).map(|trend| trend.slope);
            Some((name.clone(), CounterSummary { start: span.start, end: span.end, peak: span.peak, per_request }))
        })
        .collect()
}

/// Both processes' memory and connections when the load stopped at `hit`.
fn stop_note(hit: &LimitHit, samples: &[Sample]) -> Note {
    let at = samples.iter().find(|s| s.requests() >= hit.requests).or(samples.last());
    Note::StoppedAt {
        client: at.map(|s| AtStop { rss_bytes: s.client.rss_bytes, connections: s.client.open_connections() }),
        server: at
            .and_then(|s| s.server)
            .map(|x| AtStop { rss_bytes: x.process.rss_bytes, connections: x.process.open_connections() }),
    }
}

impl ProcessSummary {
    fn of<'a>(snapshots: impl Iterator<Item = &'a ProcessSnapshot> + Clone) -> Option<ProcessSummary> {
        let first = snapshots.clone().next()?;
        let last = snapshots.clone().last()?;
        let span = |value: &dyn Fn(&ProcessSnapshot) -> Option<u64>| Span::of(snapshots.clone().filter_map(value));
        Some(ProcessSummary {
            pid: first.pid,
            rss_bytes: span(&|s| Some(s.rss_bytes))?,
            rss_anon_bytes: span(&|s| s.rss_parts.map(|p| p.anon_bytes)),
            rss_file_bytes: span(&|s| s.rss_parts.map(|p| p.file_bytes)),
            rss_shmem_bytes: span(&|s| s.rss_parts.map(|p| p.shmem_bytes)),
            allocated_bytes: span(&|s| s.jemalloc.map(|j| j.allocated_bytes)),
            connections: span(&ProcessSnapshot::open_connections),
            connections_opened: first.connections.zip(last.connections).and_then(|(first, last)| {
                let (before, after) = first.opened.zip(last.opened)?;
                Some(first.open + after.saturating_sub(before))
            }),
            fds: span(&|s| s.fds),
            threads: span(&|s| s.threads),
            streams: span(&|s| s.streams),
            counters: BTreeMap::new(),
            channelz: None,
            live_heap_bytes: span(&|s| s.runtime_heap.map(|heap| heap.live_bytes)),
            heap_committed_bytes: span(&|s| s.runtime_heap.map(|heap| heap.committed_bytes)),
            runtime_heap: None,
            orphaned_channels: None,
        })
    }
}

/// The verdicts against their expectations, and the failed requests against theirs.
fn outcome(verdict: &Verdicts, plan: &VerdictPlan, requests: Option<&Requests>) -> Outcome {
    let failures = plan.max_failed_requests.map(|max| match requests {
        Some(requests) if requests.failed <= max => Outcome::Met,
        Some(_) => Outcome::Contradicted,
        None => Outcome::Inconclusive,
    });
    Outcome::worst([verdict.outcome(plan)].into_iter().chain(failures))
}
