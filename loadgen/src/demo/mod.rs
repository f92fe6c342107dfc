//! `loadgen demo`: the incident told as [chapters](story), each a scenario run
//! in its own `loadgen run` process (as `compare` runs them) with the live
//! dashboard, then written up in `reports/demo/<time>/`:
//! [`index.html`](page) (one self-contained page, plots inline),
//! [`demo.md`](markdown) (the same story for repositories and CI summaries)
//! and `demo.json` ([`DemoRecord`]).

pub mod markdown;
pub mod page;
pub mod story;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use console::Style;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compare::{self, CompareOptions, Failure, Row, RowVerdict};
use crate::report::RunDir;
use crate::report::heap::HeapReport;
use crate::report::units::bytes_per_request;
use crate::scenario::Scenario;
use crate::verdict::Outcome;
use story::{Chapter, Story};

/// `demo.json`: what one `loadgen demo` measured, chapter by chapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DemoRecord {
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

/// One chapter's run and its key figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChapterRecord {
    /// The chapter's number in the story, from 1.
    pub number: usize,
    /// The scenario it ran.
    pub scenario: String,
    pub title: String,
    /// The figures `loadgen compare` reports for a scenario: requests, latency,
    /// verdicts and growth per request, peak connections, the run directory.
    pub row: Row,
    /// Most connections the server had open at once.
    pub server_peak_connections: Option<u64>,
    /// 99th percentile latency from each request's intended send time (open loop), microseconds.
    pub latency_from_intended_p99_us: Option<u64>,
    /// Most sockets in TIME_WAIT towards the server at once.
    pub time_wait_peak: Option<u64>,
    /// What happened to connections, in sentences (GOAWAYs, reconnects, what reaping gave back).
    pub events: Vec<String>,
    /// Where the memory that grew was allocated, when the chapter profiled the heap.
    pub heap: Option<HeapReport>,
}

impl ChapterRecord {
    /// What the client's growth per request counts: jemalloc's `allocated` bytes, or
    /// the `RSS` of an external client, whose allocator cannot be read.
    pub fn client_measure(&self) -> &'static str {
        if self.row.external { "RSS" } else { "allocated" }
    }

    /// `+58.5 KB/request`, or `+86.7 KB/request (RSS)` for an external client.
    pub fn client_per_request(&self) -> String {
        let value = bytes_per_request(self.row.client.slope_bytes_per_request);
        if self.row.external { format!("{value} (RSS)") } else { value }
    }

    /// The server's growth per request, or `n/a` when it was not measured.
    pub fn server_per_request(&self) -> String {
        self.row.server.as_ref().map_or_else(|| "n/a".to_owned(), |s| bytes_per_request(s.slope_bytes_per_request))
    }

    /// The 99th percentile latency, or `n/a` for an external client, which reports counts only.
    pub fn p99(&self) -> String {
        if self.row.latency_p99_us > 0 { page::millis(self.row.latency_p99_us) } else { "n/a".to_owned() }
    }
}

impl DemoRecord {
    /// The chapter that ran `scenario`.
    pub fn chapter(&self, scenario: &str) -> Option<&ChapterRecord> {
        self.chapters.iter().find(|chapter| chapter.scenario == scenario)
    }
}

/// How `loadgen demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
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
}

/// What a demo left behind.
#[derive(Debug)]
pub struct DemoOutcome {
    pub dir: PathBuf,
    pub record: DemoRecord,
    pub written: Vec<PathBuf>,
    pub export_errors: Vec<anyhow::Error>,
}

/// Runs every chapter of `story` in order, narrating on the terminal, and writes the page.
pub async fn execute(story: &Story, options: DemoOptions) -> anyhow::Result<DemoOutcome> {
    let dir = RunDir::create(&options.reports_dir, "demo", SystemTime::now())?;
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
        if let Scenario::External(plan) = &chapter.scenario
            && !compare::program_exists(&plan.command[0])
        {
            let reason = format!("{} is not built; `make peers` builds it", plan.command[0]);
            narrator.skipped(chapter, story.chapters.len(), &reason);
            skipped.push(Failure { scenario: chapter.name.clone(), error: reason });
            continue;
        }
        narrator.begin(chapter, story.chapters.len());
        match run_chapter(chapter, &runs).await {
            Ok((record, was_interrupted)) => {
                narrator.end(&record);
                interrupted |= was_interrupted;
                chapters.push(record);
            }
            Err(error) => {
                narrator.failed(chapter, &error);
                failures.push(Failure { scenario: chapter.name.clone(), error: format!("{error:#}") });
            }
        }
    }
    let rows: Vec<Row> = chapters.iter().map(|c| c.row.clone()).collect();
    let record = DemoRecord {
        started_at: dir.started_at.clone(),
        fast: options.fast,
        story_file: story.source.display().to_string(),
        machine: leaklab_probe::procfs::machine_description(),
        duration_s: started.elapsed().as_secs_f64(),
        chapters,
        skipped,
        failures: failures.clone(),
        outcome: compare::overall(&rows, &failures),
        interrupted,
    };
    let mut export_errors = Vec::new();
    let written = write_all(story, &record, &dir.path, &mut export_errors);
    Ok(DemoOutcome { dir: dir.path, record, written, export_errors })
}

