//! The lines the panels draw: each process's memory, its connections and
//! streams, a merged run's load generators, the client's counters and the
//! server's metrics. Each line knows whose figure it is, and is drawn in
//! that process's style.

use plotters::prelude::*;

use leaklab_engine::sample::Sample;
use leaklab_engine::scenario::Segment;
use leaklab_engine::summary::Side;
use leaklab_probe::RuntimeHeap;
use leaklab_probe::procfs::RssParts;

use crate::report::units::{mib, thousands};

pub(super) const CLIENT: RGBColor = RGBColor(31, 119, 180);
pub(super) const SERVER: RGBColor = RGBColor(214, 95, 0);
const TIME_WAIT: RGBColor = RGBColor(120, 120, 120);
const CLIENT_STREAMS: RGBColor = RGBColor(23, 190, 207);
const SERVER_STREAMS: RGBColor = RGBColor(188, 189, 34);
/// Lighter tones of the client's and the server's colors, for their file-backed pages.
const CLIENT_FILE: RGBColor = RGBColor(140, 190, 225);
const SERVER_FILE: RGBColor = RGBColor(240, 170, 110);
/// A garbage-collected runtime's heap: what it keeps alive (judged), and what it holds for it.
const LIVE_HEAP: RGBColor = RGBColor(44, 160, 44);
const HEAP_COMMITTED: RGBColor = RGBColor(150, 210, 150);
/// What the runtime holds outside its heap (judged too).
const NATIVE: RGBColor = RGBColor(140, 86, 75);

/// Colors for the load generators of a merged run, in turn: apart from the client's blue and the metrics'.
const SEGMENT_COLORS: [RGBColor; 4] =
    [RGBColor(0, 128, 128), RGBColor(160, 30, 80), RGBColor(110, 110, 0), RGBColor(70, 40, 140)];

/// Colors for the scraped metrics, in turn.
const METRIC_COLORS: [RGBColor; 5] = [
    RGBColor(148, 103, 189),
    RGBColor(44, 160, 44),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// How heavily a line is drawn beside the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Weight {
    /// A process's own memory or connections, in its color: the client's drawn wider than the server's (and
    /// first), so where the two coincide, as connections do in a leak, both stay visible.
    Own,
    /// A thin line: a part of a process's memory, its streams, a reference line, a metric.
    Thin,
    /// The load generator of a merged run in this place of the color cycle: the first widest, so lines that
    /// coincide all show.
    Segment(usize),
}

/// A line to draw: its legend, whose figure it is, how it is drawn, and its points.
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub label: String,
    /// The process whose figure it is; `None` for one of neither (TIME_WAIT sockets, the stream limit).
    pub process: Option<Side>,
    pub color: RGBColor,
    pub weight: Weight,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

impl Line {
    /// A figure of `side`'s own, in its color.
    fn own(side: Side, label: String, dashed: bool, points: Vec<(f64, f64)>) -> Line {
        let color = match side {
            Side::Client => CLIENT,
            Side::Server => SERVER,
        };
        Line { label, process: Some(side), color, weight: Weight::Own, dashed, points }
    }

    /// A thin line of `process`'s, in `color`.
    fn thin(process: Option<Side>, label: String, color: RGBColor, dashed: bool, points: Vec<(f64, f64)>) -> Line {
        Line { label, process, color, weight: Weight::Thin, dashed, points }
    }

    /// Its stroke, from whose it is: the client's own lines widest, solid ones wider than dashed.
    pub(super) fn style(&self) -> ShapeStyle {
        let width = match (self.weight, self.process) {
            (Weight::Segment(at), _) => 4u32.saturating_sub(at as u32).max(1),
            (Weight::Own, Some(Side::Client)) if self.dashed => 4,
            (Weight::Own, Some(Side::Client)) => 5,
            _ => 2,
        };
        self.color.stroke_width(width)
    }
}

fn series(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples.iter().filter_map(|s| value(s).map(|v| (s.elapsed_s, v))).collect()
}

/// Each process's RSS and allocated memory. A process whose allocator leaklab cannot read is judged on its
/// anonymous memory: it shows that, and the file-backed pages that make up the rest of its RSS, beside its
/// RSS, whose parts they are. A garbage-collected runtime is judged on its live heap and on what it holds
/// outside it: it shows both, and the heap the runtime holds, at each reading.
pub(super) fn memory(samples: &[Sample]) -> Vec<Line> {
    let mut lines = Vec::new();
    for side in [Side::Client, Side::Server] {
        let name = side.name();
        lines.push(Line::own(
            side,
            format!("{name} RSS"),
            false,
            series(samples, |s| Some(mib(s.process(side)?.rss_bytes))),
        ));
        let split =
            samples.iter().filter_map(|s| s.process(side)).any(|p| p.jemalloc.is_none() && p.rss_parts.is_some());
        if split {
            let part =
                |pick: fn(&RssParts) -> u64| series(samples, |s| s.process(side)?.rss_parts.map(|p| mib(pick(&p))));
            lines.push(Line::own(side, format!("{name} anonymous (RssAnon)"), true, part(|p| p.anon_bytes)));
            let file = match side {
                Side::Client => CLIENT_FILE,
                Side::Server => SERVER_FILE,
            };
            lines.push(Line::thin(
                Some(side),
                format!("{name} file-backed (RssFile)"),
                file,
                false,
                part(|p| p.file_bytes),
            ));
            let heap = |pick: fn(&RuntimeHeap) -> u64| {
                series(samples, |s| s.process(side)?.runtime_heap.map(|heap| mib(pick(&heap))))
            };
            let live = heap(|heap| heap.live_bytes);
            if !live.is_empty() {
                let committed = heap(|heap| heap.committed_bytes);
                lines.push(Line::thin(Some(side), format!("{name} heap committed"), HEAP_COMMITTED, true, committed));
                let label = format!("{name} live heap (after full GC)");
                lines.push(Line { weight: Weight::Own, ..Line::thin(Some(side), label, LIVE_HEAP, false, live) });
                let native = series(samples, |s| s.process(side)?.runtime_heap?.native_bytes.map(mib));
                if !native.is_empty() {
                    let label = format!("{name} outside the heap");
                    lines.push(Line { weight: Weight::Own, ..Line::thin(Some(side), label, NATIVE, false, native) });
                }
            }
        } else {
            let allocated = series(samples, |s| s.process(side)?.jemalloc.map(|j| mib(j.allocated_bytes)));
            lines.push(Line::own(side, format!("{name} allocated (jemalloc)"), true, allocated));
        }
    }
    lines
}

