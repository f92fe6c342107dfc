//! `compare.png` and `compare.svg`: every scenario on one chart. Above, the
//! client's allocated memory against cumulative requests; below, its open
//! connections against requests. A leak is the line that climbs.

use std::io::Write;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{CompareReport, RunRecord};
use crate::report::Exporter;
use crate::report::plot::{house_chart, png, svg};
use crate::report::units::{bytes_per_request, mib};
use leaklab_engine::sample::{Phase, Sample};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 920;
const HEADER: u32 = 70;
const LEGEND_WIDTH: u32 = 330;
/// Tableau's ten, then six darker ones, so the shipped scenarios never share a colour.
const PALETTE: [RGBColor; 16] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 60, 110),
    RGBColor(120, 0, 0),
    RGBColor(0, 100, 60),
    RGBColor(150, 80, 0),
    RGBColor(75, 0, 110),
    RGBColor(60, 60, 60),
];

/// `compare.svg`.
#[derive(Debug)]
pub(crate) struct CompareSvg;
/// `compare.png`.
#[derive(Debug)]
pub(crate) struct ComparePng;

impl Exporter<CompareReport> for CompareSvg {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        svg((WIDTH, HEIGHT), out, &|root| draw(root, &report.runs).map_err(|e| e.to_string()))
    }
}

impl Exporter<CompareReport> for ComparePng {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        png((WIDTH, HEIGHT), out, &|root| draw(root, &report.runs).map_err(|e| e.to_string()))
    }
}

/// A run's legend: its scenario, its client's verdict and slope per request.
fn legend(run: &RunRecord) -> String {
    let slope = run.client_bytes_per_request.map(|slope| format!(", {}", bytes_per_request(Some(slope))));
    format!("{}: {}{}", run.scenario, run.client, slope.unwrap_or_default())
}

/// A scenario's points until its load ended (the cool-down adds no requests).
fn series(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    let end = samples.iter().position(|s| s.phase == Phase::Cooldown).map_or(samples.len(), |i| i + 1);
    samples[..end].iter().filter_map(|s| value(s).map(|v| (s.requests() as f64, v))).collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[RunRecord],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    header.draw(&Text::new(
        "leaklab comparison: the client, scenario by scenario",
        (20, 10),
        ("sans-serif", 26).into_font().color(&BLACK),
    ))?;
    header.draw(&Text::new(
        "A line that climbs with requests is a leak; flat lines near zero are scenarios whose memory stays put. \
         Legend: verdict and slope per request.",
        (20, 40),
        ("sans-serif", 15).into_font().color(&RGBColor(60, 60, 60)),
    ))?;
    let (upper, lower) = body.split_vertically((HEIGHT - HEADER) / 2);
    let legends: Vec<String> = runs.iter().map(legend).collect();
    let lines = |value: &dyn Fn(&Sample) -> Option<f64>| -> Vec<_> {
        legends.iter().zip(runs).map(|(legend, run)| (legend.as_str(), series(&run.samples, value))).collect()
    };
    let allocated = lines(&|s| s.client.jemalloc.map(|j| mib(j.allocated_bytes)));
    panel(&upper, "Client allocated memory (jemalloc)", "MiB", 1, &allocated)?;
    let connections = lines(&|s| s.client.open_connections().map(|open| open as f64));
    panel(&lower, "Client open connections", "connections", 0, &connections)?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    unit: &str,
    decimals: usize,
    lines: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (area, legend) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let x_max = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut chart =
        house_chart(&area, title, (x_max, "requests completed (warm-up included)", 0), (y_max, unit, decimals))?;
    let font = ("sans-serif", 15).into_font().color(&RGBColor(40, 40, 40));
    for (index, (name, points)) in lines.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        // Earlier scenarios are drawn wider, so a later line on top of one leaves it visible.
        let width = 2 + 2 * (lines.len() - index).min(3) as u32;
        chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(width)))?;
        let y = 52 + 28 * index as i32;
        legend.draw(&PathElement::new(vec![(6, y), (30, y)], color.stroke_width(width)))?;
        legend.draw(&Text::new(name.to_string(), (38, y - 9), font.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Comparison;
    use leaklab_engine::fixtures::scripted_report;
    use leaklab_verdict::{Outcome, VerdictKind};

    fn report() -> CompareReport {
        let (_, samples) = scripted_report();
        let comparison = Comparison {
            started_at: String::new(),
            quick: true,
            baseline: None,
            rows: vec![],
            failures: vec![],
            outcome: Outcome::Met,
            interrupted: false,
            skipped: vec![],
        };
        let run = |scenario: &str, client| RunRecord {
            scenario: scenario.to_owned(),
            attack: None,
            client,
            client_bytes_per_request: Some(60_000.0),
            samples: samples.clone(),
        };
        let runs = vec![run("leak", VerdictKind::Leak), run("reused", VerdictKind::NoLeak)];
        CompareReport { comparison, runs, summaries: Vec::new(), dir: "reports/compare/x".into() }
    }

    #[test]
    fn both_plots_are_drawn_with_every_scenario_in_the_legend() {
        let report = report();
        let mut png = Vec::new();
        ComparePng.export(&report, &mut png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = crate::report::to_string(&CompareSvg, &report).unwrap();
        assert!(svg.contains("leak: LEAK, +60.0 KB/request"), "legend missing");
        assert!(svg.contains("reused: NO LEAK, +60.0 KB/request"), "legend missing");
        assert!(svg.contains("requests completed"), "axis title missing");
    }

    #[test]
    fn series_stop_where_the_load_ended() {
        let (_, samples) = scripted_report();
        let points = series(&samples, |s| s.client.open_connections().map(|open| open as f64));
        // Baseline, warm-up, after warm-up, 10 rounds (the last is the load's end); the cool-down's last sample is left out.
        assert_eq!(points.len(), samples.len() - 1);
        assert_eq!(points.last().unwrap().0, 1_100.0);
    }
}
