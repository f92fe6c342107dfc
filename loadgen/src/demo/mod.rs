//! `loadgen demo`: the incident told as [chapters](story), each a scenario run
//! in its own `loadgen run` process (as `compare` runs them) with the live
//! dashboard, then written up in `reports/demo/<time>/`:
//! [`index.html`](page) (one self-contained page, plots inline),
//! [`demo.md`](markdown) (the same story for repositories and CI summaries)
//! and `demo.json` ([`DemoRecord`]).

pub(crate) mod markdown;
pub(crate) mod page;
pub(crate) mod story;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use console::Style;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ci::{Entry, Results};
use crate::compare::{self, CompareOptions, Comparison, Failure, Row, RowVerdict};
use crate::live::metrics::LiveBoard;
use crate::report::json::Json;
use crate::report::units::bytes_per_request;
use crate::report::{self, Exporter, Output, Written};
use leaklab_engine::run_dir::RunDir;
use leaklab_engine::summary::{RunKind, Summary};
use leaklab_verdict::Outcome;
use story::{Chapter, Story};

/// `demo.json`: what one `loadgen demo` measured, chapter by chapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct DemoRecord {
    /// When the demo started, RFC 3339 in UTC.
    pub started_at: String,
    /// Whether the chapters ran with their `fast` overrides (`make demo FAST=1`).
    pub fast: bool,
    /// The story file the chapters and their words came from.
    pub story_file: String,
    /// The machine the figures were measured on.
    pub machine: String,
    /// Seconds from the first chapter's start to the last one's end.
    pub duration_s: f64,
    /// One per chapter that ran, in the story's order.
    pub chapters: Vec<ChapterRecord>,
    /// Chapters left out, with why (an external client that is not built).
    pub skipped: Vec<Failure>,
    /// Chapters that could not run.
    pub failures: Vec<Failure>,
    /// `contradicted` if a chapter's verdict contradicts its scenario's expectation or a chapter
    /// failed; else `inconclusive` if one is undecided; else `met`.
    pub outcome: Outcome,
    /// Whether the user stopped the demo; later chapters did not run.
    pub interrupted: bool,
}

/// One chapter's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ChapterRecord {
    /// The chapter's number in the story, from 1.
    pub number: usize,
    /// The scenario it ran.
    pub scenario: String,
    pub title: String,
    /// Its run directory, with the full report.
    pub run_dir: String,
    /// Its run's `summary.json`.
    pub summary: Summary,
    /// The scenario run beside it for its call sites, when the chapter has one and it ran.
    #[serde(default)]
    pub beside: Option<Beside>,
}

/// The run beside a chapter's: the same step in another runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Beside {
    pub scenario: String,
    pub run_dir: String,
    /// Its client's profiles compared (`summary.json`'s `profiles`); `null` when it has none.
    pub profiles: Option<leaklab_engine::heap::profiles::Profiles>,
}

impl ChapterRecord {
    /// The figures `loadgen compare` reports for a scenario.
    pub(crate) fn row(&self) -> Row {
        Row::of(&self.summary, Path::new(&self.run_dir), None)
    }

    /// What the client's growth per request counts: jemalloc's `allocated` bytes, or
    /// the anonymous RSS of an external client, whose allocator cannot be read.
    pub(crate) fn client_measure(&self) -> &'static str {
        crate::report::words::measure(self.summary.verdict.client.quantity)
    }

    /// `+58.5 KB/request`, or `+86.7 KB/request (anonymous RSS)` for an external client.
    pub(crate) fn client_per_request(&self) -> String {
        let value = bytes_per_request(self.summary.verdict.client.slope_bytes_per_request);
        match self.summary.kind {
            RunKind::Builtin => value,
            _ => format!("{value} ({})", self.client_measure()),
        }
    }

    /// The server's growth per request, or `n/a` when it was not measured.
    pub(crate) fn server_per_request(&self) -> String {
        self.summary
            .verdict
            .server
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), |s| bytes_per_request(s.slope_bytes_per_request))
    }

    /// The 99th percentile latency, or `n/a` for an external client, which reports counts only.
    pub(crate) fn p99(&self) -> String {
        self.summary.latency_us.map_or_else(|| "n/a".to_owned(), |l| page::millis(l.p99))
    }

    /// What happened to the chapter's connections, in sentences.
    pub(crate) fn events(&self) -> Vec<String> {
        crate::report::lifecycle::sentences(&self.summary)
    }
}

