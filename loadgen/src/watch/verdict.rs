//! The verdict of a watched process, over time: it has no requests the
//! harness counts and no allocator the harness can read, so its RSS is judged
//! against seconds, with the same Theil–Sen slope and interval as a run's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::units::human_bytes;
use crate::stats::trend::{Trend, theil_sen};
use crate::verdict::VerdictKind;

/// At most this many points go into a slope: Theil–Sen compares every pair,
/// and ten minutes of samples at 100 ms would be 18 million pairs.
const MAX_POINTS: usize = 240;
/// Fewer points than this cannot decide.
const MIN_POINTS: usize = 10;

/// A watched process's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimeVerdict {
    pub kind: VerdictKind,
    /// RSS growth in bytes per second (Theil–Sen), with its 95% interval; absent with too few samples.
    pub rss_bytes_per_s: Option<Trend>,
    /// Open TCP connections gained per second, with its 95% interval.
    pub connections_per_s: Option<Trend>,
    /// Growth at or below this many bytes per second is not a leak.
    pub tolerance_bytes_per_s: f64,
    /// Why, in sentences.
    pub reasons: Vec<String>,
}

/// Evenly spaced points of `points`, at most [`MAX_POINTS`], first and last kept.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    (0..MAX_POINTS).map(|i| points[i * (points.len() - 1) / (MAX_POINTS - 1)]).collect()
}

/// Judges `rss` and `connections`, each `(seconds, value)` in time order,
/// by the same rules as a run's verdict: NO LEAK when the interval's upper
/// bound is within the tolerance, LEAK when its lower bound is above it,
/// BOUNDED when the first half grew and the second half is within the
/// tolerance, INCONCLUSIVE otherwise.
pub fn judge(rss: &[(f64, f64)], connections: &[(f64, f64)], tolerance_bytes_per_s: f64) -> TimeVerdict {
    let rss = thin(rss);
    let full = (rss.len() >= MIN_POINTS).then(|| theil_sen(&rss)).flatten();
    let connections_per_s = (connections.len() >= MIN_POINTS).then(|| theil_sen(&thin(connections))).flatten();
    let middle = rss.len() / 2;
    let early = (rss.len() >= 2 * MIN_POINTS).then(|| theil_sen(&rss[..=middle])).flatten();
    let late = (rss.len() >= 2 * MIN_POINTS).then(|| theil_sen(&rss[middle..])).flatten();
    let per_s = |bytes: f64| format!("{}/s", human_bytes(bytes));
    let mut reasons = Vec::new();
    let kind = match full {
        None => {
            reasons.push(format!("Only {} samples; a verdict needs at least {MIN_POINTS}.", rss.len()));
            VerdictKind::Inconclusive
        }
        Some(full) if full.ci_high <= tolerance_bytes_per_s => {
            reasons.push(format!(
                "RSS changed by {} (95% interval up to {}), within the tolerance of {}.",
                per_s(full.slope),
                per_s(full.ci_high),
                per_s(tolerance_bytes_per_s)
            ));
            VerdictKind::NoLeak
        }
        Some(_)
            if late.is_some_and(|late| late.ci_high <= tolerance_bytes_per_s)
                && early.is_some_and(|early| early.slope > tolerance_bytes_per_s) =>
        {
            let (early, late) = (early.expect("checked"), late.expect("checked"));
            reasons.push(format!(
                "RSS grew by {} in the first half, then by {} (95% interval up to {}): it levelled off.",
                per_s(early.slope),
                per_s(late.slope),
                per_s(late.ci_high)
            ));
            VerdictKind::Bounded
        }
        Some(full) if full.ci_low > tolerance_bytes_per_s => {
            reasons.push(format!(
                "RSS grew by {} (95% interval {} to {}), above the tolerance of {}.",
                per_s(full.slope),
                per_s(full.ci_low),
                per_s(full.ci_high),
                per_s(tolerance_bytes_per_s)
            ));
            VerdictKind::Leak
        }
        Some(full) => {
            reasons.push(format!(
                "The 95% interval, {} to {}, contains the tolerance of {}.",
                per_s(full.ci_low),
                per_s(full.ci_high),
                per_s(tolerance_bytes_per_s)
            ));
            VerdictKind::Inconclusive
        }
    };
    if let Some(trend) = connections_per_s.filter(|trend| trend.ci_low > 0.0) {
        reasons.push(format!("Open TCP connections grew by {:.1} per second.", trend.slope));
    }
    TimeVerdict { kind, rss_bytes_per_s: full, connections_per_s, tolerance_bytes_per_s, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f(t)` sampled every 100 ms for `seconds`, with deterministic ±`noise` bytes.
    fn series(seconds: f64, noise: f64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..(seconds * 10.0) as usize)
            .map(|i| {
                let t = i as f64 / 10.0;
                let wobble = ((i * 7919 % 101) as f64 / 50.0 - 1.0) * noise;
                (t, f(t) + wobble)
            })
            .collect()
    }

    #[test]
    fn a_steady_climb_is_a_leak_with_its_rate() {
        // 200 leaked channels a second at 90 KB each.
        let verdict = judge(&series(20.0, 500_000.0, |t| 9e6 + t * 18e6), &[], 65_536.0);
        assert_eq!(verdict.kind, VerdictKind::Leak, "{verdict:?}");
        let slope = verdict.rss_bytes_per_s.unwrap().slope;
        assert!((slope - 18e6).abs() < 0.5e6, "{slope}");
    }

    #[test]
    fn a_flat_process_is_no_leak() {
        let verdict = judge(&series(5.0, 40_000.0, |_| 1.2e6), &series(5.0, 0.0, |_| 0.0), 65_536.0);
        assert_eq!(verdict.kind, VerdictKind::NoLeak, "{verdict:?}");
        assert!(verdict.reasons[0].starts_with("RSS changed by"), "{verdict:?}");
    }

    #[test]
    fn a_curve_that_levels_off_is_bounded() {
        // 50 MB filled with a 2 s time constant: all but 30 KB of it in the first 15 s.
        let verdict = judge(&series(30.0, 20_000.0, |t| 50e6 * (1.0 - (-t / 2.0).exp())), &[], 65_536.0);
        assert_eq!(verdict.kind, VerdictKind::Bounded, "{verdict:?}");
    }

    #[test]
    fn too_few_samples_cannot_decide_and_long_watches_are_thinned() {
        assert_eq!(judge(&series(0.5, 0.0, |_| 1.0), &[], 1.0).kind, VerdictKind::Inconclusive);
        let long = judge(&series(600.0, 0.0, |t| t * 1e6), &[], 1.0);
        assert_eq!(long.rss_bytes_per_s.unwrap().points as usize, MAX_POINTS);
        assert_eq!(long.kind, VerdictKind::Leak);
    }

    #[test]
    fn growing_connections_are_said() {
        let verdict = judge(&series(10.0, 0.0, |t| t * 1e6), &series(10.0, 0.0, |t| (t * 200.0).floor()), 1.0);
        assert!(
            verdict.reasons.iter().any(|r| r.contains("Open TCP connections grew by 200.0 per second")),
            "{verdict:?}"
        );
    }
}
