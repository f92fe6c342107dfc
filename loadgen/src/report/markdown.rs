//! `report.md`: the run in a page a person reads, next to its plot.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::summary::ProcessSummary;
use super::units::{bytes_per_request, expectation_mark, format_mib, human_bytes, latency, slope_with_interval};
use super::{Exporter, Report};

#[derive(Debug)]
pub struct Markdown;

impl Exporter for Markdown {
    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn write(&self, report: &Report<'_>, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, render(report)).with_context(|| format!("writing {}", path.display()))
    }
}

fn render(report: &Report<'_>) -> String {
    let s = report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "# {} — {}\n", s.scenario, s.description);
    let _ = writeln!(
        out,
        "Policy `{}`{}, {} workers, {} requests ({} warm-up), started {}; the load stopped because {}.\n",
        s.policy,
        s.plan.other_transport().map(|transport| format!(" on transport `{transport}`")).unwrap_or_default(),
        s.plan.concurrency,
        s.requests.ok + s.requests.failed,
        s.requests.warmup,
        s.started_at,
        s.stopped_by
    );
    let _ = writeln!(out, "![memory over time](memory.png)\n");

    let v = &s.verdict;
    let _ = writeln!(out, "## Verdict\n");
    let _ = writeln!(
        out,
        "From checkpoints taken at rest (no request in flight, allocators purged): after warm-up and after each \
         of {} completed rounds, with one more at the end of the cool-down for the return-to-baseline check. The \
         slope is the Theil–Sen estimate with its {:.0}% interval.\n",
        v.client.rounds,
        v.confidence * 100.0
    );
    let _ = writeln!(
        out,
        "| | verdict | allocated per request (95% interval) | tolerance | expected | |\n|---|---|---|---:|---|---|"
    );
    for (name, verdict) in [("client", Some(&v.client)), ("server", v.server.as_ref())] {
        match verdict {
            Some(verdict) => {
                let _ = writeln!(
                    out,
                    "| {name} | **{}** | {} | {} | {} | {} |",
                    verdict.kind,
                    slope_with_interval(verdict.slope_bytes_per_request, verdict.ci_low, verdict.ci_high),
                    human_bytes(verdict.tolerance),
                    verdict.expected.map_or("—", |e| e.name()),
                    expectation_mark(verdict.kind, verdict.expectation_met)
                );
            }
            None => {
                let _ = writeln!(out, "| {name} | not measured | | | | |");
            }
        }
    }
    let _ = writeln!(out);
    for (name, verdict) in [("client", Some(&v.client)), ("server", v.server.as_ref())] {
        for reason in verdict.map(|v| v.reasons.as_slice()).unwrap_or_default() {
            let _ = writeln!(out, "- {name}: {reason}");
        }
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Growth per request, after warm-up\n");
    let _ = writeln!(out, "| | client | server |\n|---|---:|---:|");
    let g = &s.growth;
    let _ = writeln!(
        out,
        "| allocated (jemalloc) | {} | {} |",
        bytes_per_request(g.client_allocated_bytes_per_request),
        bytes_per_request(g.server_allocated_bytes_per_request)
    );
    let _ = writeln!(
        out,
        "| RSS | {} | {} |",
        bytes_per_request(g.client_rss_bytes_per_request),
        bytes_per_request(g.server_rss_bytes_per_request)
    );
    let conn = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    let _ = writeln!(
        out,
        "| open connections | {} | {} |",
        conn(g.client_connections_per_request),
        conn(g.server_connections_per_request)
    );
    let _ = writeln!(
        out,
        "\nMeasured over {} requests in {:.1} s. KB are 1,000 bytes; MiB are 1,048,576.\n",
        g.loaded_requests, g.window_s
    );

    let _ = writeln!(out, "## Processes (start → end, peak)\n");
    let _ = writeln!(out, "| | client | server |\n|---|---:|---:|");
    let row = |name: &str, pick: &dyn Fn(&ProcessSummary) -> String| {
        format!(
            "| {name} | {} | {} |",
            pick(&s.client),
            s.server.as_ref().map_or_else(|| "not measured".to_owned(), pick)
        )
    };
    // MiB like the plot and the console, so the three agree digit for digit.
    let bytes = |span: &crate::stats::Span| {
        format!("{} → {}, peak {}", format_mib(span.start), format_mib(span.end), format_mib(span.peak))
    };
    let count = |span: &crate::stats::Span| format!("{} → {}, peak {}", span.start, span.end, span.peak);
    let _ = writeln!(out, "{}", row("RSS", &|p| bytes(&p.rss_bytes)));
    let _ =
        writeln!(out, "{}", row("allocated", &|p| p.allocated_bytes.as_ref().map_or_else(|| "n/a".to_owned(), bytes)));
    let _ = writeln!(out, "{}", row("open connections", &|p| count(&p.connections)));
    let _ = writeln!(out, "{}", row("connections opened", &|p| p.connections_opened.to_string()));
    let _ = writeln!(out, "{}", row("fds", &|p| count(&p.fds)));
    let _ = writeln!(out, "{}", row("threads", &|p| count(&p.threads)));
    let limit = |limits: Option<leaklab_probe::procfs::FdLimits>| {
        limits.map_or_else(|| "n/a".to_owned(), |l| format!("{} (hard {})", l.soft, l.hard))
    };
    let _ = writeln!(out, "| fd limit | {} | {} |", limit(s.limits.client_fds), limit(s.limits.server_fds));

    let _ = writeln!(out, "\n## Requests\n");
    let mut latency = latency(&s.latency_us);
    latency[..1].make_ascii_uppercase();
    let _ = writeln!(
        out,
        "{} ok, {} failed, {:.0} requests/s over {:.1} s. {latency}.",
        s.requests.ok, s.requests.failed, s.throughput_rps, s.load_duration_s
    );
    if let Some(intended) = s.latency_from_intended_us.as_ref().filter(|l| l.count > 0) {
        let l = &s.latency_us;
        let _ = writeln!(
            out,
            "\nOpen loop: latency measured from when each request was sent leaves out the time it waited \
             because the load generator fell behind (coordinated omission). Measured from when it was due:\n\n\
             | µs | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|\n\
             | from the send | {} | {} | {} | {} | {} |\n\
             | from the intended send time | {} | {} | {} | {} | {} |",
            l.p50, l.p90, l.p99, l.p999, l.max, intended.p50, intended.p90, intended.p99, intended.p999, intended.max
        );
    }
    if !s.requests.errors.is_empty() {
        let _ = writeln!(out, "\n| error | count |\n|---|---:|");
        for (kind, n) in &s.requests.errors {
            let _ = writeln!(out, "| {kind} | {n} |");
        }
    }
    if let Some(first) = &s.requests.first_error {
        let _ = writeln!(out, "\nFirst failure: `{}` at {:.2} s into the load.", first.kind, first.at_s);
    }
    if let Some(heap) = &s.heap_profile {
        let _ = writeln!(out, "\n{}", super::heap::markdown(heap, 2));
    }
    let connections = super::lifecycle::sentences(s);
    if !connections.is_empty() {
        let _ = writeln!(out, "\n## Connections\n");
        for sentence in &connections {
            let _ = writeln!(out, "- {sentence}");
        }
    }
    if !s.notes.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for note in &s.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let _ = writeln!(
        out,
        "\nFiles: `summary.json` (schema: `schema/summary.schema.json`), `{}` (one sample per line), `memory.svg`, `memory.png`, `server.log`.",
        s.samples.file
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::scripted_report;

    #[test]
    fn report_shows_growth_and_notes() {
        let (summary, samples) = scripted_report();
        let text = render(&Report { summary: &summary, samples: &samples });
        assert!(text.contains("| allocated (jemalloc) | +60.0 KB/request | +20.0 KB/request |"), "{text}");
        assert!(text.contains("never evicted"), "{text}");
        assert!(text.contains("![memory over time](memory.png)"));
        // Scripted client: 10 MB allocated at the start, 10 MB + 1,100 × 60 KB at the end.
        assert!(text.contains("| allocated | 9.5 MiB → 72.5 MiB, peak 72.5 MiB |"), "{text}");
        assert!(text.contains("| fd limit | 20000 (hard 20000) | 20000 (hard 20000) |"), "{text}");
        assert!(text.contains("| client | **LEAK** | +60.0 KB (+60.0 KB to +60.0 KB) | 256 B | leak | ✔ |"), "{text}");
        assert!(text.contains("- server: Allocated memory grew by 20.0 KB per request"), "{text}");
    }
}
