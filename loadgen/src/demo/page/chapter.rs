//! One chapter of the page: its lesson, its key figures, what happened to
//! its connections, its plot, the code it models, and where its memory is.

use std::io::{self, Write};

use super::{badge, millis, millis_pair, peak_connections};
use crate::compare::RowVerdict;
use crate::demo::ChapterRecord;
use crate::demo::story::Chapter;
use crate::report::html::escape;
use crate::report::units::{signed_bytes, thousands};
use crate::report::{heap, words};
use leaklab_engine::summary::{RunKind, Summary};

/// The chapter's section; `plot` is its memory SVG, when it could be read.
pub(super) fn section(
    out: &mut dyn Write,
    chapter: &Chapter,
    run: &ChapterRecord,
    plot: Option<&String>,
) -> io::Result<()> {
    write!(
        out,
        "<section class=\"chapter\" id=\"chapter-{n}\" data-scenario=\"{name}\">\n\
         <h2><span class=\"num\">{n}</span>{title}</h2>\n<p class=\"lesson\">{lesson}</p>\n<p>{explain}</p>\n",
        n = chapter.number,
        name = escape(&chapter.name),
        title = escape(&chapter.title),
        lesson = escape(&chapter.lesson),
        explain = escape(&chapter.explain),
    )?;
    figures(out, run)?;
    events(out, run)?;
    self::plot(out, chapter, run, plot)?;
    code(out, chapter)?;
    if let Some(report) = &run.summary.heap_profile {
        heap::html(out, report)?;
    }
    if let Some(profiles) = &run.summary.profiles {
        crate::report::call_sites::html(out, profiles)?;
    }
    if let Some(beside) = &run.beside {
        beside_html(out, beside)?;
    }
    crate::report::orphans::html(out, &run.summary)?;
    writeln!(out, "</section>")
}

/// The same step in another runtime: the call sites of the scenario run beside the chapter's.
fn beside_html(out: &mut dyn Write, beside: &crate::demo::Beside) -> io::Result<()> {
    writeln!(out, "<div class=\"beside\">\n<h3>Beside it: <code>{}</code></h3>", escape(&beside.scenario))?;
    match &beside.profiles {
        Some(profiles) => crate::report::call_sites::html(out, profiles)?,
        None => writeln!(out, "<p>Its profiles could not be compared; see {}.</p>", escape(&beside.run_dir))?,
    }
    writeln!(out, "</div>")
}

/// The key figures: growth per request of each process with its verdict, connections, latency, requests,
/// and streams, channels and TIME_WAIT where the chapter has them.
fn figures(out: &mut dyn Write, run: &ChapterRecord) -> io::Result<()> {
    let row = run.row();
    writeln!(out, "<div class=\"figures\">")?;
    let verdict = |verdict: &RowVerdict| format!("{} {}", escape(&growth(verdict)), badge(verdict));
    let client_label = format!("client, {} per request", run.client_measure());
    figure(out, &client_label, &verdict(&row.client), &slope_interval(&row.client))?;
    if let Some(server) = &row.server {
        figure(out, "server, allocated per request", &verdict(server), &slope_interval(server))?;
    }
    let who = if row.server_peak_connections.is_some() { "client · server" } else { "client" };
    figure(out, "peak connections", &peak_connections(run), who)?;
    let intended = run
        .summary
        .latency_from_intended_us
        .map(|l| format!("p99 {} from intended send times", millis(l.p99)))
        .unwrap_or_default();
    let (value, detail) = match (row.latency_p50_us, row.latency_p99_us) {
        (Some(p50), Some(p99)) => (millis_pair(p50, p99), intended),
        _ => ("n/a".to_owned(), "an external client reports counts only".to_owned()),
    };
    figure(out, "latency p50 / p99", &value, &detail)?;
    let (requests, detail) = match (row.requests, row.throughput_rps) {
        (Some(requests), Some(rps)) => {
            (thousands(requests), format!("{rps:.0} req/s, {} failed", thousands(row.failed.unwrap_or(0))))
        }
        _ => ("n/a".to_owned(), "the client reported none".to_owned()),
    };
    figure(out, "requests", &requests, &detail)?;
    run_figures(out, &run.summary)?;
    writeln!(out, "</div>")
}

