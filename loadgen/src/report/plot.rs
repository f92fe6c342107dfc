//! `memory.svg` and `memory.png`: memory over time for client and server,
//! with a second panel for open connections and file descriptors.
//!
//! Text is laid out with a font compiled into the binary (Ubuntu Light, from
//! `epaint_default_fonts`), so drawing needs no system font library.

use leaklab_engine::scenario::{PolicyName, Segment};
use std::io::Write;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::units::{bytes_per_request, mib};
use super::words::{self, per};
use super::{Exporter, Report};
use leaklab_probe::ProcessSnapshot;
use leaklab_probe::procfs::RssParts;

use leaklab_engine::sample::{Phase, Sample};
use leaklab_engine::summary::{EventKind, Summary, TimelineEvent};

const WIDTH: u32 = 1200;
const LEGEND_WIDTH: u32 = 240;
const HEIGHT: u32 = 880;
const HEADER: u32 = 100;
const CLIENT: RGBColor = RGBColor(31, 119, 180);
const SERVER: RGBColor = RGBColor(214, 95, 0);
const TIME_WAIT: RGBColor = RGBColor(120, 120, 120);
const CLIENT_STREAMS: RGBColor = RGBColor(23, 190, 207);
const SERVER_STREAMS: RGBColor = RGBColor(188, 189, 34);
/// Lighter tones of the client's and the server's colors, for their file-backed pages.
const CLIENT_FILE: RGBColor = RGBColor(140, 190, 225);
const SERVER_FILE: RGBColor = RGBColor(240, 170, 110);

pub(crate) fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a static byte array of a valid TTF; registration cannot fail on it.
        let _ = register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

/// Writes `memory.svg`.
#[derive(Debug)]
pub(crate) struct SvgPlot;
/// Writes `memory.png`.
#[derive(Debug)]
pub(crate) struct PngPlot;

impl Exporter<Report> for SvgPlot {
    fn export(&self, report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
        let header = Header::of(&report.summary);
        svg((WIDTH, HEIGHT), out, &|root| draw(root, &header, &report.samples).map_err(|e| e.to_string()))
    }
}

impl Exporter<Report> for PngPlot {
    fn export(&self, report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
        let header = Header::of(&report.summary);
        png((WIDTH, HEIGHT), out, &|root| draw(root, &header, &report.samples).map_err(|e| e.to_string()))
    }
}

/// What the plot says above its panels and marks on them; the samples give the lines.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// The big line: `leak: memory over time`.
    pub title: String,
    /// What ran, in one line.
    pub headline: String,
    /// The verdict, in one line.
    pub verdict: String,
    /// Markers for the timeline.
    pub events: Vec<TimelineEvent>,
    /// Whether to draw the TIME_WAIT line.
    pub time_wait: bool,
    /// Whether to draw both ends' open streams (the stream policies).
    pub streams: bool,
    /// With the streams: the toy server's limit of concurrent streams per connection, drawn as a line.
    pub stream_limit: Option<u64>,
}

impl Header {
    fn of(summary: &Summary) -> Header {
        Header {
            title: format!("{}: memory over time", summary.scenario),
            headline: headline(summary),
            verdict: verdict_line(summary),
            events: summary.lifecycle.events.clone(),
            time_wait: summary.lifecycle.time_wait.is_some_and(|tw| tw.peak > tw.start.max(2)),
            streams: super::words::opened_streams(summary),
            stream_limit: summary
                .plan
                .as_ref()
                .and_then(|plan| plan.max_concurrent_streams)
                .filter(|limit| streams_near(summary, *limit)),
        }
    }
}

/// Whether open streams came within half of the server's stream limit: a limit far above them
/// would only flatten their lines.
fn streams_near(summary: &Summary, limit: u64) -> bool {
    let peak = |streams: Option<leaklab_verdict::stats::Span>| streams.map_or(0, |s| s.peak);
    2 * peak(summary.client.streams).max(summary.server.as_ref().map_or(0, |s| peak(s.streams))) >= limit
}

