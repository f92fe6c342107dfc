//! `index.html`: the whole story on one page that opens from disk, offline
//! and printable: CSS inline, every plot an inline SVG, no script, and no
//! reference to anything outside the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use super::story::{Chapter, Story};
use super::{ChapterRecord, DemoRecord, DemoReport, verdict_words};
use crate::compare::RowVerdict;
use crate::report::Exporter;
use crate::report::units::thousands;
use crate::report::units::{human_bytes, signed_bytes};
use leaklab_engine::heap::HeapGrowth;
use leaklab_engine::heap::go::GoProfiles;
use leaklab_verdict::VerdictKind;

/// `index.html`.
#[derive(Debug)]
pub(crate) struct DemoPage;

impl Exporter<DemoReport> for DemoPage {
    fn export(&self, report: &DemoReport, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(render(&report.story, &report.record, &report.plots).as_bytes())?;
        Ok(())
    }
}

/// Stacks listed per process in a chapter's "where the memory is" table.
const HEAP_ROWS: usize = 8;

const STYLE: &str = r#"
:root { --ink: #1d2327; --muted: #5b6770; --line: #d8dee3; --paper: #ffffff; --wash: #f4f6f8;
        --leak: #b3261e; --ok: #1e7a3c; --unsure: #8a6d00; --client: #1f77b4; --server: #d65f00; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--paper); color: var(--ink);
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 2.5rem 1.5rem 4rem; }
h1 { font-size: 2.3rem; line-height: 1.2; margin: .3rem 0 1rem; }
h2 { font-size: 1.6rem; line-height: 1.25; margin: 0 0 .6rem; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .5rem; }
.kicker { color: var(--muted); font-size: .9rem; margin: 0; }
.intro { font-size: 1.1rem; max-width: 60rem; }
section { margin-top: 3rem; }
.chapter { border-top: 3px solid var(--ink); padding-top: 1.2rem; }
.num { display: inline-block; min-width: 2.2rem; color: var(--muted); }
.lesson { font-size: 1.2rem; font-weight: 600; margin: .2rem 0 .8rem; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; padding: .4rem .55rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--wash); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n { white-space: nowrap; }
a { color: inherit; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: .3rem; font-size: .8rem; font-weight: 700;
         letter-spacing: .02em; color: #fff; white-space: nowrap; }
.badge.leak { background: var(--leak); } .badge.no-leak { background: var(--ok); }
.badge.unsure { background: var(--unsure); }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(12.5rem, 1fr)); gap: .7rem; margin: 1rem 0; }
.figure { background: var(--wash); border-radius: .5rem; padding: .6rem .8rem; }
.figure .label { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
.figure .value { font-size: 1.35rem; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.3; }
.figure .detail { font-size: .82rem; color: var(--muted); }
.events { margin: .4rem 0 1rem; padding-left: 1.2rem; }
figure.plot { margin: 1rem 0; }
figure.plot svg { width: 100%; height: auto; display: block; border: 1px solid var(--line); border-radius: .4rem; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .3rem; }
.code h3 { margin: .8rem 0 .4rem; font-size: .95rem; color: var(--muted); }
pre { background: #1f2428; color: #e8eaed; padding: .8rem 1rem; border-radius: .4rem; overflow-x: auto;
      font: .84rem/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; margin: 0; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: .9em; }
.frames { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8rem; word-break: break-word; }
.rules li { margin-bottom: 1rem; font-size: 1.05rem; }
.rules .proof { display: block; color: var(--muted); font-size: .9rem; }
.note { color: var(--muted); }
footer { margin-top: 3rem; border-top: 1px solid var(--line); padding-top: 1rem; color: var(--muted); font-size: .9rem; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  .chapter { break-before: page; }
  figure, table, .figures, pre { break-inside: avoid; }
  pre { white-space: pre-wrap; background: #f4f6f8; color: #000; border: 1px solid #ccc; }
  a { text-decoration: none; }
}
"#;

/// The page for `record`, the run of `story`; `plots` holds each chapter's memory SVG by chapter number.
fn render(story: &Story, record: &DemoRecord, plots: &BTreeMap<usize, String>) -> String {
    let mut html = String::new();
    let title = escape(&story.title);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · leaklab demo</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    );
    let profile = if record.fast { "the fast profile (FAST=1)" } else { "the full profile" };
    let _ = write!(
        html,
        "<header>\n<p class=\"kicker\">leaklab demo · measured {} on {} · {profile}, {:.0} s</p>\n<h1>{title}</h1>\n\
         <p class=\"intro\">{}</p>\n</header>\n",
        escape(&record.started_at),
        escape(&record.machine),
        record.duration_s,
        escape(&story.intro)
    );
    html += &summary(story, record);
    for chapter in &story.chapters {
        if let Some(run) = record.chapters.iter().find(|run| run.number == chapter.number) {
            html += &chapter_section(chapter, run, plots.get(&chapter.number));
        }
    }
    html += &rules(story, record);
    let _ = write!(
        html,
        "<footer>\n<p>Reproduce on your machine: <code>make demo</code>, or <code>make demo FAST=1</code> for the \
         short version; <code>make peers</code> first builds the Go client. \
         The words come from <code>{}</code>; the figures from <code>demo.json</code> next to this page, and each \
         chapter's full report is in its run directory.</p>\n</footer>\n</main>\n</body>\n</html>\n",
        escape(&record.story_file)
    );
    html
}

fn summary(story: &Story, record: &DemoRecord) -> String {
    let mut html = String::from(
        "<section id=\"summary\">\n<h2>The chapters at a glance</h2>\n<table>\n<thead><tr><th class=\"n\">#</th>\
         <th>chapter</th><th class=\"n\">client per request</th><th class=\"n\">server per request</th>\
         <th class=\"n\">peak connections client · server</th><th class=\"n\">p99</th><th>verdict client / server</th></tr></thead>\n<tbody>\n",
    );
    for chapter in &story.chapters {
        let Some(run) = record.chapters.iter().find(|run| run.number == chapter.number) else { continue };
        let row = run.row();
        let _ = writeln!(
            html,
            "<tr><td class=\"n\">{}</td><td><a href=\"#chapter-{}\">{}</a> <span class=\"note\">({})</span></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} {}</td></tr>",
            chapter.number,
            chapter.number,
            escape(&chapter.title),
            escape(&chapter.name),
            escape(&run.client_per_request()),
            escape(&run.server_per_request()),
            peak_connections(run),
            run.p99(),
            badge(&row.client),
            row.server.as_ref().map_or_else(String::new, badge),
        );
    }
    html += "</tbody>\n</table>\n";
    for skipped in &record.skipped {
        let _ =
            writeln!(html, "<p class=\"note\">Not run: {}: {}.</p>", escape(&skipped.scenario), escape(&skipped.error));
    }
    for failure in &record.failures {
        let _ =
            writeln!(html, "<p class=\"note\">Failed: {}: {}.</p>", escape(&failure.scenario), escape(&failure.error));
    }
    if record.interrupted {
        html += "<p class=\"note\">The demo was stopped before its last chapter.</p>\n";
    }
    html += "<p class=\"note\">Per request: the slope of memory over requests, allocated bytes (jemalloc) for the \
             Rust client and the server, resident memory for the Go client. A LEAK verdict means the growth is \
             above the tolerance with 95% confidence.</p>\n</section>\n";
    html
}

fn chapter_section(chapter: &Chapter, run: &ChapterRecord, plot: Option<&String>) -> String {
    let row = run.row();
    let mut html = format!(
        "<section class=\"chapter\" id=\"chapter-{n}\" data-scenario=\"{name}\">\n\
         <h2><span class=\"num\">{n}</span>{title}</h2>\n<p class=\"lesson\">{lesson}</p>\n<p>{explain}</p>\n",
        n = chapter.number,
        name = escape(&chapter.name),
        title = escape(&chapter.title),
        lesson = escape(&chapter.lesson),
        explain = escape(&chapter.explain),
    );
    html += "<div class=\"figures\">\n";
    html += &figure(
        &format!("client, {} per request", run.client_measure()),
        &format!("{} {}", escape(&growth(&row.client)), badge(&row.client)),
        &slope_interval(&row.client),
    );
    if let Some(server) = &row.server {
        html += &figure(
            "server, allocated per request",
            &format!("{} {}", escape(&growth(server)), badge(server)),
            &slope_interval(server),
        );
    }
    html += &figure(
        "peak connections",
        &peak_connections(run),
        if row.server_peak_connections.is_some() { "client · server" } else { "client" },
    );
    let intended = run
        .summary
        .latency_from_intended_us
        .map(|l| format!("p99 {} from intended send times", millis(l.p99)))
        .unwrap_or_default();
    let (value, detail) = match (row.latency_p50_us, row.latency_p99_us) {
        (Some(p50), Some(p99)) => (millis_pair(p50, p99), intended),
        _ => ("n/a".to_owned(), "an external client reports counts only".to_owned()),
    };
    html += &figure("latency p50 / p99", &value, &detail);
    let (requests, detail) = match (row.requests, row.throughput_rps) {
        (Some(requests), Some(rps)) => {
            (thousands(requests), format!("{rps:.0} req/s, {} failed", thousands(row.failed.unwrap_or(0))))
        }
        _ => ("n/a".to_owned(), "the client reported none".to_owned()),
    };
    html += &figure("requests", &requests, &detail);
    if crate::report::words::opened_streams(&run.summary) {
        let peak =
            |process: Option<&leaklab_engine::summary::ProcessSummary>| process.and_then(|p| p.streams).map(|s| s.peak);
        let (client, server) = (peak(Some(&run.summary.client)), peak(run.summary.server.as_ref()));
        let value = [client, server].iter().flatten().map(|n| thousands(*n)).collect::<Vec<_>>().join(" · ");
        let per_request =
            run.summary.growth.server_streams_per_request.or(run.summary.growth.client_streams_per_request);
        let detail = per_request.map(|n| format!("client · server; {n:+.2} per request")).unwrap_or_default();
        html += &figure("peak open streams", &value, &detail);
    }
    if let Some(reading) = run.summary.client.channelz.as_ref().and_then(|c| c.last.as_ref()) {
        let detail = format!(
            "the client's gRPC runtime counted them: {} subchannels, {} sockets",
            thousands(reading.subchannels),
            thousands(reading.sockets)
        );
        html += &figure("channels open", &thousands(reading.channels), &detail);
    }
    // A socket or two in TIME_WAIT is the readiness probe's; more is the chapter's own doing.
    if let Some(peak) = run.summary.lifecycle.time_wait.map(|tw| tw.peak).filter(|peak| *peak > 2) {
        html += &figure("TIME_WAIT peak", &thousands(peak), "closed sockets lingering for 60 s");
    }
    html += "</div>\n";
    let events = run.events();
    if !events.is_empty() {
        html += "<ul class=\"events\">\n";
        for event in &events {
            let _ = writeln!(html, "<li>{}</li>", escape(event));
        }
        html += "</ul>\n";
    }
    match plot.and_then(|svg| inline_svg(svg, &format!("{}: memory and connections over time", chapter.name))) {
        Some(svg) => {
            let dashed = if run.summary.kind == leaklab_engine::summary::RunKind::Builtin {
                "allocated"
            } else {
                "allocated, or anonymous for the process leaklab did not write,"
            };
            let below = if crate::report::words::opened_streams(&run.summary) {
                "open connections and streams"
            } else {
                "open connections"
            };
            let _ = write!(
                html,
                "<figure class=\"plot\">\n{svg}\n<figcaption>Memory of the client (blue) and the server (orange) over \
                 time, resident (solid) and {dashed} (dashed); {below} below. Full report: \
                 <code>{}</code></figcaption>\n</figure>\n",
                escape(&row.run_dir)
            );
        }
        None => {
            let _ =
                writeln!(html, "<p class=\"note\">No plot: {}/memory.svg could not be read.</p>", escape(&row.run_dir));
        }
    }
    let code: Vec<(&str, &String)> = [("Rust (tonic)", chapter.rust.as_ref()), ("Go (grpc-go)", chapter.go.as_ref())]
        .into_iter()
        .filter_map(|(label, code)| Some((label, code?)))
        .collect();
    if !code.is_empty() {
        html += "<h3>The code this chapter models</h3>\n<div class=\"code\">\n";
        for (label, code) in code {
            let _ = writeln!(html, "<div><h3>{label}</h3><pre><code>{}</code></pre></div>", escape(code));
        }
        html += "</div>\n";
    }
    if let Some(heap) = &run.summary.heap_profile {
        html += "<h3>Where the memory is</h3>\n<p>The allocation stacks whose in-use bytes grew most during the \
                 measured load, from jemalloc's sampling heap profiler (like <code>pprof -base</code>). The write and \
                 read buffers of each HTTP/2 connection are Rust's counterparts of grpc-go's <code>newBufWriter</code> \
                 and <code>bufio.NewReaderSize</code>.</p>\n";
        for (name, growth) in [("client", &heap.client), ("server", &heap.server)] {
            if let Some(growth) = growth {
                html += &heap_table(name, growth);
            }
        }
    }
    if let Some(profiles) = &run.summary.profiles {
        html += &call_sites_table(profiles);
    }
    html += "</section>\n";
    html
}

/// A Go client's profiles, compared: what grew, and the call sites of its own code that created it.
fn call_sites_table(p: &GoProfiles) -> String {
    let rate =
        p.sample_period_bytes.map_or_else(|| "an unknown rate".to_owned(), |b| format!("one sample per {b} bytes"));
    let per = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), human_bytes);
    let mut html = format!(
        "<h3>From the profile to the code</h3>\n<p>The client's own heap profiles from <code>net/http/pprof</code>, \
         after warm-up and at the end ({rate}): in-use memory grew by {}, {} per connection it kept open (its RSS: {} \
         per connection). The write and read buffers hold most of it, but gRPC's own goroutines allocate them, with \
         no frame of the service on their stacks. What <code>grpc.Dial</code> allocates before it returns carries \
         the caller's frames, and so names the lines that dial:</p>\n",
        human_bytes(p.inuse_bytes_growth as f64),
        per(p.bytes_per_connection),
        per(p.rss_per_connection),
    );
    html += "<table>\n<thead><tr><th>call site</th><th>at</th><th class=\"n\">objects grown</th>\
             <th class=\"n\">bytes grown</th></tr></thead>\n<tbody>\n";
    for site in &p.call_sites {
        let file = site.file_name();
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td><code>{}:{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&site.function),
            escape(&file),
            site.line,
            site.inuse_objects_growth,
            human_bytes(site.inuse_bytes_growth as f64)
        );
    }
    if p.call_sites.is_empty() {
        html += "<tr><td colspan=\"4\">No call site of the client's own code holds any of the growth.</td></tr>\n";
    }
    html += "</tbody>\n</table>\n";
    let buffers: Vec<String> = p
        .growth
        .iter()
        .filter_map(|g| {
            Some(format!(
                "{} {:.0}% ({} per connection)",
                g.known_as.as_deref()?,
                g.share * 100.0,
                per(g.bytes_per_connection)
            ))
        })
        .collect();
    if !buffers.is_empty() || p.goroutines_per_connection.is_some() {
        let goroutines = p
            .goroutines_per_connection
            .map(|g| format!("; {g:.2} goroutines per connection grew with them"))
            .unwrap_or_default();
        let _ = writeln!(html, "<p>Of all that grew: {}{goroutines}.</p>", escape(&buffers.join(", ")));
    }
    html
}

