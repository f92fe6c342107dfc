use std::collections::BTreeMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;

use super::*;
use leaklab_engine::fixtures::scripted_report;
use leaklab_engine::latency::Latency;
use leaklab_engine::sample::Phase;
use leaklab_engine::scenario::{Opt, Overrides, Value};
use leaklab_engine::summary::{Limits, TargetKind};

const SCENARIO: &str = "description = \"scripted leak\"\n[client]\npolicy = \"leak\"\n[load]\nrequests = 1100\n\
                        warmup_requests = 100\nrounds = 10\n[expect]\nclient = \"leak\"\nserver = \"leak\"\n";

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

/// Segment `index` of `count` of the scripted leak, its samples `offset_s` later than the fixture's.
fn segment(index: u32, count: u32, offset_s: f64) -> SegmentRun {
    let (mut summary, mut samples) = scripted_report();
    summary.target.kind = TargetKind::External;
    for sample in &mut samples {
        sample.unix_time_s = sample.unix_time_s.map(|t| t + offset_s);
    }
    let record = RunRecord {
        started_at: summary.started_at.clone(),
        plan: RecordedPlan::Scenario {
            scenario_file: PathBuf::from("scenarios/leak.toml"),
            scenario_text: SCENARIO.to_owned(),
            overrides: Overrides::default(),
            segment: Some(Segment { index, count }),
        },
        target: summary.target.clone(),
        limits: Limits { client_fds: None, server_fds: None },
    };
    let mut sent = histogram();
    sent.record(800).unwrap();
    SegmentRun {
        dir: PathBuf::from(format!("host-{index}")),
        segment: Segment { index, count },
        record,
        summary,
        samples,
        latency: BTreeMap::from([("sent".to_owned(), sent)]),
    }
}

fn check_error(runs: Vec<SegmentRun>) -> String {
    format!("{:#}", Split::check(runs).unwrap_err())
}

#[test]
fn segments_at_the_same_instants_add_up_and_the_server_is_judged_against_every_request() {
    let merged = Split::check(vec![segment(2, 2, 0.0), segment(1, 2, 0.0)]).unwrap().merge().unwrap();
    let (one, samples_of_one) = scripted_report();
    let (s, samples) = (&merged.summary, &merged.samples);
    assert_eq!(samples.len(), 2 * samples_of_one.len(), "one merged sample per sample of each segment");
    let settled = samples.iter().filter(|s| s.settled).count();
    assert_eq!(settled, samples_of_one.iter().filter(|s| s.settled).count(), "one checkpoint per round, not two");
    for sample in samples {
        let own = samples_of_one.iter().find(|o| (o.elapsed_s - sample.elapsed_s).abs() < 1e-6).unwrap();
        assert_eq!(sample.requests(), 2 * own.requests());
        let allocated = |s: &Sample| s.client.jemalloc.unwrap().allocated_bytes;
        assert_eq!(allocated(sample), 2 * allocated(own));
        assert_eq!(sample.segments.keys().map(ToString::to_string).collect::<Vec<_>>(), ["1/2", "2/2"]);
    }
    assert_eq!(s.requests_done(), Some(2 * one.requests_done().unwrap()));
    assert_eq!(s.plan.as_ref().unwrap().segment, None, "the merged run is the whole scenario");
    assert_eq!(s.plan.as_ref().unwrap().max_requests, 1_100);
    // Twice the requests, twice the clients: the same slope per request.
    let slope = |v: &leaklab_verdict::ProcessVerdict| v.slope_bytes_per_request.unwrap();
    assert!((slope(&s.verdict.client) - slope(&one.verdict.client)).abs() < 1.0, "{}", slope(&s.verdict.client));
    // One server, each segment counting only its own requests: against all of them, half the slope.
    let server = slope(s.verdict.server.as_ref().unwrap());
    let per_segment = slope(one.verdict.server.as_ref().unwrap());
    assert!((server - per_segment / 2.0).abs() < 1.0, "{server} vs {per_segment}");
    assert_eq!(s.segments.len(), 2);
    assert_eq!((s.segments[0].segment.to_string().as_str(), s.segments[0].dir.as_str()), ("1/2", "host-1"));
    assert_eq!(s.segments[1].client_verdict, one.verdict.client, "each segment keeps its own verdict");
}

