//! `loadgen compare`: several scenarios run one after another, each by its
//! own `loadgen run` process (so one scenario's memory cannot color the next
//! one's figures) into its own run directory, then set side by side in
//! `reports/compare/<time>/`:
//! [`compare.md`](markdown) (short enough to paste into a pull request, and
//! appended to `$GITHUB_STEP_SUMMARY` when that is set), `compare.json`
//! ([`Comparison`]) and [overlay plots](plot) of every scenario on one chart.

pub mod markdown;
pub mod plot;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::rebuild::read_samples;
use crate::report::units::bytes_per_request;
use crate::report::{RunDir, Summary};
use crate::sample::Sample;
use crate::scenario::{Expectation, ExternalPlan, Overrides, Plan};
use crate::stats::Span;
use crate::verdict::baseline::{self, BaselineComparison};
use crate::verdict::{Outcome, ProcessVerdict, VerdictKind};
use crate::watch::WatchSummary;
use crate::watch::verdict::TimeVerdict;

/// One scenario's line in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Its run directory, with `summary.json` and the full report.
    pub run_dir: String,
    /// Requests completed, warm-up included.
    pub requests: u64,
    /// Requests answered OK per second of load.
    pub throughput_rps: f64,
    /// Median latency in microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile latency in microseconds.
    pub latency_p99_us: u64,
    /// Peak RSS of the load generator, bytes.
    pub client_peak_rss_bytes: u64,
    /// Peak RSS of the server, bytes; `null` when not measured.
    pub server_peak_rss_bytes: Option<u64>,
    /// Most connections the load generator had open at once.
    pub client_peak_connections: u64,
    /// Requests that failed.
    pub failed: u64,
    /// What happened to connections, in brief: GOAWAYs, reconnects, TIME_WAIT, time to detect a fault.
    pub connection_events: String,
    /// The load generator's verdict.
    pub client: RowVerdict,
    /// The server's verdict; `null` when not measured.
    pub server: Option<RowVerdict>,
    /// How the verdicts compare with the scenario's expectations.
    pub outcome: Outcome,
    /// The run beside its baseline, with `--baseline`.
    pub baseline: Option<BaselineComparison>,
    /// An external client (`go-leak`…), watched from outside: its client figures are RSS per
    /// request it reported, and it has no latency the harness measured.
    #[serde(default)]
    pub external: bool,
}

/// A process's verdict, in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RowVerdict {
    pub kind: VerdictKind,
    /// Slope of allocated bytes per request, with its 95% interval.
    pub slope_bytes_per_request: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Open connections at the last round's checkpoint minus at the first (after warm-up).
    pub connections_delta: i64,
    pub expected: Option<Expectation>,
    pub expectation_met: Option<bool>,
}

impl RowVerdict {
    fn of(verdict: &ProcessVerdict) -> RowVerdict {
        let rounds: Vec<_> = verdict.checkpoints.iter().take(verdict.rounds as usize + 1).collect();
        let connections_delta = match (rounds.first(), rounds.last()) {
            (Some(first), Some(last)) => last.connections as i64 - first.connections as i64,
            _ => 0,
        };
        RowVerdict {
            kind: verdict.kind,
            slope_bytes_per_request: verdict.slope_bytes_per_request,
            ci_low: verdict.ci_low,
            ci_high: verdict.ci_high,
            connections_delta,
            expected: verdict.expected,
            expectation_met: verdict.expectation_met,
        }
    }
}

/// A scenario that could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    pub scenario: String,
    pub error: String,
}

/// `compare.json`: every scenario of one `loadgen compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    /// When the comparison started, RFC 3339 in UTC.
    pub started_at: String,
    /// Whether the quick profile was used (at most 3,200 requests after warm-up, cool-down at most 1 s).
    pub quick: bool,
    /// The baseline the runs were compared with, if any.
    pub baseline: Option<String>,
    /// One row per scenario that ran, in the order they ran.
    pub rows: Vec<Row>,
    /// Scenarios that could not run.
    pub failures: Vec<Failure>,
    /// `contradicted` if any expectation is contradicted or any baseline regressed; else `inconclusive`
    /// if any is undecided; else `met`.
    pub outcome: Outcome,
    /// Whether the user interrupted the comparison; scenarios after that did not run.
    pub interrupted: bool,
    /// External-client scenarios left out, with why (their peer is not built).
    #[serde(default)]
    pub skipped: Vec<Failure>,
}

