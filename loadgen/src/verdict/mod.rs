//! Does a process leak? Rules that turn a run's checkpoints into a verdict
//! with its reasons, for the client and the server separately.
//!
//! # The protocol the checkpoints come from
//!
//! Warm-up requests run first and are discarded. The rest run in K rounds.
//! After the warm-up and after every round the load pauses until no request
//! is in flight, both processes return their allocator's freed pages to the
//! OS, and a *checkpoint* records allocated bytes, fds and open connections
//! against cumulative requests. A last checkpoint ends the cool-down.
//!
//! # The rules, in order
//!
//! With `tolerance` in bytes per request (default 256) and the Theil–Sen
//! slope of allocated bytes against requests over the K + 1 checkpoints,
//! with its 95% interval (see [`crate::stats::trend`]):
//!
//! 1. fewer than [`MIN_VERDICT_ROUNDS`] rounds, or no allocator figures:
//!    **INCONCLUSIVE**. A plan has at least [`MIN_ROUNDS`]; a run cut short (a
//!    cap, Ctrl-C) is judged on the rounds it completed, with the wider
//!    interval that fewer checkpoints give;
//! 2. upper bound ≤ tolerance: **NO LEAK**;
//! 3. the late rounds (the second half of the checkpoints) have an upper bound
//!    ≤ tolerance while the early rounds grew by more than the tolerance per
//!    request: **BOUNDED** (a cache or pool filled up, then stopped);
//! 4. lower bound > tolerance, or the late rounds' lower bound > tolerance: **LEAK**;
//! 5. open connections or fds rose in more rounds than chance allows (sign
//!    test, p < 0.05): **LEAK**, since every connection holds memory;
//! 6. otherwise **INCONCLUSIVE**, with an estimate of how many rounds would decide.
//!
//! The cool-down check is reported beside the verdict, not folded into it:
//! after the load stopped, did the process give back what the rounds took?

pub mod baseline;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::units::human_bytes;
use crate::sample::{Phase, Sample};
use crate::scenario::{Expectation, VerdictPlan};
use crate::stats::LoadWindow;
use crate::stats::trend::{CONFIDENCE, SignTest, Trend, theil_sen};

pub use leaklab_probe::ProcessSnapshot;

pub use crate::scenario::MIN_ROUNDS;
/// Fewest completed rounds a verdict is given on (with four checkpoints the
/// interval spans every pairwise slope).
pub const MIN_VERDICT_ROUNDS: u32 = 3;
/// The most rounds "rounds to decide" will suggest; beyond it, more rounds will not help.
const MAX_SUGGESTED_ROUNDS: u32 = 1_000;

/// What the memory of one process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// Each request keeps memory: the slope is above the tolerance.
    Leak,
    /// Memory is flat: the slope is below the tolerance.
    NoLeak,
    /// Memory grew at first, then stopped (a cache or pool filling up).
    Bounded,
    /// The run cannot tell; more rounds may.
    Inconclusive,
}

impl VerdictKind {
    /// Whether this verdict is what `expectation` asks for.
    pub fn meets(self, expectation: Expectation) -> bool {
        matches!(
            (self, expectation),
            (VerdictKind::Leak, Expectation::Leak)
                | (VerdictKind::NoLeak, Expectation::NoLeak)
                | (VerdictKind::Bounded, Expectation::Bounded)
        )
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerdictKind::Leak => "LEAK",
            VerdictKind::NoLeak => "NO LEAK",
            VerdictKind::Bounded => "BOUNDED",
            VerdictKind::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// One process at rest: quiesced and purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    /// Requests completed so far, warm-up included.
    pub requests: u64,
    /// jemalloc-allocated bytes; `null` without allocator figures.
    pub allocated_bytes: Option<u64>,
    /// Open file descriptors.
    pub fds: u64,
    /// Open TCP connections.
    pub connections: u64,
}

impl Checkpoint {
    fn of(requests: u64, process: &ProcessSnapshot) -> Checkpoint {
        Checkpoint {
            requests,
            allocated_bytes: process.jemalloc.map(|j| j.allocated_bytes),
            fds: process.fds,
            connections: process.connections.open,
        }
    }
}

/// A run's checkpoints for one process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoints {
    /// After warm-up, then after each round.
    pub rounds: Vec<Checkpoint>,
    /// At the end of the cool-down.
    pub after_cooldown: Option<Checkpoint>,
}

