//! The verdict of a watched process. It has no checkpoints at rest, so its
//! memory is judged against every sample after warm-up: against requests
//! when the command reports how many it made, else against seconds — with
//! the same Theil–Sen slope and interval as a run's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::units::human_bytes;
use crate::scenario::Expectation;
use crate::stats::trend::{Trend, theil_sen};
use crate::verdict::{SlopeRule, VerdictKind};

/// What growth is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Requests the command reported.
    Request,
    /// Seconds of the watch.
    Second,
}

impl Per {
    pub fn unit(self) -> &'static str {
        match self {
            Per::Request => "request",
            Per::Second => "s",
        }
    }
}

/// At most this many points go into a slope: Theil–Sen compares every pair,
/// and ten minutes of samples at 100 ms would be 18 million pairs.
const MAX_POINTS: usize = 240;
/// Fewer points than this cannot decide.
const MIN_POINTS: usize = 10;

/// A watched process's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimeVerdict {
    pub kind: VerdictKind,
    /// What growth is counted against: requests or seconds.
    pub per: Per,
    /// What was measured: `RSS`, or `allocated` for a process whose allocator the harness reads.
    pub measured: String,
    /// Growth in bytes per request or per second (Theil–Sen), with its 95% interval; absent with too few samples.
    pub growth: Option<Trend>,
    /// Open TCP connections gained per request or per second, with its 95% interval.
    pub connections: Option<Trend>,
    /// Growth at or below this many bytes per request or second is not a leak.
    pub tolerance: f64,
    /// What the scenario expects, if anything.
    pub expected: Option<Expectation>,
    /// Whether the verdict meets it (`null` without an expectation).
    pub expectation_met: Option<bool>,
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