#[test]
fn a_segment_between_samples_counts_its_requests_interpolated_and_the_phase_waits_for_the_slowest() {
    // The fixture samples every 0.3 s in its load; the second segment runs 0.15 s behind the first.
    let first = segment(1, 2, 0.0);
    let second = segment(2, 2, 0.15);
    let parts = [
        Part { segment: first.segment, samples: &first.samples },
        Part { segment: second.segment, samples: &second.samples },
    ];
    let merged = align(&parts);
    let at = |unix: f64| merged.iter().find(|s| (s.unix_time_s.unwrap() - unix).abs() < 1e-6).unwrap();
    let base = first.samples[0].unix_time_s.unwrap();
    // The second segment's sample at 0.8 + 0.15 s: the first had done 200 at 0.8 s and 300 at 1.1 s.
    let sample = at(base + 0.95);
    assert_eq!(sample.segments[&first.segment].requests_ok, 250);
    assert_eq!(sample.segments[&second.segment].requests_ok, 200);
    assert_eq!(sample.requests_ok, 450);
    // At 0.5 s the first segment's load begins, but the second is still warming up until 0.65 s.
    assert_eq!(at(base + 0.5).phase, Phase::Warmup);
    assert_eq!(at(base + 0.65).phase, Phase::Load);
    // Each checkpoint is the later segment's, when both have finished the round.
    for sample in merged.iter().filter(|s| s.settled) {
        let own = second.samples.iter().find(|s| s.unix_time_s == sample.unix_time_s);
        assert!(own.is_some_and(|own| own.settled), "{sample:?}");
    }
    assert_eq!(merged[0].elapsed_s, 0.0);
    assert!(merged.windows(2).all(|w| w[0].elapsed_s <= w[1].elapsed_s), "in wall-clock order");
}

#[test]
fn merged_latencies_have_exactly_the_percentiles_of_one_histogram_of_every_value() {
    let mut runs: Vec<SegmentRun> = (1..=3).map(|index| segment(index, 3, 0.0)).collect();
    for run in &mut runs {
        run.latency.insert("sent".into(), histogram());
    }
    let mut every = histogram();
    // A spread of values over five orders of magnitude, dealt to the segments unevenly.
    let mut state: u64 = 17;
    for _ in 0..30_000 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let latency = 50 + (state >> 33) % 10u64.pow(1 + (state >> 20) as u32 % 5);
        runs[((state >> 40) % 5).min(2) as usize].latency.get_mut("sent").unwrap().record(latency).unwrap();
        every.record(latency).unwrap();
    }
    let merged = Split::check(runs).unwrap().merge().unwrap();
    assert_eq!(merged.summary.latency_us, Some(Latency::of(&every)));
    assert_eq!(merged.latency.sent, every, "bucket for bucket");
    assert_eq!(merged.summary.latency_from_intended_us, None, "no segment measured it");
}

#[test]
fn what_is_not_every_segment_of_one_split_is_refused_naming_the_directory() {
    let error = check_error(vec![segment(1, 2, 0.0), segment(1, 2, 0.0)]);
    assert_eq!(error, "host-1: segment 1/2 again (also host-1)");
    let error = check_error(vec![segment(1, 3, 0.0), segment(3, 3, 0.0)]);
    assert_eq!(error, "segment 2/3 of leak missing: give every segment's run directory");
    let error = check_error(vec![segment(1, 2, 0.0), segment(2, 3, 0.0)]);
    assert_eq!(error, "host-2: segment 2/3, but host-1 is segment 1/2");

    let mut other = segment(2, 2, 0.0);
    other.summary.scenario = "reused".into();
    assert_eq!(check_error(vec![segment(1, 2, 0.0), other]), "host-2: scenario reused, not leak as in host-1");

    let mut other = segment(2, 2, 0.0);
    other.record.plan = match other.record.plan {
        RecordedPlan::Scenario { scenario_file, scenario_text, segment, .. } => RecordedPlan::Scenario {
            scenario_file,
            scenario_text,
            overrides: Overrides::default().with(Opt::Requests, Value::Count(500)),
            segment,
        },
        plan => plan,
    };
    let error = check_error(vec![segment(1, 2, 0.0), other]);
    assert!(error.starts_with("host-2: scenario leak with other settings than in host-1"), "{error}");

    let mut other = segment(2, 2, 0.0);
    other.summary.target.kind = TargetKind::Spawned;
    let error = check_error(vec![segment(1, 2, 0.0), other]);
    assert_eq!(error, "host-2: the run started its own server: the segments of a split load one --target");

    let mut other = segment(2, 2, 0.0);
    other.summary.target.address = Some("10.0.0.9:50051".into());
    let error = check_error(vec![segment(1, 2, 0.0), other]);
    assert!(error.starts_with("host-2: target 10.0.0.9:50051, not 127.0.0.1:1 as in host-1"), "{error}");
}

#[test]
fn a_split_stopped_early_by_one_segment_says_why() {
    use leaklab_engine::halt::StopReason::*;
    assert_eq!(stopped_by([Requests, Interrupted, Requests].into_iter()), Interrupted);
    assert_eq!(stopped_by([Duration, Requests].into_iter()), Duration);
}
