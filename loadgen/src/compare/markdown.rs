//! `compare.md`: one row per scenario, short enough to paste into a pull
//! request; and the lines `loadgen compare` prints when it ends.

use std::fmt::Write as _;
use std::io::Write;

use super::{CompareReport, Comparison, Row, RowVerdict};
use crate::report::units::{expectation_mark, format_mib, signed_bytes, slope_with_interval};
use crate::report::{Exporter, words};
use leaklab_verdict::{Axis, Outcome};

/// `compare.md`.
#[derive(Debug)]
pub(crate) struct CompareMarkdown;

impl Exporter<CompareReport> for CompareMarkdown {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(render(&report.comparison).as_bytes())?;
        out.write_all(attacks(report).as_bytes())?;
        Ok(())
    }
}

/// What `loadgen compare` prints at the end: one line per scenario with its verdicts and mark.
#[derive(Debug)]
pub(crate) struct CompareText;

impl Exporter<CompareReport> for CompareText {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        let comparison = &report.comparison;
        writeln!(out)?;
        for failure in &comparison.failures {
            writeln!(out, "Error: scenario {}: {}", failure.scenario, failure.error)?;
        }
        for skipped in &comparison.skipped {
            writeln!(out, "{}: skipped: {}", skipped.scenario, skipped.error)?;
        }
        out.write_all(summary_lines(comparison).as_bytes())?;
        writeln!(out, "comparison: {}", report.dir.join("compare.md").display())?;
        Ok(())
    }
}

/// The comparison as markdown.
fn render(comparison: &Comparison) -> String {
    let mut out = String::new();
    let verdict_line = match comparison.outcome {
        Outcome::Met => "every expectation met ✔",
        Outcome::Contradicted => "an expectation is contradicted ✖",
        Outcome::Inconclusive => "no contradiction, but a verdict is inconclusive",
    };
    let profile = if comparison.quick { "quick profile" } else { "full profile" };
    let _ = writeln!(out, "## leaklab comparison: {verdict_line}\n");
    let _ = writeln!(out, "{} scenarios, {profile}, started {}.\n", comparison.rows.len(), comparison.started_at);
    let _ = writeln!(
        out,
        "| scenario | requests | req/s | p50 / p99 | peak RSS client / server | client allocated per request (95% CI) | \
         server allocated per request (95% CI) | connections Δ | peak client connections | failed | connection events | \
         verdict client / server | expected | |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|");
    for row in &comparison.rows {
        let _ = writeln!(out, "{}", table_row(row));
    }
    let not_run = comparison.failures.iter().map(|f| (f, "could not run", "✖"));
    for (scenario, why, mark) in not_run.chain(comparison.skipped.iter().map(|s| (s, "skipped", ""))) {
        let _ = writeln!(
            out,
            "| {} | {why}: {} | | | | | | | | | | | | {mark} |",
            scenario.scenario,
            scenario.error.replace('|', "\\|")
        );
    }
    if comparison.interrupted {
        let _ = writeln!(out, "\nInterrupted: the scenarios after the last row did not run.");
    }
    let with_baseline: Vec<&Row> = comparison.rows.iter().filter(|r| r.baseline.is_some()).collect();
    if let (Some(name), false) = (&comparison.baseline, with_baseline.is_empty()) {
        let _ = writeln!(out, "\n### Against baseline `{name}`\n");
        for row in with_baseline {
            let baseline = row.baseline.as_ref().expect("filtered");
            let mark = if baseline.regressed { "✖" } else { "✔" };
            let _ = writeln!(out, "- **{}** {mark}: {}", row.scenario, words::baseline_lines(baseline).join("; "));
            for reason in words::regressions(baseline) {
                let _ = writeln!(out, "  - {reason}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nAllocated per request: Theil–Sen slope of jemalloc-allocated bytes over checkpoints taken at rest after \
         each round. Connections Δ: open connections after the last round minus after warm-up (client / server). \
         Each scenario's full report is in its run directory (see `compare.json`)."
    );
    if comparison.rows.iter().any(Row::external) {
        let _ = writeln!(
            out,
            "\nExternal clients (marked †) are watched from outside: their client column is anonymous memory (the \
             RSS without its file-backed pages) per request they reported (per second, `/s`, when they report none), over every sample after warm-up (no allocator to \
             read, no checkpoints at rest), and the harness measures no latency for them. The server column is \
             allocated bytes, as for the others."
        );
    }
    out
}

/// Each attack beside its `-unlimited` twin: the figure, and the server's peak and the good client's failures.
fn attacks(report: &CompareReport) -> String {
    let pairs = super::attacks::pairs(&report.runs);
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "
### Attacks: the server with its limits and without
"
    );
    let _ = writeln!(
        out,
        "![The server's allocated memory under each attack, with its default limits and with them off](attacks.png)
"
    );
    let _ = writeln!(out, "| attack | server peak allocated: limits on / off | good client failed: limits on / off |");
    let _ = writeln!(out, "|---|---:|---:|");
    let peak = |samples: &[leaklab_engine::sample::Sample]| {
        let peak = samples.iter().filter_map(|s| s.server.as_ref()?.process.jemalloc.map(|j| j.allocated_bytes)).max();
        peak.map_or_else(|| "—".to_owned(), format_mib)
    };
    let failed = |name: &str| {
        let row = report.comparison.rows.iter().find(|row| row.scenario == name);
        row.and_then(|row| row.failed).map_or_else(|| "—".to_owned(), |failed| failed.to_string())
    };
    for pair in pairs {
        let (limited, unlimited) = (pair.limited, pair.unlimited);
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} / {} |",
            limited.0,
            peak(limited.1),
            peak(unlimited.1),
            failed(limited.0),
            failed(unlimited.0)
        );
    }
    out
}