impl Checkpoints {
    /// The settled samples of the loaded window, and the last sample when it
    /// is a settled one after the window; `process` picks the process.
    pub fn from_samples(samples: &[Sample], process: impl Fn(&Sample) -> Option<&ProcessSnapshot>) -> Checkpoints {
        let Some(window) = LoadWindow::find(samples) else { return Checkpoints::default() };
        let rounds = samples[window.first..=window.last]
            .iter()
            .filter(|s| s.settled)
            .filter_map(|s| process(s).map(|p| Checkpoint::of(s.requests(), p)))
            .collect();
        let after_cooldown = samples
            .last()
            .filter(|s| s.settled && s.phase == Phase::Cooldown && samples.len() - 1 > window.last)
            .and_then(|s| process(s).map(|p| Checkpoint::of(s.requests(), p)));
        Checkpoints { rounds, after_cooldown }
    }
}

/// Did the process give back, after the load stopped, what the rounds took?
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recovery {
    /// Allocated bytes gained from the first checkpoint to the last round's.
    pub allocated_grown_bytes: Option<i64>,
    /// Of those, bytes freed by the end of the cool-down.
    pub allocated_returned_bytes: Option<i64>,
    /// Open connections gained over the rounds.
    pub connections_grown: i64,
    /// Of those, connections closed by the end of the cool-down.
    pub connections_returned: i64,
    /// Whether the process ended the cool-down within the tolerance of where
    /// the rounds started (allocated bytes per measured request) with no more
    /// open connections than then.
    pub returned_to_baseline: bool,
}

/// The verdict on one process, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessVerdict {
    /// `leak`, `no-leak`, `bounded` or `inconclusive`.
    pub kind: VerdictKind,
    /// Theil–Sen slope of allocated bytes against requests over the checkpoints, in bytes per request.
    pub slope_bytes_per_request: Option<f64>,
    /// Lower bound of the slope's 95% interval, bytes per request.
    pub ci_low: Option<f64>,
    /// Upper bound of the slope's 95% interval, bytes per request.
    pub ci_high: Option<f64>,
    /// Growth at or below this, in bytes per request, is not a leak.
    pub tolerance: f64,
    /// Rounds completed (checkpoints minus one).
    pub rounds: u32,
    /// The slope over the second half of the checkpoints, bytes per request (what BOUNDED looks at).
    pub late: Option<Trend>,
    /// Sign test on round-to-round changes of open connections.
    pub connections: SignTest,
    /// Sign test on round-to-round changes of open file descriptors.
    pub fds: SignTest,
    /// INCONCLUSIVE only: about how many rounds in all would likely decide, if the slope holds.
    pub rounds_to_decide: Option<u32>,
    /// What the cool-down gave back; `null` when the run had no cool-down checkpoint.
    pub cooldown: Option<Recovery>,
    /// What the scenario expects (`expect.client` / `expect.server`).
    pub expected: Option<Expectation>,
    /// Whether the verdict meets the expectation; `null` without one.
    pub expectation_met: Option<bool>,
    /// The rule that decided, and what else a reader should know, in sentences.
    pub reasons: Vec<String>,
    /// The checkpoints judged: after warm-up, after each round, and at the end of the cool-down.
    pub checkpoints: Vec<Checkpoint>,
}

/// What a slope says against a tolerance, before any wording: the rules a
/// run's checkpoints and a watched process's samples share, in the order they
/// apply. `early` and `late` are the slopes of the first and second halves.
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
    pub fn of(full: Trend, early: Option<Trend>, late: Option<Trend>, tolerance: f64) -> SlopeRule {
        match (early, late) {
            _ if full.ci_high <= tolerance => SlopeRule::Within(full),
            (Some(early), Some(late)) if late.ci_high <= tolerance && early.slope > tolerance => {
                SlopeRule::LevelledOff { early, late }
            }
            _ if full.ci_low > tolerance => SlopeRule::Above(full),
            (_, Some(late)) if late.ci_low > tolerance => SlopeRule::LateAbove(late),
            _ => SlopeRule::Undecided(full),
        }
    }
}