impl DemoRecord {
    /// The chapter that ran `scenario`.
    pub(crate) fn chapter(&self, scenario: &str) -> Option<&ChapterRecord> {
        self.chapters.iter().find(|chapter| chapter.scenario == scenario)
    }
}

/// How `loadgen demo` runs.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    /// The `loadgen` binary that runs each chapter.
    pub runner: PathBuf,
    /// Arguments every chapter's `loadgen run` gets (server binary, `--dashboard` or `--quiet`).
    pub run_args: Vec<String>,
    /// Root of the reports tree.
    pub reports_dir: PathBuf,
    /// The chapters run with their `fast` overrides.
    pub fast: bool,
    /// Turns true when the user asks to stop; no further chapter starts.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// `--metrics-listen`: each chapter's samples are posted here as they are taken.
    pub live: Option<LiveBoard>,
}

/// What a demo left behind.
#[derive(Debug)]
pub(crate) struct DemoOutcome {
    pub report: DemoReport,
    pub written: Written,
}

impl DemoOutcome {
    /// How the demo ended, for its exit code.
    pub(crate) fn ending(&self) -> crate::exit::Ending {
        crate::exit::Ending::of_several(&self.written, self.report.record.interrupted, self.report.record.outcome)
    }
}

/// What the demo's exporters read: the story, what its chapters measured, each chapter's memory plot
/// (SVG), and the directory the demo is written to.
#[derive(Debug, Clone)]
pub(crate) struct DemoReport {
    pub story: Story,
    pub record: DemoRecord,
    /// By chapter number; a chapter whose plot could not be read has none.
    pub plots: BTreeMap<usize, String>,
    pub dir: PathBuf,
}

impl DemoReport {
    /// Every chapter, for the CI exporters.
    pub(crate) fn results(&self) -> Results<'_> {
        let record = &self.record;
        let ran = record.chapters.iter().map(|chapter| Entry::Ran {
            summary: &chapter.summary,
            dir: Path::new(&chapter.run_dir),
            baseline: None,
        });
        let failed = record.failures.iter().map(|f| Entry::Failed { scenario: &f.scenario, error: &f.error });
        let skipped = record.skipped.iter().map(|s| Entry::Skipped { scenario: &s.scenario, reason: &s.error });
        Results { command: "demo", started_at: &record.started_at, entries: ran.chain(failed).chain(skipped).collect() }
    }
}

/// The files a demo writes.
pub(crate) const DEMO_OUTPUTS: [Output<DemoReport>; 3] = [
    Output { file: "demo.json", exporter: &Json(|report: &DemoReport| &report.record) },
    Output { file: "index.html", exporter: &page::DemoPage },
    Output { file: "demo.md", exporter: &markdown::DemoMarkdown },
];

/// What `loadgen demo` prints at the end: the chapters' results as a table.
#[derive(Debug)]
pub(crate) struct DemoText;

impl Exporter<DemoReport> for DemoText {
    fn export(&self, report: &DemoReport, out: &mut dyn Write) -> anyhow::Result<()> {
        let record = &report.record;
        for failure in &record.failures {
            writeln!(out, "Error: chapter {}: {}", failure.scenario, failure.error)?;
        }
        writeln!(out, "\n{}: {} chapters in {:.0} s", report.story.title, record.chapters.len(), record.duration_s)?;
        out.write_all(results_table(record).as_bytes())?;
        for skipped in &record.skipped {
            writeln!(out, "  {}: skipped: {}", skipped.scenario, skipped.error)?;
        }
        writeln!(out, "page: {}", report.dir.join("index.html").display())?;
        writeln!(out, "markdown: {}", report.dir.join("demo.md").display())?;
        Ok(())
    }
}

