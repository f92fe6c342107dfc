//! The Prometheus text exposition format (and the OpenMetrics text that
//! extends it): read from a server's metrics endpoint by the load generator,
//! written by the toy server's own endpoint. Both ends live here so that what
//! one writes the other reads.
//!
//! Only what a scrape needs is read: each sample line's metric name, labels
//! and value. `# HELP`, `# TYPE`, `# EOF` and timestamps are skipped.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The names both ends agree on: Prometheus's process collector's, and the toy server's allocator.
pub mod names {
    pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
    pub const OPEN_FDS: &str = "process_open_fds";
    pub const THREADS: &str = "process_threads";
    /// A Go server's threads, from its runtime collector.
    pub const GO_THREADS: &str = "go_threads";
    /// The toy server's TCP connections open now, accepted and closed since it started.
    pub const CONNECTIONS_OPEN: &str = "leaklab_server_connections_open";
    pub const CONNECTIONS_OPENED: &str = "leaklab_server_connections_opened_total";
    pub const CONNECTIONS_CLOSED: &str = "leaklab_server_connections_closed_total";
    /// The toy server's RPCs in flight.
    pub const STREAMS_OPEN: &str = "leaklab_server_streams_open";
    /// jemalloc's `stats.allocated`, `active`, `resident`, `mapped` and `retained`, in that order.
    pub const JEMALLOC: [&str; 5] = [
        "jemalloc_allocated_bytes",
        "jemalloc_active_bytes",
        "jemalloc_resident_bytes",
        "jemalloc_mapped_bytes",
        "jemalloc_retained_bytes",
    ];
}

/// One sample line: `name{label="value",…} 1.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// A line that is not in the format, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Every sample of an exposition, in order.
pub fn parse(text: &str) -> Result<Vec<MetricSample>, ParseError> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason: String| ParseError { line: index + 1, reason };
        samples.push(sample_line(line).map_err(error)?);
    }
    Ok(samples)
}

/// The sum of each metric's samples over their label sets, by name.
pub fn totals(samples: &[MetricSample]) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for sample in samples {
        *totals.entry(sample.name.clone()).or_insert(0.0) += sample.value;
    }
    totals
}

fn sample_line(line: &str) -> Result<MetricSample, String> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(after)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next().ok_or_else(|| format!("{name} has no value"))?;
    let value = value.parse::<f64>().map_err(|_| format!("{name}: {value:?} is not a number"))?;
    Ok(MetricSample { name: name.to_owned(), labels, value })
}

/// A sample's labels, name and value, in order.
type Labels = Vec<(String, String)>;

/// `a="1",b="2"}` and what follows the closing brace.
fn label_set(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = text.split_once('=').ok_or("a label without `=`")?;
        let name = name.trim();
        if !valid_name(name) {
            return Err(format!("{name:?} is not a label name"));
        }
        let after = after.trim_start().strip_prefix('"').ok_or_else(|| format!("label {name}: value not quoted"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => return Err(format!("label {name}: unfinished escape")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("label {name}: value not closed")),
            }
        };
        labels.push((name.to_owned(), value));
        text = after[end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Builds an exposition, one family at a time.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A family of one sample without labels.
    pub fn metric(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help, &[(&[], value)])
    }

    /// A family with one sample per label set.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(&[(&str, &str)], f64)]) -> &mut Self {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect();
                let _ = write!(self.text, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(self.text, " {value}");
        }
        self
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_prometheus_clients_write() {
        let text = "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                    # TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes 2.4576e+07\n\
                    go_goroutines 12\n\
                    http_requests_total{code=\"200\",path=\"/a \\\"b\\\", c}\"} 3 1700000000000\n\
                    http_requests_total{code=\"500\",} 1\n\
                    latency_bucket{le=\"+Inf\"} +Inf\n\
                    # EOF\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(
            samples[0],
            MetricSample { name: "process_resident_memory_bytes".into(), labels: vec![], value: 24_576_000.0 }
        );
        assert_eq!(samples[2].labels, vec![("code".into(), "200".into()), ("path".into(), "/a \"b\", c}".into())]);
        assert_eq!(samples[2].value, 3.0);
        assert!(samples[4].value.is_infinite());
        let totals = totals(&samples);
        assert_eq!(totals["http_requests_total"], 4.0);
        assert_eq!(totals["go_goroutines"], 12.0);
    }

    #[test]
    fn a_line_out_of_format_names_its_number() {
        let error = parse("ok 1\n\nbroken{a=\"1\" 2\n").unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        assert!(parse("9lives 1").unwrap_err().reason.contains("not a metric name"));
        assert!(parse("x abc").unwrap_err().reason.contains("not a number"));
        assert!(parse("<html>").is_err());
    }

    #[test]
    fn what_is_written_reads_back() {
        let text = Exposition::default()
            .metric("process_open_fds", Kind::Gauge, "Open fds.", 17.0)
            .family(
                "grpc_server_handled_total",
                Kind::Counter,
                "RPCs.",
                &[(&[("grpc_code", "OK")], 5.0), (&[("grpc_code", "Un\"known")], 2.0)],
            )
            .finish();
        let samples = parse(&text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[2].labels, vec![("grpc_code".into(), "Un\"known".into())]);
        assert_eq!(totals(&samples)["grpc_server_handled_total"], 7.0);
        assert!(text.contains("# TYPE grpc_server_handled_total counter\n"), "{text}");
    }
}