fn heap_table(name: &str, growth: &HeapGrowth) -> String {
    let coverage =
        growth.coverage.map(|c| format!(", {:.0}% of what the allocator counted", c * 100.0)).unwrap_or_default();
    let mut html = format!(
        "<h3>{name}: {} of growth profiled{coverage}</h3>\n<table>\n<thead><tr><th class=\"n\">grew by</th>\
         <th class=\"n\">share</th><th>what it is</th><th>where (innermost frame first)</th></tr></thead>\n<tbody>\n",
        human_bytes(growth.profiled_growth_bytes)
    );
    for stack in growth.top.iter().take(HEAP_ROWS) {
        let frames: Vec<String> = stack.frames.iter().take(4).map(|frame| escape(frame)).collect();
        let _ = writeln!(
            html,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td>{}</td><td class=\"frames\">{}</td></tr>",
            human_bytes(stack.bytes),
            stack.share * 100.0,
            escape(what_it_is(&stack.frames).unwrap_or("")),
            frames.join(" ← ")
        );
    }
    html += "</tbody>\n</table>\n";
    html
}

/// A heap stack in the words of the incident, for the stacks a leaked connection is made of.
pub(crate) fn what_it_is(frames: &[String]) -> Option<&'static str> {
    let innermost = frames.first()?;
    let anywhere = |needle: &str| frames.iter().any(|frame| frame.contains(needle));
    Some(if innermost.contains("FramedWrite") {
        "the connection's write buffer (grpc-go: newBufWriter)"
    } else if innermost.contains("ReadFrame") {
        "the connection's read buffer (grpc-go: bufio.NewReaderSize)"
    } else if innermost.contains("FrameDecoder") {
        "the connection's HTTP/2 frame decoder"
    } else if innermost.contains("mpsc") && anywhere("tower::buffer") {
        "the channel's request queue (tower Buffer)"
    } else if innermost.contains("hyper::client::dispatch") || innermost.contains("mpsc") && anywhere("hyper::client") {
        "the connection's request dispatch queue (hyper)"
    } else if innermost.contains("slab::Slab") {
        "HTTP/2 stream state"
    } else if innermost.contains("hpack") {
        "the connection's HTTP/2 header table (HPACK)"
    } else if innermost.contains("http2::Builder") && innermost.contains("handshake") {
        "the connection's HTTP/2 state (hyper handshake)"
    } else if innermost.contains("tokio::runtime::task") || anywhere("tokio::task::spawn") {
        "the connection's task"
    } else {
        return None;
    })
}

