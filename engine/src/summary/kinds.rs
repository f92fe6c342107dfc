//! The kinds of run a summary is built for, each one type that hands
//! [`Summary::build`](super::Summary::build) what only it knows: who its client
//! was, what it counted, and how its memory is judged.

use std::collections::BTreeMap;

use leaklab_verdict::{Axis, Series, VerdictPlan};

use super::series::{self, Side};
use super::{CommandInfo, FirstError, Note, PlanInfo, Requests, RunKind};
use crate::latency::Latency;
use crate::load::LoadReport;
use crate::sample::{Phase, Sample};
use crate::scenario::{ChannelPolicy, ForeignPlan, Plan, PolicyName};

/// What a kind of run tells the summary about itself.
pub trait ClientRun {
    /// Who the client was: the summary's first fields.
    fn header(&self) -> Header;
    /// Request counts, warm-up included; `None` when a foreign client reported none.
    fn requests(&self, samples: &[Sample]) -> Option<Requests>;
    /// Latency from the send, and from when each call was due (open loop); `None` where not measured.
    fn latency(&self) -> [Option<Latency>; 2];
    /// Seconds of load.
    fn load_duration_s(&self, samples: &[Sample]) -> f64;
    /// What the run is judged against.
    fn verdict_plan(&self) -> &VerdictPlan;
    /// The points `side` is judged on, and the tolerance in bytes per unit of their axis.
    fn series(&self, samples: &[Sample], side: Side) -> (Series, f64);
    /// What a reader of this kind of run needs to know first.
    fn notes(&self, samples: &[Sample]) -> Vec<Note>;
}

/// Who a run's client was.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub kind: RunKind,
    pub scenario: String,
    pub description: String,
    pub scenario_file: Option<String>,
    pub policy: Option<PolicyName>,
    pub plan: Option<PlanInfo>,
    pub command: Option<CommandInfo>,
}

/// The built-in client. `load` is `None` for a run rebuilt from its samples, whose latency and error kinds
/// lived only in memory.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinRun<'a> {
    pub plan: &'a Plan,
    pub load: Option<&'a LoadReport>,
}

impl ClientRun for BuiltinRun<'_> {
    fn header(&self) -> Header {
        let plan = self.plan;
        Header {
            kind: RunKind::Builtin,
            scenario: plan.name.clone(),
            description: plan.description.clone(),
            scenario_file: Some(plan.source.display().to_string()),
            policy: Some(plan.policy.kind()),
            plan: Some(PlanInfo::of(plan)),
            command: None,
        }
    }

    fn requests(&self, samples: &[Sample]) -> Option<Requests> {
        let (ok, failed) = samples.last().map_or((0, 0), |s| (s.requests_ok, s.requests_failed));
        let load = self.load;
        Some(Requests {
            ok: load.map_or(ok, |l| l.ok),
            failed: load.map_or(failed, |l| l.failed),
            errors: load.map(|l| l.errors.clone()),
            first_error: load
                .and_then(|l| l.first_error.as_ref())
                .map(|(kind, at)| FirstError { kind: kind.clone(), at_s: at.as_secs_f64() }),
            warmup: Some(self.plan.load.warmup_requests.min(load.map_or(ok + failed, |l| l.ok + l.failed))),
        })
    }

    fn latency(&self) -> [Option<Latency>; 2] {
        let Some(load) = self.load else { return [None, None] };
        [Some(Latency::of(&load.latency_us)), load.latency_from_intended_us.as_ref().map(Latency::of)]
    }

    fn load_duration_s(&self, samples: &[Sample]) -> f64 {
        self.load.map_or_else(|| load_seconds(samples), |load| load.elapsed.as_secs_f64())
    }

    fn verdict_plan(&self) -> &VerdictPlan {
        &self.plan.verdict
    }

    fn series(&self, samples: &[Sample], side: Side) -> (Series, f64) {
        (series::checkpoints(samples, side), self.plan.verdict.tolerance_bytes_per_request)
    }

    fn notes(&self, _samples: &[Sample]) -> Vec<Note> {
        if self.plan.policy == ChannelPolicy::Leak { vec![Note::LeakModel] } else { Vec::new() }
    }
}