/// How `loadgen compare` runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The `loadgen` binary that runs each scenario.
    pub runner: PathBuf,
    /// Arguments every `loadgen run` gets (target, server binary, `--quiet`…).
    pub run_args: Vec<String>,
    /// Root of the reports tree.
    pub reports_dir: PathBuf,
    pub quick: bool,
    /// Compare each run with this baseline (checked to exist before anything runs).
    pub baseline: Option<String>,
    /// Store each run's summary as this baseline.
    pub save_baseline: Option<String>,
    /// Turns true when the user asks to stop; no further scenario starts.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Each run's standard output goes to `<dir>/<scenario>.log` (this process's when `None`).
    pub stdout_dir: Option<PathBuf>,
}

/// What a comparison left behind.
#[derive(Debug)]
pub struct CompareOutcome {
    pub dir: PathBuf,
    pub comparison: Comparison,
    pub written: Vec<PathBuf>,
    /// Outputs of the comparison that could not be written.
    pub export_errors: Vec<anyhow::Error>,
}

/// The baselines of `plans`, loaded before anything runs so a missing one fails fast.
pub fn load_baselines(reports_dir: &Path, name: &str, plans: &[Plan]) -> anyhow::Result<Vec<Summary>> {
    plans.iter().map(|plan| Ok(baseline::load(reports_dir, name, &plan.name)?)).collect()
}

/// `loadgen run` exit codes that still leave a complete report behind.
const REPORTED: [i32; 5] = [0, 1, 3, 5, 125];
const INTERRUPTED: i32 = 130;

/// Runs `plans` one after another, each in its own `loadgen run` process
/// whose output goes to this process's, and writes the comparison.
pub async fn execute(
    plans: &[Plan],
    externals: &[ExternalPlan],
    options: CompareOptions,
) -> anyhow::Result<CompareOutcome> {
    let baselines = match &options.baseline {
        Some(name) => Some(load_baselines(&options.reports_dir, name, plans)?),
        None => None,
    };
    let dir = RunDir::create(&options.reports_dir, "compare", SystemTime::now())?;
    let mut rows = Vec::new();
    let mut runs: Vec<(String, Vec<Sample>)> = Vec::new();
    let mut failures = Vec::new();
    let mut interrupted = false;
    for (index, plan) in plans.iter().enumerate() {
        if *options.stop.borrow() {
            interrupted = true;
            break;
        }
        let finished = match run_builtin(plan, &compare_args(plan, &options), &options).await {
            Ok(finished) => finished,
            Err(error) => {
                failures.push(Failure { scenario: plan.name.clone(), error: format!("{error:#}") });
                continue;
            }
        };
        let comparison = baselines
            .as_ref()
            .map(|b| baseline::compare(options.baseline.as_deref().unwrap_or_default(), &b[index], &finished.summary));
        interrupted |= finished.interrupted;
        let row = row(plan, &finished, comparison);
        runs.push((legend(&row), finished.samples));
        rows.push(row);
        if interrupted {
            break;
        }
    }
    let mut skipped = Vec::new();
    for plan in externals {
        if interrupted || *options.stop.borrow() {
            interrupted = true;
            break;
        }
        let program = &plan.command[0];
        if !program_exists(program) {
            skipped.push(Failure {
                scenario: plan.name.clone(),
                error: format!("{program} is not built; `make peers` builds it"),
            });
            continue;
        }
        match run_external(plan, &options).await {
            Ok(finished) => {
                interrupted |= finished.interrupted;
                rows.push(external_row(&finished.summary, &finished.dir));
            }
            Err(error) => failures.push(Failure { scenario: plan.name.clone(), error: format!("{error:#}") }),
        }
    }
    let outcome = overall(&rows, &failures);
    let comparison = Comparison {
        started_at: dir.started_at.clone(),
        quick: options.quick,
        baseline: options.baseline.clone(),
        rows,
        failures,
        outcome,
        interrupted,
        skipped,
    };
    let mut export_errors = Vec::new();
    let written = write_all(&comparison, &runs, &dir.path, &mut export_errors);
    Ok(CompareOutcome { dir: dir.path, comparison, written, export_errors })
}

/// A built-in scenario's finished run, read back from its run directory.
#[derive(Debug)]
pub struct Finished {
    pub dir: PathBuf,
    pub summary: Summary,
    pub samples: Vec<Sample>,
    /// The user stopped it (exit 130); its report covers the run up to then.
    pub interrupted: bool,
}