/// What draws a plot on an SVG canvas; an error says what went wrong.
pub(crate) type DrawSvg<'a> = dyn for<'b> Fn(&DrawingArea<SVGBackend<'b>, Shift>) -> Result<(), String> + 'a;
/// What draws a plot on an RGB canvas.
pub(crate) type DrawPng<'a> = dyn for<'b> Fn(&DrawingArea<BitMapBackend<'b>, Shift>) -> Result<(), String> + 'a;

/// Draws with `draw` on an SVG canvas of `size` and writes the document to `out`.
pub(crate) fn svg(size: (u32, u32), out: &mut dyn Write, draw: &DrawSvg<'_>) -> anyhow::Result<()> {
    register_fonts();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw(&root).map_err(|error| anyhow::anyhow!("drawing the SVG plot: {error}"))?;
        root.present().map_err(|error| anyhow::anyhow!("finishing the SVG plot: {error}"))?;
    }
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Draws with `draw` on an RGB canvas of `size` and writes it to `out` as a PNG.
pub(crate) fn png(size: (u32, u32), out: &mut dyn Write, draw: &DrawPng<'_>) -> anyhow::Result<()> {
    use image::ImageEncoder;
    register_fonts();
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(&root).map_err(|error| anyhow::anyhow!("drawing the PNG plot: {error}"))?;
        root.present().map_err(|error| anyhow::anyhow!("finishing the PNG plot: {error}"))?;
    }
    image::codecs::png::PngEncoder::new(out).write_image(&pixels, size.0, size.1, image::ColorType::Rgb8)?;
    Ok(())
}

/// A line to draw: its legend, color, whether dashed, and its points.
struct Line {
    label: std::borrow::Cow<'static, str>,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

impl Line {
    /// Client lines are drawn wider than server lines (and first), so where the
    /// two coincide, as connections do in a leak, both stay visible.
    fn style(&self) -> ShapeStyle {
        // The segments of a split run the same shares: wider first, so lines that coincide all show.
        if let Some(at) = SEGMENT_COLORS.iter().position(|color| *color == self.color) {
            return self.color.stroke_width(4u32.saturating_sub(at as u32).max(1));
        }
        let width = match (self.color == CLIENT, self.dashed) {
            (true, false) => 5,
            (true, true) => 4,
            (false, false) => 2,
            (false, true) => 2,
        };
        self.color.stroke_width(width)
    }
}

fn series(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples.iter().filter_map(|s| value(s).map(|v| (s.elapsed_s, v))).collect()
}

/// When each phase began, in seconds.
fn phase_starts(samples: &[Sample]) -> Vec<(Phase, f64)> {
    let mut starts = Vec::new();
    for sample in samples {
        if starts.last().is_none_or(|(phase, _)| *phase != sample.phase) {
            starts.push((sample.phase, sample.elapsed_s));
        }
    }
    starts
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    header: &Header,
    samples: &[Sample],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(HEADER);
    top.draw(&Text::new(header.title.clone(), (20, 12), ("sans-serif", 28).into_font().color(&BLACK)))?;
    top.draw(&Text::new(
        header.headline.clone(),
        (20, 48),
        ("sans-serif", 17).into_font().color(&RGBColor(60, 60, 60)),
    ))?;
    top.draw(&Text::new(header.verdict.clone(), (20, 74), ("sans-serif", 17).into_font().color(&BLACK)))?;
    let (metrics, metrics_title) = metric_lines(samples);
    // The client's counters and the scraped metrics, when there are any, take a third panel under the other two.
    let (body, metrics_area) = if metrics.is_empty() {
        (body, None)
    } else {
        let (body, area) = body.split_vertically((HEIGHT - HEADER) * 72 / 100);
        (body, Some(area))
    };
    let body_height = body.dim_in_pixel().1;
    let (upper, lower) = body.split_vertically(body_height * 58 / 100);

    let memory = vec![
        Line {
            label: "client RSS".into(),
            color: CLIENT,
            dashed: false,
            points: series(samples, |s| Some(mib(s.client.rss_bytes))),
        },
        Line {
            label: "client allocated (jemalloc)".into(),
            color: CLIENT,
            dashed: true,
            points: series(samples, |s| s.client.jemalloc.map(|j| mib(j.allocated_bytes))),
        },
        Line {
            label: "server RSS".into(),
            color: SERVER,
            dashed: false,
            points: series(samples, |s| s.server.map(|x| mib(x.process.rss_bytes))),
        },
        Line {
            label: "server allocated (jemalloc)".into(),
            color: SERVER,
            dashed: true,
            points: series(samples, |s| s.server.and_then(|x| x.process.jemalloc).map(|j| mib(j.allocated_bytes))),
        },
    ];
    let mut memory = memory;
    // A process whose allocator leaklab cannot read is judged on its anonymous memory: show it, and the
    // file-backed pages that make up the rest of its RSS.
    let from_outside = [
        ("client", CLIENT, CLIENT_FILE, (|s: &Sample| Some(&s.client)) as fn(&Sample) -> Option<&ProcessSnapshot>),
        ("server", SERVER, SERVER_FILE, |s: &Sample| s.server.as_ref().map(|x| &x.process)),
    ];
    for (name, color, file_color, side) in from_outside {
        let split = samples.iter().filter_map(side).any(|p| p.jemalloc.is_none() && p.rss_parts.is_some());
        if !split {
            continue;
        }
        memory.retain(|line| line.label != format!("{name} allocated (jemalloc)"));
        let part = |pick: fn(&RssParts) -> u64| series(samples, move |s| side(s)?.rss_parts.map(|p| mib(pick(&p))));
        // Beside the process's RSS in the legend, whose parts they are.
        let at = memory.iter().position(|line| line.label == format!("{name} RSS")).map_or(memory.len(), |i| i + 1);
        let parts = [
            Line {
                label: format!("{name} anonymous (RssAnon)").into(),
                color,
                dashed: true,
                points: part(|p| p.anon_bytes),
            },
            Line {
                label: format!("{name} file-backed (RssFile)").into(),
                color: file_color,
                dashed: false,
                points: part(|p| p.file_bytes),
            },
        ];
        memory.splice(at..at, parts);
    }
    let events = &header.events;
    panel(&upper, samples, "Memory", "MiB", 1, &memory, events)?;

    let connections = vec![
        Line {
            label: "client connections".into(),
            color: CLIENT,
            dashed: false,
            points: series(samples, |s| s.client.open_connections().map(|open| open as f64)),
        },
        Line {
            label: "client fds".into(),
            color: CLIENT,
            dashed: true,
            points: series(samples, |s| s.client.fds.map(|fds| fds as f64)),
        },
        Line {
            label: "server connections".into(),
            color: SERVER,
            dashed: false,
            points: series(samples, |s| s.server?.process.open_connections().map(|open| open as f64)),
        },
        Line {
            label: "server fds".into(),
            color: SERVER,
            dashed: true,
            points: series(samples, |s| s.server?.process.fds.map(|fds| fds as f64)),
        },
    ];
    let mut connections = connections;
    // A merged run: each load generator's connections under their sum.
    let segments: Vec<Segment> =
        samples.iter().find(|s| !s.segments.is_empty()).map_or(Vec::new(), |s| s.segments.keys().copied().collect());
    if !segments.is_empty() {
        connections[0].label = format!("client connections, sum of {}", segments.len()).into();
    }
    for (at, segment) in segments.into_iter().enumerate() {
        connections.insert(
            1 + at,
            Line {
                label: format!("client connections, segment {segment}").into(),
                color: SEGMENT_COLORS[at % SEGMENT_COLORS.len()],
                dashed: false,
                points: series(samples, |s| {
                    s.segments.get(&segment)?.client.open_connections().map(|open| open as f64)
                }),
            },
        );
    }
    // TIME_WAIT only where there is some: per-request-close leaves one per request.
    if header.time_wait {
        connections.push(Line {
            label: "TIME_WAIT sockets".into(),
            color: TIME_WAIT,
            dashed: true,
            points: series(samples, |s| s.network.time_wait.map(|n| n as f64)),
        });
    }
    let mut title = "Open connections and file descriptors";
    if header.streams {
        title = "Open connections, streams and file descriptors";
        for (label, color, side) in [
            ("client streams", CLIENT_STREAMS, (|s: &Sample| s.client.streams) as fn(&Sample) -> Option<u64>),
            ("server streams", SERVER_STREAMS, |s: &Sample| s.server?.process.streams),
        ] {
            // Dashed on the server's side: both ends count the same streams, and one line would hide the other.
            connections.push(Line {
                label: label.into(),
                color,
                dashed: label.starts_with("server"),
                points: series(samples, |s| side(s).map(|n| n as f64)),
            });
        }
        if let Some(limit) = header.stream_limit {
            connections.push(Line {
                label: format!("stream limit ({limit})").into(),
                color: TIME_WAIT,
                dashed: true,
                points: series(samples, |_| Some(limit as f64)),
            });
        }
    }
    panel(&lower, samples, title, "count", 0, &connections, events)?;
    if let Some(area) = metrics_area {
        panel(&area, samples, &metrics_title, "% of peak", 0, &metrics, events)?;
    }
    Ok(())
}

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

/// One line per counter the client reported and per metric scraped from the server's endpoint, each as
/// a percentage of its peak, so a count of goroutines and a number of bytes share an axis; the legend
/// gives each one's peak. With the panel's title.
fn metric_lines(samples: &[Sample]) -> (Vec<Line>, String) {
    use std::collections::BTreeSet;
    let counters: BTreeSet<&String> = samples.iter().flat_map(|s| s.counters.keys()).collect();
    let metrics: BTreeSet<&String> = samples.iter().flat_map(|s| s.server_metrics.keys()).collect();
    let title = match (counters.is_empty(), metrics.is_empty()) {
        (false, false) => "Client counters and server metrics, each as % of its peak",
        (false, true) => "Client counters, each as % of its peak",
        _ => "Server metrics, each as % of its peak",
    };
    let counter_series = counters
        .into_iter()
        .map(|name| (format!("client {name}"), series(samples, |s| s.counters.get(name).map(|count| *count as f64))));
    let metric_series =
        metrics.into_iter().map(|name| (name.clone(), series(samples, |s| s.server_metrics.get(name).copied())));
    let lines = counter_series
        .chain(metric_series)
        .enumerate()
        .map(|(index, (label, points))| {
            let peak = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
            let scale = if peak > 0.0 { 100.0 / peak } else { 0.0 };
            Line {
                label: format!("{label}\n  (peak {})", short_number(peak)).into(),
                color: METRIC_COLORS[index % METRIC_COLORS.len()],
                dashed: false,
                points: points.into_iter().map(|(at, value)| (at, value * scale)).collect(),
            }
        })
        .collect();
    (lines, title.to_owned())
}

/// 1234 → "1,234"; 1.5e9 → "1.5e9": a legend's width.
fn short_number(value: f64) -> String {
    if value.abs() >= 1e6 {
        format!("{value:.2e}")
    } else if value.fract() == 0.0 {
        super::units::thousands(value as u64)
    } else {
        format!("{value:.2}")
    }
}

fn headline(summary: &Summary) -> String {
    let Some(command) = &summary.command else {
        let mut line = format!(
            "{}{} · {} requests · {:.0} req/s · {} client connections opened · allocated: client {}, server {}",
            summary.policy.map_or("?", PolicyName::name),
            summary
                .plan
                .as_ref()
                .and_then(|plan| plan.other_transport())
                .map(|transport| format!(" on {}", transport.name()))
                .unwrap_or_default(),
            summary.requests_done().unwrap_or(0),
            summary.throughput_rps.unwrap_or(0.0),
            summary.client.connections_opened.unwrap_or(0),
            bytes_per_request(summary.growth.client_allocated_bytes_per_request),
            bytes_per_request(summary.growth.server_allocated_bytes_per_request),
        );
        if summary.server.is_none() {
            line.push_str(" (server not measured)");
        }
        if let Some(hit) = &summary.stopped_at {
            line.push_str(&format!(" · stopped: {}", hit.which.name()));
        }
        return line;
    };
    // The program's name, not its path: the line has one plot's width.
    let what = match &command.argv {
        Some(argv) => {
            let name = |program: &String| {
                std::path::Path::new(program).file_name().map_or(program.clone(), |n| n.to_string_lossy().into_owned())
            };
            argv.first().map(name).into_iter().chain(argv.iter().skip(1).cloned()).collect::<Vec<_>>().join(" ")
        }
        None => summary.scenario.trim_start_matches("watch-").to_owned(),
    };
    let requests = summary.requests_done().map(|n| format!(" · {n} requests reported")).unwrap_or_default();
    let ended = match (summary.stopped_by, command.exit_code) {
        (leaklab_engine::halt::StopReason::ProcessExited, Some(code)) => format!("exited with code {code}"),
        (reason, _) => words::stop_reason(reason).to_owned(),
    };
    format!("{what} · pid {} · {:.1} s watched{requests} · {ended}", command.pid, summary.load_duration_s)
}

fn verdict_line(summary: &Summary) -> String {
    let verdict = &summary.verdict;
    let one = |name: &str, v: &leaklab_verdict::ProcessVerdict| {
        // Words, not ✔/✖: the compiled-in font has no such glyphs.
        let met = if v.expectation_met == Some(true) { "met" } else { "NOT MET" };
        let expected = v.expected.map(|e| format!(" (expected {}: {met})", e.name()));
        // The headline says the built-in processes' figures are allocated bytes; RSS is the exception to name.
        let rss = match v.quantity {
            leaklab_verdict::Quantity::AllocatedBytes => "",
            leaklab_verdict::Quantity::RssBytes => "RSS ",
            leaklab_verdict::Quantity::RssAnonBytes => "anonymous ",
        };
        format!("{name} {}, {rss}{} per {}{}", v.kind, words::slope(v), per(v.axis), expected.unwrap_or_default())
    };
    let mut line = format!("verdict: {}", one("client", &verdict.client));
    if let Some(server) = &verdict.server {
        line.push_str(" · ");
        line.push_str(&one("server", server));
    }
    line
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    title: &str,
    unit: &str,
    decimals: usize,
    lines: &[Line],
    events: &[TimelineEvent],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (area, legend_area) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    legend(&legend_area, lines, events)?;
    let area = &area;
    let x_max = samples.last().map_or(1.0, |s| s.elapsed_s).max(0.1);
    let y_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.12 } else { 1.0 };
    let mut chart = house_chart(area, title, (x_max, "seconds since start", 1), (y_max, unit, decimals))?;

    // Shade the warm-up and the measured load so the eye finds them at once.
    let starts = phase_starts(samples);
    for (index, (phase, from)) in starts.iter().enumerate() {
        let to = starts.get(index + 1).map_or(x_max, |(_, t)| *t);
        let (shade, label) = match phase {
            Phase::Warmup => (RGBColor(120, 120, 120).mix(0.10), "warm-up"),
            Phase::Load => (RGBColor(46, 160, 67).mix(0.09), "load"),
            Phase::Cooldown => (RGBColor(255, 255, 255).mix(0.0), "cool-down"),
            Phase::Baseline => continue,
        };
        chart.draw_series(std::iter::once(Rectangle::new([(*from, 0.0), (to, y_max)], shade.filled())))?;
        // A phase too narrow for its label (a short warm-up) would print over the next one's.
        if (to - from) / x_max >= 0.06 {
            let label_style = ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90));
            chart.draw_series(std::iter::once(
                EmptyElement::at((*from, y_max)) + Text::new(label, (5, 4), label_style),
            ))?;
        }
    }
    for (phase, at) in &starts {
        if matches!(phase, Phase::Warmup | Phase::Load | Phase::Cooldown) {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(*at, 0.0), (*at, y_max)],
                RGBColor(150, 150, 150),
            )))?;
        }
    }

    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let style = line.style();
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points.iter().copied(), 8, 5, style))?;
        } else {
            chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?;
        }
    }
    draw_events(&mut chart, events, y_max)
}

