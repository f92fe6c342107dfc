//! What `loadgen run`, `watch` and `report` print when a run ends: its
//! figures, its verdicts with their first reason, and where its report is.

use std::io::{self, Write};
use std::path::Path;

use super::Exporter;
use super::lifecycle;
use super::units::{bytes_per_request, expectation_mark, latencies, mib};
use super::words::{self, measure, per};
use crate::baseline::BaselineComparison;
use leaklab_engine::summary::{GrowthPerRequest, ProcessSummary, Side, Sides, Summary, TargetKind};
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
        processes(out, s)?;
        other_figures(out, s)?;
        for sentence in lifecycle::sentences(s) {
            writeln!(out, "  {sentence}")?;
        }
        super::heap::console(out, s)?;
        super::call_sites::console(out, s)?;
        for (side, verdict) in Sides::of(&s.verdict).iter() {
            self::verdict(out, side, verdict)?;
            if let Some(native) = s.verdict.client_native.as_ref().filter(|_| side == Side::Client) {
                writeln!(
                    out,
                    "    outside the heap ({}): {}, {} per {}",
                    words::native_source(s),
                    native.kind,
                    words::slope(native),
                    per(native.axis)
                )?;
            }
        }
        for segment in &s.segments {
            writeln!(out, "  {} ({})", words::segment(segment), segment.dir)?;
        }
        if let Some(note) = words::stop_note(s) {
            writeln!(out, "  {note}")?;
        }
        baseline(out, run)?;
        writeln!(out, "report: {}", run.dir.display())?;
        Ok(())
    }
}

/// Each process's growth, connections and RSS; the client's counters and channelz under its line. The
/// server's line only when there was a server to load.
fn processes(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let growth = s.growth.per_request();
    let client = &growth.client;
    process(out, Side::Client, Some(&s.client), judged(Some(&s.verdict.client), client), client.connections)?;
    for (name, counter) in &s.client.counters {
        writeln!(out, "  client counter {name}: {}", words::counter(counter))?;
    }
    if let Some(channelz) = words::channelz(s) {
        writeln!(out, "  client {channelz}")?;
    }
    super::orphans::console(out, s)?;
    // A watch loads no server.
    let Some(server) = growth.server.as_ref().filter(|_| s.target.address.is_some()) else { return Ok(()) };
    process(out, Side::Server, s.server.as_ref(), judged(s.verdict.server.as_ref(), server), server.connections)
}

/// What grew per request, by what the verdict judged: anonymous memory is judged, and RSS quoted beside it
/// (the slope a reader of `ps` would expect); a runtime's live heap is judged on the points it was read
/// at, anonymous memory quoted beside it.
fn judged(verdict: Option<&ProcessVerdict>, growth: &GrowthPerRequest) -> (String, Option<f64>) {
    let quantity = verdict.map_or(Quantity::AllocatedBytes, |verdict| verdict.quantity);
    match quantity {
        Quantity::AllocatedBytes => ("allocated".to_owned(), growth.allocated_bytes),
        Quantity::RssBytes => ("RSS".to_owned(), growth.rss_bytes),
        Quantity::RssAnonBytes => {
            (format!("RSS {} · anonymous", bytes_per_request(growth.rss_bytes)), growth.rss_anon_bytes)
        }
        Quantity::LiveHeapBytes | Quantity::NativeBytes => (
            format!("anonymous {} · {}", bytes_per_request(growth.rss_anon_bytes), words::measure(quantity)),
            verdict.and_then(|verdict| verdict.slope_bytes_per_request),
        ),
    }
}

/// Both ends' open streams, where the server's figures came from, its scraped metrics, and the failed
/// requests by kind.
fn other_figures(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
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
    Ok(())
}

/// The baseline the run was saved as, and how it compares with the one it was compared with.
fn baseline(out: &mut dyn Write, run: &RunConsole<'_>) -> io::Result<()> {
    if let Some((name, path)) = run.saved_as {
        writeln!(out, "  baseline {name:?} saved: {}", path.display())?;
    }
    if let Some(baseline) = run.baseline {
        let held = if baseline.regressed { "✖ regressed" } else { "✔ held" };
        writeln!(out, "  baseline {:?}: {held}", baseline.name)?;
        for line in words::baseline_lines(baseline).into_iter().chain(words::regressions(baseline)) {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(())
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
    side: Side,
    process: Option<&ProcessSummary>,
    (measured, growth): (String, Option<f64>),
    connections: Option<f64>,
) -> io::Result<()> {
    let name = side.name();
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

fn verdict(out: &mut dyn Write, side: Side, verdict: &ProcessVerdict) -> io::Result<()> {
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
        "  verdict {}: {} — {} {} per {} over {over}{expected}",
        side.name(),
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

    #[test]
    fn a_server_not_measured_is_said_so_and_a_watch_has_no_server_line() {
        let (mut summary, _) = scripted_report();
        summary.server = None;
        summary.verdict.server = None;
        let run = RunConsole { summary: &summary, baseline: None, saved_as: None, dir: Path::new("x") };
        let text = crate::report::to_string(&RunText, &run).unwrap();
        assert!(
            text.contains("  server: not measured (--target without --server-pid or --server-metrics)\n"),
            "{text}"
        );
        assert!(!text.contains("verdict server"), "{text}");
        summary.target.address = None;
        let run = RunConsole { summary: &summary, baseline: None, saved_as: None, dir: Path::new("x") };
        let text = crate::report::to_string(&RunText, &run).unwrap();
        assert!(!text.contains("  server"), "{text}");
    }
}