/// Each process's open connections and fds; in a merged run, each load generator's connections under
/// their sum; TIME_WAIT sockets when `time_wait`.
pub(super) fn connections(samples: &[Sample], time_wait: bool) -> Vec<Line> {
    let segments: Vec<Segment> =
        samples.iter().find(|s| !s.segments.is_empty()).map_or(Vec::new(), |s| s.segments.keys().copied().collect());
    let mut lines = Vec::new();
    for side in [Side::Client, Side::Server] {
        let name = side.name();
        let label = match side {
            Side::Client if !segments.is_empty() => format!("client connections, sum of {}", segments.len()),
            _ => format!("{name} connections"),
        };
        let open = series(samples, |s| s.process(side)?.open_connections().map(|open| open as f64));
        lines.push(Line::own(side, label, false, open));
        if side == Side::Client {
            lines.extend(segments.iter().enumerate().map(|(at, segment)| segment_line(samples, at, *segment)));
        }
        lines.push(Line::own(
            side,
            format!("{name} fds"),
            true,
            series(samples, |s| s.process(side)?.fds.map(|fds| fds as f64)),
        ));
    }
    // TIME_WAIT only where there is some: per-request-close leaves one per request.
    if time_wait {
        let points = series(samples, |s| s.network.time_wait.map(|n| n as f64));
        lines.push(Line::thin(None, "TIME_WAIT sockets".into(), TIME_WAIT, true, points));
    }
    lines
}

/// The client connections of one load generator of a merged run, the `at`-th.
fn segment_line(samples: &[Sample], at: usize, segment: Segment) -> Line {
    let at = at % SEGMENT_COLORS.len();
    Line {
        label: format!("client connections, segment {segment}"),
        process: Some(Side::Client),
        color: SEGMENT_COLORS[at],
        weight: Weight::Segment(at),
        dashed: false,
        points: series(samples, |s| s.segments.get(&segment)?.client.open_connections().map(|open| open as f64)),
    }
}

/// Both ends' open streams, and the server's limit of concurrent streams when it has one near them.
pub(super) fn streams(samples: &[Sample], limit: Option<u64>) -> Vec<Line> {
    let mut lines = Vec::new();
    for side in [Side::Client, Side::Server] {
        let color = match side {
            Side::Client => CLIENT_STREAMS,
            Side::Server => SERVER_STREAMS,
        };
        // Dashed on the server's side: both ends count the same streams, and one line would hide the other.
        let points = series(samples, |s| s.process(side)?.streams.map(|n| n as f64));
        lines.push(Line::thin(Some(side), format!("{} streams", side.name()), color, side == Side::Server, points));
    }
    if let Some(limit) = limit {
        let points = series(samples, |_| Some(limit as f64));
        lines.push(Line::thin(None, format!("stream limit ({limit})"), TIME_WAIT, true, points));
    }
    lines
}

/// One line per counter the client reported and per metric scraped from the server's endpoint, each as
/// a percentage of its peak, so a count of goroutines and a number of bytes share an axis; the legend
/// gives each one's peak. With the panel's title.
pub(super) fn metrics(samples: &[Sample]) -> (Vec<Line>, String) {
    use std::collections::BTreeSet;
    let counters: BTreeSet<&String> = samples.iter().flat_map(|s| s.counters.keys()).collect();
    let metrics: BTreeSet<&String> = samples.iter().flat_map(|s| s.server_metrics.keys()).collect();
    let title = match (counters.is_empty(), metrics.is_empty()) {
        (false, false) => "Client counters and server metrics, each as % of its peak",
        (false, true) => "Client counters, each as % of its peak",
        _ => "Server metrics, each as % of its peak",
    };
    let counter_series = counters.into_iter().map(|name| {
        let points = series(samples, |s| s.counters.get(name).map(|count| *count as f64));
        (Side::Client, format!("client {name}"), points)
    });
    let metric_series = metrics
        .into_iter()
        .map(|name| (Side::Server, name.clone(), series(samples, |s| s.server_metrics.get(name).copied())));
    let lines = counter_series
        .chain(metric_series)
        .enumerate()
        .map(|(index, (side, label, points))| {
            let peak = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
            let scale = if peak > 0.0 { 100.0 / peak } else { 0.0 };
            let label = format!("{label}\n  (peak {})", short_number(peak));
            let points = points.into_iter().map(|(at, value)| (at, value * scale)).collect();
            Line::thin(Some(side), label, METRIC_COLORS[index % METRIC_COLORS.len()], false, points)
        })
        .collect();
    (lines, title.to_owned())
}

/// 1234 → "1,234"; 1.5e9 → "1.5e9": a legend's width.
fn short_number(value: f64) -> String {
    if value.abs() >= 1e6 {
        format!("{value:.2e}")
    } else if value.fract() == 0.0 {
        thousands(value as u64)
    } else {
        format!("{value:.2}")
    }
}
