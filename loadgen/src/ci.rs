//! What CI systems read besides the step summary: JUnit XML for their test
//! reports (`--junit`), and the two benchmark trackers' formats for history
//! and alerts: Bencher's metric format (`--bmf`) and github-action-benchmark's
//! `customSmallerIsBetter` list (`--gab`).
//!
//! All three read one [`Results`]: every scenario of a run, a comparison or a
//! demo, with the summary it left, the error that stopped it, or why it was
//! skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::baseline::{BaselineComparison, Process};
use crate::report::units::expectation_mark;
use crate::report::words;
use crate::report::{Exporter, Written};
use leaklab_engine::summary::Summary;
use leaklab_verdict::{Axis, ProcessVerdict, VerdictKind};

/// Every scenario one invocation ran or meant to run.
#[derive(Debug)]
pub(crate) struct Results<'a> {
    /// `run`, `watch`, `compare` or `demo`: the test suite is `leaklab <command>`.
    pub command: &'static str,
    /// When the invocation started, RFC 3339 in UTC.
    pub started_at: &'a str,
    pub entries: Vec<Entry<'a>>,
}

/// One scenario of [`Results`].
#[derive(Debug)]
pub(crate) enum Entry<'a> {
    /// It ran and left `summary` in `dir`; beside its baseline with `--baseline`.
    Ran { summary: &'a Summary, dir: &'a Path, baseline: Option<&'a BaselineComparison> },
    /// It could not run.
    Failed { scenario: &'a str, error: &'a str },
    /// It was left out: its external client is not built.
    Skipped { scenario: &'a str, reason: &'a str },
}

/// Where the command line asked for the files CI systems read; `None`: not that one.
#[derive(Debug, Clone, Default)]
pub(crate) struct CiFiles {
    pub junit: Option<std::path::PathBuf>,
    pub bmf: Option<std::path::PathBuf>,
    pub gab: Option<std::path::PathBuf>,
}

impl CiFiles {
    /// Writes the files the command line asked for; each one written, or why not.
    pub(crate) fn write(&self, results: &Results<'_>) -> Written {
        let mut written = Written::default();
        let files: [(&Option<std::path::PathBuf>, &dyn Exporter<Results<'_>>); 3] =
            [(&self.junit, &Junit), (&self.bmf, &Bmf), (&self.gab, &Gab)];
        for (path, exporter) in files {
            if let Some(path) = path {
                crate::report::write_file(exporter, results, path, &mut written);
            }
        }
        written
    }

    /// The files of a run that failed before its report: its cases are errors, with why.
    pub(crate) fn write_unjudged(&self, command: &'static str, scenario: &str, error: &anyhow::Error) -> Written {
        let started_at = leaklab_engine::run_dir::utc_seconds(std::time::SystemTime::now());
        let error = format!("{error:#}");
        self.write(&Results {
            command,
            started_at: &started_at,
            entries: vec![Entry::Failed { scenario, error: &error }],
        })
    }
}

impl crate::report::Reported {
    /// The run, beside its baseline if it has one, for the CI files.
    pub(crate) fn results<'a>(
        &'a self,
        command: &'static str,
        baseline: Option<&'a BaselineComparison>,
    ) -> Results<'a> {
        let summary = &self.report.summary;
        let entries = vec![Entry::Ran { summary, dir: &self.dir, baseline }];
        Results { command, started_at: &summary.started_at, entries }
    }
}

/// How one test case ended.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    Passed,
    /// An expectation contradicted or a baseline regressed: JUnit's `failure`.
    Failed {
        kind: &'static str,
        message: String,
    },
    /// The run could not be judged at all: JUnit's `error`.
    Error(String),
    /// Not run, or not decided: JUnit's `skipped`.
    Skipped(String),
}

