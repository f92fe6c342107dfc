//! A [`Summary`] from what a run sampled and knew, whatever its kind.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use leaklab_probe::ProcessSnapshot;

use super::series::{self, Side};
use super::{
    AtStop, CommandInfo, CounterSummary, FirstError, Growth, LifecycleSummary, Limits, MetricSpan, Note, PlanInfo,
    ProcessSummary, Requests, RunKind, SCHEMA_VERSION, SamplesInfo, Summary, TargetInfo, TargetKind,
};
use crate::fault::FaultLog;
use crate::halt::{LimitHit, StopReason};
use crate::load::LoadReport;
use crate::sample::{LoadWindow, Sample};
use crate::scenario::{ChannelPolicy, Plan, VerdictPlan};
use crate::stats::trend::CONFIDENCE;
use crate::stats::{Latency, Span};
use crate::verdict::{Axis, Outcome, Verdicts, judge};

/// What a run knew besides its samples, whatever its kind.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub started_at: String,
    pub target: TargetInfo,
    pub samples_file: String,
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
    pub attack: Option<crate::attack::AttackReport>,
}

/// What the client side of a run was, and what it measured besides samples.
#[derive(Debug)]
pub enum Measured<'a> {
    /// The built-in client. `load` is `None` for a run rebuilt from its samples,
    /// whose latency and error kinds lived only in memory.
    Builtin { plan: &'a Plan, load: Option<&'a LoadReport> },
    /// A foreign client, and the scenario (`external`) or watch it came from.
    Foreign {
        kind: RunKind,
        name: &'a str,
        description: &'a str,
        scenario_file: Option<String>,
        verdict: &'a VerdictPlan,
        command: CommandInfo,
    },
}

