//! The load: workers that send requests through a channel policy until a
//! request count or a duration is reached, whichever comes first.
//!
//! The requests run in segments: the warm-up, then the plan's rounds. Each
//! segment ends with every worker stopped, so nothing is in flight when the
//! [`PhaseListener`] takes its checkpoint; the next segment starts after it.
//!
//! Each worker has one request in flight (closed loop). With a target rate,
//! request `i` of a segment is also held until `segment start + i / rate`
//! (open loop), so the rate does not depend on how fast the server answers as
//! long as enough workers are free. Latency goes into one HdrHistogram per
//! worker (fixed memory, no per-request record), kept across segments and
//! merged when the load ends.

pub mod channels;
pub mod connector;
pub mod direct;
pub mod errors;
pub mod method;

use crate::latency::histogram_log::LatencyLog;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::watch;

pub use channels::{Channels, WorkerClients};
pub use method::Method;

use crate::halt::{Halt, HaltReason, Limit, LimitHit, StopReason};
use crate::scenario::LoadPlan;

/// Counters the sampler reads while the load runs.
#[derive(Debug, Default)]
pub struct LoadCounters {
    ok: AtomicU64,
    failed: AtomicU64,
    /// A foreign client's own counters (`goroutines=37`…), as its last progress line gave them.
    reported: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl LoadCounters {
    /// Requests answered OK so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Requests failed so far, whatever the reason.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Sets both counts, as a foreign client reports them on its progress lines.
    pub fn store(&self, ok: u64, failed: u64) {
        self.ok.store(ok, Ordering::Relaxed);
        self.failed.store(failed, Ordering::Relaxed);
    }

    /// Keeps the counters a foreign client reported on its last progress line.
    /// Reports `counters`; each keeps its last value until reported again (a progress line's, grpc-java's
    /// orphan count read from the same output).
    pub fn report(&self, counters: BTreeMap<String, u64>) {
        if let Ok(mut reported) = self.reported.lock() {
            reported.extend(counters);
        }
    }

    /// The counters last reported (none for the built-in client).
    pub fn reported(&self) -> BTreeMap<String, u64> {
        self.reported.lock().map(|reported| reported.clone()).unwrap_or_default()
    }
}

/// A boundary between segments of the load, where no request is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The warm-up is over (or there was none).
    WarmupDone,
    /// This many rounds are done, and more follow.
    RoundDone(u32),
    /// The load is over: every round ran, or it was stopped early.
    LoadDone,
}

/// The future a [`PhaseListener`] returns.
pub type BoxFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Told at every [`Boundary`], so the run can take the checkpoints that
/// growth is measured between.
pub trait PhaseListener: Send + Sync {
    /// The load is paused at `boundary`; it resumes when the returned future
    /// resolves (once the checkpoint is recorded). At [`Boundary::LoadDone`]
    /// the workers' state (latency histograms) is still alive, so that freeing
    /// it does not count as the load shrinking memory.
    fn checkpoint(&self, boundary: Boundary) -> BoxFuture;
}

/// What the load did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Latency of successful calls, in microseconds, from when each was sent.
    pub latency_us: Histogram<u64>,
    /// Open loop only: latency from when each call was due (`start + i / rate`). When the
    /// load generator falls behind (a stall holds its workers), the requests it sends late
    /// waited too, as a user's would; measuring from the actual send omits that wait
    /// ("coordinated omission", Gil Tene).
    pub latency_from_intended_us: Option<Histogram<u64>>,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests per kind (see [`errors`]).
    pub errors: BTreeMap<String, u64>,
    /// The earliest failure: its kind and when it happened, counted from the start of the load.
    pub first_error: Option<(String, Duration)>,
    /// From the first request sent to the last one answered, without the
    /// pauses for checkpoints between rounds.
    pub elapsed: Duration,
    pub stopped_by: StopReason,
}

impl LoadReport {
    /// The load's latency histograms as `latency.hlog` keeps them, the load having started at `started`.
    pub fn latency_log(&self, started: std::time::SystemTime) -> LatencyLog {
        LatencyLog {
            started,
            elapsed: self.elapsed,
            sent: self.latency_us.clone(),
            intended: self.latency_from_intended_us.clone(),
        }
    }
}