fn rules(story: &Story, record: &DemoRecord) -> String {
    if story.rules.is_empty() {
        return String::new();
    }
    let mut html = format!(
        "<section id=\"rules\">\n<h2>{} rules of thumb</h2>\n<ol class=\"rules\">\n",
        count_word(story.rules.len())
    );
    for rule in &story.rules {
        let proofs: Vec<String> = rule
            .proven_by
            .iter()
            .map(|name| match record.chapter(name) {
                Some(run) => format!(
                    "<a href=\"#chapter-{}\">chapter {} ({})</a>: {}",
                    run.number,
                    run.number,
                    escape(name),
                    escape(&proof(run))
                ),
                None => format!("{} (did not run)", escape(name)),
            })
            .collect();
        let _ = writeln!(
            html,
            "<li><strong>{}</strong> {}<span class=\"proof\">Measured in {}.</span></li>",
            escape(&rule.rule),
            escape(&rule.why),
            proofs.join("; ")
        );
    }
    html += "</ol>\n</section>\n";
    html
}

/// What a chapter measured, in a phrase for a rule's proof.
pub(crate) fn proof(run: &ChapterRecord) -> String {
    let row = run.row();
    let mut text = format!("client {} {}", verdict_words(&row.client), run.client_per_request());
    if let Some(server) = &row.server {
        text += &format!(", server {} {}", verdict_words(server), run.server_per_request());
    }
    text += &format!(", peak {}", connections(row.client_peak_connections));
    if row.latency_p99_us.is_some() {
        text += &format!(", p99 {}", run.p99());
    }
    if !row.connection_events.is_empty() && row.connection_events != "—" {
        text += &format!(", {}", row.connection_events);
    }
    text
}