impl Summary {
    /// Builds the record of a run from what it sampled and knew.
    pub fn build(measured: Measured<'_>, samples: &[Sample], facts: RunFacts) -> Summary {
        let window = LoadWindow::find(samples);
        let growth_of =
            |value: &dyn Fn(&Sample) -> Option<u64>| window.and_then(|w| w.growth_per_request(samples, value));
        let last = samples.last();
        let measured_server = samples.iter().any(|s| s.server.is_some());

        let mut notes = Vec::new();
        let (kind, scenario, description, scenario_file, policy, plan_info, command, verdict_plan);
        let (requests, latency_us, latency_from_intended_us, load_duration_s, verdict);
        match &measured {
            Measured::Builtin { plan, load } => {
                kind = RunKind::Builtin;
                scenario = plan.name.clone();
                description = plan.description.clone();
                scenario_file = Some(plan.source.display().to_string());
                policy = Some(plan.policy.name().to_owned());
                plan_info = Some(PlanInfo::of(plan));
                command = None;
                verdict_plan = plan.verdict.clone();
                if plan.policy == ChannelPolicy::Leak {
                    notes.push(Note::LeakModel);
                }
                let (ok, failed) = last.map_or((0, 0), |s| (s.requests_ok, s.requests_failed));
                requests = Some(Requests {
                    ok: load.map_or(ok, |l| l.ok),
                    failed: load.map_or(failed, |l| l.failed),
                    errors: load.map(|l| l.errors.clone()),
                    first_error: load
                        .and_then(|l| l.first_error.as_ref())
                        .map(|(kind, at)| FirstError { kind: kind.clone(), at_s: at.as_secs_f64() }),
                    warmup: Some(plan.load.warmup_requests.min(load.map_or(ok + failed, |l| l.ok + l.failed))),
                });
                latency_us = load.map(|l| Latency::of(&l.latency_us));
                latency_from_intended_us = load.and_then(|l| l.latency_from_intended_us.as_ref().map(Latency::of));
                load_duration_s = load.map_or_else(|| load_seconds(samples), |l| l.elapsed.as_secs_f64());
                let tolerance = plan.verdict.tolerance_bytes_per_request;
                let judged = |side, expected| judge(&series::checkpoints(samples, side), tolerance, expected);
                verdict = Verdicts {
                    client: judged(Side::Client, plan.verdict.expect_client),
                    server: measured_server.then(|| judged(Side::Server, plan.verdict.expect_server)),
                    confidence: CONFIDENCE,
                };
            }
            Measured::Foreign {
                kind: foreign_kind,
                name,
                description: text,
                scenario_file: file,
                verdict: plan,
                command: info,
            } => {
                kind = *foreign_kind;
                scenario = (*name).to_owned();
                description = (*text).to_owned();
                scenario_file = file.clone();
                policy = None;
                plan_info = None;
                command = Some(info.clone());
                verdict_plan = (*plan).clone();
                requests = info.reported_progress.then(|| Requests {
                    ok: last.map_or(0, |s| s.requests_ok),
                    failed: last.map_or(0, |s| s.requests_failed),
                    errors: None,
                    first_error: None,
                    warmup: None,
                });
                latency_us = None;
                latency_from_intended_us = None;
                load_duration_s = match (samples.first(), last) {
                    (Some(first), Some(last)) => last.elapsed_s - first.elapsed_s,
                    _ => 0.0,
                };
                let axis = if info.reported_progress { series::foreign_axis(samples) } else { Axis::Second };
                let tolerance = match axis {
                    Axis::Request => plan.tolerance_bytes_per_request,
                    Axis::Second => plan.tolerance_bytes_per_second,
                };
                let judged = |side, expected| judge(&series::sampled(samples, side, axis), tolerance, expected);
                verdict = Verdicts {
                    client: judged(Side::Client, plan.expect_client),
                    server: measured_server.then(|| judged(Side::Server, plan.expect_server)),
                    confidence: CONFIDENCE,
                };
                notes.push(Note::JudgedOnSamples { axis, warmup_s: info.warmup_s });
            }
        }
        if facts.target.kind == TargetKind::External && facts.target.server_measured_by.is_none() {
            notes.push(Note::ServerNotMeasured { address: facts.target.address.clone().unwrap_or_default() });
        }
        // A measured server has figures in every sample unless its side channel was late, or its process or
        // metrics endpoint could not be read.
        let server_misses = match (facts.target.kind, facts.target.server_measured_by) {
            (TargetKind::Spawned, _) | (TargetKind::External, Some(_)) => {
                samples.iter().filter(|s| s.server.is_none()).count() as u64
            }
            _ => 0,
        };
        if server_misses > 0 {
            notes.push(Note::ServerMisses { samples: server_misses });
        }
        if window.is_none() {
            notes.push(Note::NeverPastWarmup);
        }
        if let Some(hit) = &facts.stopped_at {
            notes.push(stop_note(hit, samples));
        }
        notes.extend(facts.notes);

        let server_snapshots: Vec<&ProcessSnapshot> =
            samples.iter().filter_map(|s| s.server.as_ref().map(|server| &server.process)).collect();
        let throughput_rps =
            requests.as_ref().filter(|_| load_duration_s > 0.0).map(|requests| requests.ok as f64 / load_duration_s);
        let leak = matches!(measured, Measured::Builtin { plan, .. } if plan.policy == ChannelPolicy::Leak);
        let outcome = outcome(&verdict, &verdict_plan, requests.as_ref());
        Summary {
            schema_version: SCHEMA_VERSION,
            kind,
            scenario,
            description,
            scenario_file,
            policy,
            started_at: facts.started_at,
            stopped_by: facts.stopped_by,
            stopped_at: facts.stopped_at,
            target: facts.target,
            plan: plan_info,
            command,
            load_duration_s,
            throughput_rps,
            latency_us,
            latency_from_intended_us,
            client: ProcessSummary {
                counters: counter_summaries(samples),
                ..ProcessSummary::of(samples.iter().map(|s| &s.client)).expect("a run has at least one sample")
            },
            server: ProcessSummary::of(server_snapshots.iter().copied()),
            server_metrics: metric_spans(samples),
            growth: Growth {
                loaded_requests: requests.as_ref().and(window.map(|w| w.requests(samples))),
                window_s: window.map_or(0.0, |w| w.seconds(samples)),
                client_allocated_bytes_per_request: growth_of(&|s| s.client.jemalloc.map(|j| j.allocated_bytes)),
                server_allocated_bytes_per_request: growth_of(&|s| {
                    s.server?.process.jemalloc.map(|j| j.allocated_bytes)
                }),
                client_rss_bytes_per_request: growth_of(&|s| Some(s.client.rss_bytes)),
                server_rss_bytes_per_request: growth_of(&|s| s.server.map(|x| x.process.rss_bytes)),
                client_rss_anon_bytes_per_request: growth_of(&|s| s.client.rss_parts.map(|p| p.anon_bytes)),
                server_rss_anon_bytes_per_request: growth_of(&|s| s.server?.process.rss_parts.map(|p| p.anon_bytes)),
                client_connections_per_request: growth_of(&|s| s.client.open_connections()),
                server_connections_per_request: growth_of(&|s| s.server?.process.open_connections()),
                client_streams_per_request: growth_of(&|s| s.client.streams),
                server_streams_per_request: growth_of(&|s| s.server?.process.streams),
            },
            outcome,
            expectation_met: verdict_plan.sets_expectation().then_some(outcome == Outcome::Met),
            requests,
            attack: facts.attack,
            verdict,
            samples: SamplesInfo {
                file: facts.samples_file,
                count: samples.len() as u64,
                server_misses,
                busy_s: facts.sampling_busy.as_secs_f64(),
            },
            limits: facts.limits,
            lifecycle: LifecycleSummary::of(samples, facts.fault, leak),
            heap_profile: None,
            profiles: None,
            server_profiles: None,
            segments: Vec::new(),
            notes,
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
                .filter(|s| s.phase == crate::sample::Phase::Load)
                .filter_map(|s| Some((s.requests() as f64, *s.counters.get(name)? as f64)))
                .collect();
            let per_request = crate::stats::trend::theil_sen(&loaded).map(|trend| trend.slope);
            Some((name.clone(), CounterSummary { start: span.start, end: span.end, peak: span.peak, per_request }))
        })
        .collect()
}