/// A process leaklab did not write: an external scenario's command, or a watch.
#[derive(Debug, Clone)]
pub struct ForeignRun<'a> {
    pub plan: &'a ForeignPlan,
    pub command: CommandInfo,
}

impl ForeignRun<'_> {
    /// Per request when the client reported its requests, else per second.
    fn axis(&self, samples: &[Sample]) -> Axis {
        if self.command.reported_progress { series::foreign_axis(samples) } else { Axis::Second }
    }
}

impl ClientRun for ForeignRun<'_> {
    fn header(&self) -> Header {
        let plan = self.plan;
        Header {
            kind: if plan.source.is_some() { RunKind::External } else { RunKind::Watch },
            scenario: plan.name.clone(),
            description: plan.description.clone(),
            scenario_file: plan.source.as_ref().map(|path| path.display().to_string()),
            policy: None,
            plan: None,
            command: Some(self.command.clone()),
        }
    }

    fn requests(&self, samples: &[Sample]) -> Option<Requests> {
        let last = samples.last();
        self.command.reported_progress.then(|| Requests {
            ok: last.map_or(0, |s| s.requests_ok),
            failed: last.map_or(0, |s| s.requests_failed),
            errors: None,
            first_error: None,
            warmup: None,
        })
    }

    fn latency(&self) -> [Option<Latency>; 2] {
        [None, None]
    }

    fn load_duration_s(&self, samples: &[Sample]) -> f64 {
        match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => last.elapsed_s - first.elapsed_s,
            _ => 0.0,
        }
    }

    fn verdict_plan(&self) -> &VerdictPlan {
        &self.plan.verdict
    }

    fn series(&self, samples: &[Sample], side: Side) -> (Series, f64) {
        let axis = self.axis(samples);
        let tolerance = match axis {
            Axis::Request => self.plan.verdict.tolerance_bytes_per_request,
            Axis::Second => self.plan.verdict.tolerance_bytes_per_second,
        };
        (series::sampled(samples, side, axis), tolerance)
    }

    fn notes(&self, samples: &[Sample]) -> Vec<Note> {
        vec![Note::JudgedOnSamples { axis: self.axis(samples), warmup_s: self.command.warmup_s }]
    }
}

impl CommandInfo {
    /// A foreign client's process as the run saw it.
    pub fn of(
        plan: &ForeignPlan,
        pid: u32,
        argv: Option<Vec<String>>,
        exit_code: Option<i32>,
        reported_progress: bool,
        tcp_states_at_end: BTreeMap<String, u64>,
    ) -> CommandInfo {
        CommandInfo {
            pid,
            argv,
            exit_code,
            max_duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            warmup_requests: plan.warmup_requests,
            sample_interval_ms: plan.interval.as_millis() as u64,
            reported_progress,
            tcp_states_at_end,
        }
    }

    /// What a run rebuilt from its samples knows of its process: not its exit code nor its sockets at the end.
    pub fn rebuilt(plan: &ForeignPlan, pid: u32, reported_progress: bool) -> CommandInfo {
        let argv = match &plan.client {
            crate::scenario::ForeignClient::Command(argv) => Some(argv.clone()),
            crate::scenario::ForeignClient::Pid(_) => None,
        };
        CommandInfo::of(plan, pid, argv, None, reported_progress, BTreeMap::new())
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
            transport: plan.client.transport,
            source_addresses: plan.source_addresses.into(),
            sample_interval_ms: plan.sampling.interval.map(|d| d.as_millis() as u64),
            cooldown_s: plan.sampling.cooldown.as_secs_f64(),
            max_concurrent_streams: plan.server.settings.limits.max_concurrent_streams.map(u64::from),
            max_failed_requests: plan.verdict.max_failed_requests,
            segment: plan.origin.segment,
        }
    }
}

/// The load's duration from the samples, for a run rebuilt without its own measure of it.
fn load_seconds(samples: &[Sample]) -> f64 {
    let started = samples.iter().find(|s| matches!(s.phase, Phase::Warmup | Phase::Load)).map(|s| s.elapsed_s);
    let ended = samples.iter().rev().find(|s| s.phase == Phase::Load).map(|s| s.elapsed_s);
    match (started, ended) {
        (Some(start), Some(end)) if end > start => end - start,
        _ => 0.0,
    }
}
