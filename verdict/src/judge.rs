//! The judge: a [`Series`] and a tolerance in, a [`ProcessVerdict`] out.

use std::collections::{BTreeMap, BTreeSet};

use super::{Axis, Basis, Count, MIN_ROUNDS, Point, ProcessVerdict, Reason, Recovery, Series, VerdictKind};
use crate::Expectation;
use crate::stats::trend::{SignTest, Trend, theil_sen};

/// Fewest completed rounds a verdict is given on (with four checkpoints the
/// interval spans every pairwise slope).
pub const MIN_VERDICT_ROUNDS: u32 = 3;
/// Fewest samples a verdict is given on: samples taken as a process runs are
/// noisier than checkpoints at rest.
pub const MIN_SAMPLES: u32 = 10;
/// At most this many samples go into a slope: Theil–Sen compares every pair,
/// and ten minutes of samples at 100 ms would be 18 million pairs.
pub const MAX_POINTS: usize = 240;
/// The most rounds "rounds to decide" will suggest; beyond it, more rounds will not help.
const MAX_SUGGESTED_ROUNDS: u32 = 1_000;
/// Rule 7: a count held that climbs by at least this many per request, over all the points and the late
/// half, decides a leak. A leaked channel keeps one connection; a bounded pool or a reaped connection
/// levels off, and a count that only some requests leave behind climbs by less.
pub(crate) const DECIDING_COUNT_PER_REQUEST: f64 = 0.5;

/// What a slope says against a tolerance, before any wording, in the order
/// the rules apply. `early` and `late` are the slopes of the two halves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlopeRule {
    /// The whole interval is at or below the tolerance: no leak.
    Within(Trend),
    /// The first half grew, the second half is within the tolerance: bounded.
    LevelledOff { early: Trend, late: Trend },
    /// The whole interval is above the tolerance: a leak.
    Above(Trend),
    /// The second half's interval is above the tolerance: a leak that started late.
    LateAbove(Trend),
    /// The interval straddles the tolerance.
    Undecided(Trend),
}

impl SlopeRule {
    pub fn of(full: Trend, halves: Option<(Trend, Trend)>, tolerance: f64) -> SlopeRule {
        match halves {
            _ if full.ci_high <= tolerance => SlopeRule::Within(full),
            Some((early, late)) if late.ci_high <= tolerance && early.slope > tolerance => {
                SlopeRule::LevelledOff { early, late }
            }
            _ if full.ci_low > tolerance => SlopeRule::Above(full),
            Some((_, late)) if late.ci_low > tolerance => SlopeRule::LateAbove(late),
            _ => SlopeRule::Undecided(full),
        }
    }
}

/// The early and late halves' slopes, which share the middle point; `None` with fewer than four points.
fn halves(points: &[(f64, f64)]) -> Option<(Trend, Trend)> {
    if points.len() < 4 {
        return None;
    }
    let middle = (points.len() - 1) / 2;
    Some((theil_sen(&points[..=middle])?, theil_sen(&points[middle..])?))
}

/// Evenly spaced points of `points`, at most [`MAX_POINTS`], first and last kept.
fn thin(points: &[Point]) -> Vec<Point> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    (0..MAX_POINTS).map(|i| points[i * (points.len() - 1) / (MAX_POINTS - 1)].clone()).collect()
}

/// Judges one process from `series`, by the rules in the module's documentation.
pub fn judge(series: &Series, tolerance: f64, expected: Option<Expectation>) -> ProcessVerdict {
    let evidence = Evidence::of(series);
    let Decision { kind, mut reasons, rounds_to_decide } = decide(series, &evidence, tolerance);
    remarks(series, &evidence, kind, &mut reasons);
    let cooldown = recovery(&series.points, series.after_cooldown.as_ref(), tolerance);
    reasons.extend(cooldown.as_ref().map(cooldown_reason));
    let Evidence { points, full, halves, connections, fds, counters, steps, .. } = evidence;
    let per_request = |value: f64| (series.axis == Axis::Request).then_some(value);
    ProcessVerdict {
        kind,
        quantity: series.quantity,
        axis: series.axis,
        basis: series.basis,
        slope_bytes_per_request: full.and_then(|t| per_request(t.slope)),
        ci_low: full.and_then(|t| per_request(t.ci_low)),
        ci_high: full.and_then(|t| per_request(t.ci_high)),
        trend: full,
        tolerance,
        rounds: (series.basis == Basis::Checkpoints).then_some(steps),
        late: halves.map(|(_, late)| late),
        connections,
        fds,
        counters,
        rounds_to_decide,
        cooldown,
        expected,
        expectation_met: expected.map(|expected| kind.meets(expected)),
        reasons,
        points: points.into_iter().chain(series.after_cooldown.clone()).collect(),
    }
}

