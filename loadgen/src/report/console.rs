//! What `loadgen run`, `watch` and `report` print when a run ends: its
//! figures, its verdicts with their first reason, and where its report is.

use std::io::Write;
use std::path::Path;

use super::Exporter;
use super::lifecycle;
use super::units::{bytes_per_request, expectation_mark, human_bytes, latencies, mib};
use super::words::{self, measure, per};
use crate::baseline::BaselineComparison;
use leaklab_engine::summary::{ProcessSummary, Summary, TargetKind};
use leaklab_verdict::{Basis, ProcessVerdict, Quantity};

/// A finished run as the console shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunConsole<'a> {
    pub summary: &'a Summary,
    pub baseline: Option<&'a BaselineComparison>,
    /// The baseline the run was saved as, and where.
    pub saved_as: Option<(&'a str, &'a Path)>,
    pub dir: &'a Path,
}

impl super::Reported {
    /// What the console shows of the run, without a baseline.
    pub(crate) fn console(&self) -> RunConsole<'_> {
        RunConsole { summary: &self.report.summary, baseline: None, saved_as: None, dir: &self.dir }
    }
}

/// The console text of a run.
#[derive(Debug)]
pub(crate) struct RunText;

impl Exporter<RunConsole<'_>> for RunText {
    fn export(&self, run: &RunConsole<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let s = run.summary;
        writeln!(out, "{}", first_line(s))?;
        let g = &s.growth;
        // Anonymous memory is judged, and RSS quoted beside it: the slope a reader of `ps` would expect.
        let judged = |quantity, allocated, rss: Option<f64>, anon| match quantity {
            Quantity::AllocatedBytes => ("allocated".to_owned(), allocated),
            Quantity::RssBytes => ("RSS".to_owned(), rss),
            Quantity::RssAnonBytes => (format!("RSS {} · anonymous", bytes_per_request(rss)), anon),
        };
        let client_growth = judged(
            s.verdict.client.quantity,
            g.client_allocated_bytes_per_request,
            g.client_rss_bytes_per_request,
            g.client_rss_anon_bytes_per_request,
        );
        process(out, "client", Some(&s.client), client_growth, g.client_connections_per_request)?;
        for (name, counter) in &s.client.counters {
            writeln!(out, "  client counter {name}: {}", words::counter(counter))?;
        }
        if let Some(channelz) = words::channelz(s) {
            writeln!(out, "  client {channelz}")?;
        }
        if s.target.address.is_some() {
            let quantity = s.verdict.server.as_ref().map_or(Quantity::AllocatedBytes, |v| v.quantity);
            let server_growth = judged(
                quantity,
                g.server_allocated_bytes_per_request,
                g.server_rss_bytes_per_request,
                g.server_rss_anon_bytes_per_request,
            );
            process(out, "server", s.server.as_ref(), server_growth, g.server_connections_per_request)?;
        }
        if let Some(streams) = words::streams(s) {
            writeln!(out, "  open streams: {streams}")?;
        }
        if let Some(source) = words::server_source(&s.target).filter(|_| s.target.kind == TargetKind::External) {
            writeln!(out, "  server measured from {source}")?;
        }
        if let Some(url) = &s.target.server_metrics_url {
            for (name, span) in &s.server_metrics {
                writeln!(out, "  server metric {name}: {} → {} (peak {}) at {url}", span.start, span.end, span.peak)?;
            }
        }
        for (kind, count) in s.requests.as_ref().and_then(|r| r.errors.as_ref()).into_iter().flatten() {
            writeln!(out, "  errors: {kind} × {count}")?;
        }
        for sentence in lifecycle::sentences(s) {
            writeln!(out, "  {sentence}")?;
        }
        if let Some(heap) = &s.heap_profile {
            for (name, growth) in [("client", &heap.client), ("server", &heap.server)] {
                let Some(growth) = growth else { continue };
                let coverage =
                    growth.coverage.map(|c| format!(", {:.0}% of the allocator's", c * 100.0)).unwrap_or_default();
                writeln!(
                    out,
                    "  heap profile, {name}: {} of growth{coverage}; top stacks:",
                    human_bytes(growth.profiled_growth_bytes)
                )?;
                for stack in growth.top.iter().take(3) {
                    let frame = stack.frames.first().map_or("", String::as_str);
                    writeln!(out, "    {} ({:.0}%) {frame}", human_bytes(stack.bytes), stack.share * 100.0)?;
                }
                for site in &growth.call_sites {
                    writeln!(
                        out,
                        "    own call site: {}, {} ({:.0}%)",
                        site.function,
                        human_bytes(site.bytes),
                        site.share * 100.0
                    )?;
                }
            }
        }
        for (profiles, name) in [(&s.profiles, "client"), (&s.server_profiles, "server")] {
            let Some(profiles) = profiles else { continue };
            let per = profiles.bytes_per_connection.map(|b| {
                let rss = profiles.rss_per_connection.map(|r| format!(" (RSS {})", human_bytes(r))).unwrap_or_default();
                format!(", {} per connection{rss}", human_bytes(b))
            });
            writeln!(
                out,
                "  profiles, {name}: {} grew{}; its own call sites:",
                human_bytes(profiles.inuse_bytes_growth as f64),
                per.unwrap_or_default()
            )?;
            for site in &profiles.call_sites {
                let file = site.file_name();
                writeln!(out, "    {} at {file}:{}, {} objects", site.function, site.line, site.inuse_objects_growth)?;
            }
            if profiles.call_sites.is_empty() {
                writeln!(out, "    none: no function of its own holds any of the growth")?;
            }
        }
        verdict(out, "client", Some(&s.verdict.client))?;
        verdict(out, "server", s.verdict.server.as_ref())?;
        for segment in &s.segments {
            writeln!(out, "  {} ({})", words::segment(segment), segment.dir)?;
        }
        if let Some(note) = words::stop_note(s) {
            writeln!(out, "  {note}")?;
        }
        if let Some((name, path)) = run.saved_as {
            writeln!(out, "  baseline {name:?} saved: {}", path.display())?;
        }
        if let Some(baseline) = run.baseline {
            writeln!(
                out,
                "  baseline {:?}: {}",
                baseline.name,
                if baseline.regressed { "✖ regressed" } else { "✔ held" }
            )?;
            for line in words::baseline_lines(baseline).into_iter().chain(words::regressions(baseline)) {
                writeln!(out, "    {line}")?;
            }
        }
        writeln!(out, "report: {}", run.dir.display())?;
        Ok(())
    }
}

