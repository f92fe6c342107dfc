//! The live view of `--dashboard`: a status line and three block charts,
//! client memory, server memory and open connections, each over the whole
//! run so far, big enough to read from the back of a room. Rendering is pure
//! (samples in, lines out); `progress` draws the lines on the terminal.

use console::{Style, measure_text_width};

use super::progress::phase_name;
use crate::report::units::{format_mib, thousands};
use leaklab_engine::sample::Sample;

/// Rows of each chart; each row has 8 levels, so a chart resolves 24.
const CHART_ROWS: usize = 3;
/// Columns left of the charts: the label and the current value.
const LABEL_WIDTH: usize = 22;
/// The narrowest chart drawn, whatever the terminal's width.
const MIN_CHART_WIDTH: usize = 20;
const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// What the view keeps of each sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    /// The client's allocated bytes, or its RSS when the allocator is not readable (an external client).
    client_memory: f64,
    server_memory: Option<f64>,
    client_connections: u64,
    server_connections: Option<u64>,
}

/// The history of one run and how to draw it.
#[derive(Debug, Default)]
pub(crate) struct Dashboard {
    points: Vec<Point>,
    /// Whether the client's memory is RSS (no allocator figures) rather than allocated bytes.
    client_is_rss: bool,
}

impl Dashboard {
    pub(crate) fn push(&mut self, sample: &Sample) {
        let (client_memory, is_rss) = match &sample.client.jemalloc {
            Some(jemalloc) => (jemalloc.allocated_bytes as f64, false),
            None => (sample.client.rss_bytes as f64, true),
        };
        self.client_is_rss = is_rss;
        self.points.push(Point {
            client_memory,
            server_memory: sample
                .server
                .as_ref()
                .map(|s| s.process.jemalloc.map_or(s.process.rss_bytes, |j| j.allocated_bytes) as f64),
            client_connections: sample.client.open_connections().unwrap_or(0),
            server_connections: sample.server.as_ref().and_then(|s| s.process.open_connections()),
        });
    }

    /// The view for a terminal `width` columns wide, `latest` being the sample just pushed.
    pub(crate) fn render(&self, latest: &Sample, rps: f64, width: usize) -> Vec<String> {
        let bold = Style::new().bold();
        let chart_width = width.saturating_sub(LABEL_WIDTH + 1).max(MIN_CHART_WIDTH);
        let mut status = format!(
            "{}  {}  {} requests  {} req/s",
            bold.apply_to(format!("{:6.1} s", latest.elapsed_s)),
            phase_name(latest.phase),
            bold.apply_to(thousands(latest.requests())),
            bold.apply_to(format!("{rps:.0}")),
        );
        if latest.requests_failed > 0 {
            status +=
                &format!("  {}", Style::new().red().bold().apply_to(format!("{} failed", latest.requests_failed)));
        }
        let mut lines = vec![status, String::new()];
        let measure = if self.client_is_rss { "RSS" } else { "allocated" };
        let client: Vec<f64> = self.points.iter().map(|p| p.client_memory).collect();
        lines.extend(block(
            &["client memory", &format_mib(client.last().copied().unwrap_or(0.0) as u64), measure],
            &chart(&client, chart_width, CHART_ROWS),
            &Style::new().cyan(),
        ));
        let server: Vec<f64> = self.points.iter().filter_map(|p| p.server_memory).collect();
        if let Some(now) = server.last() {
            lines.extend(block(
                &["server memory", &format_mib(*now as u64), "allocated"],
                &chart(&server, chart_width, CHART_ROWS),
                &Style::new().color256(208),
            ));
        }
        let connections: Vec<f64> = self.points.iter().map(|p| p.client_connections as f64).collect();
        let server_now = self.points.last().and_then(|p| p.server_connections);
        let now = match server_now {
            Some(server) => {
                format!("{} · {}", thousands(latest.client.open_connections().unwrap_or(0)), thousands(server))
            }
            None => thousands(latest.client.open_connections().unwrap_or(0)),
        };
        let detail = if server_now.is_some() { "client · server" } else { "client" };
        lines.extend(block(
            &["open connections", &now, detail],
            &chart(&connections, chart_width, CHART_ROWS),
            &Style::new().green(),
        ));
        lines
    }
}