/// One console line per scenario: its verdicts, expectations and mark.
fn summary_lines(comparison: &Comparison) -> String {
    let width = comparison.rows.iter().map(|r| r.scenario.len()).max().unwrap_or(0);
    let mut out = String::new();
    for row in &comparison.rows {
        let verdict = |name: &str, v: Option<&RowVerdict>| match v {
            Some(v) => format!(
                "{name} {} (expected {}) {}",
                v.kind,
                v.expected.map_or("nothing", |e| e.name()),
                expectation_mark(v.kind, v.expectation_met)
            ),
            None => format!("{name} not measured"),
        };
        let _ = writeln!(
            out,
            "{:width$}  {}; {}{}",
            row.scenario,
            verdict("client", Some(&row.client)),
            verdict("server", row.server.as_ref()),
            if row.baseline.as_ref().is_some_and(|b| b.regressed) { "; baseline regressed ✖" } else { "" }
        );
    }
    for failure in &comparison.failures {
        let _ = writeln!(out, "{:width$}  could not run ✖", failure.scenario);
    }
    out
}

fn table_row(row: &Row) -> String {
    let server = |pick: &dyn Fn(&RowVerdict) -> String| row.server.as_ref().map_or_else(|| "—".to_owned(), pick);
    let expected = |v: &RowVerdict| v.expected.map_or("—", |e| e.name()).to_owned();
    let mark = match row.outcome {
        Outcome::Met => "✔",
        Outcome::Contradicted => "✖",
        Outcome::Inconclusive => "?",
    };
    let latency = match (row.latency_p50_us, row.latency_p99_us) {
        (Some(p50), Some(p99)) => format!("{:.1} / {:.1} ms", p50 as f64 / 1000.0, p99 as f64 / 1000.0),
        _ => "—".to_owned(),
    };
    let count = |n: Option<u64>| n.map_or_else(|| "—".to_owned(), |n| n.to_string());
    format!(
        "| {}{} | {} | {} | {latency} | {} / {} | {} | {} | {} / {} | {} | {} | {} | {} / {} | {} / {} | {mark} |",
        row.scenario,
        if row.external() { " †" } else { "" },
        count(row.requests),
        row.throughput_rps.map_or_else(|| "—".to_owned(), |rps| format!("{rps:.0}")),
        format_mib(row.client_peak_rss_bytes),
        row.server_peak_rss_bytes.map_or_else(|| "—".to_owned(), format_mib),
        slope(&row.client),
        server(&slope),
        signed(row.client.connections_delta),
        server(&|v| signed(v.connections_delta)),
        row.client_peak_connections,
        count(row.failed),
        row.connection_events,
        row.client.kind,
        server(&|v| v.kind.to_string()),
        expected(&row.client),
        server(&expected),
    )
}

