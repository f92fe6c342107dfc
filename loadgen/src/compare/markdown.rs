//! `compare.md`: one row per scenario, short enough to paste into a pull
//! request; and the lines `loadgen compare` prints when it ends.

use std::io::{self, Write};

use super::attacks::Pair;
use super::{CompareReport, Comparison, Row, RowVerdict, RunRecord};
use crate::baseline::BaselineComparison;
use crate::report::units::{expectation_mark, format_mib, signed_bytes, slope_with_interval};
use crate::report::{Exporter, words};
use leaklab_verdict::{Axis, Outcome, Quantity};

/// `compare.md`.
#[derive(Debug)]
pub(crate) struct CompareMarkdown;

impl Exporter<CompareReport> for CompareMarkdown {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        render(out, &report.comparison)?;
        attacks(out, report)?;
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
        summary_lines(out, comparison)?;
        writeln!(out, "comparison: {}", report.dir.join("compare.md").display())?;
        Ok(())
    }
}

/// The comparison as markdown.
fn render(out: &mut dyn Write, comparison: &Comparison) -> io::Result<()> {
    table(out, comparison)?;
    if comparison.interrupted {
        writeln!(out, "\nInterrupted: the scenarios after the last row did not run.")?;
    }
    baselines(out, comparison)?;
    writeln!(
        out,
        "\nAllocated per request: Theil–Sen slope of jemalloc-allocated bytes over checkpoints taken at rest after \
         each round. Connections Δ: open connections after the last round minus after warm-up (client / server). \
         Each scenario's full report is in its run directory (see `compare.json`)."
    )?;
    if comparison.rows.iter().any(Row::external) {
        writeln!(
            out,
            "\nExternal clients (marked †) are watched from outside: their client column is anonymous memory (the \
             RSS without its file-backed pages), or for a JVM or Node client the live heap after a full collection, \
             per request they reported (per second, `/s`, when they report none), over every sample after warm-up \
             (no allocator to read, no checkpoints at rest), and the harness measures no latency for them. ‡: the \
             memory the runtime holds outside its heap, which decided that client's LEAK. The server column is \
             allocated bytes, as for the others."
        )?;
    }
    Ok(())
}

/// The heading, and one row per scenario, those that did not run last.
fn table(out: &mut dyn Write, comparison: &Comparison) -> io::Result<()> {
    let verdict_line = match comparison.outcome {
        Outcome::Met => "every expectation met ✔",
        Outcome::Contradicted => "an expectation is contradicted ✖",
        Outcome::Inconclusive => "no contradiction, but a verdict is inconclusive",
    };
    let profile = if comparison.quick { "quick profile" } else { "full profile" };
    writeln!(out, "## leaklab comparison: {verdict_line}\n")?;
    writeln!(out, "{} scenarios, {profile}, started {}.\n", comparison.rows.len(), comparison.started_at)?;
    writeln!(
        out,
        "| scenario | requests | req/s | p50 / p99 | peak RSS client / server | client allocated per request (95% CI) | \
         server allocated per request (95% CI) | connections Δ | peak client connections | failed | connection events | \
         verdict client / server | expected | |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|")?;
    for row in &comparison.rows {
        writeln!(out, "{}", table_row(row))?;
    }
    let not_run = comparison.failures.iter().map(|f| (f, "could not run", "✖"));
    for (scenario, why, mark) in not_run.chain(comparison.skipped.iter().map(|s| (s, "skipped", ""))) {
        writeln!(
            out,
            "| {} | {why}: {} | | | | | | | | | | | | {mark} |",
            scenario.scenario,
            scenario.error.replace('|', "\\|")
        )?;
    }
    Ok(())
}

/// Each run beside its baseline, with the slopes that grew too much.
fn baselines(out: &mut dyn Write, comparison: &Comparison) -> io::Result<()> {
    let with_baseline: Vec<(&Row, &BaselineComparison)> =
        comparison.rows.iter().filter_map(|row| Some((row, row.baseline.as_ref()?))).collect();
    let Some(name) = comparison.baseline.as_ref().filter(|_| !with_baseline.is_empty()) else { return Ok(()) };
    writeln!(out, "\n### Against baseline `{name}`\n")?;
    for (row, baseline) in with_baseline {
        let mark = if baseline.regressed { "✖" } else { "✔" };
        writeln!(out, "- **{}** {mark}: {}", row.scenario, words::baseline_lines(baseline).join("; "))?;
        for reason in words::regressions(baseline) {
            writeln!(out, "  - {reason}")?;
        }
    }
    Ok(())
}

/// Each attack beside its `-unlimited` twin: the figure, and the server's peak and the good client's failures.
fn attacks(out: &mut dyn Write, report: &CompareReport) -> io::Result<()> {
    let pairs = super::attacks::pairs(&report.runs);
    if pairs.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n### Attacks: the server with its limits and without\n")?;
    writeln!(
        out,
        "![The server's allocated memory under each attack, with its default limits and with them off](attacks.png)\n"
    )?;
    writeln!(out, "| attack | server peak allocated: limits on / off | good client failed: limits on / off |")?;
    writeln!(out, "|---|---:|---:|")?;
    let peak = |run: &RunRecord| {
        let peak =
            run.samples.iter().filter_map(|s| s.server.as_ref()?.process.jemalloc.map(|j| j.allocated_bytes)).max();
        peak.map_or_else(|| "—".to_owned(), format_mib)
    };
    let failed = |run: &RunRecord| {
        let row = report.comparison.rows.iter().find(|row| row.scenario == run.scenario);
        row.and_then(|row| row.failed).map_or_else(|| "—".to_owned(), |failed| failed.to_string())
    };
    for Pair { limited, unlimited } in pairs {
        writeln!(
            out,
            "| {} | {} / {} | {} / {} |",
            limited.scenario,
            peak(limited),
            peak(unlimited),
            failed(limited),
            failed(unlimited)
        )?;
    }
    Ok(())
}

/// One console line per scenario: its verdicts, expectations and mark.
fn summary_lines(out: &mut dyn Write, comparison: &Comparison) -> io::Result<()> {
    let width = comparison.rows.iter().map(|r| r.scenario.len()).max().unwrap_or(0);
    let verdict = |name: &str, v: Option<&RowVerdict>| match v {
        Some(v) => format!(
            "{name} {} (expected {}) {}",
            v.kind,
            v.expected.map_or("nothing", |e| e.name()),
            expectation_mark(v.kind, v.expectation_met)
        ),
        None => format!("{name} not measured"),
    };
    for row in &comparison.rows {
        let [client, server] = row.verdicts().each().map(|(side, v)| verdict(side.name(), v.copied()));
        let regressed =
            if row.baseline.as_ref().is_some_and(|b| b.regressed) { "; baseline regressed ✖" } else { "" };
        writeln!(out, "{:width$}  {client}; {server}{regressed}", row.scenario)?;
    }
    for failure in &comparison.failures {
        writeln!(out, "{:width$}  could not run ✖", failure.scenario)?;
    }
    Ok(())
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
    let figures = figures(verdict);
    match verdict.quantity {
        Quantity::NativeBytes => format!("{figures} outside the heap ‡"),
        _ => figures,
    }
}

fn figures(verdict: &RowVerdict) -> String {
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
        let mut text = Vec::new();
        render(&mut text, &comparison).unwrap();
        let text = String::from_utf8(text).unwrap();
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
