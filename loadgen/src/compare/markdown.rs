//! `compare.md`: one row per scenario, short enough to paste into a pull request.

use std::fmt::Write as _;

use super::{Comparison, Row, RowVerdict};
use crate::report::units::{expectation_mark, format_mib, slope_with_interval};
use crate::verdict::Outcome;

/// The comparison as markdown.
pub fn render(comparison: &Comparison) -> String {
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
            let _ = writeln!(out, "- **{}** {mark}: {}", row.scenario, baseline.lines().join("; "));
            for reason in &baseline.reasons {
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
    if comparison.rows.iter().any(|row| row.external) {
        let _ = writeln!(
            out,
            "\nExternal clients (marked †) are watched from outside: their client column is RSS per request they \
             reported, over every sample after warm-up (no allocator to read, no checkpoints at rest), and the harness \
             measures no latency for them. The server column is allocated bytes, as for the others."
        );
    }
    out
}

/// One console line per scenario: its verdicts, expectations and mark.
pub fn summary_lines(comparison: &Comparison) -> String {
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
    let latency = if row.external {
        "—".to_owned()
    } else {
        format!("{:.1} / {:.1} ms", row.latency_p50_us as f64 / 1000.0, row.latency_p99_us as f64 / 1000.0)
    };
    format!(
        "| {}{} | {} | {:.0} | {latency} | {} / {} | {} | {} | {} / {} | {} | {} | {} | {} / {} | {} / {} | {mark} |",
        row.scenario,
        if row.external { " †" } else { "" },
        row.requests,
        row.throughput_rps,
        format_mib(row.client_peak_rss_bytes),
        row.server_peak_rss_bytes.map_or_else(|| "—".to_owned(), format_mib),
        slope(&row.client),
        server(&slope),
        signed(row.client.connections_delta),
        server(&|v| signed(v.connections_delta)),
        row.client_peak_connections,
        row.failed,
        row.connection_events,
        row.client.kind,
        server(&|v| v.kind.to_string()),
        expected(&row.client),
        server(&expected),
    )
}

fn slope(verdict: &RowVerdict) -> String {
    slope_with_interval(verdict.slope_bytes_per_request, verdict.ci_low, verdict.ci_high)
}

fn signed(count: i64) -> String {
    format!("{count:+}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::overall;
    use crate::scenario::Expectation;
    use crate::verdict::VerdictKind;

    fn row(name: &str, kind: VerdictKind, expected: Expectation, outcome: Outcome) -> Row {
        let verdict = RowVerdict {
            kind,
            slope_bytes_per_request: Some(60_800.0),
            ci_low: Some(60_700.0),
            ci_high: Some(60_900.0),
            connections_delta: 3600,
            expected: Some(expected),
            expectation_met: Some(outcome == Outcome::Met),
        };
        Row {
            scenario: name.to_owned(),
            run_dir: format!("reports/{name}/x"),
            requests: 4000,
            throughput_rps: 399.6,
            latency_p50_us: 1_200,
            latency_p99_us: 3_400,
            client_peak_rss_bytes: 150 << 20,
            server_peak_rss_bytes: Some(100 << 20),
            client_peak_connections: 4000,
            failed: 0,
            connection_events: "—".into(),
            external: false,
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
            outcome: overall(&rows, &[]),
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
