//! A panel of the plot: its chart with the phases shaded, its lines, and
//! the run's events along its top; its legend beside it.

use plotters::coord::Shift;
use plotters::prelude::*;

use leaklab_engine::sample::{Phase, Sample};
use leaklab_engine::summary::{EventKind, TimelineEvent};

use super::lines::{CLIENT, Line, SERVER};
use super::{Chart, LEGEND_WIDTH, WIDTH, house_chart};

/// When each phase began, in seconds.
pub(super) fn phase_starts(samples: &[Sample]) -> Vec<(Phase, f64)> {
    let mut starts = Vec::new();
    for sample in samples {
        if starts.last().is_none_or(|(phase, _)| *phase != sample.phase) {
            starts.push((sample.phase, sample.elapsed_s));
        }
    }
    starts
}

pub(super) fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    title: &str,
    unit: &str,
    decimals: usize,
    lines: &[Line],
    events: &[TimelineEvent],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (area, legend_area) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    super::legend::legend(&legend_area, lines, events)?;
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

pub(super) fn event_color(kind: EventKind) -> RGBColor {
    match kind {
        EventKind::ServerGoaway => SERVER,
        EventKind::ClientGoaway => CLIENT,
        EventKind::Reconnect => RGBColor(44, 160, 44),
        EventKind::Fault => RGBColor(200, 30, 30),
        EventKind::ServerLimit => RGBColor(148, 103, 189),
    }
}
