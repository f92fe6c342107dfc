//! `report.md`: the run in a page a person reads, next to its plot, written
//! section by section.

use std::io::{self, Write};

use super::units::{bytes_per_request, expectation_mark, format_mib, human_bytes, latency};
use super::words::{self, heading, measure, per, verdict_intro};
use super::{Exporter, Report};
use leaklab_engine::summary::{GrowthPerRequest, ProcessSummary, Side, Sides, Summary};
use leaklab_verdict::stats::Span;

#[derive(Debug)]
pub(crate) struct Markdown;

impl Exporter<Report> for Markdown {
    fn export(&self, report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
        Ok(render(out, &report.summary)?)
    }
}

fn render(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    title(out, s)?;
    verdicts(out, s)?;
    segments(out, s)?;
    growth(out, s)?;
    processes(out, s)?;
    process_extras(out, s)?;
    requests(out, s)?;
    failures(out, s)?;
    profiles(out, s)?;
    connections(out, s)?;
    notes(out, s)?;
    files(out, s)
}

fn title(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "# {} — {}\n", s.scenario, s.description)?;
    writeln!(out, "{}\n", heading(s))?;
    writeln!(out, "![memory over time](memory.png)\n")
}

/// Each process's verdict in a table row, then every reason.
fn verdicts(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "## Verdict\n")?;
    writeln!(out, "{}\n", verdict_intro(s))?;
    writeln!(
        out,
        "| | verdict | judged | slope (95% interval) | tolerance | expected | |\n|---|---|---|---|---:|---|---|"
    )?;
    let verdicts = Sides::of(&s.verdict);
    for (side, verdict) in verdicts.each() {
        let name = side.name();
        match verdict {
            Some(verdict) => writeln!(
                out,
                "| {name} | **{}** | {}, per {} | {} | {} | {} | {} |",
                verdict.kind,
                measure(verdict.quantity),
                per(verdict.axis),
                words::slope(verdict),
                human_bytes(verdict.tolerance),
                verdict.expected.map_or("—", |e| e.name()),
                expectation_mark(verdict.kind, verdict.expectation_met)
            )?,
            None => writeln!(out, "| {name} | not measured | | | | | |")?,
        }
        if let Some(native) = s.verdict.client_native.as_ref().filter(|_| side == Side::Client) {
            writeln!(
                out,
                "| client, outside the heap | **{}** | {}, per {} | {} | {} | | |",
                native.kind,
                words::native_source(s),
                per(native.axis),
                words::slope(native),
                human_bytes(native.tolerance)
            )?;
        }
    }
    writeln!(out)?;
    for (side, verdict) in verdicts.iter() {
        for reason in words::reasons(verdict) {
            writeln!(out, "- {}: {reason}", side.name())?;
        }
    }
    if let Some(reason) =
        s.verdict.client_native.as_ref().and_then(|native| Some(words::reason(native, native.reasons.first()?)))
    {
        writeln!(out, "- client, outside the heap: {reason}")?;
    }
    writeln!(out)
}

/// The load generators of a merged run, each one's client judged on its own.
fn segments(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    if s.segments.is_empty() {
        return Ok(());
    }
    writeln!(out, "## Load generators\n")?;
    writeln!(
        out,
        "The scenario ran split over {} load generators, merged by `loadgen merge`: the client above is their sum, \
         judged together, and the server is judged once against all their requests. Each one's client, judged on \
         its own:\n",
        s.segments.len()
    )?;
    for segment in &s.segments {
        writeln!(out, "- {} (`{}`)", words::segment(segment), segment.dir)?;
    }
    writeln!(out)
}

/// Both processes' growth per request over the loaded window, when the run counted requests.
fn growth(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let g = &s.growth;
    let Some(requests) = g.loaded_requests else { return Ok(()) };
    writeln!(out, "## Growth per request, after warm-up\n")?;
    writeln!(out, "| | client | server |\n|---|---:|---:|")?;
    let growth = g.per_request();
    let row = |out: &mut dyn Write, name: &str, pick: &dyn Fn(&GrowthPerRequest) -> String| {
        let [client, server] = growth.each().map(|(_, figure)| figure.map_or_else(String::new, pick));
        writeln!(out, "| {name} | {client} | {server} |")
    };
    let count = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    row(out, "allocated (jemalloc)", &|g| bytes_per_request(g.allocated_bytes))?;
    row(out, "RSS", &|g| bytes_per_request(g.rss_bytes))?;
    if growth.iter().any(|(_, g)| g.rss_anon_bytes.is_some()) {
        row(out, "RSS, anonymous part", &|g| bytes_per_request(g.rss_anon_bytes))?;
    }
    row(out, "open connections", &|g| count(g.connections))?;
    if words::opened_streams(s) {
        row(out, "open streams", &|g| count(g.streams))?;
    }
    writeln!(
        out,
        "\nMeasured over {requests} requests in {:.1} s. KB are 1,000 bytes; MiB are 1,048,576.\n",
        g.window_s
    )
}

