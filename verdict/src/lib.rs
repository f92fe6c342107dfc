//! Does a process leak? Statistics and the rules that turn them into a verdict.
//!
//! This crate is leaklab's analysis, apart from everything that measures or
//! words it: pure functions of their arguments, no I/O, no clocks, no async
//! runtime. [`stats`] holds the statistics (the Theil–Sen slope with its
//! interval, a sign test, a two-regressor fit, spans); [`judge`] turns a
//! [`Series`] of points into a [`ProcessVerdict`] with its [`Reason`]s, for
//! every kind of run and each process separately; [`VerdictPlan`] is what a
//! run is judged against. The reasons are data: the report words them.
//!
//! # Where the points come from
//!
//! A built-in run takes **checkpoints**: warm-up requests run first and are
//! discarded, the rest run in K rounds, and after the warm-up and after every
//! round the load pauses until no request is in flight, both allocators
//! return their freed pages, and allocated bytes are recorded against
//! cumulative requests. A last checkpoint ends the cool-down.
//!
//! A process leaklab did not write cannot be paused or read from inside, so
//! its **samples** are judged as they come (every sample after its warm-up,
//! thinned to at most [`MAX_POINTS`]): its RSS against the requests it
//! reported, or against seconds when it reports none.
//!
//! # The rules, in order
//!
//! With `tolerance` in bytes per request (or per second) and the Theil–Sen
//! slope of the quantity against the axis with its 95% interval (see
//! [`stats::trend`]); the early and late halves share their middle point:
//!
//! 1. too few points (fewer than [`MIN_VERDICT_ROUNDS`] rounds, or
//!    [`MIN_SAMPLES`] samples), no figures for the quantity, or no spread on
//!    the axis: **INCONCLUSIVE**. A plan has at least [`MIN_ROUNDS`] rounds; a
//!    run cut short (a cap, Ctrl-C) is judged on the rounds it completed,
//!    with the wider interval that fewer points give;
//! 2. upper bound ≤ tolerance: **NO LEAK**;
//! 3. the late half's upper bound ≤ tolerance while the early half grew by
//!    more than the tolerance: **BOUNDED** (a cache or pool filled up, then stopped);
//! 4. lower bound > tolerance, or the late half's lower bound > tolerance: **LEAK**;
//! 5. open connections, fds, or a counter the points carry (open streams,
//!    a foreign client's goroutines, …) rose in more steps than chance allows
//!    (sign test, p < 0.05): **LEAK**, since each thing counted holds memory;
//! 6. otherwise **INCONCLUSIVE**, with an estimate of how many rounds would decide;
//! 7. where rules 2 and 3 said NO LEAK or BOUNDED on a per-request axis, open
//!    connections or a counter (not one of bytes, `*_bytes`) that rose in more
//!    steps than chance allows by at least half a thing per request, over all
//!    the points and over the late half, makes it a **LEAK** whatever the
//!    memory did: a leaked channel keeps its connection, a goroutine, a report
//!    of an orphaned channel, however little memory the runtime shows for it.
//!
//! 8. a garbage-collected client is judged twice: on its live heap, and on
//!    what its runtime holds outside the heap ([`Quantity::NativeBytes`]),
//!    by the same rules and tolerance (its points carry no counts, so rules
//!    5 and 7 do not apply to it); a LEAK of the memory outside the heap by
//!    its slope over all the points (rule 4) is the process's **LEAK**
//!    whatever the heap did ([`with_native`]): a Buffer or a direct buffer
//!    kept per request costs the heap a small object and the process its contents.
//!
//! A counter that rose while memory decided NO LEAK or BOUNDED is otherwise
//! reported beside the verdict: counters must be levels (things held now), not totals.
//!
//! The cool-down check is reported beside the verdict, not folded into it:
//! after the load stopped, did the process give back what the rounds took?
//!
//! Reasons are data ([`Reason`]); the report words them.

mod expect;
mod judge;
mod named;
pub mod stats;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use expect::{Expectation, MIN_ROUNDS, VerdictPlan};
pub use judge::{MAX_POINTS, MIN_SAMPLES, MIN_VERDICT_ROUNDS, SlopeRule, judge, with_native};
use stats::trend::{SignTest, Trend};

/// Which process of a run: the client (the load generator, or the process watched) or the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// `client` or `server`, as reports and files name it.
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// What the memory of one process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// Each request (or second) keeps memory: the slope is above the tolerance.
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
                | (VerdictKind::NoLeak | VerdictKind::Bounded, Expectation::NotLeak)
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

/// What is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Bytes the process holds per jemalloc (`stats.allocated`): follows a leak byte for byte.
    AllocatedBytes,
    /// Resident set size: for a process whose allocator leaklab cannot read, on a kernel that does not split it.
    RssBytes,
    /// Anonymous resident bytes (`RssAnon`): a foreign process's heap and stacks, without the file-backed
    /// pages (the program, shared libraries) that come and go without leaking.
    RssAnonBytes,
    /// Bytes a garbage-collected runtime (the JVM, V8) still used after a full collection: what the program
    /// keeps alive. Its RSS grows in steps as the runtime sizes its heap, leak or no leak.
    LiveHeapBytes,
    /// Bytes such a runtime holds outside its heap, as it accounts them (V8's `external`; the JVM's
    /// tracked thread stacks, direct buffers and internals): where a leak the live heap does not show lives.
    NativeBytes,
}

