//! The rules on synthetic series: checkpoints of a built-in run, and the
//! samples of a process watched from outside.

use super::*;
use crate::stats::trend::CONFIDENCE;

const TOLERANCE: f64 = 256.0;
const ROUND: u64 = 450;

/// A checkpoint series: `allocated(i)` bytes after round `i` (0: after warm-up).
fn series(rounds: u64, allocated: impl Fn(u64) -> f64, connections: impl Fn(u64) -> u64) -> Series {
    Series {
        quantity: Quantity::AllocatedBytes,
        axis: Axis::Request,
        basis: Basis::Checkpoints,
        points: (0..=rounds)
            .map(|i| Point {
                at: (400 + i * ROUND) as f64,
                value: Some(allocated(i).max(0.0) as u64),
                fds: Some(12 + connections(i)),
                connections: Some(connections(i)),
                counters: Default::default(),
            })
            .collect(),
        after_cooldown: None,
    }
}

/// A process sampled every 100 ms for `seconds`: `rss(t)` bytes with deterministic ±`noise`.
fn sampled(seconds: f64, noise: f64, rss: impl Fn(f64) -> f64, connections: impl Fn(f64) -> u64) -> Series {
    Series {
        quantity: Quantity::RssBytes,
        axis: Axis::Second,
        basis: Basis::Samples,
        points: (0..(seconds * 10.0) as usize)
            .map(|i| {
                let t = i as f64 / 10.0;
                let wobble = ((i * 7919 % 101) as f64 / 50.0 - 1.0) * noise;
                Point {
                    at: t,
                    value: Some((rss(t) + wobble).max(0.0) as u64),
                    connections: Some(connections(t)),
                    fds: Some(10),
                    counters: Default::default(),
                }
            })
            .collect(),
        after_cooldown: None,
    }
}

/// Deterministic noise in ±`amplitude` bytes.
fn noise(i: u64, seed: u64, amplitude: f64) -> f64 {
    let mixed = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let unit = (mixed >> 11) as f64 / (1u64 << 53) as f64;
    (unit * 2.0 - 1.0) * amplitude
}

#[test]
fn a_linear_leak_with_noise_is_found() {
    for seed in 0..50 {
        let checkpoints = series(8, |i| 20e6 + 60_000.0 * (i * ROUND) as f64 + noise(i, seed, 2e6), |i| i * ROUND);
        let verdict = judge(&checkpoints, TOLERANCE, Some(Expectation::Leak));
        assert_eq!(verdict.kind, VerdictKind::Leak, "seed {seed}: {verdict:#?}");
        let slope = verdict.slope_bytes_per_request.unwrap();
        assert!((slope - 60_000.0).abs() < 3_000.0, "seed {seed}: {slope}");
        assert_eq!(verdict.expectation_met, Some(true));
        assert!(verdict.connections.grows());
    }
}

#[test]
fn flat_noise_after_a_warmup_step_is_not_a_leak() {
    for seed in 0..50 {
        // The first round still pays 400 KB of warm-up (buffers, caches); then ±20 KB noise.
        let checkpoints = series(8, |i| 20e6 + if i > 0 { 400_000.0 } else { 0.0 } + noise(i, seed, 20_000.0), |_| 1);
        let verdict = judge(&checkpoints, TOLERANCE, Some(Expectation::NoLeak));
        assert!(
            matches!(verdict.kind, VerdictKind::NoLeak | VerdictKind::Bounded),
            "seed {seed}: {:?} {:?}",
            verdict.kind,
            verdict.reasons
        );
        assert!(!verdict.connections.grows());
    }
}

#[test]
fn flat_noise_is_no_leak() {
    for seed in 0..50 {
        let checkpoints = series(8, |i| 20e6 + noise(i, seed, 20_000.0), |_| 1);
        let verdict = judge(&checkpoints, TOLERANCE, Some(Expectation::NoLeak));
        assert_eq!(verdict.kind, VerdictKind::NoLeak, "seed {seed}: {:?}", verdict.reasons);
        assert_eq!(verdict.expectation_met, Some(true));
    }
}