/// One JUnit test case: a process of a scenario.
#[derive(Debug)]
struct Case {
    scenario: String,
    name: &'static str,
    time_s: f64,
    status: Status,
    properties: Vec<(&'static str, String)>,
    output: String,
}

/// The test cases' names, one per process (and the failed-requests check a scenario may set).
const CLIENT: &str = "client memory";
const SERVER: &str = "server memory";
const FAILED_REQUESTS: &str = "failed requests";

fn cases(results: &Results<'_>) -> Vec<Case> {
    let mut cases = Vec::new();
    for entry in &results.entries {
        match entry {
            Entry::Ran { summary, dir, baseline } => cases.extend(ran(summary, dir, *baseline)),
            Entry::Failed { scenario, error } => {
                cases.extend(unjudged(scenario, Status::Error(format!("the run failed: {error}"))))
            }
            Entry::Skipped { scenario, reason } => {
                cases.extend(unjudged(scenario, Status::Skipped(reason.to_string())))
            }
        }
    }
    cases
}

/// A scenario with no summary: both processes' cases, so a case's history is not broken by one bad build.
fn unjudged(scenario: &str, status: Status) -> [Case; 2] {
    [CLIENT, SERVER].map(|name| Case {
        scenario: scenario.to_owned(),
        name,
        time_s: 0.0,
        status: status.clone(),
        properties: Vec::new(),
        output: String::new(),
    })
}

fn ran(s: &Summary, dir: &Path, baseline: Option<&BaselineComparison>) -> Vec<Case> {
    let output = format!("run directory: {}\nreport: {}\n", dir.display(), dir.join("report.md").display());
    let mut cases = Vec::new();
    let processes =
        [(CLIENT, Process::Client, Some(&s.verdict.client)), (SERVER, Process::Server, s.verdict.server.as_ref())];
    for (name, process, verdict) in processes {
        let Some(verdict) = verdict else { continue };
        let mut status = memory_status(s, name, verdict);
        if let Some(comparison) = baseline
            && status == Status::Passed
            && let Some(sentence) = regression(comparison, process)
        {
            status = Status::Failed { kind: "regressed", message: format!("{}: {name}: {sentence}", s.scenario) };
        }
        let mut properties = memory_properties(s, process, verdict);
        properties.push(("stopped_by", serde_plain(&s.stopped_by)));
        let mut output = output.clone();
        for reason in words::reasons(verdict) {
            output += &format!("{reason}\n");
        }
        cases.push(Case { scenario: s.scenario.clone(), name, time_s: s.load_duration_s, status, properties, output });
    }
    if let Some(limit) = s.plan.as_ref().and_then(|plan| plan.max_failed_requests) {
        let failed = s.requests.as_ref().map_or(0, |r| r.failed);
        let status = if failed > limit {
            let message =
                format!("{}: {FAILED_REQUESTS}: {failed} requests failed, more than the {limit} expected", s.scenario);
            Status::Failed { kind: "contradicted", message }
        } else {
            Status::Passed
        };
        let properties = vec![("failed_requests", failed.to_string()), ("max_failed_requests", limit.to_string())];
        cases.push(Case {
            scenario: s.scenario.clone(),
            name: FAILED_REQUESTS,
            time_s: s.load_duration_s,
            status,
            properties,
            output,
        });
    }
    cases
}

/// A process's verdict against its expectation.
fn memory_status(s: &Summary, name: &str, verdict: &ProcessVerdict) -> Status {
    let Some(expected) = verdict.expected else { return Status::Passed };
    let why = format!(
        "{}, {} {} per {}; {}",
        verdict.kind,
        words::measure(verdict.quantity),
        words::slope(verdict),
        words::per(verdict.axis),
        words::reasons(verdict).join(" ")
    );
    match verdict.expectation_met {
        Some(true) => Status::Passed,
        _ if verdict.kind == VerdictKind::Inconclusive => {
            Status::Skipped(format!("{}: {name}: expected {}, but the verdict is {why}", s.scenario, expected.name()))
        }
        _ => Status::Failed {
            kind: "contradicted",
            message: format!("{}: {name}: expected {}, got {why}", s.scenario, expected.name()),
        },
    }
}

/// Why `process` failed its baseline, if it did.
fn regression(comparison: &BaselineComparison, process: Process) -> Option<String> {
    let sentences = words::regressions(comparison);
    comparison.regressions.iter().zip(sentences).find(|(r, _)| r.process == process).map(|(_, sentence)| sentence)
}

/// The figures a case carries: its verdict, slope and interval, and the run's figures.
fn memory_properties(s: &Summary, process: Process, verdict: &ProcessVerdict) -> Vec<(&'static str, String)> {
    let mut properties = vec![
        ("verdict", serde_plain(&verdict.kind)),
        ("quantity", serde_plain(&verdict.quantity)),
        ("axis", serde_plain(&verdict.axis)),
    ];
    if let Some(expected) = verdict.expected {
        properties.push(("expected", expected.name().to_owned()));
        properties.push(("expectation_mark", expectation_mark(verdict.kind, verdict.expectation_met).to_owned()));
    }
    let slope = match verdict.axis {
        Axis::Request => "slope_bytes_per_request",
        Axis::Second => "slope_bytes_per_second",
    };
    if let Some(trend) = verdict.trend {
        properties.push((slope, number(trend.slope)));
        properties.push(("ci_low", number(trend.ci_low)));
        properties.push(("ci_high", number(trend.ci_high)));
    }
    properties.push(("tolerance", number(verdict.tolerance)));
    let side = match process {
        Process::Client => Some(&s.client),
        Process::Server => s.server.as_ref(),
    };
    if let Some(side) = side {
        properties.push(("peak_rss_bytes", side.rss_bytes.peak.to_string()));
        if let Some(connections) = side.connections {
            properties.push(("peak_connections", connections.peak.to_string()));
        }
    }
    if let Some(requests) = s.requests_done() {
        properties.push(("requests", requests.to_string()));
    }
    if let Some(requests) = &s.requests {
        properties.push(("failed_requests", requests.failed.to_string()));
    }
    if let Some(throughput) = s.throughput_rps {
        properties.push(("throughput_rps", number(throughput)));
    }
    if let Some(latency) = s.latency_us {
        properties.push(("latency_p99_us", latency.p99.to_string()));
    }
    properties
}

/// A serde enum's name as it is in `summary.json`: `no-leak`, `allocated_bytes`.
fn serde_plain<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        other => format!("{other:?}"),
    }
}