/// Judges `rss` and `connections`, each `(x, value)` in order of `x`
/// (requests or seconds), by the slope rules a run's verdict uses
/// ([`SlopeRule`]).
pub fn judge(
    measured: &str,
    per: Per,
    rss: &[(f64, f64)],
    connections: &[(f64, f64)],
    tolerance: f64,
    expected: Option<Expectation>,
) -> TimeVerdict {
    let rss = thin(rss);
    let full = (rss.len() >= MIN_POINTS).then(|| theil_sen(&rss)).flatten();
    let connections_per_s = (connections.len() >= MIN_POINTS).then(|| theil_sen(&thin(connections))).flatten();
    let middle = rss.len() / 2;
    let early = (rss.len() >= 2 * MIN_POINTS).then(|| theil_sen(&rss[..=middle])).flatten();
    let late = (rss.len() >= 2 * MIN_POINTS).then(|| theil_sen(&rss[middle..])).flatten();
    let mut reasons = Vec::new();
    let kind = match full {
        None if rss.len() < MIN_POINTS => {
            reasons.push(format!("Only {} samples; a verdict needs at least {MIN_POINTS}.", rss.len()));
            VerdictKind::Inconclusive
        }
        None => {
            reasons.push(format!(
                "The {} count never changed across the samples: there is no slope to measure.",
                per.unit()
            ));
            VerdictKind::Inconclusive
        }
        Some(full) => {
            let (rule, unit, b) = (SlopeRule::of(full, early, late, tolerance), per.unit(), human_bytes);
            let (kind, reason) = match rule {
                SlopeRule::Within(full) => (
                    VerdictKind::NoLeak,
                    format!(
                        "{measured} changed by {} per {unit} (95% interval up to {}), within the tolerance of {}.",
                        b(full.slope),
                        b(full.ci_high),
                        b(tolerance)
                    ),
                ),
                SlopeRule::LevelledOff { early, late } => (
                    VerdictKind::Bounded,
                    format!(
                        "{measured} grew by {} per {unit} in the first half, then by {} (95% interval up to {}): \
                         it levelled off.",
                        b(early.slope),
                        b(late.slope),
                        b(late.ci_high)
                    ),
                ),
                SlopeRule::Above(full) => (
                    VerdictKind::Leak,
                    format!(
                        "{measured} grew by {} per {unit} (95% interval {} to {}), above the tolerance of {}.",
                        b(full.slope),
                        b(full.ci_low),
                        b(full.ci_high),
                        b(tolerance)
                    ),
                ),
                SlopeRule::LateAbove(late) => (
                    VerdictKind::Leak,
                    format!(
                        "The second half grew by {} per {unit} (95% interval from {}), above the tolerance of {}.",
                        b(late.slope),
                        b(late.ci_low),
                        b(tolerance)
                    ),
                ),
                SlopeRule::Undecided(full) => (
                    VerdictKind::Inconclusive,
                    format!(
                        "The 95% interval, {} to {} per {unit}, contains the tolerance of {}.",
                        b(full.ci_low),
                        b(full.ci_high),
                        b(tolerance)
                    ),
                ),
            };
            reasons.push(reason);
            kind
        }
    };
    if let Some(trend) = connections_per_s.filter(|trend| trend.ci_low > 0.0) {
        reasons.push(format!("Open TCP connections grew by {:.3} per {}.", trend.slope, per.unit()));
    }
    TimeVerdict {
        kind,
        per,
        measured: measured.to_owned(),
        growth: full,
        connections: connections_per_s,
        tolerance,
        expected,
        expectation_met: expected.map(|expected| kind.meets(expected)),
        reasons,
    }
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
        let verdict = judge(
            "RSS",
            Per::Second,
            &series(20.0, 500_000.0, |t| 9e6 + t * 18e6),
            &[],
            65_536.0,
            Some(Expectation::Leak),
        );
        assert_eq!(verdict.kind, VerdictKind::Leak, "{verdict:?}");
        assert_eq!(verdict.expectation_met, Some(true));
        let slope = verdict.growth.unwrap().slope;
        assert!((slope - 18e6).abs() < 0.5e6, "{slope}");
    }

    #[test]
    fn a_flat_process_is_no_leak() {
        let verdict =
            judge("RSS", Per::Second, &series(5.0, 40_000.0, |_| 1.2e6), &series(5.0, 0.0, |_| 0.0), 65_536.0, None);
        assert_eq!(verdict.kind, VerdictKind::NoLeak, "{verdict:?}");
        assert!(verdict.reasons[0].starts_with("RSS changed by"), "{verdict:?}");
    }

    #[test]
    fn a_curve_that_levels_off_is_bounded() {
        // 50 MB filled with a 2 s time constant: all but 30 KB of it in the first 15 s.
        let verdict = judge(
            "RSS",
            Per::Second,
            &series(30.0, 20_000.0, |t| 50e6 * (1.0 - (-t / 2.0).exp())),
            &[],
            65_536.0,
            None,
        );
        assert_eq!(verdict.kind, VerdictKind::Bounded, "{verdict:?}");
    }

    #[test]
    fn too_few_samples_cannot_decide_and_long_watches_are_thinned() {
        assert_eq!(
            judge("RSS", Per::Second, &series(0.5, 0.0, |_| 1.0), &[], 1.0, None).kind,
            VerdictKind::Inconclusive
        );
        let long = judge("RSS", Per::Second, &series(600.0, 0.0, |t| t * 1e6), &[], 1.0, None);
        assert_eq!(long.growth.unwrap().points as usize, MAX_POINTS);
        assert_eq!(long.kind, VerdictKind::Leak);
    }

    #[test]
    fn growing_connections_are_said() {
        let verdict = judge(
            "RSS",
            Per::Second,
            &series(10.0, 0.0, |t| t * 1e6),
            &series(10.0, 0.0, |t| (t * 200.0).floor()),
            1.0,
            Some(Expectation::NoLeak),
        );
        assert!(
            verdict.reasons.iter().any(|r| r.contains("Open TCP connections grew by 200.000 per s")),
            "{verdict:?}"
        );
        assert_eq!(verdict.expectation_met, Some(false), "a leak contradicts no-leak");
    }
}
