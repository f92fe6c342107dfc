//! `demo.md`: the page's story in markdown, for a repository or a CI summary.
//! Plots are linked (each chapter's `memory.png` in its run directory), not inlined.

use std::io::{self, Write};

use super::page::{count_word, proof};
use super::story::{Chapter, Story};
use super::{ChapterRecord, DemoRecord, DemoReport, verdict_words};
use crate::report::units::thousands;
use crate::report::{Exporter, heap};
use leaklab_engine::summary::Side;

/// `demo.md`.
#[derive(Debug)]
pub(crate) struct DemoMarkdown;

impl Exporter<DemoReport> for DemoMarkdown {
    fn export(&self, report: &DemoReport, out: &mut dyn Write) -> anyhow::Result<()> {
        Ok(render(out, &report.story, &report.record)?)
    }
}

/// A chapter's `memory.png` as seen from `demo.md`: both directories are
/// `<reports>/<name>/<time>`, so it is two levels up.
fn plot_link(run_dir: &str) -> String {
    let tail: Vec<String> = std::path::Path::new(run_dir)
        .components()
        .rev()
        .take(2)
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    match tail.as_slice() {
        [stamp, scenario] => format!("../../{scenario}/{stamp}/memory.png"),
        _ => format!("{run_dir}/memory.png"),
    }
}

/// The story and its figures as markdown.
fn render(out: &mut dyn Write, story: &Story, record: &DemoRecord) -> io::Result<()> {
    writeln!(
        out,
        "# {}\n\n_leaklab demo, measured {} on {}, {} profile, {:.0} s._\n\n{}\n",
        story.title,
        record.started_at,
        record.machine,
        if record.fast { "fast" } else { "full" },
        record.duration_s,
        story.intro
    )?;
    chapters_table(out, record)?;
    for chapter in &story.chapters {
        if let Some(run) = record.chapters.iter().find(|run| run.number == chapter.number) {
            self::chapter(out, chapter, run)?;
        }
    }
    rules(out, story, record)
}

/// Every chapter's figures and verdicts in one table, then the chapters that did not run.
fn chapters_table(out: &mut dyn Write, record: &DemoRecord) -> io::Result<()> {
    writeln!(
        out,
        "| # | chapter | client per request | server per request | peak connections | p99 | verdict client / server |\n\
         |---:|---|---:|---:|---:|---:|---|"
    )?;
    for run in &record.chapters {
        let row = run.row();
        writeln!(
            out,
            "| {} | {} (`{}`) | {} | {} | {} | {} | {} / {} |",
            run.number,
            run.title,
            run.scenario,
            run.client_per_request(),
            run.server_per_request(),
            thousands(row.client_peak_connections),
            run.p99(),
            verdict_words(&row.client),
            row.server.as_ref().map_or_else(|| "n/a".to_owned(), verdict_words),
        )?;
    }
    writeln!(out)?;
    for skipped in &record.skipped {
        writeln!(out, "Not run: `{}`: {}.\n", skipped.scenario, skipped.error)?;
    }
    for failure in &record.failures {
        writeln!(out, "Failed: `{}`: {}.\n", failure.scenario, failure.error)?;
    }
    Ok(())
}

/// One chapter: its lesson, what it measured, its plot, its code, and where its memory is.
fn chapter(out: &mut dyn Write, chapter: &Chapter, run: &ChapterRecord) -> io::Result<()> {
    write!(
        out,
        "## {}. {}\n\n**{}**\n\n{}\n\nMeasured: {}.\n\n",
        chapter.number,
        chapter.title,
        chapter.lesson,
        chapter.explain,
        proof(run)
    )?;
    let events = run.events();
    for event in &events {
        writeln!(out, "- {event}")?;
    }
    if !events.is_empty() {
        writeln!(out)?;
    }
    writeln!(out, "![{} memory over time]({})\n", chapter.name, plot_link(&run.run_dir))?;
    for (language, code) in [("rust", &chapter.rust), ("go", &chapter.go), ("java", &chapter.java)] {
        if let Some(code) = code {
            writeln!(out, "```{language}\n{code}\n```\n")?;
        }
    }
    // One level down: it is a part of the chapter here, not of a run's report.
    if let Some(heap) = &run.summary.heap_profile {
        heap::markdown(out, heap, 3)?;
        writeln!(out)?;
    }
    if let Some(profiles) = &run.summary.profiles {
        crate::report::call_sites::markdown(out, profiles, Side::Client, 3)?;
        writeln!(out)?;
    }
    if let Some(beside) = &run.beside {
        writeln!(out, "### Beside it: `{}`\n", beside.scenario)?;
        match &beside.profiles {
            Some(profiles) => crate::report::call_sites::markdown(out, profiles, Side::Client, 4)?,
            None => writeln!(out, "Its profiles could not be compared; see {}.", beside.run_dir)?,
        }
        writeln!(out)?;
    }
    crate::report::orphans::markdown(out, &run.summary)
}

/// The rules of thumb, each with the measurements of the chapters that prove it.
fn rules(out: &mut dyn Write, story: &Story, record: &DemoRecord) -> io::Result<()> {
    if story.rules.is_empty() {
        return Ok(());
    }
    writeln!(out, "## {} rules of thumb\n", count_word(story.rules.len()))?;
    for (index, rule) in story.rules.iter().enumerate() {
        let proofs: Vec<String> = rule
            .proven_by
            .iter()
            .map(|name| match record.chapter(name) {
                Some(run) => format!("chapter {} (`{name}`): {}", run.number, proof(run)),
                None => format!("`{name}` (did not run)"),
            })
            .collect();
        writeln!(out, "{}. **{}** {} Measured in {}.", index + 1, rule.rule, rule.why, proofs.join("; "))?;
    }
    Ok(())
}