/// Runs one chapter in its own process and reads its figures back.
async fn run_chapter(chapter: &Chapter, runs: &CompareOptions) -> anyhow::Result<(ChapterRecord, bool)> {
    let base = |row: Row| ChapterRecord {
        number: chapter.number,
        scenario: chapter.name.clone(),
        title: chapter.title.clone(),
        row,
        server_peak_connections: None,
        latency_from_intended_p99_us: None,
        time_wait_peak: None,
        events: Vec::new(),
        heap: None,
    };
    match &chapter.scenario {
        Scenario::Builtin(plan) => {
            let finished = compare::run_builtin(plan, &chapter.overrides.to_args(), runs).await?;
            let s = &finished.summary;
            let record = ChapterRecord {
                server_peak_connections: s.server.as_ref().map(|server| server.connections.peak),
                latency_from_intended_p99_us: s.latency_from_intended_us.as_ref().map(|l| l.p99),
                time_wait_peak: s.lifecycle.time_wait.map(|tw| tw.peak),
                events: crate::report::lifecycle::sentences(s),
                heap: s.heap_profile.clone(),
                ..base(compare::row(plan, &finished, None))
            };
            Ok((record, finished.interrupted))
        }
        Scenario::External(plan) => {
            let finished = compare::run_external(plan, runs).await?;
            let s = &finished.summary;
            let record = ChapterRecord {
                server_peak_connections: s.server.map(|server| server.connections.peak),
                events: s.notes.clone(),
                ..base(compare::external_row(s, &finished.dir))
            };
            Ok((record, finished.interrupted))
        }
    }
}

/// Writes `demo.json`, `index.html` and `demo.md`; one failing does not stop the others.
fn write_all(story: &Story, record: &DemoRecord, dir: &Path, errors: &mut Vec<anyhow::Error>) -> Vec<PathBuf> {
    let mut written = Vec::new();
    let mut write = |name: &str, text: String| {
        let path = dir.join(name);
        match std::fs::write(&path, text).with_context(|| format!("writing {}", path.display())) {
            Ok(()) => written.push(path),
            Err(error) => errors.push(error),
        }
    };
    write("demo.json", serde_json::to_string_pretty(record).expect("a demo record serializes") + "\n");
    let plots = plots(record);
    write("index.html", page::render(story, record, &plots));
    let markdown_text = markdown::render(story, record);
    write("demo.md", markdown_text.clone());
    if let Some((path, appended)) = crate::report::append_to_step_summary(&markdown_text) {
        match appended {
            Ok(()) => written.push(path),
            Err(error) => errors.push(error),
        }
    }
    written
}

/// Each chapter's memory plot (its run's `memory.svg`), by chapter number;
/// a chapter whose plot cannot be read has none.
fn plots(record: &DemoRecord) -> BTreeMap<usize, String> {
    record
        .chapters
        .iter()
        .filter_map(|chapter| {
            let svg = std::fs::read_to_string(Path::new(&chapter.row.run_dir).join("memory.svg")).ok()?;
            Some((chapter.number, svg))
        })
        .collect()
}

/// The verdict of one process in a word or two, with its expectation's mark.
pub fn verdict_words(verdict: &RowVerdict) -> String {
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
}

/// The chapters' results as an aligned table for the terminal.
pub fn results_table(record: &DemoRecord) -> String {
    let mut rows = vec![
        ["#", "scenario", "client", "per request", "server", "per request", "peak conns", "p99"].map(str::to_owned),
    ];
    for chapter in &record.chapters {
        let row = &chapter.row;
        rows.push([
            chapter.number.to_string(),
            chapter.scenario.clone(),
            verdict_words(&row.client),
            chapter.client_per_request(),
            row.server.as_ref().map_or_else(|| "n/a".to_owned(), verdict_words),
            chapter.server_per_request(),
            crate::report::dashboard::thousands(row.client_peak_connections),
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
pub fn result_line(record: &ChapterRecord) -> String {
    let row = &record.row;
    let mut parts = vec![format!("client {} ({})", verdict_words(&row.client), record.client_per_request())];
    if let Some(server) = &row.server {
        parts.push(format!("server {} ({})", verdict_words(server), record.server_per_request()));
    }
    parts.push(format!("peak {}", page::connections(row.client_peak_connections)));
    if row.latency_p99_us > 0 {
        parts.push(format!("p99 {}", record.p99()));
    }
    parts.join(" · ")
}