/// What growth is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Requests completed (counted, or reported by a foreign client).
    Request,
    /// Seconds: a foreign client that reports no requests.
    Second,
}

/// How the points were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// At rest, between rounds: no request in flight, allocators purged.
    Checkpoints,
    /// As they came, while the process ran.
    Samples,
}

/// One point judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Point {
    /// Where on the axis: requests completed so far (warm-up included), or seconds since the run started.
    pub at: f64,
    /// The quantity judged, in bytes; `null` when it could not be read.
    pub value: Option<u64>,
    /// Open TCP connections; `null` when they were not counted.
    pub connections: Option<u64>,
    /// Open file descriptors; `null` when they were not counted.
    pub fds: Option<u64>,
    /// Other counts of things the process holds, by name: `streams` it keeps open, and every counter a
    /// foreign client reports on its progress lines (`goroutines`, …); `{}` when there are none.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}

/// What a process did, as the judge sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub quantity: Quantity,
    pub axis: Axis,
    pub basis: Basis,
    /// In order of `at`: after warm-up and after each round, or every sample after warm-up.
    pub points: Vec<Point>,
    /// A checkpoint at the end of the cool-down, for the return-to-baseline check.
    pub after_cooldown: Option<Point>,
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

/// Which count a sign test is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    Connections,
    Fds,
}

/// Why a verdict is what it is, and what else a reader should know. The
/// report words each one; slopes are in bytes per unit of the verdict's axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Too few rounds (checkpoints basis) or samples to judge.
    TooFew { have: u32, need: u32 },
    /// The quantity could not be read: no allocator figures.
    NoFigures,
    /// Every point sits at the same place on the axis: there is no slope to measure.
    NoSpread,
    /// Rule 2: the interval is within the tolerance.
    Within { slope: f64, ci_high: f64 },
    /// Rule 3: the early half grew, the late half stayed within the tolerance.
    LevelledOff { early_slope: f64, late_slope: f64, late_ci_high: f64 },
    /// Rule 4: the whole interval is above the tolerance.
    Above { slope: f64, ci_low: f64, ci_high: f64 },
    /// Rule 4: the late half's interval is above the tolerance.
    LateAbove { slope: f64, ci_low: f64 },
    /// Rule 5: a count rose in more steps than chance allows.
    CountRose { count: Count, increases: u32, steps: u32, p_value: f64 },
    /// Rule 5 for a counter (open streams, goroutines, …): it rose in more steps than chance allows. Also
    /// given beside a verdict that memory decided otherwise.
    CounterRose { name: String, increases: u32, steps: u32, p_value: f64 },
    /// Rule 6: the interval contains the tolerance.
    Straddles { ci_low: f64, ci_high: f64 },
    /// With rule 6: about this many rounds in all would likely decide, if the slope and the noise hold.
    RoundsToDecide { more: u32, total: u32 },
    /// With rule 6: the slope sits on the tolerance, so more rounds are unlikely to decide.
    OnTheTolerance,
    /// The run completed fewer rounds than a full one has: the interval is wider.
    FewerRounds { rounds: u32, full: u32 },
    /// Open connections rose in most steps, though the memory did not decide a leak.
    ConnectionsRose { increases: u32, steps: u32 },
    /// Rule 7: a count of things held (`connections`, or a counter: `goroutines`, `orphaned_channels`, …)
    /// climbed by about one or more per request over all the points and over the late half, and rose in
    /// more steps than chance allows: a leak whatever the memory did. Its slopes, per request.
    CountDecided { name: String, per_request: f64, late_per_request: f64 },
    /// Rule 8: the memory the runtime holds outside its heap leaked by its slope over all the points (its own
    /// verdict, `verdict.client_native`), whatever the live heap did. Its slope and the interval's lower bound, per
    /// unit of the axis.
    NativeDecided { slope: f64, ci_low: f64 },
    /// After the load, the process returned to where the rounds started.
    Returned,
    /// After the load, the process kept part of what the rounds took.
    Kept { allocated_kept: Option<i64>, allocated_grown: Option<i64>, connections_kept: i64, connections_grown: i64 },
}

