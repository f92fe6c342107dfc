//! `report.md`: the run in a page a person reads, next to its plot.

use std::fmt::Write as _;
use std::io::Write;

use super::units::{bytes_per_request, expectation_mark, format_mib, human_bytes, latency};
use super::words::{self, heading, measure, per, verdict_intro};
use super::{Exporter, Report};
use leaklab_engine::heap::Process;
use leaklab_engine::summary::{ProcessSummary, Summary};
use leaklab_verdict::stats::Span;

#[derive(Debug)]
pub(crate) struct Markdown;

impl Exporter<Report> for Markdown {
    fn export(&self, report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(render(&report.summary).as_bytes())?;
        Ok(())
    }
}

fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {} — {}\n", s.scenario, s.description);
    let _ = writeln!(out, "{}\n", heading(s));
    let _ = writeln!(out, "![memory over time](memory.png)\n");

    let v = &s.verdict;
    let _ = writeln!(out, "## Verdict\n");
    let _ = writeln!(out, "{}\n", verdict_intro(s));
    let _ = writeln!(
        out,
        "| | verdict | judged | slope (95% interval) | tolerance | expected | |\n|---|---|---|---|---:|---|---|"
    );
    for (name, verdict) in [("client", Some(&v.client)), ("server", v.server.as_ref())] {
        match verdict {
            Some(verdict) => {
                let _ = writeln!(
                    out,
                    "| {name} | **{}** | {}, per {} | {} | {} | {} | {} |",
                    verdict.kind,
                    measure(verdict.quantity),
                    per(verdict.axis),
                    words::slope(verdict),
                    human_bytes(verdict.tolerance),
                    verdict.expected.map_or("—", |e| e.name()),
                    expectation_mark(verdict.kind, verdict.expectation_met)
                );
            }
            None => {
                let _ = writeln!(out, "| {name} | not measured | | | | | |");
            }
        }
    }
    let _ = writeln!(out);
    for (name, verdict) in [("client", Some(&v.client)), ("server", v.server.as_ref())] {
        for reason in verdict.map(words::reasons).unwrap_or_default() {
            let _ = writeln!(out, "- {name}: {reason}");
        }
    }
    let _ = writeln!(out);

    if !s.segments.is_empty() {
        let _ = writeln!(out, "## Load generators\n");
        let _ = writeln!(
            out,
            "The scenario ran split over {} load generators, merged by `loadgen merge`: the client above is their \
             sum, judged together, and the server is judged once against all their requests. Each one's client, \
             judged on its own:\n",
            s.segments.len()
        );
        for segment in &s.segments {
            let _ = writeln!(out, "- {} (`{}`)", words::segment(segment), segment.dir);
        }
        let _ = writeln!(out);
    }

    let g = &s.growth;
    if let Some(requests) = g.loaded_requests {
        let _ = writeln!(out, "## Growth per request, after warm-up\n");
        let _ = writeln!(out, "| | client | server |\n|---|---:|---:|");
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
        if g.client_rss_anon_bytes_per_request.is_some() || g.server_rss_anon_bytes_per_request.is_some() {
            let _ = writeln!(
                out,
                "| RSS, anonymous part | {} | {} |",
                bytes_per_request(g.client_rss_anon_bytes_per_request),
                bytes_per_request(g.server_rss_anon_bytes_per_request)
            );
        }
        let conn = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "| open connections | {} | {} |",
            conn(g.client_connections_per_request),
            conn(g.server_connections_per_request)
        );
        if words::opened_streams(s) {
            let _ = writeln!(
                out,
                "| open streams | {} | {} |",
                conn(g.client_streams_per_request),
                conn(g.server_streams_per_request)
            );
        }
        let _ = writeln!(
            out,
            "\nMeasured over {requests} requests in {:.1} s. KB are 1,000 bytes; MiB are 1,048,576.\n",
            g.window_s
        );
    }

    let _ = writeln!(out, "## Processes (start → end, peak)\n");
    if let Some(source) = words::server_source(&s.target) {
        let _ = writeln!(out, "The server's figures come from {source}.\n");
    }
    let _ = writeln!(out, "| | client | server |\n|---|---:|---:|");
    let row = |name: &str, pick: &dyn Fn(&ProcessSummary) -> String| {
        format!(
            "| {name} | {} | {} |",
            pick(&s.client),
            s.server.as_ref().map_or_else(|| "not measured".to_owned(), pick)
        )
    };
    // MiB like the plot and the console, so the three agree digit for digit.
    let bytes =
        |span: &Span| format!("{} → {}, peak {}", format_mib(span.start), format_mib(span.end), format_mib(span.peak));
    let count = |span: &Option<Span>| {
        span.map_or_else(|| "n/a".to_owned(), |span| format!("{} → {}, peak {}", span.start, span.end, span.peak))
    };
    let _ = writeln!(out, "{}", row("pid", &|p| p.pid.map_or_else(|| "n/a".to_owned(), |pid| pid.to_string())));
    let _ = writeln!(out, "{}", row("RSS", &|p| bytes(&p.rss_bytes)));
    let optional_bytes = |span: &Option<Span>| span.as_ref().map_or_else(|| "n/a".to_owned(), bytes);
    let _ = writeln!(out, "{}", row("RSS, anonymous", &|p| optional_bytes(&p.rss_anon_bytes)));
    let _ = writeln!(out, "{}", row("RSS, file-backed", &|p| optional_bytes(&p.rss_file_bytes)));
    let _ = writeln!(out, "{}", row("allocated", &|p| optional_bytes(&p.allocated_bytes)));
    let _ = writeln!(out, "{}", row("open connections", &|p| count(&p.connections)));
    let _ = writeln!(
        out,
        "{}",
        row("connections opened", &|p| p.connections_opened.map_or_else(|| "n/a".to_owned(), |n| n.to_string()))
    );
    if words::opened_streams(s) {
        let _ = writeln!(out, "{}", row("open streams", &|p| count(&p.streams)));
    }
    let _ = writeln!(out, "{}", row("fds", &|p| count(&p.fds)));
    let _ = writeln!(out, "{}", row("threads", &|p| count(&p.threads)));
    let limit = |limits: Option<leaklab_probe::procfs::FdLimits>| {
        limits.map_or_else(|| "n/a".to_owned(), |l| format!("{} (hard {})", l.soft, l.hard))
    };
    let _ = writeln!(out, "| fd limit | {} | {} |", limit(s.limits.client_fds), limit(s.limits.server_fds));
    if let Some(url) = s.target.server_metrics_url.as_ref().filter(|_| !s.server_metrics.is_empty()) {
        let _ = writeln!(out, "\nScraped from the server's metrics endpoint, {url}:\n");
        let _ = writeln!(out, "| metric | start | end | peak |\n|---|---:|---:|---:|");
        for (name, span) in &s.server_metrics {
            let _ = writeln!(out, "| `{name}` | {} | {} | {} |", span.start, span.end, span.peak);
        }
    }
    if !s.client.counters.is_empty() {
        let from = match s.client.channelz {
            Some(_) => "Reported by the client on its `leaklab-progress` lines, and read from its channelz service",
            None => "Reported by the client on its `leaklab-progress` lines",
        };
        let _ = writeln!(out, "\n{from}:\n");
        let _ = writeln!(out, "| counter | start | end | peak | per request |\n|---|---:|---:|---:|---:|");
        for (name, c) in &s.client.counters {
            let slope = c.per_request.map_or_else(|| "n/a".to_owned(), |slope| format!("{slope:+.2}"));
            let _ = writeln!(out, "| `{name}` | {} | {} | {} | {slope} |", c.start, c.end, c.peak);
        }
    }
    if let Some(channelz) = words::channelz(s) {
        let _ = writeln!(out, "\nThe client's {channelz}.");
    }
    if let Some(command) = s.command.as_ref().filter(|c| !c.tcp_states_at_end.is_empty()) {
        let states: Vec<String> = command.tcp_states_at_end.iter().map(|(state, n)| format!("{state} {n}")).collect();
        let _ = writeln!(out, "\nThe client's TCP sockets at the end, by state: {}.", states.join(", "));
    }

    let _ = writeln!(out, "\n## Requests\n");
    match &s.requests {
        Some(requests) => {
            let rate = s.throughput_rps.map(|r| format!(", {r:.0} requests/s over {:.1} s", s.load_duration_s));
            let measured = match &s.latency_us {
                Some(l) => {
                    let mut text = latency(l);
                    text[..1].make_ascii_uppercase();
                    format!(" {text}.")
                }
                None if s.command.is_some() => {
                    " The client reported its counts; leaklab did not time its calls.".to_owned()
                }
                None => " Latency was not recorded.".to_owned(),
            };
            let _ =
                writeln!(out, "{} ok, {} failed{}.{measured}", requests.ok, requests.failed, rate.unwrap_or_default());
        }
        None => {
            let _ = writeln!(
                out,
                "The client reported no requests (no `leaklab-progress` lines): it is judged per second."
            );
        }
    }
    if let (Some(l), Some(intended)) = (&s.latency_us, s.latency_from_intended_us.as_ref().filter(|l| l.count > 0)) {
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
    if let Some(errors) = s.requests.as_ref().and_then(|r| r.errors.as_ref()).filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "\n| error | count |\n|---|---:|");
        for (kind, n) in errors {
            let _ = writeln!(out, "| {kind} | {n} |");
        }
    }
    if let Some(first) = s.requests.as_ref().and_then(|r| r.first_error.as_ref()) {
        let _ = writeln!(out, "\nFirst failure: `{}` at {:.2} s into the load.", first.kind, first.at_s);
    }
    if let Some(heap) = &s.heap_profile {
        let _ = writeln!(out, "\n{}", super::heap::markdown(heap, 2));
    }
    for (profiles, process) in [(&s.profiles, Process::Client), (&s.server_profiles, Process::Server)] {
        let Some(profiles) = profiles else { continue };
        let _ = writeln!(out, "\n{}", super::heap::go_markdown(profiles, process, 2));
    }
    let connections = super::lifecycle::sentences(s);
    if !connections.is_empty() {
        let _ = writeln!(out, "\n## Connections\n");
        for sentence in &connections {
            let _ = writeln!(out, "- {sentence}");
        }
    }
    let notes = words::notes(s);
    if !notes.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for note in &notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let extra = if s.command.as_ref().is_some_and(|c| c.argv.is_some()) { ", `command.log`" } else { "" };
    let server_log = if s.target.server_pid.is_some() { ", `server.log`" } else { "" };
    let _ = writeln!(
        out,
        "\nFiles: `summary.json` (schema: `schema/summary.schema.json`), `{}` (one sample per line), `memory.svg`, \
         `memory.png`{server_log}{extra}.",
        s.samples.file
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn report_shows_growth_and_notes() {
        let (summary, _) = scripted_report();
        let text = render(&summary);
        assert!(text.contains("| allocated (jemalloc) | +60.0 KB/request | +20.0 KB/request |"), "{text}");
        assert!(text.contains("never evicted"), "{text}");
        assert!(text.contains("![memory over time](memory.png)"));
        // Scripted client: 10 MB allocated at the start, 10 MB + 1,100 × 60 KB at the end.
        assert!(text.contains("| allocated | 9.5 MiB → 72.5 MiB, peak 72.5 MiB |"), "{text}");
        assert!(text.contains("| fd limit | 20000 (hard 20000) | 20000 (hard 20000) |"), "{text}");
        assert!(
            text.contains(
                "| client | **LEAK** | allocated, per request | +60.0 KB (+60.0 KB to +60.0 KB) | 256 B | leak | ✔ |"
            ),
            "{text}"
        );
        assert!(text.contains("- server: Allocated memory grew by 20.0 KB per request"), "{text}");
    }
}
