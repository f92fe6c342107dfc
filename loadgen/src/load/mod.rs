//! The load: workers that send requests through a channel policy until a
//! request count or a duration is reached, whichever comes first.
//!
//! Each worker has one request in flight (closed loop). With a target rate,
//! request `i` is also held until `start + i / rate` (open loop), so the rate
//! does not depend on how fast the server answers as long as enough workers
//! are free. Latency goes into one HdrHistogram per worker (fixed memory, no
//! per-request record), merged when the load ends.

pub mod channels;
pub mod connector;
pub mod errors;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use leaklab_proto::EchoRequest;
use tokio::sync::watch;

pub use channels::{Channels, LEAK_MODEL};

use crate::scenario::LoadPlan;

/// Counters the sampler reads while the load runs.
#[derive(Debug, Default)]
pub struct LoadCounters {
    ok: AtomicU64,
    failed: AtomicU64,
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
}

/// Told when the load crosses the boundaries of its measured part, so the run
/// can take the samples that growth is measured between.
pub trait PhaseListener: Send + Sync {
    /// The last warm-up request completed (or there is no warm-up).
    fn warmup_done(&self);
    /// Every worker has stopped. Returns once the boundary is recorded, while
    /// the workers' state (latency histograms) is still alive, so that freeing
    /// it does not count as the load shrinking memory.
    fn load_done(&self);
}

/// Why the load stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every planned request was sent.
    Requests,
    /// The planned duration ran out first.
    Duration,
    /// The user interrupted the run (Ctrl-C or SIGTERM).
    Interrupted,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Requests => "every planned request was sent",
            StopReason::Duration => "the planned duration ran out",
            StopReason::Interrupted => "the user interrupted it",
        })
    }
}

/// What the load did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Latency of successful calls, in microseconds.
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests per kind (see [`errors`]).
    pub errors: BTreeMap<String, u64>,
    /// The earliest failure: its kind and when it happened, counted from the start of the load.
    pub first_error: Option<(String, Duration)>,
    /// From the first request sent to the last one answered.
    pub elapsed: Duration,
    pub stopped_by: StopReason,
}

/// The histogram's range: 1 µs up to twice the request timeout (no successful
/// call takes longer), at 3 significant digits. Bounding it by the timeout
/// rather than by an hour keeps each worker's histogram near 100 KB.
fn new_histogram(plan: &LoadPlan) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max_latency_us(plan), 3).expect("histogram bounds are valid: 1 < 2 ms")
}

fn max_latency_us(plan: &LoadPlan) -> u64 {
    (plan.request_timeout.as_micros() as u64).saturating_mul(2).max(2_000)
}

struct Shared {
    channels: Arc<Channels>,
    plan: LoadPlan,
    counters: Arc<LoadCounters>,
    phases: Arc<dyn PhaseListener>,
    next_index: AtomicU64,
    completed: AtomicU64,
    started: Instant,
    deadline: Instant,
}

#[derive(Default)]
struct Tally {
    latency_us: Option<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    first_error: Option<(String, Duration)>,
}

/// Runs the load and returns what it did. `stop` turning true ends it early;
/// calls in flight then finish (bounded by the request timeout).
pub async fn drive(
    channels: Arc<Channels>,
    plan: &LoadPlan,
    counters: Arc<LoadCounters>,
    phases: Arc<dyn PhaseListener>,
    stop: watch::Receiver<bool>,
) -> LoadReport {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        channels,
        plan: plan.clone(),
        counters,
        phases,
        next_index: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        started,
        deadline: started + plan.max_duration,
    });
    if plan.warmup_requests == 0 {
        shared.phases.warmup_done();
    }
    let workers: Vec<_> =
        (0..plan.concurrency.get()).map(|_| tokio::spawn(worker(Arc::clone(&shared), stop.clone()))).collect();

    let mut tallies = Vec::with_capacity(workers.len());
    for worker in workers {
        tallies.push(worker.await.expect("load worker does not panic"));
    }
    let elapsed = started.elapsed();
    shared.phases.load_done();

    let mut latency_us = new_histogram(plan);
    let mut errors = BTreeMap::new();
    let mut first_error: Option<(String, Duration)> = None;
    for tally in tallies {
        if let Some(histogram) = tally.latency_us {
            latency_us.add(histogram).expect("histograms share their bounds");
        }
        for (kind, count) in tally.errors {
            *errors.entry(kind).or_default() += count;
        }
        if let Some((kind, at)) = tally.first_error
            && first_error.as_ref().is_none_or(|(_, earliest)| at < *earliest)
        {
            first_error = Some((kind, at));
        }
    }
    let stopped_by = if *stop.borrow() {
        StopReason::Interrupted
    } else if shared.next_index.load(Ordering::Relaxed) >= plan.max_requests.get() {
        StopReason::Requests
    } else {
        StopReason::Duration
    };
    LoadReport {
        latency_us,
        ok: shared.counters.ok(),
        failed: shared.counters.failed(),
        errors,
        first_error,
        elapsed,
        stopped_by,
    }
}

async fn worker(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Tally {
    let mut tally = Tally { latency_us: Some(new_histogram(&shared.plan)), ..Tally::default() };
    let max_latency_us = max_latency_us(&shared.plan);
    let histogram = tally.latency_us.as_mut().expect("just set");
    let mut clients = shared.channels.worker_clients();
    let shape = &shared.plan.request;
    let warmup = shared.plan.warmup_requests;
    loop {
        if *stop.borrow() {
            break;
        }
        let index = shared.next_index.fetch_add(1, Ordering::Relaxed);
        if index >= shared.plan.max_requests.get() {
            break;
        }
        if let Some(rate) = shared.plan.rate_per_s {
            let due = shared.started + Duration::from_secs_f64(index as f64 / rate);
            if due >= shared.deadline {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        if Instant::now() >= shared.deadline {
            break;
        }
        let request = EchoRequest {
            payload: shape.payload.clone(),
            response_bytes: shape.response_bytes,
            delay_ms: shape.delay_ms,
        };
        let sent = Instant::now();
        let outcome =
            tokio::time::timeout(shared.plan.request_timeout, shared.channels.call(&mut clients, index, request)).await;
        let latency = sent.elapsed();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.0),
            Err(_elapsed) => Some(errors::TIMEOUT_KIND.to_owned()),
        };
        match failure {
            None => {
                histogram.saturating_record((latency.as_micros() as u64).min(max_latency_us));
                shared.counters.ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(kind) => {
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                if tally.first_error.is_none() {
                    tally.first_error = Some((kind.clone(), sent.duration_since(shared.started)));
                }
                *tally.errors.entry(kind).or_default() += 1;
            }
        }
        if shared.completed.fetch_add(1, Ordering::Relaxed) + 1 == warmup {
            shared.phases.warmup_done();
        }
    }
    tally
}