/// The slope with its interval, per request; per second (`/s`) for a client that reported no requests.
pub(crate) fn slope(verdict: &RowVerdict) -> String {
    match (verdict.axis, verdict.trend) {
        (Axis::Second, Some(trend)) => format!(
            "{}/s ({}/s to {}/s)",
            signed_bytes(trend.slope),
            signed_bytes(trend.ci_low),
            signed_bytes(trend.ci_high)
        ),
        _ => slope_with_interval(verdict.slope_bytes_per_request, verdict.ci_low, verdict.ci_high),
    }
}

fn signed(count: i64) -> String {
    format!("{count:+}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::scenario::Expectation;
    use leaklab_engine::summary::RunKind;
    use leaklab_verdict::{Quantity, VerdictKind};

    fn row(name: &str, kind: VerdictKind, expected: Expectation, outcome: Outcome) -> Row {
        let verdict = RowVerdict {
            kind,
            quantity: Quantity::AllocatedBytes,
            axis: Axis::Request,
            trend: None,
            slope_bytes_per_request: Some(60_800.0),
            ci_low: Some(60_700.0),
            ci_high: Some(60_900.0),
            connections_delta: 3600,
            expected: Some(expected),
            expectation_met: Some(outcome == Outcome::Met),
        };
        Row {
            scenario: name.to_owned(),
            kind: RunKind::Builtin,
            run_dir: format!("reports/{name}/x"),
            requests: Some(4000),
            throughput_rps: Some(399.6),
            latency_p50_us: Some(1_200),
            latency_p99_us: Some(3_400),
            client_peak_rss_bytes: 150 << 20,
            server_peak_rss_bytes: Some(100 << 20),
            client_peak_connections: 4000,
            server_peak_connections: Some(4000),
            failed: Some(0),
            connection_events: "—".into(),
            client: verdict.clone(),
            server: Some(verdict),
            outcome,
            baseline: None,
        }
    }

    #[test]
    fn one_row_per_scenario_with_verdict_expectation_and_mark() {
        let rows = vec![
            row("leak", VerdictKind::Leak, Expectation::Leak, Outcome::Met),
            row("reused", VerdictKind::Leak, Expectation::NoLeak, Outcome::Contradicted),
        ];
        let comparison = Comparison {
            started_at: "2026-11-28T00:00:00Z".into(),
            quick: true,
            baseline: None,
            outcome: Comparison::overall(&rows, &[]),
            rows,
            failures: vec![],
            interrupted: false,
            skipped: vec![],
        };
        let text = render(&comparison);
        assert!(text.starts_with("## leaklab comparison: an expectation is contradicted ✖"), "{text}");
        assert!(
            text.contains(
                "| leak | 4000 | 400 | 1.2 / 3.4 ms | 150.0 MiB / 100.0 MiB | +60.8 KB (+60.7 KB to +60.9 KB) | \
                 +60.8 KB (+60.7 KB to +60.9 KB) | +3600 / +3600 | 4000 | 0 | — | LEAK / LEAK | leak / leak | ✔ |"
            ),
            "{text}"
        );
        assert!(text.contains("| reused |") && text.contains("| LEAK / LEAK | no-leak / no-leak | ✖ |"), "{text}");
    }
}