#[test]
fn a_saturating_curve_is_bounded() {
    for seed in 0..50 {
        // A cache that fills with 5 MB, most of it in the first rounds.
        let checkpoints =
            series(8, |i| 20e6 + 5e6 * (1.0 - (-(i as f64) / 1.2).exp()) + noise(i, seed, 5_000.0), |_| 4);
        let verdict = judge(&checkpoints, TOLERANCE, Some(Expectation::Bounded));
        assert_eq!(verdict.kind, VerdictKind::Bounded, "seed {seed}: {:#?}", verdict);
        assert!(verdict.late.unwrap().ci_high <= TOLERANCE);
    }
}

#[test]
fn too_few_rounds_are_inconclusive() {
    let checkpoints = series(2, |i| 20e6 + 60_000.0 * (i * ROUND) as f64, |i| i);
    let verdict = judge(&checkpoints, TOLERANCE, Some(Expectation::Leak));
    assert_eq!(verdict.kind, VerdictKind::Inconclusive);
    assert_eq!(verdict.rounds, Some(2));
    assert_eq!(verdict.expectation_met, Some(false));
    assert_eq!(verdict.reasons[0], Reason::TooFew { have: 2, need: MIN_VERDICT_ROUNDS });
}

#[test]
fn a_run_cut_short_after_a_few_rounds_is_still_judged() {
    // A cap stopped the leak after 4 rounds: every pairwise slope is far above the tolerance.
    let checkpoints = series(4, |i| 20e6 + 60_000.0 * (i * ROUND) as f64 + noise(i, 3, 1e6), |i| i * ROUND);
    let verdict = judge(&checkpoints, TOLERANCE, Some(Expectation::Leak));
    assert_eq!(verdict.kind, VerdictKind::Leak, "{:?}", verdict.reasons);
    assert!(verdict.reasons.contains(&Reason::FewerRounds { rounds: 4, full: MIN_ROUNDS }), "{:?}", verdict.reasons);
}

#[test]
fn a_slope_near_the_tolerance_is_inconclusive_and_says_how_many_rounds_would_decide() {
    // 350 B/request with ±150 KB noise: the interval straddles 256 B.
    let wobble = [0.0, 150e3, -150e3, 120e3, -100e3, 150e3, -150e3];
    let checkpoints = series(6, |i| 20e6 + 350.0 * (i * ROUND) as f64 + wobble[i as usize], |_| 1);
    let verdict = judge(&checkpoints, TOLERANCE, None);
    assert_eq!(verdict.kind, VerdictKind::Inconclusive, "{verdict:#?}");
    let total = verdict.rounds_to_decide.expect("a slope away from the tolerance can be decided");
    assert!(total > 6, "{total}");
    assert!(verdict.reasons.contains(&Reason::RoundsToDecide { more: total - 6, total }), "{:?}", verdict.reasons);
}

#[test]
fn without_allocator_figures_a_verdict_cannot_be_given() {
    let mut checkpoints = series(8, |_| 1.0, |_| 1);
    checkpoints.points[3].value = None;
    let verdict = judge(&checkpoints, TOLERANCE, None);
    assert_eq!(verdict.kind, VerdictKind::Inconclusive);
    assert_eq!(verdict.slope_bytes_per_request, None);
    assert_eq!(verdict.reasons[0], Reason::NoFigures);
}

#[test]
fn connections_rising_every_round_are_a_leak_even_when_bytes_are_noisy() {
    // 300 B/request, buried in ±1 MB of noise, but one connection more every round.
    let checkpoints = series(8, |i| 20e6 + 300.0 * (i * ROUND) as f64 + noise(i, 7, 1e6), |i| i);
    let verdict = judge(&checkpoints, TOLERANCE, None);
    assert_eq!(verdict.kind, VerdictKind::Leak, "{verdict:#?}");
    assert!(
        matches!(verdict.reasons[0], Reason::CountRose { count: Count::Connections, increases: 8, steps: 8, .. }),
        "{:?}",
        verdict.reasons
    );
}

/// `series` with a counter `name` at `count(i)` on every point.
fn counting(mut series: Series, name: &str, count: impl Fn(u64) -> u64) -> Series {
    for (i, point) in series.points.iter_mut().enumerate() {
        point.counters.insert(name.to_owned(), count(i as u64));
    }
    series
}