/// An external client's finished run, read back from its run directory.
#[derive(Debug)]
pub struct FinishedExternal {
    pub dir: PathBuf,
    pub summary: WatchSummary,
    pub interrupted: bool,
}

/// The flags a comparison adds to `plan`'s run: the quick profile, and baselines.
fn compare_args(plan: &Plan, options: &CompareOptions) -> Vec<String> {
    let mut args = Vec::new();
    if options.quick {
        // Only what the profile changes, so the run validates the same values as the file's.
        let quick = plan.clone().quick();
        let changed = Overrides {
            requests: (quick.load.max_requests != plan.load.max_requests).then_some(quick.load.max_requests.get()),
            rounds: (quick.load.rounds != plan.load.rounds).then_some(quick.load.rounds.get().into()),
            cooldown: (quick.sampling.cooldown != plan.sampling.cooldown).then_some(quick.sampling.cooldown),
            ..Overrides::default()
        };
        args = changed.to_args();
    }
    for (flag, value) in [("--baseline", &options.baseline), ("--save-baseline", &options.save_baseline)] {
        if let Some(value) = value {
            args.extend([flag.to_owned(), value.clone()]);
        }
    }
    args
}

/// Runs `plan` in its own `loadgen run` process, with `extra_args` after the ones every run gets.
pub async fn run_builtin(plan: &Plan, extra_args: &[String], options: &CompareOptions) -> anyhow::Result<Finished> {
    let mut command = run_command(&plan.source, options);
    command.args(extra_args);
    let (dir, code) = run_child(command, &plan.name, &plan.source, options).await?;
    let summary_path = dir.join("summary.json");
    let summary: Summary = read_json(&summary_path)?;
    let (samples, _) = read_samples(&dir.join(&summary.samples.file))?;
    Ok(Finished { dir, summary, samples, interrupted: code == INTERRUPTED })
}

/// Runs one `loadgen run` child; returns the new run directory it left and its exit code.
async fn run_child(
    mut command: tokio::process::Command,
    name: &str,
    source: &Path,
    options: &CompareOptions,
) -> anyhow::Result<(PathBuf, i32)> {
    let latest = options.reports_dir.join(name).join("latest");
    let before = std::fs::read_link(&latest).ok();
    if let Some(dir) = &options.stdout_dir {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command.stdout(file);
    }
    let status = command.status().await.with_context(|| format!("starting {}", options.runner.display()))?;
    let code = status.code().unwrap_or(-1);
    if !REPORTED.contains(&code) && code != INTERRUPTED {
        anyhow::bail!("`loadgen run {}` failed ({status}); its errors are above", source.display());
    }
    let after = std::fs::read_link(&latest).with_context(|| format!("reading {}", latest.display()))?;
    if before.as_ref() == Some(&after) {
        anyhow::bail!("`loadgen run {}` left no new run directory at {}", source.display(), latest.display());
    }
    Ok((options.reports_dir.join(name).join(after), code))
}

/// The `loadgen run` command for `source`, with the arguments every run gets.
fn run_command(source: &Path, options: &CompareOptions) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&options.runner);
    command.arg("run").arg(source).arg("--reports-dir").arg(&options.reports_dir).args(&options.run_args);
    command
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `finished`'s line in a comparison.
pub fn row(plan: &Plan, finished: &Finished, baseline: Option<BaselineComparison>) -> Row {
    let s = &finished.summary;
    let verdict_outcome = s.verdict.outcome_with_baseline(&plan.verdict, baseline.as_ref());
    Row {
        scenario: s.scenario.clone(),
        run_dir: finished.dir.display().to_string(),
        requests: s.requests.ok + s.requests.failed,
        throughput_rps: s.throughput_rps,
        latency_p50_us: s.latency_us.p50,
        latency_p99_us: s.latency_us.p99,
        client_peak_rss_bytes: s.client.rss_bytes.peak,
        server_peak_rss_bytes: s.server.as_ref().map(|p| p.rss_bytes.peak),
        client_peak_connections: s.client.connections.peak,
        failed: s.requests.failed,
        connection_events: crate::report::lifecycle::brief(s),
        client: RowVerdict::of(&s.verdict.client),
        server: s.verdict.server.as_ref().map(RowVerdict::of),
        outcome: verdict_outcome,
        baseline,
        external: false,
    }
}