/// Runs every chapter of `story` in order, narrating on the terminal, and writes the page.
pub(crate) async fn execute(story: &Story, options: DemoOptions) -> anyhow::Result<DemoOutcome> {
    let now = SystemTime::now();
    let dir = RunDir::create(&options.reports_dir, "demo", now)?;
    let runs = CompareOptions {
        runner: options.runner.clone(),
        run_args: options.run_args.clone(),
        reports_dir: options.reports_dir.clone(),
        quick: false,
        baseline: None,
        save_baseline: None,
        stop: options.stop.clone(),
        // The chapter's own summary would scroll the live view away; the result line replaces it.
        stdout_dir: Some(dir.path.clone()),
        live: options.live.clone(),
    };
    let narrator = Narrator::stderr();
    let started = Instant::now();
    let (mut chapters, mut skipped, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut interrupted = false;
    for chapter in &story.chapters {
        if interrupted || *options.stop.borrow() {
            interrupted = true;
            break;
        }
        if let Some(reason) = compare::unbuilt(&chapter.scenario) {
            narrator.skipped(chapter, story.chapters.len(), &reason);
            skipped.push(Failure { scenario: chapter.name.clone(), error: reason });
            continue;
        }
        narrator.begin(chapter, story.chapters.len());
        let args = match chapter.scenario {
            leaklab_engine::scenario::RunPlan::Builtin(_) => chapter.overrides.to_args(),
            leaklab_engine::scenario::RunPlan::Foreign(_) => Vec::new(),
        };
        match compare::run_scenario(&chapter.scenario, &args, &runs).await {
            Ok(finished) => {
                let beside = match (&chapter.beside, finished.interrupted) {
                    (Some((name, plan)), false) => run_beside(name, plan, &runs, &narrator).await,
                    _ => None,
                };
                let record = ChapterRecord {
                    number: chapter.number,
                    scenario: chapter.name.clone(),
                    title: chapter.title.clone(),
                    run_dir: finished.dir.display().to_string(),
                    summary: finished.summary,
                    beside,
                };
                narrator.end(&record);
                interrupted |= finished.interrupted;
                chapters.push(record);
            }
            Err(error) => {
                narrator.failed(chapter, &error);
                failures.push(Failure { scenario: chapter.name.clone(), error: format!("{error:#}") });
            }
        }
    }
    let rows: Vec<Row> = chapters.iter().map(ChapterRecord::row).collect();
    let record = DemoRecord {
        started_at: leaklab_engine::run_dir::utc_seconds(now),
        fast: options.fast,
        story_file: story.source.display().to_string(),
        machine: leaklab_probe::procfs::machine_description(),
        duration_s: started.elapsed().as_secs_f64(),
        outcome: Comparison::overall(&rows, &failures),
        chapters,
        skipped,
        failures,
        interrupted,
    };
    let report = DemoReport { plots: plots(&record), story: story.clone(), record, dir: dir.path.clone() };
    let mut written = report::write_outputs(&DEMO_OUTPUTS, &report, &dir.path);
    report::append_to_step_summary(&markdown::DemoMarkdown, &report, &mut written);
    Ok(DemoOutcome { report, written })
}

/// Runs the scenario beside a chapter's for its call sites; `None` (said on the terminal) when it cannot
/// run here or fails: the chapter stands without it.
async fn run_beside(
    name: &str,
    plan: &leaklab_engine::scenario::RunPlan,
    runs: &CompareOptions,
    narrator: &Narrator,
) -> Option<Beside> {
    if let Some(reason) = compare::unbuilt(plan) {
        narrator.note(&format!("{name}, beside: skipped: {reason}"));
        return None;
    }
    narrator.note(&format!("{name}, beside: the same step in another runtime"));
    match compare::run_scenario(plan, &[], runs).await {
        Ok(finished) => Some(Beside {
            scenario: name.to_owned(),
            run_dir: finished.dir.display().to_string(),
            profiles: finished.summary.profiles,
        }),
        Err(error) => {
            narrator.note(&format!("{name}, beside: failed: {error:#}"));
            None
        }
    }
}

/// Each chapter's memory plot (its run's `memory.svg`), by chapter number;
/// a chapter whose plot cannot be read has none.
fn plots(record: &DemoRecord) -> BTreeMap<usize, String> {
    record
        .chapters
        .iter()
        .filter_map(|chapter| {
            let svg = std::fs::read_to_string(Path::new(&chapter.run_dir).join("memory.svg")).ok()?;
            Some((chapter.number, svg))
        })
        .collect()
}

/// The verdict of one process in a word or two, with its expectation's mark.
pub(crate) fn verdict_words(verdict: &RowVerdict) -> String {
    let mark = crate::report::units::expectation_mark(verdict.kind, verdict.expectation_met);
    if mark.is_empty() { verdict.kind.to_string() } else { format!("{} {mark}", verdict.kind) }
}

/// What the demo says on the terminal around each chapter's live view: big and
/// colored on a terminal, plain lines otherwise (CI logs).
struct Narrator {
    terminal: bool,
}

impl Narrator {
    fn stderr() -> Self {
        Self { terminal: std::io::stderr().is_terminal() }
    }

    fn begin(&self, chapter: &Chapter, total: usize) {
        if self.terminal {
            // A clean screen per chapter: the title, its lesson, then the live view below.
            eprint!("\x1b[2J\x1b[H");
            eprintln!(
                "{}",
                Style::new()
                    .dim()
                    .apply_to(format!(" leaklab demo · chapter {} of {total} · {}", chapter.number, chapter.name))
            );
            eprintln!();
            eprintln!(" {}", Style::new().bold().yellow().apply_to(&chapter.title));
            eprintln!(" {}", Style::new().italic().apply_to(&chapter.lesson));
            eprintln!();
        } else {
            eprintln!("== chapter {}/{total}: {} ({})", chapter.number, chapter.title, chapter.name);
            eprintln!("   {}", chapter.lesson);
        }
    }

    fn end(&self, record: &ChapterRecord) {
        let line = result_line(record);
        if self.terminal {
            eprintln!();
            eprintln!(" {}", Style::new().bold().apply_to(line));
        } else {
            eprintln!("   {line}");
        }
    }

    fn skipped(&self, chapter: &Chapter, total: usize, reason: &str) {
        eprintln!("== chapter {}/{total}: {} ({}): skipped: {reason}", chapter.number, chapter.title, chapter.name);
    }

    fn failed(&self, chapter: &Chapter, error: &anyhow::Error) {
        eprintln!("   chapter {} ({}) failed: {error:#}", chapter.number, chapter.name);
    }

    fn note(&self, line: &str) {
        eprintln!("   {line}");
    }
}

/// The chapters' results as an aligned table for the terminal.
fn results_table(record: &DemoRecord) -> String {
    let mut rows = vec![
        ["#", "scenario", "client", "per request", "server", "per request", "peak conns", "p99"].map(str::to_owned),
    ];
    for chapter in &record.chapters {
        let row = chapter.row();
        rows.push([
            chapter.number.to_string(),
            chapter.scenario.clone(),
            verdict_words(&row.client),
            chapter.client_per_request(),
            row.server.as_ref().map_or_else(|| "n/a".to_owned(), verdict_words),
            chapter.server_per_request(),
            crate::report::units::thousands(row.client_peak_connections),
            chapter.p99(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|column| rows.iter().map(|row| console::measure_text_width(&row[column])).max().unwrap_or(0))
        .collect();
    let mut table = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - console::measure_text_width(cell))))
            .collect();
        table += &format!("  {}\n", cells.join("  ").trim_end());
    }
    table
}

/// One line with a chapter's result: verdicts, growth per request, peak connections, p99.
pub(crate) fn result_line(record: &ChapterRecord) -> String {
    let row = record.row();
    let mut parts = vec![format!("client {} ({})", verdict_words(&row.client), record.client_per_request())];
    if let Some(server) = &row.server {
        parts.push(format!("server {} ({})", verdict_words(server), record.server_per_request()));
    }
    parts.push(format!("peak {}", page::connections(row.client_peak_connections)));
    if row.latency_p99_us.is_some() {
        parts.push(format!("p99 {}", record.p99()));
    }
    parts.join(" · ")
}