/// `1 connection`, `1,400 connections`.
pub(crate) fn connections(n: u64) -> String {
    format!("{} connection{}", thousands(n), if n == 1 { "" } else { "s" })
}

fn figure(label: &str, value_html: &str, detail: &str) -> String {
    format!(
        "<div class=\"figure\"><div class=\"label\">{}</div><div class=\"value\">{value_html}</div>\
         <div class=\"detail\">{}</div></div>\n",
        escape(label),
        escape(detail)
    )
}

/// Growth per request, signed, without the unit's "/request" (the label says it).
fn growth(verdict: &RowVerdict) -> String {
    verdict.slope_bytes_per_request.map_or_else(|| "n/a".to_owned(), signed_bytes)
}

fn slope_interval(verdict: &RowVerdict) -> String {
    match (verdict.ci_low, verdict.ci_high) {
        (Some(low), Some(high)) => format!("95% interval: {} to {}", signed_bytes(low), signed_bytes(high)),
        _ => "95% interval: n/a".to_owned(),
    }
}

fn peak_connections(run: &ChapterRecord) -> String {
    let row = run.row();
    match row.server_peak_connections {
        Some(server) => format!("{} · {}", thousands(row.client_peak_connections), thousands(server)),
        None => thousands(row.client_peak_connections),
    }
}

