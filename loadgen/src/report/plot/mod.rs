//! `memory.svg` and `memory.png`: memory over time for client and server,
//! with a second panel for open connections and file descriptors, and a
//! third for the client's counters and the server's metrics when there are
//! any. The [header] says what ran and the verdicts; each [panel](panels)
//! draws its [lines], in the style of the process whose figures they are,
//! with its [legend] beside it.
//!
//! Text is laid out with a font compiled into the binary (Ubuntu Light, from
//! `epaint_default_fonts`), so drawing needs no system font library.

mod header;
mod legend;
mod lines;
mod panels;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::{Exporter, Report};
use header::Header;
use leaklab_engine::sample::Sample;
use panels::panel;

const WIDTH: u32 = 1200;
const LEGEND_WIDTH: u32 = 240;
const HEIGHT: u32 = 880;
const HEADER: u32 = 100;

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
    register_fonts();
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(&root).map_err(|error| anyhow::anyhow!("drawing the PNG plot: {error}"))?;
        root.present().map_err(|error| anyhow::anyhow!("finishing the PNG plot: {error}"))?;
    }
    let mut encoder = png::Encoder::new(out, size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(())
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
    let (metrics, metrics_title) = lines::metrics(samples);
    // The client's counters and the scraped metrics, when there are any, take a third panel under the other two.
    let (body, metrics_area) = if metrics.is_empty() {
        (body, None)
    } else {
        let (body, area) = body.split_vertically((HEIGHT - HEADER) * 72 / 100);
        (body, Some(area))
    };
    let body_height = body.dim_in_pixel().1;
    let (upper, lower) = body.split_vertically(body_height * 58 / 100);
    let events = &header.events;
    panel(&upper, samples, "Memory", "MiB", 1, &lines::memory(samples), events)?;
    let mut connections = lines::connections(samples, header.time_wait);
    let mut title = "Open connections and file descriptors";
    if header.streams {
        title = "Open connections, streams and file descriptors";
        connections.extend(lines::streams(samples, header.stream_limit));
    }
    panel(&lower, samples, title, "count", 0, &connections, events)?;
    if let Some(area) = metrics_area {
        panel(&area, samples, &metrics_title, "% of peak", 0, &metrics, events)?;
    }
    Ok(())
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