/// The histogram's range: 1 µs up to twice the request timeout (no successful
/// call takes longer), at 3 significant digits. Bounding it by the timeout
/// rather than by an hour keeps each worker's histogram near 100 KB.
fn new_histogram(plan: &LoadPlan) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max_latency_us(plan), 3).expect("histogram bounds are valid: 1 < 2 ms")
}

/// Latency from the intended send time includes however far the generator fell
/// behind, which can reach the whole load's duration; at 3 significant digits the
/// wider range costs a few KB per worker.
fn new_intended_histogram(plan: &LoadPlan) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max_intended_latency_us(plan), 3).expect("histogram bounds are valid: 1 < 2 ms")
}

fn max_intended_latency_us(plan: &LoadPlan) -> u64 {
    max_latency_us(plan).max((plan.max_duration.as_micros() as u64).saturating_mul(2))
}

fn max_latency_us(plan: &LoadPlan) -> u64 {
    (plan.request_timeout.as_micros() as u64).saturating_mul(2).max(2_000)
}

struct Shared {
    channels: Arc<Channels>,
    method: Method,
    plan: LoadPlan,
    counters: Arc<LoadCounters>,
    halt: Arc<Halt>,
    /// This process's soft fd limit, for the report of a machine limit.
    fd_limit: Option<u64>,
    next_index: AtomicU64,
    started: Instant,
    deadline: Instant,
}

/// The client sends nothing for `idle` (its channels may ping, the server may
/// reap), as one that calls in bursts would; then the checkpoint is taken.
/// Every checkpoint, the last included, follows the same idle spell, so all
/// of them see connections in the same state.
async fn sit_idle(idle: Duration, stop: &watch::Receiver<bool>) {
    if idle.is_zero() {
        return;
    }
    let mut stop = stop.clone();
    tokio::select! {
        () = tokio::time::sleep(idle) => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}

/// Requests `start..end` (indices over the whole load), paced from `started`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u64,
    end: u64,
    started: Instant,
}

/// What one worker keeps from segment to segment.
struct WorkerState {
    clients: WorkerClients,
    latency_us: Histogram<u64>,
    /// Open loop only: a closed loop has no intended send times, so it does not pay for this.
    latency_from_intended_us: Option<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    first_error: Option<(String, Duration)>,
}

/// Runs the load and returns what it did. `halt` triggering ends it early
/// (calls in flight then finish, bounded by the request timeout), and the
/// load ends with a [`Boundary::LoadDone`] checkpoint all the same. The first
/// failure that says the machine is out of file descriptors or ports
/// triggers it: past that point every request would fail the same way.
pub async fn drive(
    channels: Arc<Channels>,
    method: Method,
    plan: &LoadPlan,
    counters: Arc<LoadCounters>,
    phases: Arc<dyn PhaseListener>,
    halt: Arc<Halt>,
) -> LoadReport {
    let started = Instant::now();
    let stop = halt.subscribe();
    let shared = Arc::new(Shared {
        halt: Arc::clone(&halt),
        fd_limit: leaklab_probe::procfs::fd_limits().ok().map(|limits| limits.soft),
        next_index: AtomicU64::new(0),
        started,
        deadline: started + plan.max_duration,
        channels,
        method,
        plan: plan.clone(),
        counters,
    });
    let mut workers: Vec<WorkerState> = (0..plan.concurrency.get())
        .map(|_| WorkerState {
            clients: shared.channels.worker_clients(),
            latency_us: new_histogram(plan),
            latency_from_intended_us: plan.rate_per_s.map(|_| new_intended_histogram(plan)),
            errors: BTreeMap::new(),
            first_error: None,
        })
        .collect();

    let round_ends = plan.round_ends();
    let mut segment_start = 0;
    let mut paused = Duration::ZERO;
    for (segment, end) in std::iter::once(plan.warmup_requests).chain(round_ends.iter().copied()).enumerate() {
        if end > segment_start {
            workers =
                run_segment(&shared, workers, Segment { start: segment_start, end, started: Instant::now() }, &stop)
                    .await;
            segment_start = end;
        }
        let finished = end == plan.max_requests.get() || *stop.borrow() || Instant::now() >= shared.deadline;
        if finished {
            break;
        }
        let boundary = if segment == 0 { Boundary::WarmupDone } else { Boundary::RoundDone(segment as u32) };
        let pause = Instant::now();
        sit_idle(plan.idle_between_rounds, &stop).await;
        phases.checkpoint(boundary).await;
        paused += pause.elapsed();
    }
    let pause = Instant::now();
    sit_idle(plan.idle_between_rounds, &stop).await;
    paused += pause.elapsed();
    let elapsed = started.elapsed().saturating_sub(paused);
    phases.checkpoint(Boundary::LoadDone).await;

    let mut latency_us = new_histogram(plan);
    let mut latency_from_intended_us = plan.rate_per_s.map(|_| new_intended_histogram(plan));
    let mut errors = BTreeMap::new();
    let mut first_error: Option<(String, Duration)> = None;
    for worker in workers {
        latency_us.add(worker.latency_us).expect("histograms share their bounds");
        if let (Some(total), Some(worker)) = (latency_from_intended_us.as_mut(), worker.latency_from_intended_us) {
            total.add(worker).expect("histograms share their bounds");
        }
        for (kind, count) in worker.errors {
            *errors.entry(kind).or_default() += count;
        }
        if let Some((kind, at)) = worker.first_error
            && first_error.as_ref().is_none_or(|(_, earliest)| at < *earliest)
        {
            first_error = Some((kind, at));
        }
    }
    let sent = shared.next_index.load(Ordering::Relaxed);
    let planned = if sent >= plan.max_requests.get() { StopReason::Requests } else { StopReason::Duration };
    let stopped_by = halt.stop_reason(planned);
    LoadReport {
        latency_us,
        latency_from_intended_us,
        ok: shared.counters.ok(),
        failed: shared.counters.failed(),
        errors,
        first_error,
        elapsed,
        stopped_by,
    }
}