fn first_line(s: &Summary) -> String {
    let requests = s.requests.as_ref();
    match &s.command {
        None => format!(
            "{}: {} requests ({} failed) in {:.1} s, {:.0} req/s; {}",
            s.scenario,
            s.requests_done().unwrap_or(0),
            requests.map_or(0, |r| r.failed),
            s.load_duration_s,
            s.throughput_rps.unwrap_or(0.0),
            s.latency_us.map_or_else(
                || "latency not recorded".to_owned(),
                |l| latencies(&l, s.latency_from_intended_us.as_ref())
            )
        ),
        Some(command) => {
            let reported = requests
                .map(|r| format!(", {} requests reported ({} failed)", r.ok + r.failed, r.failed))
                .unwrap_or_default();
            format!(
                "{}: pid {}, watched {:.1} s, {} samples{reported}",
                s.scenario, command.pid, s.load_duration_s, s.samples.count
            )
        }
    }
}

fn process(
    out: &mut dyn Write,
    name: &str,
    process: Option<&ProcessSummary>,
    (measured, growth): (String, Option<f64>),
    connections: Option<f64>,
) -> std::io::Result<()> {
    let Some(process) = process else {
        return writeln!(out, "  {name}: not measured (--target without --server-pid or --server-metrics)");
    };
    let rss = &process.rss_bytes;
    let rss = format!("RSS {:.1} → {:.1} MiB (peak {:.1})", mib(rss.start), mib(rss.end), mib(rss.peak));
    match (connections, growth) {
        (Some(connections), _) => writeln!(
            out,
            "  {name}: {measured} {}, connections {connections:+.3}/request, {rss}",
            bytes_per_request(growth)
        ),
        // A server read from its metrics endpoint: its connections are not counted.
        (None, Some(_)) => writeln!(out, "  {name}: {measured} {}, {rss}", bytes_per_request(growth)),
        // No request counts: nothing is per request.
        (None, None) => match &process.connections {
            Some(open) => {
                writeln!(out, "  {name}: {rss}, connections {} → {} (peak {})", open.start, open.end, open.peak)
            }
            None => writeln!(out, "  {name}: {rss}"),
        },
    }
}

fn verdict(out: &mut dyn Write, name: &str, verdict: Option<&ProcessVerdict>) -> std::io::Result<()> {
    let Some(verdict) = verdict else { return Ok(()) };
    let expected = match verdict.expected {
        Some(expected) => {
            format!(", expected {} {}", expected.name(), expectation_mark(verdict.kind, verdict.expectation_met))
        }
        None => String::new(),
    };
    let over = match (verdict.basis, verdict.rounds) {
        (Basis::Checkpoints, Some(rounds)) => format!("{rounds} round{}", if rounds == 1 { "" } else { "s" }),
        _ => format!("{} samples", verdict.trend.map_or(verdict.points.len() as u32, |t| t.points)),
    };
    writeln!(
        out,
        "  verdict {name}: {} — {} {} per {} over {over}{expected}",
        verdict.kind,
        measure(verdict.quantity),
        words::slope(verdict),
        per(verdict.axis),
    )?;
    if let Some(reason) = verdict.reasons.first() {
        writeln!(out, "    {}", words::reason(verdict, reason))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn the_console_shows_both_verdicts_and_where_the_report_is() {
        let (summary, _) = scripted_report();
        let run = RunConsole { summary: &summary, baseline: None, saved_as: None, dir: Path::new("reports/leak/x") };
        let text = crate::report::to_string(&RunText, &run).unwrap();
        assert!(text.starts_with("leak: 1100 requests (0 failed) in 3.0 s, 367 req/s; latency p50 800 µs"), "{text}");
        assert!(
            text.contains("  verdict client: LEAK — allocated +60.0 KB (+60.0 KB to +60.0 KB) per request over 10 rounds, expected leak ✔"),
            "{text}"
        );
        assert!(text.contains("    Allocated memory grew by 60.0 KB per request"), "{text}");
        assert!(text.ends_with("report: reports/leak/x\n"), "{text}");
    }
}