fn badge(verdict: &RowVerdict) -> String {
    let class = match verdict.kind {
        VerdictKind::Leak => "leak",
        VerdictKind::NoLeak | VerdictKind::Bounded => "no-leak",
        VerdictKind::Inconclusive => "unsure",
    };
    format!("<span class=\"badge {class}\">{}</span>", escape(&verdict_words(verdict)))
}

/// Microseconds as a reader says them: `0.3 ms`, `12 ms`, `1.2 s`.
pub(crate) fn millis(micros: u64) -> String {
    let (number, unit) = millis_parts(micros);
    format!("{number} {unit}")
}

/// Two latencies sharing their unit when they can: `0.3 / 5.1 ms`, `12 ms / 1.2 s`.
fn millis_pair(p50: u64, p99: u64) -> String {
    let ((a, unit_a), (b, unit_b)) = (millis_parts(p50), millis_parts(p99));
    if unit_a == unit_b { format!("{a} / {b} {unit_b}") } else { format!("{a} {unit_a} / {b} {unit_b}") }
}

fn millis_parts(micros: u64) -> (String, &'static str) {
    let ms = micros as f64 / 1000.0;
    if ms >= 1000.0 {
        (format!("{:.1}", ms / 1000.0), "s")
    } else if ms >= 10.0 {
        (format!("{ms:.0}"), "ms")
    } else {
        (format!("{ms:.1}"), "ms")
    }
}