/// Runs one segment on every worker and waits for all of them: afterwards no
/// request is in flight.
async fn run_segment(
    shared: &Arc<Shared>,
    workers: Vec<WorkerState>,
    segment: Segment,
    stop: &watch::Receiver<bool>,
) -> Vec<WorkerState> {
    shared.next_index.store(segment.start, Ordering::Relaxed);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|state| tokio::spawn(worker(Arc::clone(shared), state, segment, stop.clone())))
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    for task in tasks {
        workers.push(task.await.expect("load worker does not panic"));
    }
    workers
}

async fn worker(
    shared: Arc<Shared>,
    mut state: WorkerState,
    segment: Segment,
    mut stop: watch::Receiver<bool>,
) -> WorkerState {
    let max_latency_us = max_latency_us(&shared.plan);
    let max_intended_latency_us = max_intended_latency_us(&shared.plan);
    loop {
        if *stop.borrow() {
            break;
        }
        let index = shared.next_index.fetch_add(1, Ordering::Relaxed);
        if index >= segment.end {
            // Leave the shared index at the segment's end, whoever overshot it.
            shared.next_index.fetch_min(segment.end, Ordering::Relaxed);
            break;
        }
        let mut due = None;
        if let Some(rate) = shared.plan.rate_per_s {
            let at = segment.started + Duration::from_secs_f64((index - segment.start) as f64 / rate);
            if at >= shared.deadline {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            due = Some(at);
        }
        if Instant::now() >= shared.deadline {
            break;
        }
        let sent = Instant::now();
        let call = shared.channels.call(&mut state.clients, index, &shared.method);
        let outcome = tokio::time::timeout(shared.plan.request_timeout, call).await;
        let latency = sent.elapsed();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.0),
            Err(_elapsed) => Some(errors::TIMEOUT_KIND.to_owned()),
        };
        match failure {
            None => {
                state.latency_us.saturating_record((latency.as_micros() as u64).min(max_latency_us));
                if let (Some(due), Some(histogram)) = (due, state.latency_from_intended_us.as_mut()) {
                    histogram.saturating_record((due.elapsed().as_micros() as u64).min(max_intended_latency_us));
                }
                shared.counters.ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(kind) => {
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(which) = Limit::of_failure(&kind) {
                    shared.halt.trigger(HaltReason::MachineLimit(LimitHit {
                        which,
                        value: shared.channels.connections().counts().open,
                        limit: shared.fd_limit,
                        requests: shared.counters.ok() + shared.counters.failed(),
                    }));
                }
                if state.first_error.is_none() {
                    state.first_error = Some((kind.clone(), sent.duration_since(shared.started)));
                }
                *state.errors.entry(kind).or_default() += 1;
            }
        }
    }
    state
}
