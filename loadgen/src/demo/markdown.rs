//! `demo.md`: the page's story in markdown, for a repository or a CI summary.
//! Plots are linked (each chapter's `memory.png` in its run directory), not inlined.

use std::fmt::Write as _;
use std::io::Write;

use super::page::{count_word, proof};
use super::story::Story;
use super::{DemoRecord, DemoReport, verdict_words};
use crate::report::Exporter;
use crate::report::units::thousands;

/// `demo.md`.
#[derive(Debug)]
pub(crate) struct DemoMarkdown;

impl Exporter<DemoReport> for DemoMarkdown {
    fn export(&self, report: &DemoReport, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(render(&report.story, &report.record).as_bytes())?;
        Ok(())
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
fn render(story: &Story, record: &DemoRecord) -> String {
    let mut md = format!(
        "# {}\n\n_leaklab demo, measured {} on {}, {} profile, {:.0} s._\n\n{}\n\n",
        story.title,
        record.started_at,
        record.machine,
        if record.fast { "fast" } else { "full" },
        record.duration_s,
        story.intro
    );
    md += "| # | chapter | client per request | server per request | peak connections | p99 | verdict client / server |\n\
           |---:|---|---:|---:|---:|---:|---|\n";
    for run in &record.chapters {
        let row = run.row();
        let _ = writeln!(
            md,
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
        );
    }
    md += "\n";
    for skipped in &record.skipped {
        let _ = writeln!(md, "Not run: `{}`: {}.\n", skipped.scenario, skipped.error);
    }
    for failure in &record.failures {
        let _ = writeln!(md, "Failed: `{}`: {}.\n", failure.scenario, failure.error);
    }
    for chapter in &story.chapters {
        let Some(run) = record.chapters.iter().find(|run| run.number == chapter.number) else { continue };
        let _ = write!(
            md,
            "## {}. {}\n\n**{}**\n\n{}\n\nMeasured: {}.\n\n",
            chapter.number,
            chapter.title,
            chapter.lesson,
            chapter.explain,
            proof(run)
        );
        let events = run.events();
        for event in &events {
            let _ = writeln!(md, "- {event}");
        }
        if !events.is_empty() {
            md += "\n";
        }
        let _ = writeln!(md, "![{} memory over time]({})\n", chapter.name, plot_link(&run.run_dir));
        for (language, code) in [("rust", &chapter.rust), ("go", &chapter.go)] {
            if let Some(code) = code {
                let _ = writeln!(md, "```{language}\n{code}\n```\n");
            }
        }
        if let Some(heap) = &run.summary.heap_profile {
            // One level down: it is a part of the chapter here, not of a run's report.
            md += &crate::report::heap::markdown(heap, 3);
            md += "\n";
        }
        if let Some(profiles) = &run.summary.profiles {
            md += &crate::report::heap::go_markdown(profiles, leaklab_engine::heap::Process::Client, 3);
            md += "\n";
        }
    }
    if !story.rules.is_empty() {
        md += &format!("## {} rules of thumb\n\n", count_word(story.rules.len()));
        for (index, rule) in story.rules.iter().enumerate() {
            let proofs: Vec<String> = rule
                .proven_by
                .iter()
                .map(|name| match record.chapter(name) {
                    Some(run) => format!("chapter {} (`{name}`): {}", run.number, proof(run)),
                    None => format!("`{name}` (did not run)"),
                })
                .collect();
            let _ = writeln!(md, "{}. **{}** {} Measured in {}.", index + 1, rule.rule, rule.why, proofs.join("; "));
        }
    }
    md
}