/// Both processes from start to end, with their peaks.
fn processes(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "## Processes (start → end, peak)\n")?;
    if let Some(source) = words::server_source(&s.target) {
        writeln!(out, "The server's figures come from {source}.\n")?;
    }
    writeln!(out, "| | client | server |\n|---|---:|---:|")?;
    let processes = s.processes();
    let row = |out: &mut dyn Write, name: &str, pick: &dyn Fn(&ProcessSummary) -> String| {
        let server = processes.server.map_or_else(|| "not measured".to_owned(), pick);
        writeln!(out, "| {name} | {} | {server} |", pick(processes.client))
    };
    // MiB like the plot and the console, so the three agree digit for digit.
    let bytes =
        |span: &Span| format!("{} → {}, peak {}", format_mib(span.start), format_mib(span.end), format_mib(span.peak));
    let optional_bytes = |span: &Option<Span>| span.as_ref().map_or_else(|| "n/a".to_owned(), bytes);
    let count = |span: &Option<Span>| {
        span.map_or_else(|| "n/a".to_owned(), |span| format!("{} → {}, peak {}", span.start, span.end, span.peak))
    };
    let number = |n: Option<u64>| n.map_or_else(|| "n/a".to_owned(), |n| n.to_string());
    row(out, "pid", &|p| number(p.pid.map(u64::from)))?;
    row(out, "RSS", &|p| bytes(&p.rss_bytes))?;
    row(out, "RSS, anonymous", &|p| optional_bytes(&p.rss_anon_bytes))?;
    row(out, "RSS, file-backed", &|p| optional_bytes(&p.rss_file_bytes))?;
    row(out, "allocated", &|p| optional_bytes(&p.allocated_bytes))?;
    row(out, "open connections", &|p| count(&p.connections))?;
    row(out, "connections opened", &|p| number(p.connections_opened))?;
    if words::opened_streams(s) {
        row(out, "open streams", &|p| count(&p.streams))?;
    }
    row(out, "fds", &|p| count(&p.fds))?;
    row(out, "threads", &|p| count(&p.threads))?;
    let limit = |limits: Option<leaklab_probe::procfs::FdLimits>| {
        limits.map_or_else(|| "n/a".to_owned(), |l| format!("{} (hard {})", l.soft, l.hard))
    };
    writeln!(out, "| fd limit | {} | {} |", limit(s.limits.client_fds), limit(s.limits.server_fds))
}

/// What the processes told beyond their memory: the server's scraped metrics, the client's counters and
/// channelz, its TCP sockets at the end.
fn process_extras(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    if let Some(url) = s.target.server_metrics_url.as_ref().filter(|_| !s.server_metrics.is_empty()) {
        writeln!(out, "\nScraped from the server's metrics endpoint, {url}:\n")?;
        writeln!(out, "| metric | start | end | peak |\n|---|---:|---:|---:|")?;
        for (name, span) in &s.server_metrics {
            writeln!(out, "| `{name}` | {} | {} | {} |", span.start, span.end, span.peak)?;
        }
    }
    if !s.client.counters.is_empty() {
        let from = match s.client.channelz {
            Some(_) => "Reported by the client on its `leaklab-progress` lines, and read from its channelz service",
            None => "Reported by the client on its `leaklab-progress` lines",
        };
        writeln!(out, "\n{from}:\n")?;
        writeln!(out, "| counter | start | end | peak | per request |\n|---|---:|---:|---:|---:|")?;
        for (name, c) in &s.client.counters {
            let slope = c.per_request.map_or_else(|| "n/a".to_owned(), |slope| format!("{slope:+.2}"));
            writeln!(out, "| `{name}` | {} | {} | {} | {slope} |", c.start, c.end, c.peak)?;
        }
    }
    if let Some(channelz) = words::channelz(s) {
        writeln!(out, "\nThe client's {channelz}.")?;
    }
    super::orphans::markdown(out, s)?;
    if let Some(command) = s.command.as_ref().filter(|c| !c.tcp_states_at_end.is_empty()) {
        let states: Vec<String> = command.tcp_states_at_end.iter().map(|(state, n)| format!("{state} {n}")).collect();
        writeln!(out, "\nThe client's TCP sockets at the end, by state: {}.", states.join(", "))?;
    }
    Ok(())
}

