//! Command-line interface. Only clap lives here, and the conversion of its
//! arguments into the engine's types before anything runs: the flags that
//! override a scenario's keys come from the one table of them,
//! `scenario::OPTIONS`; an option every command shares is declared once here
//! and flattened into each.

mod attack;
mod run;
#[cfg(test)]
mod tests;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use leaklab_engine::scenario::{self, reference};
use leaklab_engine::summary;

pub(crate) use attack::AttackArgs;
pub(crate) use run::{CompareArgs, DemoArgs, RunArgs};
pub(crate) use watch::WatchArgs;

use crate::live::metrics;

/// Reproduce, measure and explain gRPC client memory leaks.
///
/// Runs a scenario against the toy leaklab server while sampling the memory,
/// connections and file descriptors of both processes, then writes
/// reports/<scenario>/<time>/ (summary.json, memory.png/svg, report.md,
/// samples.jsonl, samples.csv).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a scenario, write its report, and judge whether memory leaks.
    Run(Box<RunArgs>),
    /// Run several scenarios (all by default) and set them side by side in reports/compare/<time>/.
    Compare(Box<CompareArgs>),
    /// Write a run directory's summary.json, plots and report.md again from what it holds:
    /// after `kill -9`, rebuilt from its run.json and samples.jsonl.
    Report(ReportArgs),
    /// Merge the run directories of one scenario split over several load generators (`run --segment I/N`)
    /// into one run directory: samples lined up on wall-clock time, the clients summed, latencies merged
    /// from their histograms, the server judged once against every request, the clients each and together.
    Merge(MergeArgs),
    /// Tell the incident as a live demo: run the story's chapters in order, with live charts,
    /// and write one self-contained page, reports/demo/<time>/index.html.
    Demo(Box<DemoArgs>),
    /// Sample any process — running (--pid) or started (-- COMMAND ARGS…) — and judge its RSS over time.
    Watch(Box<WatchArgs>),
    /// Abuse a gRPC server on this machine as a hostile client would, bounded in time and streams, and
    /// print what the attack did and what the server did to it as JSON. Loopback targets only.
    Attack(AttackArgs),
    /// List the scenarios with their descriptions.
    List(ListArgs),
    /// Print the JSON Schema of summary.json, or with --scenario of a scenario file.
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// The schema of a scenario file (for TOML editors) instead of summary.json's.
    #[arg(long, conflicts_with = "scenario_docs")]
    pub(crate) scenario: bool,
    /// The scenario file reference, docs/scenarios.md, as markdown.
    #[arg(long)]
    pub(crate) scenario_docs: bool,
}

impl SchemaArgs {
    /// What `loadgen schema` prints.
    pub(crate) fn text(&self) -> String {
        match (self.scenario, self.scenario_docs) {
            (true, _) => reference::json_schema(),
            (_, true) => reference::markdown(),
            _ => summary::json_schema(),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Every segment's run directory, e.g. host-1/leak/latest host-2/leak/latest.
    #[arg(required = true, value_name = "DIR")]
    pub(crate) dirs: Vec<PathBuf>,

    #[command(flatten)]
    pub(crate) reports: ReportsDir,

    #[command(flatten)]
    pub(crate) ci: CiFileArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run directory, e.g. reports/leak/latest.
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) scenarios: ScenariosDir,
}

/// `--reports-dir`, for every command that writes run directories.
#[derive(Debug, Args)]
pub(crate) struct ReportsDir {
    /// Where run directories go: DIR/<scenario>/<time>/.
    #[arg(id = "reports_dir", long = "reports-dir", default_value = "reports", value_name = "DIR")]
    pub(crate) path: PathBuf,
}

/// `--scenarios-dir`, for every command that finds scenarios by name.
#[derive(Debug, Args)]
pub(crate) struct ScenariosDir {
    /// Directory of scenario files [default: ./scenarios, else the source tree's]
    #[arg(id = "scenarios_dir", long = "scenarios-dir", value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
}

/// `--dashboard`, for every command that shows a run while it runs.
#[derive(Debug, Args)]
pub(crate) struct Dashboard {
    /// Show live charts of memory and connections (on a terminal; elsewhere the plain progress line).
    #[arg(id = "dashboard", long = "dashboard")]
    pub(crate) on: bool,
}

/// `--own-code`, the code of a process whose profiles are read (`--pprof`, `--server-pprof`, `--call-sites`).
#[derive(Debug, Args)]
pub(crate) struct OwnCode {
    /// The profiled process's own code, for its call sites: function name prefixes (main., com.shop.) or
    /// parts of file paths (app/) (repeatable; default: all but the runtime and its standard library,
    /// gRPC, and installed packages such as node_modules and site-packages).
    #[arg(id = "own_code", long = "own-code", value_name = "PREFIX")]
    pub(crate) prefixes: Vec<String>,
}

/// What CI systems and dashboards read besides the run directories, for every command that runs.
#[derive(Debug, Args)]
pub(crate) struct CiArgs {
    #[command(flatten)]
    pub(crate) files: CiFileArgs,

    /// While it runs, serve the latest sample of both processes at http://ADDR/metrics in
    /// Prometheus text format (a PORT alone listens on 127.0.0.1; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", value_parser = metrics::listen_address)]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

/// The files CI systems read, for every command that judges runs.
#[derive(Debug, Args)]
pub(crate) struct CiFileArgs {
    /// Write a JUnit XML report to FILE: one test case per scenario and process, failed when an
    /// expectation is contradicted or a baseline regressed.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,

    /// Write each scenario's figures to FILE in Bencher Metric Format (JSON), with the slope's
    /// interval as lower_value and upper_value.
    #[arg(long, value_name = "FILE")]
    pub(crate) bmf: Option<PathBuf>,

    /// Write each scenario's figures to FILE as github-action-benchmark's customSmallerIsBetter
    /// JSON, with the slope's interval as range.
    #[arg(long, value_name = "FILE")]
    pub(crate) gab: Option<PathBuf>,
}

impl CiFileArgs {
    /// Where to write them.
    pub(crate) fn files(&self) -> crate::ci::CiFiles {
        crate::ci::CiFiles { junit: self.junit.clone(), bmf: self.bmf.clone(), gab: self.gab.clone() }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    scenario::parse_duration(text)
}

fn sample_interval(text: &str) -> Result<Duration, String> {
    let interval = duration(text)?;
    if interval < Duration::from_millis(10) {
        return Err("must be at least 10ms".to_owned());
    }
    Ok(interval)
}