#[test]
fn a_counter_rising_every_round_is_a_leak_when_bytes_cannot_tell() {
    // Streams held on one connection: 300 B/request lost in ±1 MB of noise, one connection throughout.
    let noisy = series(8, |i| 20e6 + 300.0 * (i * ROUND) as f64 + noise(i, 7, 1e6), |_| 1);
    let verdict = judge(&counting(noisy.clone(), "streams", |i| i * ROUND), TOLERANCE, None);
    assert_eq!(verdict.kind, VerdictKind::Leak, "{verdict:#?}");
    assert_eq!(
        verdict.reasons[0],
        Reason::CounterRose {
            name: "streams".into(),
            increases: 8,
            steps: 8,
            p_value: verdict.counters["streams"].p_value
        }
    );
    assert!(verdict.counters["streams"].grows());

    // The same counter going up and down as calls come and go decides nothing.
    let wobbling = judge(&counting(noisy, "goroutines", |i| 40 + i % 2 * 5), TOLERANCE, None);
    assert_eq!(wobbling.kind, VerdictKind::Inconclusive, "{wobbling:#?}");
    assert!(!wobbling.reasons.iter().any(|r| matches!(r, Reason::CounterRose { .. })));
}

#[test]
fn a_counter_that_rose_beside_flat_memory_is_noted_not_decisive() {
    let flat = counting(series(8, |_| 1e6, |_| 1), "goroutines", |i| 6 + i);
    let verdict = judge(&flat, TOLERANCE, None);
    assert_eq!(verdict.kind, VerdictKind::NoLeak);
    assert!(matches!(verdict.reasons[0], Reason::Within { .. }), "{:?}", verdict.reasons);
    assert!(
        matches!(&verdict.reasons[1], Reason::CounterRose { name, increases: 8, .. } if name == "goroutines"),
        "{:?}",
        verdict.reasons
    );
}

#[test]
fn a_count_held_that_climbs_one_per_request_decides_a_leak_whatever_the_memory_says() {
    // A leaked channel per request whose memory the runtime hides: flat bytes, one more connection per request.
    let verdict = judge(&series(8, |_| 1e6, |i| i * ROUND), TOLERANCE, None);
    assert_eq!(verdict.kind, VerdictKind::Leak, "{verdict:#?}");
    assert!(
        matches!(&verdict.reasons[0], Reason::CountDecided { name, per_request, late_per_request }
            if name == "connections" && (*per_request - 1.0).abs() < 1e-9 && (*late_per_request - 1.0).abs() < 1e-9),
        "{:?}",
        verdict.reasons
    );
    assert!(
        matches!(verdict.reasons[1], Reason::Within { .. }),
        "the memory's own finding follows: {:?}",
        verdict.reasons
    );
    // The steepest count decides: four goroutines per leaked connection.
    let goroutines =
        judge(&counting(series(8, |_| 1e6, |i| i * ROUND), "goroutines", |i| 4 * i * ROUND), TOLERANCE, None);
    assert!(
        matches!(&goroutines.reasons[0], Reason::CountDecided { name, .. } if name == "goroutines"),
        "{:?}",
        goroutines.reasons
    );

    // Not deciding: a count of bytes, a pool that filled up and stayed, a count only some requests leave.
    for (name, count) in [
        ("live_heap_bytes", &(|i: u64| 1_000 * i * ROUND) as &dyn Fn(u64) -> u64),
        ("pooled", &|i: u64| (i * ROUND).min(3 * ROUND)),
        ("retries", &|i: u64| i * ROUND / 4),
    ] {
        let verdict = judge(&counting(series(8, |_| 1e6, |_| 1), name, count), TOLERANCE, None);
        assert_eq!(verdict.kind, VerdictKind::NoLeak, "{name}: {:?}", verdict.reasons);
    }
    // Per second, a count has no per-request rate to judge.
    let per_second = sampled(20.0, 0.0, |_| 1e6, |t| (t * 100.0) as u64);
    assert!(!judge(&per_second, TOLERANCE, None).reasons.iter().any(|r| matches!(r, Reason::CountDecided { .. })));
}