fn number(value: f64) -> String {
    format!("{value:.1}")
}

/// JUnit XML: one `testsuite` per invocation in a `testsuites` root, one
/// `testcase` per scenario and process (`classname` the scenario, `name`
/// `client memory` or `server memory`, and `failed requests` where the
/// scenario bounds them), the figures as the case's `properties` and the run
/// directory in its `system-out`.
#[derive(Debug)]
pub(crate) struct Junit;

impl Exporter<Results<'_>> for Junit {
    fn export(&self, results: &Results<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let cases = cases(results);
        let count = |pick: fn(&Status) -> bool| cases.iter().filter(|case| pick(&case.status)).count();
        let failures = count(|s| matches!(s, Status::Failed { .. }));
        let errors = count(|s| matches!(s, Status::Error(_)));
        let skipped = count(|s| matches!(s, Status::Skipped(_)));
        // Each run once, though each of its processes is a case.
        let time: f64 = results
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Ran { summary, .. } => summary.load_duration_s,
                _ => 0.0,
            })
            .sum();
        let suite = format!("leaklab {}", results.command);
        // JUnit's timestamp is an ISO 8601 time without a zone; leaklab's are UTC.
        let timestamp = results.started_at.trim_end_matches('Z');
        let totals = format!(
            "tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\"",
            cases.len()
        );
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(xml, "<testsuites name=\"leaklab\" {totals}>");
        let _ = writeln!(xml, "  <testsuite name=\"{}\" {totals} timestamp=\"{}\">", escape(&suite), escape(timestamp));
        for case in &cases {
            let _ = writeln!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                escape(&case.scenario),
                case.name,
                case.time_s
            );
            match &case.status {
                Status::Passed => {}
                Status::Failed { kind, message } => outcome(&mut xml, "failure", kind, message),
                Status::Error(message) => outcome(&mut xml, "error", "run-failed", message),
                Status::Skipped(message) => {
                    let _ = writeln!(xml, "      <skipped message=\"{}\"/>", escape(message));
                }
            }
            if !case.properties.is_empty() {
                xml += "      <properties>\n";
                for (name, value) in &case.properties {
                    let _ = writeln!(xml, "        <property name=\"{name}\" value=\"{}\"/>", escape(value));
                }
                xml += "      </properties>\n";
            }
            if !case.output.is_empty() {
                let _ = writeln!(xml, "      <system-out>{}</system-out>", escape(&case.output));
            }
            xml += "    </testcase>\n";
        }
        xml += "  </testsuite>\n</testsuites>\n";
        out.write_all(xml.as_bytes())?;
        Ok(())
    }
}

/// A case's `failure` or `error` element: its message as the attribute and as the text.
fn outcome(xml: &mut String, element: &str, kind: &str, message: &str) {
    let message = escape(message);
    let _ = writeln!(xml, "      <{element} type=\"{kind}\" message=\"{message}\">{message}</{element}>");
}

