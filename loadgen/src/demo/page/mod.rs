//! `index.html`: the whole story on one page that opens from disk, offline
//! and printable: CSS inline, every plot an inline SVG, no script, and no
//! reference to anything outside the file. The page is written section by
//! section: its head, the chapters at a glance, each [chapter], the rules of
//! thumb and the footer.

mod chapter;

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::story::Story;
use super::{ChapterRecord, DemoRecord, DemoReport, verdict_words};
use crate::compare::RowVerdict;
use crate::report::Exporter;
use crate::report::html::escape;
use crate::report::units::thousands;
use leaklab_verdict::VerdictKind;

/// `index.html`.
#[derive(Debug)]
pub(crate) struct DemoPage;

impl Exporter<DemoReport> for DemoPage {
    fn export(&self, report: &DemoReport, out: &mut dyn Write) -> anyhow::Result<()> {
        Ok(render(out, &report.story, &report.record, &report.plots)?)
    }
}

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
fn render(out: &mut dyn Write, story: &Story, record: &DemoRecord, plots: &BTreeMap<usize, String>) -> io::Result<()> {
    head(out, story, record)?;
    summary(out, story, record)?;
    for chapter in &story.chapters {
        if let Some(run) = record.chapters.iter().find(|run| run.number == chapter.number) {
            chapter::section(out, chapter, run, plots.get(&chapter.number))?;
        }
    }
    rules(out, story, record)?;
    write!(
        out,
        "<footer>\n<p>Reproduce on your machine: <code>make demo</code>, or <code>make demo FAST=1</code> for the \
         short version; <code>make peers</code> first builds the Go client. \
         The words come from <code>{}</code>; the figures from <code>demo.json</code> next to this page, and each \
         chapter's full report is in its run directory.</p>\n</footer>\n</main>\n</body>\n</html>\n",
        escape(&record.story_file)
    )
}

/// The document's head and the page's header: the story's title and its intro.
fn head(out: &mut dyn Write, story: &Story, record: &DemoRecord) -> io::Result<()> {
    let title = escape(&story.title);
    write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · leaklab demo</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    )?;
    let profile = if record.fast { "the fast profile (FAST=1)" } else { "the full profile" };
    write!(
        out,
        "<header>\n<p class=\"kicker\">leaklab demo · measured {} on {} · {profile}, {:.0} s</p>\n<h1>{title}</h1>\n\
         <p class=\"intro\">{}</p>\n</header>\n",
        escape(&record.started_at),
        escape(&record.machine),
        record.duration_s,
        escape(&story.intro)
    )
}

/// The chapters at a glance: one row of figures and verdicts each, and the chapters that did not run.
fn summary(out: &mut dyn Write, story: &Story, record: &DemoRecord) -> io::Result<()> {
    write!(
        out,
        "<section id=\"summary\">\n<h2>The chapters at a glance</h2>\n<table>\n<thead><tr><th class=\"n\">#</th>\
         <th>chapter</th><th class=\"n\">client per request</th><th class=\"n\">server per request</th>\
         <th class=\"n\">peak connections client · server</th><th class=\"n\">p99</th><th>verdict client / server</th></tr></thead>\n<tbody>\n",
    )?;
    for chapter in &story.chapters {
        let Some(run) = record.chapters.iter().find(|run| run.number == chapter.number) else { continue };
        let row = run.row();
        writeln!(
            out,
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
        )?;
    }
    write!(out, "</tbody>\n</table>\n")?;
    for skipped in &record.skipped {
        writeln!(out, "<p class=\"note\">Not run: {}: {}.</p>", escape(&skipped.scenario), escape(&skipped.error))?;
    }
    for failure in &record.failures {
        writeln!(out, "<p class=\"note\">Failed: {}: {}.</p>", escape(&failure.scenario), escape(&failure.error))?;
    }
    if record.interrupted {
        writeln!(out, "<p class=\"note\">The demo was stopped before its last chapter.</p>")?;
    }
    writeln!(
        out,
        "<p class=\"note\">Per request: the slope of memory over requests, allocated bytes (jemalloc) for the \
         Rust client and the server, resident memory for the Go client. A LEAK verdict means the growth is \
         above the tolerance with 95% confidence.</p>\n</section>"
    )
}

/// The rules of thumb, each with the measurements of the chapters that prove it.
fn rules(out: &mut dyn Write, story: &Story, record: &DemoRecord) -> io::Result<()> {
    if story.rules.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "<section id=\"rules\">\n<h2>{} rules of thumb</h2>\n<ol class=\"rules\">",
        count_word(story.rules.len())
    )?;
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
        writeln!(
            out,
            "<li><strong>{}</strong> {}<span class=\"proof\">Measured in {}.</span></li>",
            escape(&rule.rule),
            escape(&rule.why),
            proofs.join("; ")
        )?;
    }
    writeln!(out, "</ol>\n</section>")
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

pub(super) fn peak_connections(run: &ChapterRecord) -> String {
    let row = run.row();
    match row.server_peak_connections {
        Some(server) => format!("{} · {}", thousands(row.client_peak_connections), thousands(server)),
        None => thousands(row.client_peak_connections),
    }
}

pub(super) fn badge(verdict: &RowVerdict) -> String {
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
pub(super) fn millis_pair(p50: u64, p99: u64) -> String {
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
    fn latencies_read_in_milliseconds() {
        assert_eq!(millis(343), "0.3 ms");
        assert_eq!(millis(6_511), "6.5 ms");
        assert_eq!(millis(24_191), "24 ms");
        assert_eq!(millis(3_900_000), "3.9 s");
        assert_eq!(millis_pair(343, 5_140), "0.3 / 5.1 ms");
        assert_eq!(millis_pair(12_000, 1_200_000), "12 ms / 1.2 s");
    }
}