#[test]
fn the_cooldown_check_sees_what_was_given_back() {
    let mut kept = series(8, |i| 20e6 + 60_000.0 * (i * ROUND) as f64, |i| i * ROUND);
    let last = kept.points.last().unwrap().clone();
    kept.after_cooldown = Some(last.clone());
    let recovery = judge(&kept, TOLERANCE, None).cooldown.unwrap();
    assert_eq!(recovery.allocated_grown_bytes, Some(60_000 * 8 * ROUND as i64));
    assert_eq!(recovery.allocated_returned_bytes, Some(0));
    assert_eq!((recovery.connections_grown, recovery.connections_returned), (8 * ROUND as i64, 0));
    assert!(!recovery.returned_to_baseline);

    let first = kept.points[0].clone();
    kept.after_cooldown = Some(Point {
        at: last.at,
        value: first.value.map(|b| b + 1_000),
        fds: Some(12),
        connections: Some(0),
        counters: Default::default(),
    });
    let verdict = judge(&kept, TOLERANCE, None);
    assert!(verdict.cooldown.unwrap().returned_to_baseline);
    assert_eq!(verdict.kind, VerdictKind::Leak, "giving memory back later does not undo the verdict");
}

#[test]
fn outcome_is_contradicted_before_inconclusive_before_met() {
    let leak = judge(&series(8, |i| 60_000.0 * (i * ROUND) as f64, |i| i), TOLERANCE, Some(Expectation::NoLeak));
    let flat = judge(&series(8, |_| 1e6, |_| 1), TOLERANCE, Some(Expectation::NoLeak));
    let short = judge(&series(2, |_| 1e6, |_| 1), TOLERANCE, Some(Expectation::NoLeak));
    let plan = |client, server| VerdictPlan {
        tolerance_bytes_per_request: TOLERANCE,
        tolerance_bytes_per_second: TOLERANCE,
        expect_client: client,
        expect_server: server,
        max_failed_requests: None,
    };
    let both = plan(Some(Expectation::NoLeak), Some(Expectation::NoLeak));
    let verdicts = |client: &ProcessVerdict, server: &ProcessVerdict| Verdicts {
        client: client.clone(),
        server: Some(server.clone()),
        client_native: None,
        confidence: CONFIDENCE,
    };

    assert_eq!(verdicts(&flat, &flat).outcome(&both), Outcome::Met);
    assert_eq!(verdicts(&short, &leak).outcome(&both), Outcome::Contradicted);
    assert_eq!(verdicts(&flat, &short).outcome(&both), Outcome::Inconclusive);
    // Without expectations nothing can be contradicted.
    assert_eq!(verdicts(&leak, &short).outcome(&plan(None, None)), Outcome::Met);
    // An expectation on a server that was not measured cannot be met.
    let unmeasured = Verdicts { client: flat.clone(), server: None, client_native: None, confidence: CONFIDENCE };
    assert_eq!(unmeasured.outcome(&both), Outcome::Inconclusive);
}

#[test]
fn a_steady_climb_over_time_is_a_leak_with_its_rate() {
    // 200 leaked channels a second at 90 KB each.
    let verdict = judge(&sampled(20.0, 500_000.0, |t| 9e6 + t * 18e6, |_| 1), 65_536.0, Some(Expectation::Leak));
    assert_eq!(verdict.kind, VerdictKind::Leak, "{verdict:?}");
    assert_eq!(verdict.expectation_met, Some(true));
    let trend = verdict.trend.unwrap();
    assert!((trend.slope - 18e6).abs() < 0.5e6, "{trend:?}");
    assert_eq!(verdict.slope_bytes_per_request, None, "a slope per second is not one per request");
    assert_eq!((verdict.rounds, verdict.rounds_to_decide), (None, None));
}

#[test]
fn a_flat_process_over_time_is_no_leak() {
    let verdict = judge(&sampled(5.0, 40_000.0, |_| 1.2e6, |_| 0), 65_536.0, None);
    assert_eq!(verdict.kind, VerdictKind::NoLeak, "{verdict:?}");
    assert!(matches!(verdict.reasons[0], Reason::Within { .. }), "{:?}", verdict.reasons);
}

#[test]
fn a_curve_over_time_that_levels_off_is_bounded() {
    // 50 MB filled with a 2 s time constant: all but 30 KB of it in the first 15 s.
    let verdict = judge(&sampled(30.0, 20_000.0, |t| 50e6 * (1.0 - (-t / 2.0).exp()), |_| 1), 65_536.0, None);
    assert_eq!(verdict.kind, VerdictKind::Bounded, "{verdict:?}");
}

#[test]
fn too_few_samples_cannot_decide_and_long_watches_are_thinned() {
    let short = judge(&sampled(0.5, 0.0, |_| 1.0, |_| 0), 1.0, None);
    assert_eq!(short.kind, VerdictKind::Inconclusive);
    assert_eq!(short.reasons[0], Reason::TooFew { have: 5, need: MIN_SAMPLES });
    let long = judge(&sampled(600.0, 0.0, |t| t * 1e6, |_| 0), 1.0, None);
    assert_eq!(long.trend.unwrap().points as usize, MAX_POINTS);
    assert_eq!(long.points.len(), MAX_POINTS);
    assert_eq!(long.kind, VerdictKind::Leak);
}

