//! `samples.csv`: the run's samples for spreadsheets and pandas, one row per
//! line of `samples.jsonl` and one column per figure.
//!
//! A column is named by the figure's path in the JSON line, its parts joined
//! by dots, with the unit its name ends in written out as ghz writes its CSV
//! headers: `client.rss_bytes` becomes `client.rss (bytes)`, `elapsed_s`
//! becomes `elapsed (s)`. Counts have no unit. A figure a sample does not
//! have is an empty cell.

use std::io::Write;

use serde_json::Value;

use super::{Exporter, Report};

/// Writes a run's samples as CSV (RFC 4180).
#[derive(Debug)]
pub(crate) struct SamplesCsv;

impl Exporter<Report> for SamplesCsv {
    fn export(&self, report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
        let rows: Vec<Vec<(String, String)>> = report
            .samples
            .iter()
            .map(|sample| {
                let mut cells = Vec::new();
                flatten("", &serde_json::to_value(sample)?, &mut cells);
                Ok(cells)
            })
            .collect::<anyhow::Result<_>>()?;
        // Every path any sample has, in the order they first appear: a map's keys (counters, GOAWAY
        // reasons) can appear mid-run.
        let mut columns: Vec<&str> = Vec::new();
        for row in &rows {
            for (path, _) in row {
                if !columns.contains(&path.as_str()) {
                    columns.push(path);
                }
            }
        }
        let header: Vec<String> = columns.iter().map(|path| quote(&with_unit(path))).collect();
        writeln!(out, "{}", header.join(","))?;
        for row in &rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|column| row.iter().find(|(path, _)| path == column).map_or_else(String::new, |(_, v)| quote(v)))
                .collect();
            writeln!(out, "{}", cells.join(","))?;
        }
        Ok(())
    }
}

/// Each leaf of `value` under `prefix`, as (dotted path, cell text); `null` leaves none.
fn flatten(prefix: &str, value: &Value, cells: &mut Vec<(String, String)>) {
    let path = |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                flatten(&path(key), value, cells);
            }
        }
        Value::Null => {}
        Value::String(text) => cells.push((prefix.to_owned(), text.clone())),
        other => cells.push((prefix.to_owned(), other.to_string())),
    }
}

/// The units a figure's name can end in, and how the header writes them.
const UNITS: [(&str, &str); 4] = [("_bytes", "bytes"), ("_s", "s"), ("_ms", "ms"), ("_us", "us")];

/// `client.rss_bytes` as `client.rss (bytes)`; a path without a unit as it is.
fn with_unit(path: &str) -> String {
    let (parent, last) = path.rsplit_once('.').map_or(("", path), |(parent, last)| (parent, last));
    for (suffix, unit) in UNITS {
        if let Some(stem) = last.strip_suffix(suffix).filter(|stem| !stem.is_empty()) {
            let dot = if parent.is_empty() { "" } else { "." };
            return format!("{parent}{dot}{stem} ({unit})");
        }
    }
    path.to_owned()
}

/// A cell quoted when it must be: a comma, a quote or a line break in it.
fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::to_string;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn one_row_per_sample_under_headers_with_units() {
        let (summary, samples) = scripted_report();
        let report = Report { summary, samples };
        let text = to_string(&SamplesCsv, &report).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), report.samples.len() + 1, "{text}");
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(
            &header[..5],
            ["elapsed (s)", "unix_time (s)", "phase", "requests_ok", "requests_failed"],
            "{}",
            lines[0]
        );
        let rss = header.iter().position(|h| *h == "client.rss (bytes)").expect("client RSS column");
        for (line, sample) in lines[1..].iter().zip(&report.samples) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line}");
            assert_eq!(cells[rss], sample.client.rss_bytes.to_string());
        }
    }

    #[test]
    fn units_come_off_the_last_part_only_and_cells_are_quoted() {
        assert_eq!(with_unit("server.process.jemalloc.allocated_bytes"), "server.process.jemalloc.allocated (bytes)");
        assert_eq!(with_unit("elapsed_s"), "elapsed (s)");
        assert_eq!(with_unit("network.goaways_received.NO_ERROR max_age"), "network.goaways_received.NO_ERROR max_age");
        assert_eq!(with_unit("client.fds"), "client.fds");
        assert_eq!(quote("NO_ERROR \"idle\", then"), "\"NO_ERROR \"\"idle\"\", then\"");
    }
}
