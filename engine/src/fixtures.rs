//! A scripted run for the tests of summaries and of everything that reads them (the exporters, the
//! comparison, the merge): a leak-shaped client curve, built as a run would build it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use leaklab_probe::control::ServerStats;
use leaklab_probe::{Connections, JemallocStats, ProcessSnapshot};

use crate::halt::StopReason;
use crate::load::LoadReport;
use crate::sample::{Phase, Sample};
use crate::scenario::{Overrides, parse};
use crate::summary::{BuiltinRun, Limits, RunFacts, ServerSource, Summary, TargetInfo, TargetKind};

pub fn snapshot(allocated: u64, connections: u64) -> ProcessSnapshot {
    ProcessSnapshot {
        pid: Some(1),
        rss_bytes: allocated + 8_000_000,
        rss_parts: None,
        fds: Some(connections + 10),
        threads: Some(4),
        jemalloc: Some(JemallocStats {
            allocated_bytes: allocated,
            active_bytes: allocated,
            resident_bytes: allocated,
            mapped_bytes: allocated,
            retained_bytes: 0,
        }),
        connections: Some(Connections { open: connections, opened: Some(connections), closed: Some(0) }),
        streams: None,
        runtime_heap: None,
    }
}

/// 100 warm-up requests, then 10 rounds of 100 requests that each keep
/// 60 KB in the client and 20 KB in the server, then a cool-down.
pub fn scripted_report() -> (Summary, Vec<Sample>) {
    scripted_report_with(|_| {})
}

/// [`scripted_report`] with its samples changed by `edit` before the summary is built.
pub fn scripted_report_with(edit: impl FnOnce(&mut Vec<Sample>)) -> (Summary, Vec<Sample>) {
    let plan = parse(
        Path::new("scenarios/leak.toml"),
        "description = \"scripted leak\"\n[client]\npolicy = \"leak\"\n[load]\nrequests = 1100\nwarmup_requests = 100\n\
         rounds = 10\n[expect]\nclient = \"leak\"\nserver = \"leak\"\n",
        &Overrides::default(),
    )
    .unwrap()
    .builtin()
    .unwrap();
    let mut samples = Vec::new();
    let mut push = |t: f64, phase: Phase, requests: u64| {
        let server = ServerStats {
            process: snapshot(5_000_000 + requests * 20_000, requests),
            requests_served: Some(requests),
            requests_failed: Some(0),
            lifecycle: Default::default(),
        };
        samples.push(Sample {
            elapsed_s: t,
            // A fixed wall clock, so that outputs of the fixture are the same on every run.
            unix_time_s: Some(1_796_000_000.0 + t),
            phase,
            requests_ok: requests,
            requests_failed: 0,
            client: snapshot(10_000_000 + requests * 60_000, requests),
            server: Some(server),
            // Checkpoints: after warm-up, after each round, at the end.
            settled: phase == Phase::Load || phase == Phase::Cooldown,
            network: Default::default(),
            server_metrics: Default::default(),
            counters: Default::default(),
            segments: Default::default(),
        });
    };
    push(0.0, Phase::Baseline, 0);
    push(0.1, Phase::Warmup, 0);
    push(0.5, Phase::Load, 100);
    for step in 1..=10 {
        push(0.5 + step as f64 * 0.3, if step == 10 { Phase::Cooldown } else { Phase::Load }, 100 + step * 100);
    }
    push(4.0, Phase::Cooldown, 1_100);
    edit(&mut samples);
    let mut latency_us = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    latency_us.record(800).unwrap();
    let load = LoadReport {
        latency_us,
        latency_from_intended_us: None,
        ok: 1_100,
        failed: 0,
        errors: BTreeMap::new(),
        first_error: None,
        elapsed: Duration::from_secs(3),
        stopped_by: StopReason::Requests,
    };
    let target = TargetInfo {
        kind: TargetKind::Spawned,
        address: Some("127.0.0.1:1".into()),
        server_pid: Some(2),
        server_measured_by: Some(ServerSource::SideChannel),
        server_metrics_url: None,
        server_pprof_url: None,
    };
    let fds = Some(leaklab_probe::procfs::FdLimits { soft: 20_000, hard: 20_000 });
    let limits = Limits { client_fds: fds, server_fds: fds };
    let facts = RunFacts {
        sampling_busy: Duration::from_millis(12),
        ..RunFacts::new("2026-11-28T00:00:00Z".into(), target, limits, StopReason::Requests)
    };
    (Summary::build(&BuiltinRun { plan: &plan, load: Some(&load) }, &samples, facts), samples)
}

/// Profiles of 100 connections with one call site, for the tests of what renders them.
pub fn go_profiles(bytes_per_connection: f64, rss_per_connection: f64) -> crate::heap::profiles::Profiles {
    crate::heap::profiles::Profiles {
        url: "http://127.0.0.1:1/debug/pprof".into(),
        runtime: crate::heap::own::CodeRuntime::Go,
        sample_period_bytes: Some(1024),
        connections_grown: Some(100),
        rss_growth: Some((rss_per_connection * 100.0) as i64),
        rss_per_connection: Some(rss_per_connection),
        inuse_bytes_growth: (bytes_per_connection * 100.0) as i64,
        inuse_objects_growth: 1000,
        bytes_per_connection: Some(bytes_per_connection),
        growth: Vec::new(),
        call_sites: vec![crate::heap::sites::CallSite {
            function: "main.chargePayment".into(),
            file: "/src/app_payments.go".into(),
            line: 14,
            inuse_bytes_growth: 4_000_000,
            inuse_objects_growth: 40_000,
            share: 0.02,
            through: None,
        }],
        smaller_call_sites: 0,
        smaller_call_sites_bytes: 0,
        call_site_samples: 0.0,
        too_coarse: true,
        goroutines: Vec::new(),
        goroutines_per_connection: None,
    }
}