/// Events as markers along the top of the chart, one row per kind (so a
/// thousand reaped connections read as a band, not a smear), and faults as
/// red vertical lines across the chart.
fn draw_events<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    events: &[TimelineEvent],
    y_max: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for event in events {
        if event.kind == EventKind::Fault {
            chart.draw_series(DashedLineSeries::new(
                [(event.at_s, 0.0), (event.at_s, y_max)],
                6,
                4,
                event_color(event.kind).stroke_width(2),
            ))?;
            let font = ("sans-serif", 14).into_font().color(&event_color(event.kind));
            chart.draw_series(std::iter::once(
                EmptyElement::at((event.at_s, y_max * 0.80)) + Text::new(event.label.clone(), (4, 0), font),
            ))?;
        } else {
            let row = event_row(event.kind);
            let y = y_max * (0.955 - 0.04 * row as f64);
            chart.draw_series(std::iter::once(TriangleMarker::new(
                (event.at_s, y),
                5,
                event_color(event.kind).filled(),
            )))?;
        }
    }
    Ok(())
}

fn event_row(kind: EventKind) -> usize {
    match kind {
        EventKind::ServerGoaway => 0,
        EventKind::ClientGoaway => 1,
        EventKind::Reconnect => 2,
        EventKind::Fault => 3,
        EventKind::ServerLimit => 4,
    }
}