/// The requests, their rate and latency; the open loop's latency from the intended send times.
fn requests(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "\n## Requests\n")?;
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
                    " The client reported its counts; leaklab did not time its calls.".into()
                }
                None => " Latency was not recorded.".to_owned(),
            };
            writeln!(out, "{} ok, {} failed{}.{measured}", requests.ok, requests.failed, rate.unwrap_or_default())?;
        }
        None => {
            writeln!(out, "The client reported no requests (no `leaklab-progress` lines): it is judged per second.")?
        }
    }
    if let (Some(l), Some(intended)) = (&s.latency_us, s.latency_from_intended_us.as_ref().filter(|l| l.count > 0)) {
        writeln!(
            out,
            "\nOpen loop: latency measured from when each request was sent leaves out the time it waited because \
             the load generator fell behind (coordinated omission). Measured from when it was due:\n\n\
             | µs | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|\n\
             | from the send | {} | {} | {} | {} | {} |\n\
             | from the intended send time | {} | {} | {} | {} | {} |",
            l.p50, l.p90, l.p99, l.p999, l.max, intended.p50, intended.p90, intended.p99, intended.p999, intended.max
        )?;
    }
    Ok(())
}

/// The failed requests by kind, and the first one.
fn failures(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    if let Some(errors) = s.requests.as_ref().and_then(|r| r.errors.as_ref()).filter(|e| !e.is_empty()) {
        writeln!(out, "\n| error | count |\n|---|---:|")?;
        for (kind, n) in errors {
            writeln!(out, "| {kind} | {n} |")?;
        }
    }
    if let Some(first) = s.requests.as_ref().and_then(|r| r.first_error.as_ref()) {
        writeln!(out, "\nFirst failure: `{}` at {:.2} s into the load.", first.kind, first.at_s)?;
    }
    Ok(())
}

/// Where the memory is: the heap profiles, and each Go process's profiles compared.
fn profiles(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    if let Some(heap) = &s.heap_profile {
        writeln!(out)?;
        super::heap::markdown(out, heap, 2)?;
        writeln!(out)?;
    }
    for (side, profiles) in super::call_sites::compared(s) {
        writeln!(out)?;
        super::call_sites::markdown(out, profiles, side, 2)?;
        writeln!(out)?;
    }
    Ok(())
}

fn connections(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    list(out, "Connections", &super::lifecycle::sentences(s))
}

fn notes(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    list(out, "Notes", &words::notes(s))
}

/// A section of one item per sentence; none when there are no sentences.
fn list(out: &mut dyn Write, heading: &str, sentences: &[String]) -> io::Result<()> {
    if sentences.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n## {heading}\n")?;
    for sentence in sentences {
        writeln!(out, "- {sentence}")?;
    }
    Ok(())
}

/// The run directory's files.
fn files(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let extra = if s.command.as_ref().is_some_and(|c| c.argv.is_some()) { ", `command.log`" } else { "" };
    let server_log = if s.target.server_pid.is_some() { ", `server.log`" } else { "" };
    writeln!(
        out,
        "\nFiles: `summary.json` (schema: `schema/summary.schema.json`), `{}` (one sample per line), `memory.svg`, \
         `memory.png`{server_log}{extra}.",
        s.samples.file
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    fn text(summary: &Summary) -> String {
        let mut bytes = Vec::new();
        render(&mut bytes, summary).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn report_shows_growth_and_notes() {
        let (summary, _) = scripted_report();
        let text = text(&summary);
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

    #[test]
    fn a_server_not_measured_says_so_in_every_table_it_has_a_column_in() {
        let (mut summary, _) = scripted_report();
        summary.server = None;
        summary.verdict.server = None;
        let text = text(&summary);
        assert!(text.contains("| server | not measured | | | | | |"), "{text}");
        assert!(text.contains("| RSS | 17.2 MiB → 80.1 MiB, peak 80.1 MiB | not measured |"), "{text}");
        assert!(!text.contains("- server:"), "a verdict the server does not have: {text}");
    }

    /// A writer that fails, as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_error_writing_is_returned_not_dropped() {
        let (summary, samples) = scripted_report();
        let error = Markdown.export(&Report { summary, samples }, &mut Full).unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");
    }
}