/// The figures only some chapters have: open streams, the channels channelz counted, TIME_WAIT.
fn run_figures(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    if words::opened_streams(s) {
        let peaks: Vec<String> =
            s.processes().iter().filter_map(|(_, p)| p.streams).map(|s| thousands(s.peak)).collect();
        let growth = s.growth.per_request();
        let per_request = growth.server.and_then(|server| server.streams).or(growth.client.streams);
        let detail = per_request.map(|n| format!("client · server; {n:+.2} per request")).unwrap_or_default();
        figure(out, "peak open streams", &peaks.join(" · "), &detail)?;
    }
    if let Some(reading) = s.client.channelz.as_ref().and_then(|c| c.last.as_ref()) {
        let detail = format!(
            "the client's gRPC runtime counted them: {} subchannels, {} sockets",
            thousands(reading.subchannels),
            thousands(reading.sockets)
        );
        figure(out, "channels open", &thousands(reading.channels), &detail)?;
    }
    // A socket or two in TIME_WAIT is the readiness probe's; more is the chapter's own doing.
    if let Some(peak) = s.lifecycle.time_wait.map(|tw| tw.peak).filter(|peak| *peak > 2) {
        figure(out, "TIME_WAIT peak", &thousands(peak), "closed sockets lingering for 60 s")?;
    }
    Ok(())
}

/// What happened to the chapter's connections.
fn events(out: &mut dyn Write, run: &ChapterRecord) -> io::Result<()> {
    let events = run.events();
    if events.is_empty() {
        return Ok(());
    }
    writeln!(out, "<ul class=\"events\">")?;
    for event in &events {
        writeln!(out, "<li>{}</li>", escape(event))?;
    }
    writeln!(out, "</ul>")
}

/// The chapter's memory and connections plot, inline, with a caption that says how to read it.
fn plot(out: &mut dyn Write, chapter: &Chapter, run: &ChapterRecord, plot: Option<&String>) -> io::Result<()> {
    let run_dir = escape(&run.run_dir);
    let label = format!("{}: memory and connections over time", chapter.name);
    let Some(svg) = plot.and_then(|svg| super::inline_svg(svg, &label)) else {
        return writeln!(out, "<p class=\"note\">No plot: {run_dir}/memory.svg could not be read.</p>");
    };
    let dashed = if run.summary.kind == RunKind::Builtin {
        "allocated"
    } else {
        "allocated, or anonymous for the process leaklab did not write,"
    };
    let live = match run.summary.client.live_heap_bytes {
        Some(_) => "; the client's live heap after each full collection, what its verdict judges, in green",
        None => "",
    };
    let below = if words::opened_streams(&run.summary) { "open connections and streams" } else { "open connections" };
    write!(
        out,
        "<figure class=\"plot\">\n{svg}\n<figcaption>Memory of the client (blue) and the server (orange) over time, \
         resident (solid) and {dashed} (dashed){live}; {below} below. Full report: <code>{run_dir}</code></figcaption>\n\
         </figure>\n"
    )
}

/// The client code the chapter models, in Rust, Go and Java.
fn code(out: &mut dyn Write, chapter: &Chapter) -> io::Result<()> {
    let languages = [
        ("Rust (tonic)", chapter.rust.as_ref()),
        ("Go (grpc-go)", chapter.go.as_ref()),
        ("Java (grpc-java)", chapter.java.as_ref()),
    ];
    let code: Vec<(&str, &String)> = languages.into_iter().filter_map(|(label, code)| Some((label, code?))).collect();
    if code.is_empty() {
        return Ok(());
    }
    write!(out, "<h3>The code this chapter models</h3>\n<div class=\"code\">\n")?;
    for (label, code) in code {
        writeln!(out, "<div><h3>{label}</h3><pre><code>{}</code></pre></div>", escape(code))?;
    }
    writeln!(out, "</div>")
}

fn figure(out: &mut dyn Write, label: &str, value_html: &str, detail: &str) -> io::Result<()> {
    writeln!(
        out,
        "<div class=\"figure\"><div class=\"label\">{}</div><div class=\"value\">{value_html}</div>\
         <div class=\"detail\">{}</div></div>",
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