/// `text` escaped for an XML attribute or element, without the control characters XML 1.0 forbids
/// (a child's error may carry a terminal's escape sequences).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped += "&amp;",
            '<' => escaped += "&lt;",
            '>' => escaped += "&gt;",
            '"' => escaped += "&quot;",
            '\'' => escaped += "&apos;",
            '\n' => escaped += "&#10;",
            '\t' | '\r' => escaped.push(' '),
            c if (c as u32) < 0x20 => {}
            c => escaped.push(c),
        }
    }
    escaped
}

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
    for (process, verdict) in [("client", Some(&s.verdict.client)), ("server", s.verdict.server.as_ref())] {
        let Some(trend) = verdict.and_then(|v| v.trend.map(|trend| (v.axis, trend))) else { continue };
        let (axis, trend) = trend;
        let (per, unit) = match axis {
            Axis::Request => ("request", "bytes/request"),
            Axis::Second => ("second", "bytes/second"),
        };
        figures.push(Figure {
            measure: format!("{process}-bytes-per-{per}"),
            unit,
            value: trend.slope,
            interval: Some((trend.ci_low, trend.ci_high)),
            smaller_is_better: true,
        });
    }
    let peaks = [("client", Some(s.client.rss_bytes.peak)), ("server", s.server.as_ref().map(|p| p.rss_bytes.peak))];
    for (process, peak) in peaks {
        if let Some(peak) = peak {
            let measure = format!("{process}-peak-rss");
            figures.push(Figure {
                measure,
                unit: "bytes",
                value: peak as f64,
                interval: None,
                smaller_is_better: true,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::to_string;
    use leaklab_engine::fixtures::scripted_report;

    fn results<'a>(summary: &'a Summary, dir: &'a Path) -> Results<'a> {
        Results {
            command: "compare",
            started_at: "2026-12-03T17:00:00Z",
            entries: vec![
                Entry::Ran { summary, dir, baseline: None },
                Entry::Failed { scenario: "broken", error: "the server did not start: \x1b[1mport <in use>\x1b[0m" },
                Entry::Skipped { scenario: "go-leak", reason: "target/peers/go-echo-client is not built" },
            ],
        }
    }

    #[test]
    fn junit_counts_each_case_once_and_escapes_what_it_quotes() {
        let (summary, _) = scripted_report();
        let dir = Path::new("reports/x/1");
        let xml = to_string(&Junit, &results(&summary, dir)).unwrap();
        let judged = 1 + usize::from(summary.verdict.server.is_some());
        let tests = judged + 4;
        assert!(xml.contains(&format!("<testsuite name=\"leaklab compare\" tests=\"{tests}\"")), "{xml}");
        assert!(xml.contains("errors=\"2\" skipped=\"2\""), "{xml}");
        assert!(xml.contains("timestamp=\"2026-12-03T17:00:00\""), "{xml}");
        assert!(xml.contains("port &lt;in use&gt;") && !xml.contains('\x1b'), "{xml}");
        assert!(xml.contains("<system-out>run directory: reports/x/1&#10;"), "{xml}");
        assert_eq!(xml.matches("<testcase ").count(), tests);
        assert_eq!(xml.matches("</testcase>").count(), tests);
    }

    #[test]
    fn a_contradicted_expectation_is_one_failure_naming_the_scenario_and_process() {
        let (mut summary, _) = scripted_report();
        let client = &mut summary.verdict.client;
        client.kind = VerdictKind::Leak;
        client.expected = Some(leaklab_engine::scenario::Expectation::NoLeak);
        client.expectation_met = Some(false);
        let xml = to_string(
            &Junit,
            &Results {
                command: "run",
                started_at: "t",
                entries: vec![Entry::Ran { summary: &summary, dir: Path::new("d"), baseline: None }],
            },
        )
        .unwrap();
        assert!(xml.contains("failures=\"1\""), "{xml}");
        let message = format!("message=\"{}: client memory: expected no-leak, got LEAK", summary.scenario);
        assert!(xml.contains(&message), "{xml}");
    }

    #[test]
    fn the_trackers_get_the_slope_with_its_interval() {
        let (summary, _) = scripted_report();
        let results = Results {
            command: "run",
            started_at: "t",
            entries: vec![Entry::Ran { summary: &summary, dir: Path::new("d"), baseline: None }],
        };
        let bmf: serde_json::Value = serde_json::from_str(&to_string(&Bmf, &results).unwrap()).unwrap();
        let client = &bmf[&summary.scenario]["client-bytes-per-request"];
        let trend = summary.verdict.client.trend.unwrap();
        assert_eq!(client["value"].as_f64(), Some(trend.slope), "{bmf}");
        assert_eq!(
            (client["lower_value"].as_f64(), client["upper_value"].as_f64()),
            (Some(trend.ci_low), Some(trend.ci_high))
        );
        let gab: serde_json::Value = serde_json::from_str(&to_string(&Gab, &results).unwrap()).unwrap();
        let first = &gab[0];
        assert_eq!(first["name"], format!("{}: client-bytes-per-request", summary.scenario));
        assert!(first["range"].as_str().unwrap().starts_with("± "), "{gab}");
        assert!(gab.as_array().unwrap().iter().all(|bench| !bench["name"].as_str().unwrap().contains("throughput")));
    }
}
