//! The benchmark trackers' files: each scenario's figures (growth per
//! request with its interval, peak RSS, p99 latency, throughput) as Bencher's
//! metric format and as github-action-benchmark's list.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{Entry, Results};
use crate::report::Exporter;
use leaklab_engine::summary::{Sides, Summary};
use leaklab_verdict::Axis;

/// One figure of a scenario, for the benchmark trackers.
#[derive(Debug, Clone, PartialEq)]
struct Figure {
    /// Bencher's measure slug: `client-bytes-per-request`.
    measure: String,
    /// github-action-benchmark's unit: `bytes/request`.
    unit: &'static str,
    value: f64,
    /// The slope's 95% interval, for growth per request (or second).
    interval: Option<(f64, f64)>,
    /// Whether a smaller value is better (all but throughput).
    smaller_is_better: bool,
}

/// Each scenario that ran, with its figures, in order.
fn figures<'a>(results: &'a Results<'_>) -> Vec<(&'a Summary, Vec<Figure>)> {
    results
        .entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Ran { summary, .. } => Some((*summary, scenario_figures(summary))),
            _ => None,
        })
        .collect()
}

fn scenario_figures(s: &Summary) -> Vec<Figure> {
    let mut figures = Vec::new();
    // The client's memory outside the heap, when that decided its LEAK: a regression there is the one to track.
    let judged = Sides { client: s.verdict.client_figures(), server: s.verdict.server.as_ref() };
    for (side, verdict) in judged.iter() {
        let Some(trend) = verdict.trend else { continue };
        let (per, unit) = match verdict.axis {
            Axis::Request => ("request", "bytes/request"),
            Axis::Second => ("second", "bytes/second"),
        };
        figures.push(Figure {
            measure: format!("{}-bytes-per-{per}", side.name()),
            unit,
            value: trend.slope,
            interval: Some((trend.ci_low, trend.ci_high)),
            smaller_is_better: true,
        });
    }
    for (side, process) in s.processes().iter() {
        figures.push(Figure {
            measure: format!("{}-peak-rss", side.name()),
            unit: "bytes",
            value: process.rss_bytes.peak as f64,
            interval: None,
            smaller_is_better: true,
        });
    }
    if let Some(latency) = s.latency_us.filter(|l| l.count > 0) {
        // Bencher's latency measures count nanoseconds.
        let value = latency.p99 as f64 * 1000.0;
        figures.push(Figure {
            measure: "p99-latency".into(),
            unit: "ns",
            value,
            interval: None,
            smaller_is_better: true,
        });
    }
    if let Some(throughput) = s.throughput_rps {
        let measure = "throughput".into();
        figures.push(Figure {
            measure,
            unit: "requests/s",
            value: throughput,
            interval: None,
            smaller_is_better: false,
        });
    }
    figures.retain(|f| f.value.is_finite() && f.interval.is_none_or(|(low, high)| low.is_finite() && high.is_finite()));
    figures
}

/// Bencher Metric Format: `{scenario: {measure: {value, lower_value, upper_value}}}`, the bounds the
/// slope's 95% interval. Measures: `client-bytes-per-request` and `server-bytes-per-request` (per
/// `second` for a client that reports no requests), `client-peak-rss` and `server-peak-rss` (bytes),
/// `p99-latency` (nanoseconds, as Bencher's latency counts) and `throughput` (requests per second,
/// Bencher's built-in measure).
#[derive(Debug)]
pub(crate) struct Bmf;

#[derive(Serialize)]
struct Metric {
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lower_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upper_value: Option<f64>,
}

impl Exporter<Results<'_>> for Bmf {
    fn export(&self, results: &Results<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut document: BTreeMap<&str, BTreeMap<String, Metric>> = BTreeMap::new();
        for (summary, figures) in figures(results) {
            let measures = document.entry(&summary.scenario).or_default();
            for figure in figures {
                let (lower_value, upper_value) = figure.interval.unzip();
                measures.insert(figure.measure, Metric { value: figure.value, lower_value, upper_value });
            }
        }
        serde_json::to_writer_pretty(&mut *out, &document)?;
        out.write_all(b"\n")?;
        Ok(())
    }
}

/// github-action-benchmark's `customSmallerIsBetter` input: a list of `{name, unit, value, range, extra}`,
/// named `<scenario>: <measure>`, with the interval as `range` (`± half its width`) and in `extra`.
/// Throughput is left out: bigger is better, and the file is for the smaller-is-better tool.
#[derive(Debug)]
pub(crate) struct Gab;

#[derive(Serialize)]
struct Bench {
    name: String,
    unit: &'static str,
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<String>,
}

impl Exporter<Results<'_>> for Gab {
    fn export(&self, results: &Results<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut benches = Vec::new();
        for (summary, figures) in figures(results) {
            for figure in figures.into_iter().filter(|f| f.smaller_is_better) {
                let range = figure
                    .interval
                    .map(|(low, high)| format!("± {:.0}", (high - figure.value).max(figure.value - low)));
                let extra =
                    figure.interval.map(|(low, high)| format!("95% interval {low:.0} to {high:.0} {}", figure.unit));
                let name = format!("{}: {}", summary.scenario, figure.measure);
                benches.push(Bench { name, unit: figure.unit, value: figure.value, range, extra });
            }
        }
        serde_json::to_writer_pretty(&mut *out, &benches)?;
        out.write_all(b"\n")?;
        Ok(())
    }
}