/// Rule 8: `heap`, a garbage-collected process's verdict on its live heap, made a LEAK when `native`, the
/// verdict on what its runtime holds outside the heap, is a LEAK by its slope over all the points (rule 4's
/// first half). A late half above the tolerance alone does not decide it: a pool's chunk or a thread
/// started late in a run is one step, not a leak the heap hides.
pub fn with_native(mut heap: ProcessVerdict, native: &ProcessVerdict) -> ProcessVerdict {
    let by_slope = native.reasons.iter().find_map(|reason| match *reason {
        Reason::Above { slope, ci_low, .. } => Some((slope, ci_low)),
        _ => None,
    });
    let Some((slope, ci_low)) = by_slope.filter(|_| native.kind == VerdictKind::Leak) else { return heap };
    if heap.kind != VerdictKind::Leak {
        heap.kind = VerdictKind::Leak;
        heap.reasons.insert(0, Reason::NativeDecided { slope, ci_low });
        heap.expectation_met = heap.expected.map(|expected| VerdictKind::Leak.meets(expected));
    }
    heap
}

/// What the rules read of a series: the points judged and their statistics.
#[derive(Debug)]
struct Evidence {
    /// The checkpoints, or the samples thinned to at most [`MAX_POINTS`].
    points: Vec<Point>,
    /// Whether every point has a figure for the quantity.
    has_figures: bool,
    /// The slope over all points, and over each half.
    full: Option<Trend>,
    halves: Option<(Trend, Trend)>,
    connections: SignTest,
    fds: SignTest,
    counters: BTreeMap<String, SignTest>,
    /// Steps between points: with checkpoints, the rounds completed.
    steps: u32,
}

impl Evidence {
    fn of(series: &Series) -> Evidence {
        let points = match series.basis {
            Basis::Checkpoints => series.points.clone(),
            Basis::Samples => thin(&series.points),
        };
        let values: Option<Vec<(f64, f64)>> =
            points.iter().map(|point| point.value.map(|value| (point.at, value as f64))).collect();
        Evidence {
            has_figures: values.is_some(),
            full: values.as_deref().and_then(theil_sen),
            halves: values.as_deref().and_then(halves),
            connections: SignTest::of(&points.iter().filter_map(|p| p.connections).collect::<Vec<_>>()),
            fds: SignTest::of(&points.iter().filter_map(|p| p.fds).collect::<Vec<_>>()),
            counters: counter_tests(&points),
            steps: points.len().saturating_sub(1) as u32,
            points,
        }
    }
}

/// A verdict's kind and the reasons for it; for an undecided slope at checkpoints, the rounds that
/// would decide it.
#[derive(Debug)]
struct Decision {
    kind: VerdictKind,
    reasons: Vec<Reason>,
    rounds_to_decide: Option<u32>,
}

impl Decision {
    fn of(kind: VerdictKind, reason: Reason) -> Decision {
        Decision { kind, reasons: vec![reason], rounds_to_decide: None }
    }
}

/// The rules in order: enough points (1), the slope against the tolerance (2–4), then for a slope that
/// straddles it the counts (5), and otherwise how many rounds would decide (6).
fn decide(series: &Series, evidence: &Evidence, tolerance: f64) -> Decision {
    let full = match judgeable(series, evidence) {
        Ok(full) => full,
        Err(reason) => return Decision::of(VerdictKind::Inconclusive, reason),
    };
    match SlopeRule::of(full, evidence.halves, tolerance) {
        SlopeRule::Within(full) => {
            count_decides(series, evidence, || Reason::Within { slope: full.slope, ci_high: full.ci_high })
                .unwrap_or_else(|| {
                    Decision::of(VerdictKind::NoLeak, Reason::Within { slope: full.slope, ci_high: full.ci_high })
                })
        }
        SlopeRule::LevelledOff { early, late } => {
            let levelled =
                || Reason::LevelledOff { early_slope: early.slope, late_slope: late.slope, late_ci_high: late.ci_high };
            count_decides(series, evidence, levelled).unwrap_or_else(|| Decision::of(VerdictKind::Bounded, levelled()))
        }
        SlopeRule::Above(full) => Decision::of(
            VerdictKind::Leak,
            Reason::Above { slope: full.slope, ci_low: full.ci_low, ci_high: full.ci_high },
        ),
        SlopeRule::LateAbove(late) => {
            Decision::of(VerdictKind::Leak, Reason::LateAbove { slope: late.slope, ci_low: late.ci_low })
        }
        SlopeRule::Undecided(full) => match count_rose(evidence) {
            Some(reason) => Decision::of(VerdictKind::Leak, reason),
            None => undecided(series, evidence, full, tolerance),
        },
    }
}

