//! JUnit XML: each process of each scenario a test case, passed, failed
//! (its expectation contradicted, or its baseline regressed), in error (the
//! run failed) or skipped.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::{Entry, Results};
use crate::baseline::BaselineComparison;
use crate::report::units::expectation_mark;
use crate::report::{Exporter, html, words};
use leaklab_engine::summary::{Side, Sides, Summary};
use leaklab_verdict::{Axis, ProcessVerdict, VerdictKind};

/// JUnit XML: one `testsuite` per invocation in a `testsuites` root, one
/// `testcase` per scenario and process (`classname` the scenario, `name`
/// `client memory` or `server memory`, and `failed requests` where the
/// scenario bounds them), the figures as the case's `properties` and the run
/// directory in its `system-out`.
#[derive(Debug)]
pub(crate) struct Junit;

impl Exporter<Results<'_>> for Junit {
    fn export(&self, results: &Results<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        Ok(render(out, results)?)
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
    name: String,
    time_s: f64,
    status: Status,
    properties: Vec<(&'static str, String)>,
    output: String,
}

/// The failed-requests check a scenario may set, a case of its own beside each process's memory.
const FAILED_REQUESTS: &str = "failed requests";

/// A process's memory case: `client memory`, `server memory`.
fn memory(side: Side) -> String {
    format!("{} memory", side.name())
}

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
    [Side::Client, Side::Server].map(|side| Case {
        scenario: scenario.to_owned(),
        name: memory(side),
        time_s: 0.0,
        status: status.clone(),
        properties: Vec::new(),
        output: String::new(),
    })
}

fn ran(s: &Summary, dir: &Path, baseline: Option<&BaselineComparison>) -> Vec<Case> {
    let output = format!("run directory: {}\nreport: {}\n", dir.display(), dir.join("report.md").display());
    let mut cases = Vec::new();
    for (side, verdict) in Sides::of(&s.verdict).iter() {
        let name = memory(side);
        let mut status = memory_status(s, &name, verdict);
        if let Some(comparison) = baseline
            && status == Status::Passed
            && let Some(sentence) = regression(comparison, side)
        {
            status = Status::Failed { kind: "regressed", message: format!("{}: {name}: {sentence}", s.scenario) };
        }
        let mut properties = memory_properties(s, side, verdict);
        properties.push(("stopped_by", serde_plain(&s.stopped_by)));
        let mut output = output.clone();
        for reason in words::reasons(verdict) {
            output += &format!("{reason}\n");
        }
        cases.push(Case { scenario: s.scenario.clone(), name, time_s: s.load_duration_s, status, properties, output });
    }
    cases.extend(failed_requests(s, output));
    cases
}

/// The failed-requests case, when the scenario bounds them.
fn failed_requests(s: &Summary, output: String) -> Option<Case> {
    let limit = s.plan.as_ref().and_then(|plan| plan.max_failed_requests)?;
    let failed = s.requests.as_ref().map_or(0, |r| r.failed);
    let status = if failed > limit {
        let message =
            format!("{}: {FAILED_REQUESTS}: {failed} requests failed, more than the {limit} expected", s.scenario);
        Status::Failed { kind: "contradicted", message }
    } else {
        Status::Passed
    };
    let properties = vec![("failed_requests", failed.to_string()), ("max_failed_requests", limit.to_string())];
    Some(Case {
        scenario: s.scenario.clone(),
        name: FAILED_REQUESTS.to_owned(),
        time_s: s.load_duration_s,
        status,
        properties,
        output,
    })
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

/// Why `side` failed its baseline, if it did.
fn regression(comparison: &BaselineComparison, side: Side) -> Option<String> {
    let sentences = words::regressions(comparison);
    comparison.regressions.iter().zip(sentences).find(|(r, _)| r.process == side).map(|(_, sentence)| sentence)
}

/// The figures a case carries: its verdict, slope and interval, and the run's figures.
fn memory_properties(s: &Summary, side: Side, verdict: &ProcessVerdict) -> Vec<(&'static str, String)> {
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
    if let Some(process) = s.processes().get(side) {
        properties.push(("peak_rss_bytes", process.rss_bytes.peak.to_string()));
        if let Some(connections) = process.connections {
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

fn render(out: &mut dyn Write, results: &Results<'_>) -> io::Result<()> {
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
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(out, "<testsuites name=\"leaklab\" {totals}>")?;
    writeln!(out, "  <testsuite name=\"{}\" {totals} timestamp=\"{}\">", xml(&suite), xml(timestamp))?;
    for case in &cases {
        testcase(out, case)?;
    }
    writeln!(out, "  </testsuite>\n</testsuites>")
}

fn testcase(out: &mut dyn Write, case: &Case) -> io::Result<()> {
    writeln!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
        xml(&case.scenario),
        case.name,
        case.time_s
    )?;
    match &case.status {
        Status::Passed => {}
        Status::Failed { kind, message } => outcome(out, "failure", kind, message)?,
        Status::Error(message) => outcome(out, "error", "run-failed", message)?,
        Status::Skipped(message) => writeln!(out, "      <skipped message=\"{}\"/>", xml(message))?,
    }
    if !case.properties.is_empty() {
        writeln!(out, "      <properties>")?;
        for (name, value) in &case.properties {
            writeln!(out, "        <property name=\"{name}\" value=\"{}\"/>", xml(value))?;
        }
        writeln!(out, "      </properties>")?;
    }
    if !case.output.is_empty() {
        writeln!(out, "      <system-out>{}</system-out>", xml(&case.output))?;
    }
    writeln!(out, "    </testcase>")
}

/// A case's `failure` or `error` element: its message as the attribute and as the text.
fn outcome(out: &mut dyn Write, element: &str, kind: &str, message: &str) -> io::Result<()> {
    let message = xml(message);
    writeln!(out, "      <{element} type=\"{kind}\" message=\"{message}\">{message}</{element}>")
}

/// `text` for an XML attribute or element: escaped as HTML is (the same five characters), its line
/// breaks as `&#10;` so that an attribute keeps them, tabs and carriage returns as spaces, and without
/// the other control characters XML 1.0 forbids (a child's error may carry a terminal's escape sequences).
fn xml(text: &str) -> String {
    let allowed: String = text
        .chars()
        .filter_map(|c| match c {
            '\t' | '\r' => Some(' '),
            '\n' => Some(c),
            c if (c as u32) < 0x20 => None,
            c => Some(c),
        })
        .collect();
    html::escape(&allowed).replace('\n', "&#10;")
}