/// A chart beside its three label lines: a name, the value now (bold), and what is measured (dim).
fn block(labels: &[&str; 3], chart: &[String], color: &Style) -> Vec<String> {
    let styled = [
        color.clone().bold().apply_to(labels[0]).to_string(),
        Style::new().bold().apply_to(labels[1]).to_string(),
        Style::new().dim().apply_to(labels[2]).to_string(),
    ];
    chart
        .iter()
        .enumerate()
        .map(|(row, bars)| {
            let label = styled.get(row).cloned().unwrap_or_default();
            let pad = LABEL_WIDTH.saturating_sub(measure_text_width(&label));
            format!(" {label}{}{}", " ".repeat(pad), color.apply_to(bars))
        })
        .collect()
}

/// `values` as a bar chart `rows` high and at most `width` wide, from zero to
/// their maximum, top row first. With more values than columns, each column
/// shows the largest value of its share of the run, so a peak is never lost.
pub(crate) fn chart(values: &[f64], width: usize, rows: usize) -> Vec<String> {
    let columns: Vec<f64> = if values.len() <= width {
        values.to_vec()
    } else {
        (0..width)
            .map(|column| {
                let (from, to) = (column * values.len() / width, (column + 1) * values.len() / width);
                values[from..to.max(from + 1)].iter().copied().fold(f64::MIN, f64::max)
            })
            .collect()
    };
    let top = columns.iter().copied().fold(0.0, f64::max);
    let levels = rows * 8;
    let heights: Vec<usize> = columns
        .iter()
        .map(|&value| if top > 0.0 { ((value.max(0.0) / top) * levels as f64).round() as usize } else { 0 })
        .collect();
    (0..rows)
        .map(|row| {
            let floor = (rows - 1 - row) * 8;
            heights.iter().map(|&height| BLOCKS[height.saturating_sub(floor).min(8)]).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn chart_rises_with_its_values() {
        let rows = chart(&[0.0, 1.0, 2.0, 3.0], 10, 2);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], "  ▃█", "top row: only the upper half of the range");
        assert_eq!(rows[1], " ▅██", "bottom row");
    }

    #[test]
    fn a_long_run_is_compressed_without_losing_its_peak() {
        let mut values = vec![1.0; 1000];
        values[777] = 10.0;
        let rows = chart(&values, 50, 1);
        assert_eq!(rows[0].chars().count(), 50);
        assert_eq!(rows[0].chars().filter(|&c| c == '█').count(), 1, "{}", rows[0]);
    }

    #[test]
    fn nothing_measured_draws_blanks() {
        assert_eq!(chart(&[0.0, 0.0], 5, 1), ["  "]);
        assert_eq!(chart(&[], 5, 2), ["", ""]);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn the_view_shows_both_processes_and_the_connections() {
        let (_, samples) = scripted_report();
        let mut dashboard = Dashboard::default();
        for sample in &samples {
            dashboard.push(sample);
        }
        let lines = dashboard.render(samples.last().unwrap(), 812.0, 100);
        let plain: Vec<String> = lines.iter().map(|l| console::strip_ansi_codes(l).into_owned()).collect();
        let text = plain.join("\n");
        assert!(text.contains("812 req/s"), "{text}");
        for label in ["client memory", "server memory", "open connections", "allocated"] {
            assert!(text.contains(label), "{label} missing:\n{text}");
        }
        assert_eq!(lines.len(), 2 + 3 * CHART_ROWS, "status, blank line, three charts");
        assert!(plain.iter().all(|line| measure_text_width(line) <= 100), "{text}");
    }
}