/// Rule 1: the slope over all points, or why there is none to judge.
fn judgeable(series: &Series, evidence: &Evidence) -> Result<Trend, Reason> {
    let (have, need) = match series.basis {
        Basis::Checkpoints => (evidence.steps, MIN_VERDICT_ROUNDS),
        Basis::Samples => (evidence.points.len() as u32, MIN_SAMPLES),
    };
    match evidence.full {
        _ if have < need => Err(Reason::TooFew { have, need }),
        None if !evidence.has_figures => Err(Reason::NoFigures),
        None => Err(Reason::NoSpread),
        Some(full) => Ok(full),
    }
}

/// Rule 5: open connections or fds that rose, or else the counter that rose most surely.
fn count_rose(evidence: &Evidence) -> Option<Reason> {
    let Evidence { connections, fds, steps, .. } = *evidence;
    if connections.grows() || fds.grows() {
        let (count, test) = if connections.grows() { (Count::Connections, connections) } else { (Count::Fds, fds) };
        return Some(Reason::CountRose { count, increases: test.increases, steps, p_value: test.p_value });
    }
    let counters = evidence.counters.iter().filter(|(_, test)| test.grows());
    let risen = counters.min_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value));
    risen.map(|(name, test)| counter_rose(name, test))
}

/// Rule 7: a leak decided by a count of things held that climbs by about one per request and stays
/// climbing (see [`DECIDING_COUNT_PER_REQUEST`]), whatever the memory said (`memory`, kept as a reason
/// after it). Counts of bytes (`*_bytes`) are not counts of things held.
fn count_decides(series: &Series, evidence: &Evidence, memory: impl Fn() -> Reason) -> Option<Decision> {
    if series.axis != Axis::Request {
        return None;
    }
    let count = |value: &dyn Fn(&Point) -> Option<u64>| -> Vec<(f64, f64)> {
        evidence.points.iter().filter_map(|p| Some((p.at, value(p)? as f64))).collect()
    };
    let mut counts = vec![("connections".to_owned(), evidence.connections, count(&|p| p.connections))];
    for (name, test) in evidence.counters.iter().filter(|(name, _)| !name.ends_with("_bytes")) {
        counts.push((name.clone(), *test, count(&|p| p.counters.get(name).copied())));
    }
    let deciding = counts.into_iter().filter(|(_, test, _)| test.grows()).filter_map(|(name, _, values)| {
        let (full, (_, late)) = (theil_sen(&values)?, halves(&values)?);
        let decides = full.slope >= DECIDING_COUNT_PER_REQUEST && late.slope >= DECIDING_COUNT_PER_REQUEST;
        decides.then_some(Reason::CountDecided { name, per_request: full.slope, late_per_request: late.slope })
    });
    let steepest = deciding.max_by(|a, b| slope_of(a).total_cmp(&slope_of(b)))?;
    Some(Decision { kind: VerdictKind::Leak, reasons: vec![steepest, memory()], rounds_to_decide: None })
}

fn slope_of(reason: &Reason) -> f64 {
    match reason {
        Reason::CountDecided { per_request, .. } => *per_request,
        _ => 0.0,
    }
}

/// Rule 6: the interval straddles the tolerance; at checkpoints, about how many rounds would decide.
fn undecided(series: &Series, evidence: &Evidence, full: Trend, tolerance: f64) -> Decision {
    let mut reasons = vec![Reason::Straddles { ci_low: full.ci_low, ci_high: full.ci_high }];
    let mut rounds_to_decide = None;
    if series.basis == Basis::Checkpoints {
        rounds_to_decide = rounds_needed(&full, tolerance);
        reasons.push(match rounds_to_decide {
            Some(total) => Reason::RoundsToDecide { more: total.saturating_sub(evidence.steps), total },
            None => Reason::OnTheTolerance,
        });
    }
    Decision { kind: VerdictKind::Inconclusive, reasons, rounds_to_decide }
}