fn event_color(kind: EventKind) -> RGBColor {
    match kind {
        EventKind::ServerGoaway => SERVER,
        EventKind::ClientGoaway => CLIENT,
        EventKind::Reconnect => RGBColor(44, 160, 44),
        EventKind::Fault => RGBColor(200, 30, 30),
        EventKind::ServerLimit => RGBColor(148, 103, 189),
    }
}

/// A chart with seconds or requests across and a quantity up.
pub(crate) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An axis: its largest value, its title and the decimals of its labels.
pub(crate) type Axis<'a> = (f64, &'a str, usize);

/// A chart from 0 to each axis's maximum in the house style: caption, margins,
/// a light grid, axis titles.
pub(crate) fn house_chart<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    (x_max, x_title, x_decimals): Axis<'_>,
    (y_max, y_title, y_decimals): Axis<'_>,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin_left(16)
        .margin_right(12)
        .margin_bottom(8)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_title)
        .y_desc(y_title)
        .x_label_formatter(&|value| format!("{value:.x_decimals$}"))
        .y_label_formatter(&|value| format!("{value:.y_decimals$}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .draw()?;
    Ok(chart)
}

/// The legend, in its own strip beside the chart so it never hides a line.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
    events: &[TimelineEvent],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = ("sans-serif", 15).into_font().color(&RGBColor(40, 40, 40));
    let mut y = 52;
    for line in lines {
        let style = line.style();
        if line.dashed {
            area.draw(&PathElement::new(vec![(6, y), (14, y)], style))?;
            area.draw(&PathElement::new(vec![(19, y), (27, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(6, y), (27, y)], style))?;
        }
        let label = if line.points.is_empty() { format!("{} (n/a)", line.label) } else { line.label.to_string() };
        // A metric's name and its peak take a line each: a legend strip is narrow.
        for (row, text) in label.split('\n').enumerate() {
            area.draw(&Text::new(text.to_owned(), (36, y - 9 + 17 * row as i32), font.clone()))?;
        }
        y += 26 + 17 * label.matches('\n').count() as i32;
    }
    // One entry per kind of event, with how many there were.
    let mut totals: std::collections::BTreeMap<EventKind, u64> = std::collections::BTreeMap::new();
    for event in events {
        *totals.entry(event.kind).or_default() += event.count;
    }
    for (kind, total) in totals {
        if kind == EventKind::Fault {
            area.draw(&PathElement::new(vec![(6, y), (27, y)], event_color(kind).stroke_width(2)))?;
        } else {
            area.draw(&TriangleMarker::new((16, y), 5, event_color(kind).filled()))?;
        }
        area.draw(&Text::new(format!("{} ({total})", kind.name()), (36, y - 9), font.clone()))?;
        y += 26;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn png_and_svg_are_drawn_with_their_legend_axes_and_verdict() {
        let (summary, samples) = scripted_report();
        let report = Report { summary, samples };
        let mut png = Vec::new();
        PngPlot.export(&report, &mut png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = crate::report::to_string(&SvgPlot, &report).unwrap();
        assert!(svg.contains("client RSS") && svg.contains("server connections"), "legend missing");
        assert!(svg.contains("seconds since start") && svg.contains("MiB"), "axis titles missing");
        assert!(svg.contains("verdict: client LEAK") && svg.contains("(expected leak: met)"), "verdict line missing");
        assert!(!svg.contains("Server metrics"), "a panel for metrics no endpoint gave");
    }

    #[test]
    fn scraped_server_metrics_get_a_panel_of_their_own() {
        let (summary, mut samples) = scripted_report();
        for (index, sample) in samples.iter_mut().enumerate() {
            sample.server_metrics.insert("go_goroutines".to_owned(), 10.0 + index as f64 * 3.0);
        }
        let (lines, _) = metric_lines(&samples);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].points.last().map(|p| p.1), Some(100.0), "the peak is 100%");
        let svg =
            crate::report::to_string(&SvgPlot, &Report { summary: summary.clone(), samples: samples.clone() }).unwrap();
        assert!(svg.contains("Server metrics") && svg.contains("go_goroutines"), "metrics panel missing");
        // A client's counters share the panel, named as the client's.
        for (index, sample) in samples.iter_mut().enumerate() {
            sample.counters.insert("goroutines".to_owned(), 5 + index as u64 * 4);
        }
        let (lines, title) = metric_lines(&samples);
        assert_eq!(title, "Client counters and server metrics, each as % of its peak");
        assert!(lines[0].label.starts_with("client goroutines"), "{}", lines[0].label);
        let svg = crate::report::to_string(&SvgPlot, &Report { summary, samples }).unwrap();
        assert!(svg.contains("Client counters and server metrics") && svg.contains("client goroutines"));
    }

    #[test]
    fn open_streams_are_drawn_under_the_servers_stream_limit() {
        let (mut summary, samples) = scripted_report();
        summary.policy = Some(PolicyName::StreamLeak);
        let svg =
            crate::report::to_string(&SvgPlot, &Report { summary: summary.clone(), samples: samples.clone() }).unwrap();
        assert!(svg.contains("client streams") && svg.contains("server streams"), "stream lines missing");
        assert!(!svg.contains("stream limit"), "a limit the server does not have");
        summary.plan.as_mut().expect("a built-in run's plan").max_concurrent_streams = Some(300);
        summary.client.streams = Some(leaklab_verdict::stats::Span { start: 0, end: 300, peak: 300 });
        let svg =
            crate::report::to_string(&SvgPlot, &Report { summary: summary.clone(), samples: samples.clone() }).unwrap();
        assert!(svg.contains("stream limit (300)"), "the limit's line missing");
        summary.plan.as_mut().expect("a built-in run's plan").max_concurrent_streams = Some(1_000);
        summary.client.streams = Some(leaklab_verdict::stats::Span { start: 0, end: 40, peak: 40 });
        let svg = crate::report::to_string(&SvgPlot, &Report { summary, samples }).unwrap();
        assert!(!svg.contains("stream limit"), "a limit far above the streams flattens them");
    }

    #[test]
    fn phases_start_where_their_first_sample_is() {
        let (_, samples) = scripted_report();
        let starts = phase_starts(&samples);
        let phases: Vec<Phase> = starts.iter().map(|(p, _)| *p).collect();
        assert_eq!(phases, [Phase::Baseline, Phase::Warmup, Phase::Load, Phase::Cooldown]);
    }
}