/// Judges one process from its checkpoints.
pub fn judge(checkpoints: &Checkpoints, tolerance: f64, expected: Option<Expectation>) -> ProcessVerdict {
    let rounds = checkpoints.rounds.len().saturating_sub(1) as u32;
    let points: Option<Vec<(f64, f64)>> =
        checkpoints.rounds.iter().map(|c| c.allocated_bytes.map(|bytes| (c.requests as f64, bytes as f64))).collect();
    let full = points.as_deref().and_then(theil_sen);
    // The second half of the checkpoints, sharing the middle one with the first half.
    let late = points.as_deref().filter(|p| p.len() >= 4).and_then(|p| theil_sen(&p[(p.len() - 1) / 2..]));
    let early = points.as_deref().filter(|p| p.len() >= 4).and_then(|p| theil_sen(&p[..=(p.len() - 1) / 2]));
    let connections = SignTest::of(&checkpoints.rounds.iter().map(|c| c.connections).collect::<Vec<_>>());
    let fds = SignTest::of(&checkpoints.rounds.iter().map(|c| c.fds).collect::<Vec<_>>());

    let mut reasons = Vec::new();
    let mut rounds_to_decide = None;
    let kind = match full {
        _ if rounds < MIN_VERDICT_ROUNDS => {
            let plural = if rounds == 1 { "" } else { "s" };
            reasons
                .push(format!("Only {rounds} round{plural} completed; a verdict needs at least {MIN_VERDICT_ROUNDS}."));
            VerdictKind::Inconclusive
        }
        None => {
            reasons.push("No allocator figures: the process's allocated bytes could not be read.".to_owned());
            VerdictKind::Inconclusive
        }
        Some(full) => match SlopeRule::of(full, early, late, tolerance) {
            SlopeRule::Within(full) => {
                reasons.push(format!(
                    "Allocated memory changed by {} per request (95% interval up to {}), within the tolerance of {}.",
                    human_bytes(full.slope),
                    human_bytes(full.ci_high),
                    human_bytes(tolerance)
                ));
                VerdictKind::NoLeak
            }
            SlopeRule::LevelledOff { early, late } => {
                reasons.push(format!(
                    "Memory grew by {} per request in the early rounds, then by {} (95% interval up to {}) in the \
                 late rounds: it levelled off.",
                    human_bytes(early.slope),
                    human_bytes(late.slope),
                    human_bytes(late.ci_high)
                ));
                VerdictKind::Bounded
            }
            SlopeRule::Above(full) => {
                reasons.push(format!(
                    "Allocated memory grew by {} per request (95% interval {} to {}), above the tolerance of {}.",
                    human_bytes(full.slope),
                    human_bytes(full.ci_low),
                    human_bytes(full.ci_high),
                    human_bytes(tolerance)
                ));
                VerdictKind::Leak
            }
            SlopeRule::LateAbove(late) => {
                reasons.push(format!(
                    "The late rounds grew by {} per request (95% interval from {}), above the tolerance of {}.",
                    human_bytes(late.slope),
                    human_bytes(late.ci_low),
                    human_bytes(tolerance)
                ));
                VerdictKind::Leak
            }
            SlopeRule::Undecided(_) if connections.grows() || fds.grows() => {
                let (what, test) =
                    if connections.grows() { ("Open connections", connections) } else { ("Open fds", fds) };
                reasons.push(format!(
                    "{what} rose in {} of {rounds} rounds (sign test p = {:.3}); each holds memory.",
                    test.increases, test.p_value
                ));
                VerdictKind::Leak
            }
            SlopeRule::Undecided(full) => {
                rounds_to_decide = rounds_needed(&full, tolerance);
                reasons.push(format!(
                    "The 95% interval, {} to {} per request, contains the tolerance of {}.",
                    human_bytes(full.ci_low),
                    human_bytes(full.ci_high),
                    human_bytes(tolerance)
                ));
                reasons.push(match rounds_to_decide {
                    Some(total) => format!(
                        "About {} more rounds ({total} in all) would likely decide, if the slope and the noise hold.",
                        total.saturating_sub(rounds)
                    ),
                    None => "The slope sits on the tolerance: more rounds are unlikely to decide.".to_owned(),
                });
                VerdictKind::Inconclusive
            }
        },
    };
    if (MIN_VERDICT_ROUNDS..MIN_ROUNDS).contains(&rounds) {
        reasons.push(format!(
            "Judged on {rounds} completed rounds, fewer than the {MIN_ROUNDS} a full run has: the interval is wider."
        ));
    }
    if kind != VerdictKind::Leak && connections.grows() {
        reasons.push(format!("Open connections rose in {} of {rounds} rounds.", connections.increases));
    }

    let cooldown = recovery(checkpoints, tolerance);
    if let Some(cooldown) = cooldown {
        reasons.push(if cooldown.returned_to_baseline {
            "After the load, the process returned to where the rounds started.".to_owned()
        } else {
            format!(
                "After the load, the process kept {} of the {} it took, and {} of {} connections.",
                cooldown
                    .allocated_grown_bytes
                    .zip(cooldown.allocated_returned_bytes)
                    .map_or("?".to_owned(), |(grown, returned)| human_bytes((grown - returned) as f64)),
                cooldown.allocated_grown_bytes.map_or("?".to_owned(), |grown| human_bytes(grown as f64)),
                cooldown.connections_grown - cooldown.connections_returned,
                cooldown.connections_grown
            )
        });
    }
    ProcessVerdict {
        kind,
        slope_bytes_per_request: full.map(|t| t.slope),
        ci_low: full.map(|t| t.ci_low),
        ci_high: full.map(|t| t.ci_high),
        tolerance,
        rounds,
        late,
        connections,
        fds,
        rounds_to_decide,
        cooldown,
        expected,
        expectation_met: expected.map(|expected| kind.meets(expected)),
        reasons,
        checkpoints: checkpoints.rounds.iter().chain(&checkpoints.after_cooldown).copied().collect(),
    }
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

fn recovery(checkpoints: &Checkpoints, tolerance: f64) -> Option<Recovery> {
    let first = checkpoints.rounds.first()?;
    let last = checkpoints.rounds.last()?;
    let end = checkpoints.after_cooldown?;
    let diff = |a: Option<u64>, b: Option<u64>| Some(a? as i64 - b? as i64);
    let measured = last.requests.saturating_sub(first.requests).max(1) as f64;
    let kept = diff(end.allocated_bytes, first.allocated_bytes);
    Some(Recovery {
        allocated_grown_bytes: diff(last.allocated_bytes, first.allocated_bytes),
        allocated_returned_bytes: diff(last.allocated_bytes, end.allocated_bytes),
        connections_grown: last.connections as i64 - first.connections as i64,
        connections_returned: last.connections as i64 - end.connections as i64,
        returned_to_baseline: kept.is_none_or(|kept| kept as f64 / measured <= tolerance)
            && end.connections <= first.connections,
    })
}

/// Both processes' verdicts, and whether the scenario's expectations hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdicts {
    /// The load generator.
    pub client: ProcessVerdict,
    /// The server; `null` when it was not measured (`--target`).
    pub server: Option<ProcessVerdict>,
    /// Confidence of every interval, 0.95.
    pub confidence: f64,
}