/// The verdict on one process, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessVerdict {
    /// `leak`, `no-leak`, `bounded` or `inconclusive`.
    pub kind: VerdictKind,
    /// What was judged: `allocated_bytes` (jemalloc, for leaklab's own processes), `live_heap_bytes` (a
    /// foreign JVM or Node process, after a full collection), `native_bytes` (such a process's memory outside
    /// its heap, in `client_native`), `rss_anon_bytes` (any other foreign process), or `rss_bytes` (a foreign
    /// process on a kernel whose `/proc/PID/status` has no `RssAnon`).
    pub quantity: Quantity,
    /// What growth is counted against: `request` or `second`.
    pub axis: Axis,
    /// How the points were taken: `checkpoints` at rest between rounds, or `samples` as they came.
    pub basis: Basis,
    /// Theil–Sen slope of the quantity against requests, in bytes per request; `null` when the axis is
    /// seconds or the slope could not be measured.
    pub slope_bytes_per_request: Option<f64>,
    /// Lower bound of the slope's 95% interval, bytes per request; `null` as for the slope.
    pub ci_low: Option<f64>,
    /// Upper bound of the slope's 95% interval, bytes per request; `null` as for the slope.
    pub ci_high: Option<f64>,
    /// The slope and its interval in bytes per unit of `axis` (per request, or per second), with the points it used.
    pub trend: Option<Trend>,
    /// Growth at or below this, in bytes per unit of `axis`, is not a leak.
    pub tolerance: f64,
    /// Rounds completed (checkpoints minus one); `null` for samples.
    pub rounds: Option<u32>,
    /// The slope over the late half of the points, bytes per unit of `axis` (what BOUNDED looks at).
    pub late: Option<Trend>,
    /// Sign test on step-to-step changes of open connections.
    pub connections: SignTest,
    /// Sign test on step-to-step changes of open file descriptors.
    pub fds: SignTest,
    /// Sign test on step-to-step changes of each counter the points carry (`streams`, `goroutines`, …), by name.
    #[serde(default)]
    pub counters: BTreeMap<String, SignTest>,
    /// INCONCLUSIVE on checkpoints only: about how many rounds in all would likely decide, if the slope holds.
    pub rounds_to_decide: Option<u32>,
    /// What the cool-down gave back; `null` when the run had no cool-down checkpoint.
    pub cooldown: Option<Recovery>,
    /// What the scenario expects (`expect.client` / `expect.server`).
    pub expected: Option<Expectation>,
    /// Whether the verdict meets the expectation; `null` without one.
    pub expectation_met: Option<bool>,
    /// The rule that decided, and what else a reader should know.
    pub reasons: Vec<Reason>,
    /// The points judged: the checkpoints (after warm-up, after each round, and at the end of the cool-down),
    /// or the samples after warm-up, thinned.
    pub points: Vec<Point>,
}

/// Both processes' verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdicts {
    /// The client: the load generator, or the foreign process watched.
    pub client: ProcessVerdict,
    /// The server; `null` when it was not measured (`--target`, or a watch without the toy server).
    pub server: Option<ProcessVerdict>,
    /// A garbage-collected client's memory outside its runtime's heap (`native_bytes`), judged on its own
    /// with the client's tolerance; its LEAK is the client's (rule 8). `null` for any other process, or
    /// when the runtime does not track it.
    #[serde(default)]
    pub client_native: Option<ProcessVerdict>,
    /// Confidence of every interval, 0.95.
    pub confidence: f64,
}

/// How a run's verdicts compare with what its scenario expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every expectation is met (or none is set).
    Met,
    /// No contradiction, but a verdict with an expectation is inconclusive, or its process was not measured.
    Inconclusive,
    /// A decided verdict differs from its expectation, or a baseline regressed.
    Contradicted,
}

impl Outcome {
    /// The worst of `outcomes` (contradicted, then inconclusive, then met); met when there are none.
    pub fn worst(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes.into_iter().max().unwrap_or(Outcome::Met)
    }

    /// This outcome, where a regressed baseline counts as a contradiction.
    pub fn with_regression(self, regressed: bool) -> Outcome {
        if regressed { Outcome::Contradicted } else { self }
    }
}

impl Verdicts {
    /// The verdict whose figures (quantity, slope, interval) stand for the client: `client_native` when its
    /// memory outside the heap decided the client's LEAK (rule 8), else `client`. The kind and the
    /// expectation are the client's either way.
    pub fn client_figures(&self) -> &ProcessVerdict {
        let decided = matches!(self.client.reasons.first(), Some(Reason::NativeDecided { .. }));
        self.client_native.as_ref().filter(|_| decided).unwrap_or(&self.client)
    }

    /// Contradicted if a decided verdict differs from its expectation; else
    /// inconclusive if a verdict with an expectation is undecided, or a
    /// process with an expectation was not measured; else met.
    pub fn outcome(&self, plan: &VerdictPlan) -> Outcome {
        let checks = [(Some(&self.client), plan.expect_client), (self.server.as_ref(), plan.expect_server)];
        Outcome::worst(checks.into_iter().filter_map(|(verdict, expected)| {
            expected.map(|_| match verdict {
                Some(v) if v.expectation_met == Some(true) => Outcome::Met,
                Some(v) if v.kind != VerdictKind::Inconclusive => Outcome::Contradicted,
                _ => Outcome::Inconclusive,
            })
        }))
    }
}

/// What [`named!`] expands to needs, wherever it is used.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
}
