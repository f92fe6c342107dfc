//! The points each process is judged on, taken from a run's samples: the
//! checkpoints of a built-in run, or the samples of a process watched from
//! outside.

use std::collections::BTreeMap;

pub use super::sides::Side;
use crate::sample::{LoadWindow, Phase, Sample};
use leaklab_verdict::{Axis, Basis, Point, Quantity, Series};

fn point(at: f64, sample: &Sample, side: Side, quantity: Quantity) -> Option<Point> {
    let process = sample.process(side)?;
    let mut counters: BTreeMap<String, u64> =
        process.streams.map(|open| ("streams".to_owned(), open)).into_iter().collect();
    if side == Side::Client {
        // What a foreign client reports of itself wins over what leaklab counted of it.
        counters.extend(sample.counters.iter().map(|(name, count)| (name.clone(), *count)));
    }
    Some(Point {
        at,
        value: match quantity {
            Quantity::AllocatedBytes => process.jemalloc.map(|j| j.allocated_bytes),
            Quantity::RssBytes => Some(process.rss_bytes),
            Quantity::RssAnonBytes => process.rss_parts.map(|p| p.anon_bytes),
            Quantity::LiveHeapBytes => process.runtime_heap.map(|heap| heap.live_bytes),
            Quantity::NativeBytes => process.runtime_heap.and_then(|heap| heap.native_bytes),
        },
        connections: process.open_connections(),
        fds: process.fds,
        counters,
    })
}

/// A built-in run's checkpoints for `side`: the settled samples of the loaded
/// window, and the last sample when it is a settled one after the window.
pub fn checkpoints(samples: &[Sample], side: Side) -> Series {
    // A server leaklab did not start (`--server-pid`) has no allocator it can read: its memory is judged from outside.
    let unreadable = samples.iter().filter_map(|s| s.process(side)).any(|process| process.jemalloc.is_none());
    let quantity = if unreadable { from_outside(samples, side) } else { Quantity::AllocatedBytes };
    let mut series =
        Series { quantity, axis: Axis::Request, basis: Basis::Checkpoints, points: Vec::new(), after_cooldown: None };
    let Some(window) = LoadWindow::find(samples) else { return series };
    series.points = samples[window.first..=window.last]
        .iter()
        .filter(|s| s.settled)
        .filter_map(|s| point(s.requests() as f64, s, side, quantity))
        .collect();
    series.after_cooldown = samples
        .last()
        .filter(|s| s.settled && s.phase == Phase::Cooldown && samples.len() - 1 > window.last)
        .and_then(|s| point(s.requests() as f64, s, side, quantity));
    series
}

/// Request counts a foreign client must report in distinct steps to be judged
/// per request: one that reported its progress once or twice is judged per second.
pub const MIN_PROGRESS_STEPS: usize = 5;

/// The axis a foreign run is judged on: requests when its client reported
/// them as it went (in at least [`MIN_PROGRESS_STEPS`] steps after warm-up), else seconds.
pub fn foreign_axis(samples: &[Sample]) -> Axis {
    let mut counts: Vec<u64> = samples.iter().filter(|s| s.phase == Phase::Load).map(Sample::requests).collect();
    counts.dedup();
    if counts.len() >= MIN_PROGRESS_STEPS { Axis::Request } else { Axis::Second }
}

/// What a process whose allocator leaklab cannot read is judged on: its anonymous memory where every
/// sample has it, else its RSS.
fn from_outside(samples: &[Sample], side: Side) -> Quantity {
    let split = samples.iter().filter_map(|s| s.process(side)).all(|process| process.rss_parts.is_some());
    if split { Quantity::RssAnonBytes } else { Quantity::RssBytes }
}

/// A foreign run's samples after warm-up for `side`: for the client, its live heap where its runtime's
/// was read (the samples that carry a reading), else its anonymous memory (its allocator cannot be
/// read); the toy server's allocated bytes.
pub fn sampled(samples: &[Sample], side: Side, axis: Axis) -> Series {
    let loaded = || samples.iter().filter(|s| s.phase == Phase::Load);
    let quantity = match side {
        Side::Client if loaded().any(|s| s.client.runtime_heap.is_some()) => Quantity::LiveHeapBytes,
        Side::Client => from_outside(samples, side),
        Side::Server => Quantity::AllocatedBytes,
    };
    loaded_series(samples, side, quantity, axis)
}

/// A garbage-collected client's memory outside its runtime's heap, after warm-up, on the samples whose
/// reading has it; `None` when none has (not a runtime of ours, or a JVM that does not track it). Its
/// points carry no counts: the process's connections and counters are judged with its heap, once.
pub fn native(samples: &[Sample], axis: Axis) -> Option<Series> {
    let mut series = loaded_series(samples, Side::Client, Quantity::NativeBytes, axis);
    for point in &mut series.points {
        (point.connections, point.fds) = (None, None);
        point.counters.clear();
    }
    (!series.points.is_empty()).then_some(series)
}

/// `quantity` of `side` on the loaded samples that have it, where it is a runtime's reading (which not
/// every sample carries), else on every loaded sample.
fn loaded_series(samples: &[Sample], side: Side, quantity: Quantity, axis: Axis) -> Series {
    let at = |s: &Sample| match axis {
        Axis::Request => s.requests() as f64,
        Axis::Second => s.elapsed_s,
    };
    let read = |s: &&Sample| match quantity {
        Quantity::LiveHeapBytes => s.client.runtime_heap.is_some(),
        Quantity::NativeBytes => s.client.runtime_heap.is_some_and(|heap| heap.native_bytes.is_some()),
        _ => true,
    };
    let loaded = samples.iter().filter(|s| s.phase == Phase::Load);
    let points = loaded.filter(read).filter_map(|s| point(at(s), s, side, quantity)).collect();
    Series { quantity, axis, basis: Basis::Samples, points, after_cooldown: None }
}

/// Allocated bytes at the first settled `Cooldown` sample minus at the first
/// settled `Load` sample: the two checkpoints the heap profiles are taken at.
pub fn checkpoint_growth(samples: &[Sample], side: Side) -> Option<f64> {
    let at = |phase: Phase| {
        samples
            .iter()
            .find(|s| s.settled && s.phase == phase)
            .and_then(|s| s.process(side)?.jemalloc)
            .map(|j| j.allocated_bytes)
    };
    Some(at(Phase::Cooldown)? as f64 - at(Phase::Load)? as f64)
}