/// How a run's verdicts compare with what its scenario expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every expectation is met (or none is set and nothing was inconclusive).
    Met,
    /// A decided verdict differs from its expectation.
    Contradicted,
    /// No contradiction, but a verdict with an expectation was inconclusive.
    Inconclusive,
}

impl Verdicts {
    /// Judges both processes of a run.
    pub fn of(samples: &[Sample], plan: &VerdictPlan) -> Verdicts {
        let tolerance = plan.tolerance_bytes_per_request;
        let client = judge(&Checkpoints::from_samples(samples, |s| Some(&s.client)), tolerance, plan.expect_client);
        let server_points = Checkpoints::from_samples(samples, |s| s.server.as_ref().map(|x| &x.process));
        // A server that answered any sample was measured, even if the run ended before its rounds.
        let measured = samples.iter().any(|s| s.server.is_some());
        let server = measured.then(|| judge(&server_points, tolerance, plan.expect_server));
        Verdicts { client, server, confidence: CONFIDENCE }
    }

    /// Contradicted if any process contradicts its expectation; else
    /// inconclusive if one with an expectation is undecided (or its process
    /// was not measured); else met.
    pub fn outcome(&self, plan: &VerdictPlan) -> Outcome {
        let checks = [(Some(&self.client), plan.expect_client), (self.server.as_ref(), plan.expect_server)];
        let mut outcome = Outcome::Met;
        for (verdict, expected) in checks {
            let Some(_) = expected else { continue };
            match verdict {
                Some(v) if v.expectation_met == Some(true) => {}
                Some(v) if v.kind != VerdictKind::Inconclusive => return Outcome::Contradicted,
                _ => outcome = Outcome::Inconclusive,
            }
        }
        outcome
    }

    /// [`Verdicts::outcome`], where a baseline that regressed counts as a contradiction.
    pub fn outcome_with_baseline(
        &self,
        plan: &VerdictPlan,
        baseline: Option<&baseline::BaselineComparison>,
    ) -> Outcome {
        if baseline.is_some_and(|b| b.regressed) { Outcome::Contradicted } else { self.outcome(plan) }
    }

    /// `true` when every expectation is met, `false` when one is not (or
    /// cannot be judged), `null` when the scenario sets none.
    pub fn expectation_met(&self, plan: &VerdictPlan) -> Option<bool> {
        if plan.expect_client.is_none() && plan.expect_server.is_none() {
            return None;
        }
        Some(self.outcome(plan) == Outcome::Met)
    }
}

#[cfg(test)]
mod tests;