/// `4` as `Four`, for headings.
pub(crate) fn count_word(n: usize) -> String {
    const WORDS: [&str; 10] = ["No", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"];
    WORDS.get(n).map_or_else(|| n.to_string(), |word| (*word).to_owned())
}

/// An SVG file as an element to inline in HTML: no XML prolog, no namespace
/// URL (HTML gives inline SVG its namespace), sized by CSS through its
/// viewBox, labelled for screen readers. `None` if it is not an SVG.
pub(crate) fn inline_svg(svg: &str, label: &str) -> Option<String> {
    let start = svg.find("<svg")?;
    let tag_end = start + svg[start..].find('>')?;
    let tag = &svg[start..tag_end];
    let attribute = |name: &str| {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(&tag[at..at + tag[at..].find('"')?])
    };
    let view_box = match attribute("viewBox") {
        Some(view_box) => view_box.to_owned(),
        None => format!("0 0 {} {}", attribute("width")?, attribute("height")?),
    };
    Some(format!(
        "<svg viewBox=\"{}\" role=\"img\" aria-label=\"{}\">{}",
        escape(&view_box),
        escape(label),
        svg[tag_end + 1..].trim_end()
    ))
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_file_becomes_an_inline_element_without_its_namespace_url() {
        let file = "<?xml version=\"1.0\"?>\n<svg width=\"1200\" height=\"880\" viewBox=\"0 0 1200 880\" \
                    xmlns=\"http://www.w3.org/2000/svg\">\n<rect x=\"0\"/>\n</svg>\n";
        let inline = inline_svg(file, "leak: <memory>").unwrap();
        assert_eq!(
            inline,
            "<svg viewBox=\"0 0 1200 880\" role=\"img\" aria-label=\"leak: &lt;memory&gt;\">\n<rect x=\"0\"/>\n</svg>"
        );
        let sized = inline_svg("<svg width=\"10\" height=\"20\"><g/></svg>", "x").unwrap();
        assert!(sized.starts_with("<svg viewBox=\"0 0 10 20\""), "{sized}");
        assert_eq!(inline_svg("<html></html>", "x"), None);
    }

    #[test]
    fn heap_stacks_are_named_in_the_incidents_words() {
        let stack = |frames: &[&str]| frames.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let what = |frames: &[&str]| what_it_is(&stack(frames));
        assert_eq!(
            what(&[
                "h2::codec::framed_write::FramedWrite<T,B>::new",
                "hyper::client::conn::http2::Builder<Ex>::handshake"
            ]),
            Some("the connection's write buffer (grpc-go: newBufWriter)")
        );
        assert_eq!(
            what(&["<tokio_util::codec::framed_impl::ReadFrame as core::default::Default>::default"]),
            Some("the connection's read buffer (grpc-go: bufio.NewReaderSize)")
        );
        assert_eq!(
            what(&["tokio::sync::mpsc::chan::channel", "tower::buffer::service::Buffer<Req,F>::pair"]),
            Some("the channel's request queue (tower Buffer)")
        );
        let hyper_queue = Some("the connection's request dispatch queue (hyper)");
        assert_eq!(what(&["hyper::client::dispatch::channel", "hyper::client::conn::http2::handshake"]), hyper_queue);
        assert_eq!(what(&["tokio::sync::mpsc::chan::channel", "hyper::client::conn::http2::handshake"]), hyper_queue);
        assert_eq!(what(&["main"]), None);
        assert_eq!(what(&[]), None);
    }

    #[test]
    fn a_go_clients_call_sites_are_tabled_with_their_lines() {
        let html = call_sites_table(&leaklab_engine::fixtures::go_profiles(120_000.0, 126_000.0));
        assert!(html.contains("<code>main.chargePayment</code></td><td><code>app_payments.go:14</code>"), "{html}");
        assert!(html.contains("120.0 KB per connection it kept open (its RSS: 126.0 KB"), "{html}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a < b && \"c\" > 'd'"), "a &lt; b &amp;&amp; &quot;c&quot; &gt; &#39;d&#39;");
    }

    #[test]
    fn latencies_read_in_milliseconds() {
        assert_eq!(millis(343), "0.3 ms");
        assert_eq!(millis(6_511), "6.5 ms");
        assert_eq!(millis(24_191), "24 ms");
        assert_eq!(millis(3_900_000), "3.9 s");
        assert_eq!(millis_pair(343, 5_140), "0.3 / 5.1 ms");
        assert_eq!(millis_pair(12_000, 1_200_000), "12 ms / 1.2 s");
    }
}