/// Whether `program` can be started: a path that exists, or a bare name found on `PATH`.
pub fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs an external client's scenario in its own `loadgen run` and reads its row back.
/// The quick profile and baselines do not apply: the command runs its own load.
pub async fn run_external(plan: &ExternalPlan, options: &CompareOptions) -> anyhow::Result<FinishedExternal> {
    let (dir, code) = run_child(run_command(&plan.source, options), &plan.name, &plan.source, options).await?;
    let summary: WatchSummary = read_json(&dir.join("summary.json"))?;
    Ok(FinishedExternal { dir, summary, interrupted: code == INTERRUPTED })
}

/// An external client's line in a comparison.
pub fn external_row(s: &WatchSummary, dir: &Path) -> Row {
    let of = |verdict: &TimeVerdict, connections: Option<Span>| RowVerdict {
        kind: verdict.kind,
        slope_bytes_per_request: verdict.growth.map(|g| g.slope),
        ci_low: verdict.growth.map(|g| g.ci_low),
        ci_high: verdict.growth.map(|g| g.ci_high),
        connections_delta: connections.map_or(0, |c| c.end as i64 - c.start as i64),
        expected: verdict.expected,
        expectation_met: verdict.expectation_met,
    };
    let verdicts: Vec<&TimeVerdict> = [Some(&s.verdict), s.server_verdict.as_ref()].into_iter().flatten().collect();
    let outcome = if verdicts.iter().any(|v| v.kind != VerdictKind::Inconclusive && v.expectation_met == Some(false)) {
        Outcome::Contradicted
    } else if verdicts.iter().any(|v| v.expected.is_some() && v.kind == VerdictKind::Inconclusive) {
        Outcome::Inconclusive
    } else {
        Outcome::Met
    };
    let requests = s.requests.map_or(0, |r| r.ok + r.failed);
    Row {
        scenario: s.name.clone(),
        run_dir: dir.display().to_string(),
        requests,
        throughput_rps: if s.watched_s > 0.0 { requests as f64 / s.watched_s } else { 0.0 },
        latency_p50_us: 0,
        latency_p99_us: 0,
        client_peak_rss_bytes: s.rss_bytes.map_or(0, |r| r.peak),
        server_peak_rss_bytes: s.server.map(|server| server.rss_bytes.peak),
        client_peak_connections: s.tcp_connections.map_or(0, |c| c.peak),
        failed: s.requests.map_or(0, |r| r.failed),
        connection_events: "external client".to_owned(),
        client: of(&s.verdict, s.tcp_connections),
        server: s.server_verdict.as_ref().map(|v| of(v, s.server.map(|server| server.connections))),
        outcome,
        baseline: None,
        external: true,
    }
}

/// A scenario's legend in the overlay plot: its name, client verdict and slope.
fn legend(row: &Row) -> String {
    let slope = row.client.slope_bytes_per_request.map(|s| format!(", {}", bytes_per_request(Some(s))));
    format!("{}: {}{}", row.scenario, row.client.kind, slope.unwrap_or_default())
}

/// The worst outcome of all rows; a scenario that could not run counts as contradicted.
pub fn overall(rows: &[Row], failures: &[Failure]) -> Outcome {
    if !failures.is_empty() || rows.iter().any(|r| r.outcome == Outcome::Contradicted) {
        Outcome::Contradicted
    } else if rows.iter().any(|r| r.outcome == Outcome::Inconclusive) {
        Outcome::Inconclusive
    } else {
        Outcome::Met
    }
}

/// Writes `compare.json`, `compare.md` and the overlay plots; appends the
/// markdown to `$GITHUB_STEP_SUMMARY` when set. One failing does not stop the others.
fn write_all(
    comparison: &Comparison,
    runs: &[(String, Vec<Sample>)],
    dir: &Path,
    errors: &mut Vec<anyhow::Error>,
) -> Vec<PathBuf> {
    let mut written = Vec::new();
    let mut record = |path: PathBuf, result: anyhow::Result<()>| match result {
        Ok(()) => written.push(path),
        Err(error) => errors.push(error.context(format!("writing {}", path.display()))),
    };
    let json = dir.join("compare.json");
    let text = serde_json::to_string_pretty(comparison).expect("a comparison serializes") + "\n";
    record(json.clone(), std::fs::write(&json, text).map_err(Into::into));
    let markdown_text = markdown::render(comparison);
    let md = dir.join("compare.md");
    record(md.clone(), std::fs::write(&md, &markdown_text).map_err(Into::into));
    for (file, result) in plot::write_both(runs, dir) {
        record(dir.join(file), result);
    }
    if let Some((path, appended)) = crate::report::append_to_step_summary(&markdown_text) {
        record(path, appended);
    }
    written
}