/// The load's duration from the samples, for a run rebuilt without its own measure of it.
fn load_seconds(samples: &[Sample]) -> f64 {
    use crate::sample::Phase;
    let started = samples.iter().find(|s| matches!(s.phase, Phase::Warmup | Phase::Load)).map(|s| s.elapsed_s);
    let ended = samples.iter().rev().find(|s| s.phase == Phase::Load).map(|s| s.elapsed_s);
    match (started, ended) {
        (Some(start), Some(end)) if end > start => end - start,
        _ => 0.0,
    }
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

impl PlanInfo {
    fn of(plan: &Plan) -> PlanInfo {
        PlanInfo {
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
            max_concurrent_streams: plan.server.limits.max_concurrent_streams.map(u64::from),
            max_failed_requests: plan.verdict.max_failed_requests,
            segment: plan.origin.segment.map(|segment| segment.to_string()),
        }
    }
}

impl ProcessSummary {
    fn of<'a>(snapshots: impl Iterator<Item = &'a ProcessSnapshot> + Clone) -> Option<ProcessSummary> {
        let first = snapshots.clone().next()?;
        let last = snapshots.clone().last()?;
        Some(ProcessSummary {
            pid: first.pid,
            rss_bytes: Span::of(snapshots.clone().map(|s| s.rss_bytes))?,
            rss_anon_bytes: Span::of(snapshots.clone().filter_map(|s| s.rss_parts.map(|p| p.anon_bytes))),
            rss_file_bytes: Span::of(snapshots.clone().filter_map(|s| s.rss_parts.map(|p| p.file_bytes))),
            rss_shmem_bytes: Span::of(snapshots.clone().filter_map(|s| s.rss_parts.map(|p| p.shmem_bytes))),
            allocated_bytes: Span::of(snapshots.clone().filter_map(|s| s.jemalloc.map(|j| j.allocated_bytes))),
            connections: Span::of(snapshots.clone().filter_map(ProcessSnapshot::open_connections)),
            connections_opened: first.connections.zip(last.connections).and_then(|(first, last)| {
                let (before, after) = first.opened.zip(last.opened)?;
                Some(first.open + after.saturating_sub(before))
            }),
            fds: Span::of(snapshots.clone().filter_map(|s| s.fds)),
            threads: Span::of(snapshots.clone().filter_map(|s| s.threads)),
            streams: Span::of(snapshots.filter_map(|s| s.streams)),
            counters: BTreeMap::new(),
            channelz: None,
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