/// What is reported beside the verdict: a run judged on fewer rounds than planned, and connections or
/// counters that rose without deciding it.
fn remarks(series: &Series, evidence: &Evidence, kind: VerdictKind, reasons: &mut Vec<Reason>) {
    let Evidence { connections, steps, .. } = *evidence;
    if series.basis == Basis::Checkpoints && (MIN_VERDICT_ROUNDS..MIN_ROUNDS).contains(&steps) {
        reasons.push(Reason::FewerRounds { rounds: steps, full: MIN_ROUNDS });
    }
    if kind != VerdictKind::Leak && connections.grows() {
        reasons.push(Reason::ConnectionsRose { increases: connections.increases, steps });
    }
    for (name, test) in evidence.counters.iter().filter(|(_, test)| test.grows()) {
        let rose = counter_rose(name, test);
        if !reasons.contains(&rose) {
            reasons.push(rose);
        }
    }
}

/// The cool-down check, beside the verdict: did the process give back what the rounds took?
fn cooldown_reason(cooldown: &Recovery) -> Reason {
    if cooldown.returned_to_baseline {
        return Reason::Returned;
    }
    Reason::Kept {
        allocated_kept: cooldown.allocated_grown_bytes.zip(cooldown.allocated_returned_bytes).map(|(g, r)| g - r),
        allocated_grown: cooldown.allocated_grown_bytes,
        connections_kept: cooldown.connections_grown - cooldown.connections_returned,
        connections_grown: cooldown.connections_grown,
    }
}

/// `steps` are the counter's own: a foreign client's counter may start after the first point.
fn counter_rose(name: &str, test: &SignTest) -> Reason {
    let steps = test.increases + test.decreases + test.unchanged;
    Reason::CounterRose { name: name.to_owned(), increases: test.increases, steps, p_value: test.p_value }
}

/// The sign test of each counter over the points that carry it.
fn counter_tests(points: &[Point]) -> BTreeMap<String, SignTest> {
    let names: BTreeSet<&String> = points.iter().flat_map(|p| p.counters.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let values: Vec<u64> = points.iter().filter_map(|p| p.counters.get(name).copied()).collect();
            (name.clone(), SignTest::of(&values))
        })
        .collect()
}

/// About how many rounds in all would put the interval clear of the
/// tolerance, if the slope and the noise stay as they are. With checkpoints
/// evenly spaced, the interval's half-width shrinks like `n^(−3/2)`.
fn rounds_needed(trend: &Trend, tolerance: f64) -> Option<u32> {
    let n = f64::from(trend.points);
    let (half_width, gap) = if trend.slope > tolerance {
        (trend.slope - trend.ci_low, trend.slope - tolerance)
    } else {
        (trend.ci_high - trend.slope, tolerance - trend.slope)
    };
    if gap <= 0.0 || half_width <= 0.0 {
        return None;
    }
    let points = (n * (half_width / gap).powf(2.0 / 3.0)).ceil();
    let rounds = (points - 1.0).max(n);
    (rounds <= f64::from(MAX_SUGGESTED_ROUNDS)).then_some(rounds as u32)
}

fn recovery(rounds: &[Point], end: Option<&Point>, tolerance: f64) -> Option<Recovery> {
    let (first, last, end) = (rounds.first()?, rounds.last()?, end?);
    let diff = |a: Option<u64>, b: Option<u64>| Some(a? as i64 - b? as i64);
    let measured = (last.at - first.at).max(1.0);
    let kept = diff(end.value, first.value);
    Some(Recovery {
        allocated_grown_bytes: diff(last.value, first.value),
        allocated_returned_bytes: diff(last.value, end.value),
        // A server read from its metrics endpoint counts no connections: nothing grew that leaklab saw.
        connections_grown: diff(last.connections, first.connections).unwrap_or(0),
        connections_returned: diff(last.connections, end.connections).unwrap_or(0),
        returned_to_baseline: kept.is_none_or(|kept| kept as f64 / measured <= tolerance)
            && end.connections.zip(first.connections).is_none_or(|(end, first)| end <= first),
    })
}