#[test]
fn the_same_rules_judge_samples_per_request() {
    // A foreign client that reports its requests: 90 KB of RSS per request, the axis in requests.
    let mut series = sampled(10.0, 100_000.0, |t| 9e6 + t * 200.0 * 90_000.0, |t| (t * 200.0) as u64);
    series.axis = Axis::Request;
    for point in &mut series.points {
        point.at *= 200.0;
    }
    let verdict = judge(&series, 2048.0, Some(Expectation::Leak));
    assert_eq!(verdict.kind, VerdictKind::Leak);
    let slope = verdict.slope_bytes_per_request.unwrap();
    assert!((slope - 90_000.0).abs() < 2_000.0, "{slope}");
    assert!(verdict.ci_low.unwrap() <= slope && slope <= verdict.ci_high.unwrap());
}

#[test]
fn the_worst_outcome_wins_and_a_regression_contradicts() {
    assert_eq!(Outcome::worst([Outcome::Met, Outcome::Inconclusive, Outcome::Met]), Outcome::Inconclusive);
    assert_eq!(Outcome::worst([Outcome::Inconclusive, Outcome::Contradicted]), Outcome::Contradicted);
    assert_eq!(Outcome::worst([]), Outcome::Met);
    assert_eq!(Outcome::Met.with_regression(true), Outcome::Contradicted);
    assert_eq!(Outcome::Inconclusive.with_regression(false), Outcome::Inconclusive);
}

#[test]
fn memory_outside_the_heap_that_leaks_by_its_slope_makes_the_process_leak() {
    // A client that keeps a 64 KiB buffer per request outside its heap, and 40 bytes of heap for it.
    let flat_connections = |_: u64| 2;
    let live = series(8, |i| 20e6 + 40.0 * (i * ROUND) as f64 + noise(i, 1, 2_000.0), flat_connections);
    let native = |per_request: f64| {
        let native = series(8, |i| 8e6 + per_request * (i * ROUND) as f64 + noise(i, 2, 2_000.0), flat_connections);
        judge(&Series { quantity: Quantity::NativeBytes, ..native }, TOLERANCE, None)
    };
    let heap = judge(&Series { quantity: Quantity::LiveHeapBytes, ..live }, TOLERANCE, Some(Expectation::NoLeak));
    assert_eq!(heap.kind, VerdictKind::NoLeak);

    let leaking = native(65_536.0);
    let decided = with_native(heap.clone(), &leaking);
    assert_eq!((decided.kind, decided.expectation_met), (VerdictKind::Leak, Some(false)));
    assert!(
        matches!(decided.reasons[0], Reason::NativeDecided { slope, ci_low } if (slope - 65_536.0).abs() < 100.0 && ci_low > TOLERANCE),
        "{:?}",
        decided.reasons
    );
    // The heap's own figures and reasons stay: it is the quantity judged.
    assert_eq!(
        (decided.quantity, decided.slope_bytes_per_request),
        (Quantity::LiveHeapBytes, heap.slope_bytes_per_request)
    );
    assert!(decided.reasons[1..] == heap.reasons[..]);

    // Its figures stand for the client's where it decided, the heap's elsewhere.
    let verdicts = |client: &ProcessVerdict| Verdicts {
        client: client.clone(),
        server: None,
        client_native: Some(leaking.clone()),
        confidence: CONFIDENCE,
    };
    assert_eq!(verdicts(&decided).client_figures(), &leaking);
    assert_eq!(verdicts(&heap).client_figures(), &heap);
    // A late half above the tolerance alone (one late step) does not decide it.
    let late =
        ProcessVerdict { reasons: vec![Reason::LateAbove { slope: 4_096.0, ci_low: 1_024.0 }], ..leaking.clone() };
    assert_eq!(with_native(heap.clone(), &late), heap);
    // Flat outside the heap: the heap's verdict stands.
    let flat = native(0.0);
    assert_eq!(flat.kind, VerdictKind::NoLeak);
    assert_eq!(with_native(heap.clone(), &flat), heap);
}
