//! The samples of several load generators as the samples of one run, lined up
//! on wall-clock time.
//!
//! Every sample of every segment becomes a merged sample at its instant. There,
//! each segment counts the requests it had done by then (interpolated between
//! its two samples around it) and its client as its nearest sample found it;
//! the merged sample's requests and client are their sums, and its server is
//! the server as the segment whose sample it is read it then. The merged phase
//! is the earliest any segment is in: the scenario is loaded once every segment
//! is past its warm-up, and cools down once every one has finished.
//!
//! Segments of one split run the same rounds, so their checkpoints come in the
//! same order. The merged run's k-th checkpoint is the last segment's k-th: the
//! moment every segment has finished its k-th round.

use std::collections::BTreeMap;

use leaklab_probe::ProcessSnapshot;

use leaklab_engine::sample::{NetworkSample, Phase, Sample, SegmentSample};
use leaklab_engine::scenario::Segment;

/// One segment's samples, each with its wall-clock time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part<'a> {
    pub segment: Segment,
    pub samples: &'a [Sample],
}

impl Part<'_> {
    fn time(&self, index: usize) -> f64 {
        self.samples[index].unix_time_s.unwrap_or(f64::NAN)
    }

    /// Index of the last sample taken at or before `time`, if any.
    fn at_or_before(&self, time: f64) -> Option<usize> {
        self.samples.partition_point(|s| s.unix_time_s.is_some_and(|t| t <= time)).checked_sub(1)
    }

    /// Requests OK and failed by `time`, interpolated between the samples around it; before the first
    /// sample, its counts, and after the last, the last's.
    fn requests_at(&self, time: f64) -> (u64, u64) {
        let Some(before) = self.at_or_before(time) else {
            let first = &self.samples[0];
            return (first.requests_ok, first.requests_failed);
        };
        let (a, b) = (&self.samples[before], self.samples.get(before + 1));
        let Some(b) = b else { return (a.requests_ok, a.requests_failed) };
        let span = self.time(before + 1) - self.time(before);
        let share = if span > 0.0 { ((time - self.time(before)) / span).clamp(0.0, 1.0) } else { 0.0 };
        let between = |from: u64, to: u64| from + ((to.saturating_sub(from)) as f64 * share).round() as u64;
        (between(a.requests_ok, b.requests_ok), between(a.requests_failed, b.requests_failed))
    }

    /// The sample nearest `time`.
    fn nearest(&self, time: f64) -> &Sample {
        let after = self.at_or_before(time).map_or(0, |i| i + 1);
        let candidates = [after.checked_sub(1), (after < self.samples.len()).then_some(after)];
        let distance = |i: usize| (self.time(i) - time).abs();
        let best = candidates.into_iter().flatten().min_by(|&a, &b| distance(a).total_cmp(&distance(b)));
        &self.samples[best.unwrap_or(0)]
    }

    /// The phase at `time`: its latest sample's, or baseline before its first.
    fn phase_at(&self, time: f64) -> Phase {
        self.at_or_before(time).map_or(Phase::Baseline, |i| self.samples[i].phase)
    }

    /// Indices of its checkpoints, in order.
    fn checkpoints(&self) -> Vec<usize> {
        (0..self.samples.len()).filter(|&i| self.samples[i].settled).collect()
    }
}

/// The merged samples of `parts`, in wall-clock order, timed from the earliest sample of any of them.
/// Every sample must have its wall-clock time; parts without samples are left out.
pub(crate) fn align(parts: &[Part<'_>]) -> Vec<Sample> {
    let parts: Vec<Part<'_>> = parts.iter().copied().filter(|part| !part.samples.is_empty()).collect();
    let mut order: Vec<(usize, usize)> =
        parts.iter().enumerate().flat_map(|(p, part)| (0..part.samples.len()).map(move |i| (p, i))).collect();
    order.sort_by(|&(p, i), &(q, j)| parts[p].time(i).total_cmp(&parts[q].time(j)).then(p.cmp(&q)));
    let Some(&(p0, i0)) = order.first() else { return Vec::new() };
    let start = parts[p0].time(i0);
    let checkpoints = merged_checkpoints(&parts);
    order
        .into_iter()
        .map(|(p, i)| {
            let own = &parts[p].samples[i];
            let time = parts[p].time(i);
            let segments: BTreeMap<Segment, SegmentSample> = parts
                .iter()
                .enumerate()
                .map(|(q, part)| {
                    let ((requests_ok, requests_failed), client) = if q == p {
                        ((own.requests_ok, own.requests_failed), own.client)
                    } else {
                        (part.requests_at(time), part.nearest(time).client)
                    };
                    (part.segment, SegmentSample { requests_ok, requests_failed, client })
                })
                .collect();
            let clients: Vec<ProcessSnapshot> = segments.values().map(|s| s.client).collect();
            Sample {
                elapsed_s: time - start,
                unix_time_s: Some(time),
                phase: parts.iter().map(|part| part.phase_at(time)).min().unwrap_or(own.phase),
                requests_ok: segments.values().map(|s| s.requests_ok).sum(),
                requests_failed: segments.values().map(|s| s.requests_failed).sum(),
                client: ProcessSnapshot::total(&clients).unwrap_or(own.client),
                server: own.server,
                settled: checkpoints.contains(&(p, i)),
                network: network(&parts, time),
                server_metrics: own.server_metrics.clone(),
                counters: BTreeMap::new(),
                segments,
            }
        })
        .collect()
}

/// For each checkpoint every part took, the part and sample of the last to take it. A part that took
/// fewer (an interrupted one) ends them.
fn merged_checkpoints(parts: &[Part<'_>]) -> Vec<(usize, usize)> {
    let each: Vec<Vec<usize>> = parts.iter().map(Part::checkpoints).collect();
    let common = each.iter().map(Vec::len).min().unwrap_or(0);
    (0..common)
        .filter_map(|k| {
            (0..parts.len())
                .map(|p| (p, each[p][k]))
                .max_by(|&(p, i), &(q, j)| parts[p].time(i).total_cmp(&parts[q].time(j)).then(q.cmp(&p)))
        })
        .collect()
}

/// The network figures of every part's nearest sample, summed: TIME_WAIT sockets, reconnects, GOAWAYs.
fn network(parts: &[Part<'_>], time: f64) -> NetworkSample {
    let nearest: Vec<&NetworkSample> = parts.iter().map(|part| &part.nearest(time).network).collect();
    let mut goaways: Option<BTreeMap<String, u64>> = None;
    for received in nearest.iter().filter_map(|n| n.goaways_received.as_ref()) {
        let total = goaways.get_or_insert_with(BTreeMap::new);
        for (kind, count) in received {
            *total.entry(kind.clone()).or_default() += count;
        }
    }
    NetworkSample {
        time_wait: nearest.iter().map(|n| n.time_wait).sum(),
        reconnects: nearest.iter().map(|n| n.reconnects).sum(),
        goaways_received: goaways,
    }
}
