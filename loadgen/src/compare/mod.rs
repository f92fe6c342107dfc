//! `loadgen compare`: several scenarios run one after another, each by its
//! own `loadgen run` process (so one scenario's memory cannot color the next
//! one's figures) into its own run directory, then set side by side in
//! `reports/compare/<time>/`: [`compare.md`](markdown) (short enough to paste
//! into a pull request, and appended to `$GITHUB_STEP_SUMMARY` when that is
//! set), `compare.json` ([`Comparison`]) and [overlay plots](plot) of every
//! built-in scenario on one chart.

pub(crate) mod attacks;
pub(crate) mod markdown;
pub(crate) mod plot;
pub(crate) mod record;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::baseline::{self, BaselineComparison};
use crate::ci::{Entry, Results};
use crate::live::metrics::LiveBoard;
use crate::report::json::Json;
use crate::report::{self, Output, Written};
use leaklab_engine::run_dir::RunDir;
use leaklab_engine::sample::Sample;
use leaklab_engine::scenario::{ForeignClient, Opt, Overrides, Plan, RunPlan, Value};
use leaklab_engine::summary::{RunKind, Sides, Summary};
use leaklab_verdict::stats::trend::Trend;
use leaklab_verdict::{Axis, Outcome, ProcessVerdict, Quantity, VerdictKind};
pub(crate) use record::RunRecord;

/// One scenario's line in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Row {
    /// Scenario name.
    pub scenario: String,
    /// `builtin` or `external`.
    pub kind: RunKind,
    /// Its run directory, with `summary.json` and the full report.
    pub run_dir: String,
    /// Requests completed, warm-up included; `null` when an external client reported none.
    pub requests: Option<u64>,
    /// Requests answered OK per second of load; `null` without request counts.
    pub throughput_rps: Option<f64>,
    /// Median latency in microseconds; `null` when not measured (an external client).
    pub latency_p50_us: Option<u64>,
    /// 99th percentile latency in microseconds; `null` when not measured.
    pub latency_p99_us: Option<u64>,
    /// Peak RSS of the client, bytes.
    pub client_peak_rss_bytes: u64,
    /// Peak RSS of the server, bytes; `null` when not measured.
    pub server_peak_rss_bytes: Option<u64>,
    /// Most connections the client had open at once.
    pub client_peak_connections: u64,
    /// Most connections the server had open at once; `null` when not measured.
    pub server_peak_connections: Option<u64>,
    /// Requests that failed; `null` without request counts.
    pub failed: Option<u64>,
    /// What happened to connections, in brief: GOAWAYs, reconnects, TIME_WAIT, time to detect a fault.
    pub connection_events: String,
    /// The client's verdict.
    pub client: RowVerdict,
    /// The server's verdict; `null` when not measured.
    pub server: Option<RowVerdict>,
    /// How the verdicts compare with the scenario's expectations, a regressed baseline counting as a contradiction.
    pub outcome: Outcome,
    /// The run beside its baseline, with `--baseline`.
    pub baseline: Option<BaselineComparison>,
}

/// A process's verdict, in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RowVerdict {
    pub kind: VerdictKind,
    /// What the figures are of: `allocated_bytes`, `rss_anon_bytes`, `live_heap_bytes`, or `native_bytes`
    /// for a client whose memory outside its runtime's heap decided its LEAK.
    pub quantity: Quantity,
    /// What growth is counted against: `request` or `second`.
    pub axis: Axis,
    /// Slope in bytes per request, with its 95% interval; `null` when the axis is seconds.
    pub slope_bytes_per_request: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The slope and interval in bytes per unit of `axis`.
    pub trend: Option<Trend>,
    /// Open connections at the last point judged minus at the first (after warm-up).
    pub connections_delta: i64,
    pub expected: Option<leaklab_engine::scenario::Expectation>,
    pub expectation_met: Option<bool>,
}

impl RowVerdict {
    fn of(verdict: &ProcessVerdict) -> RowVerdict {
        // Checkpoints end with the cool-down's, which the rounds' delta leaves out.
        let judged = match verdict.rounds {
            Some(rounds) => &verdict.points[..(rounds as usize + 1).min(verdict.points.len())],
            None => &verdict.points[..],
        };
        let connections_delta = match (judged.first(), judged.last()) {
            (Some(first), Some(last)) => {
                last.connections.zip(first.connections).map_or(0, |(l, f)| l as i64 - f as i64)
            }
            _ => 0,
        };
        RowVerdict {
            kind: verdict.kind,
            quantity: verdict.quantity,
            axis: verdict.axis,
            slope_bytes_per_request: verdict.slope_bytes_per_request,
            ci_low: verdict.ci_low,
            ci_high: verdict.ci_high,
            trend: verdict.trend,
            connections_delta,
            expected: verdict.expected,
            expectation_met: verdict.expectation_met,
        }
    }

    /// The client's verdict; its figures are those of the memory outside the heap when that decided it.
    fn client(verdicts: &leaklab_verdict::Verdicts) -> RowVerdict {
        let client = RowVerdict::of(&verdicts.client);
        RowVerdict {
            kind: client.kind,
            connections_delta: client.connections_delta,
            expected: client.expected,
            expectation_met: client.expectation_met,
            ..RowVerdict::of(verdicts.client_figures())
        }
    }
}

impl Row {
    /// `summary`'s line, its run directory `dir`, beside its baseline if it has one.
    pub(crate) fn of(summary: &Summary, dir: &Path, baseline: Option<BaselineComparison>) -> Row {
        let s = summary;
        Row {
            scenario: s.scenario.clone(),
            kind: s.kind,
            run_dir: dir.display().to_string(),
            requests: s.requests_done(),
            throughput_rps: s.throughput_rps,
            latency_p50_us: s.latency_us.map(|l| l.p50),
            latency_p99_us: s.latency_us.map(|l| l.p99),
            client_peak_rss_bytes: s.client.rss_bytes.peak,
            server_peak_rss_bytes: s.server.as_ref().map(|p| p.rss_bytes.peak),
            client_peak_connections: s.client.connections.map_or(0, |c| c.peak),
            server_peak_connections: s.server.as_ref().and_then(|p| p.connections).map(|c| c.peak),
            failed: s.requests.as_ref().map(|r| r.failed),
            connection_events: crate::report::lifecycle::brief(s),
            client: RowVerdict::client(&s.verdict),
            server: s.verdict.server.as_ref().map(RowVerdict::of),
            outcome: s.outcome.with_regression(baseline.as_ref().is_some_and(|b| b.regressed)),
            baseline,
        }
    }

    /// Both processes' verdicts.
    pub(crate) fn verdicts(&self) -> Sides<&RowVerdict> {
        Sides { client: &self.client, server: self.server.as_ref() }
    }

    /// An external client, watched from outside.
    pub(crate) fn external(&self) -> bool {
        self.kind != RunKind::Builtin
    }
}

/// A scenario that could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Failure {
    pub scenario: String,
    pub error: String,
}

/// `compare.json`: every scenario of one `loadgen compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Comparison {
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
    /// `contradicted` if any expectation is contradicted, any baseline regressed or any scenario could not run;
    /// else `inconclusive` if any is undecided; else `met`.
    pub outcome: Outcome,
    /// Whether the user interrupted the comparison; scenarios after that did not run.
    pub interrupted: bool,
    /// External-client scenarios left out, with why (their peer is not built).
    pub skipped: Vec<Failure>,
}

impl Comparison {
    /// The worst outcome of `rows`; a scenario that could not run counts as contradicted.
    pub(crate) fn overall(rows: &[Row], failures: &[Failure]) -> Outcome {
        let failed = (!failures.is_empty()).then_some(Outcome::Contradicted);
        Outcome::worst(rows.iter().map(|row| row.outcome).chain(failed))
    }
}

/// How `loadgen compare` runs.
#[derive(Debug, Clone)]
pub(crate) struct CompareOptions {
    /// The `loadgen` binary that runs each scenario.
    pub runner: PathBuf,
    /// Arguments every `loadgen run` gets (target, server binary, `--quiet`…).
    pub run_args: Vec<String>,
    /// Root of the reports tree.
    pub reports_dir: PathBuf,
    pub quick: bool,
    /// Compare each built-in run with this baseline (checked to exist before anything runs).
    pub baseline: Option<String>,
    /// Store each built-in run's summary as this baseline.
    pub save_baseline: Option<String>,
    /// Turns true when the user asks to stop; no further scenario starts.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Each run's standard output goes to `<dir>/<scenario>.log` (this process's when `None`).
    pub stdout_dir: Option<PathBuf>,
    /// `--metrics-listen`: each run's samples are posted here as they reach its `samples.jsonl`.
    pub live: Option<LiveBoard>,
}

/// What a comparison left behind.
#[derive(Debug)]
pub(crate) struct CompareOutcome {
    pub report: CompareReport,
    pub written: Written,
}

impl CompareOutcome {
    /// How the comparison ended, for its exit code.
    pub(crate) fn ending(&self) -> crate::exit::Ending {
        let comparison = &self.report.comparison;
        crate::exit::Ending::of_several(&self.written, comparison.interrupted, comparison.outcome)
    }
}

/// What the comparison's exporters read: the comparison, each built-in run's record for the figures,
/// and the directory the comparison is written to.
#[derive(Debug, Clone)]
pub(crate) struct CompareReport {
    pub comparison: Comparison,
    /// Each built-in run, in the order they ran.
    pub runs: Vec<RunRecord>,
    /// Each row's run summary, in the order of `comparison.rows`.
    pub summaries: Vec<Summary>,
    pub dir: PathBuf,
}

impl CompareReport {
    /// Every scenario, for the CI exporters.
    pub(crate) fn results(&self) -> Results<'_> {
        let comparison = &self.comparison;
        let ran = comparison.rows.iter().zip(&self.summaries).map(|(row, summary)| Entry::Ran {
            summary,
            dir: Path::new(&row.run_dir),
            baseline: row.baseline.as_ref(),
        });
        let failed = comparison.failures.iter().map(|f| Entry::Failed { scenario: &f.scenario, error: &f.error });
        let skipped = comparison.skipped.iter().map(|s| Entry::Skipped { scenario: &s.scenario, reason: &s.error });
        Results {
            command: "compare",
            started_at: &comparison.started_at,
            entries: ran.chain(failed).chain(skipped).collect(),
        }
    }
}

/// The figure a comparison with attack scenarios and their `-unlimited` twins adds.
pub(crate) const ATTACK_OUTPUTS: [Output<CompareReport>; 2] = [
    Output { file: "attacks.svg", exporter: &attacks::AttacksSvg },
    Output { file: "attacks.png", exporter: &attacks::AttacksPng },
];

/// The files a comparison writes.
pub(crate) const COMPARE_OUTPUTS: [Output<CompareReport>; 4] = [
    Output { file: "compare.json", exporter: &Json(|report: &CompareReport| &report.comparison) },
    Output { file: "compare.md", exporter: &markdown::CompareMarkdown },
    Output { file: "compare.svg", exporter: &plot::CompareSvg },
    Output { file: "compare.png", exporter: &plot::ComparePng },
];

/// `loadgen run` exit codes that still leave a complete report behind.
const REPORTED: [i32; 5] = [0, 1, 3, 5, 125];
const INTERRUPTED: i32 = 130;

/// Checks that every built-in plan has baseline `name`, before anything runs.
pub(crate) fn check_baselines(reports_dir: &Path, name: &str, plans: &[RunPlan]) -> anyhow::Result<()> {
    for plan in plans {
        if let RunPlan::Builtin(plan) = plan {
            baseline::load(reports_dir, name, &plan.name)?;
        }
    }
    Ok(())
}

/// Runs `plans` one after another, built-in scenarios first, each in its own
/// `loadgen run` process whose output goes to this process's, and writes the comparison.
pub(crate) async fn execute(plans: &[RunPlan], options: CompareOptions) -> anyhow::Result<CompareOutcome> {
    let now = SystemTime::now();
    let dir = RunDir::create(&options.reports_dir, "compare", now)?;
    let (mut rows, mut runs, mut failures, mut skipped) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut summaries = Vec::new();
    let mut interrupted = false;
    let ordered = plans
        .iter()
        .filter(|p| matches!(p, RunPlan::Builtin(_)))
        .chain(plans.iter().filter(|p| matches!(p, RunPlan::Foreign(_))));
    for plan in ordered {
        if interrupted || *options.stop.borrow() {
            interrupted = true;
            break;
        }
        if let Some(reason) = unbuilt(plan) {
            skipped.push(Failure { scenario: plan.name().to_owned(), error: reason });
            continue;
        }
        let args = match plan {
            RunPlan::Builtin(plan) => compare_args(plan, &options),
            RunPlan::Foreign(_) => Vec::new(),
        };
        let finished = match run_scenario(plan, &args, &options).await {
            Ok(finished) => finished,
            Err(error) => {
                failures.push(Failure { scenario: plan.name().to_owned(), error: format!("{error:#}") });
                continue;
            }
        };
        let comparison = match (&options.baseline, plan) {
            (Some(name), RunPlan::Builtin(plan)) => Some(baseline::compare(
                name,
                &baseline::load(&options.reports_dir, name, &plan.name)?,
                &finished.summary,
            )),
            _ => None,
        };
        interrupted |= finished.interrupted;
        rows.push(Row::of(&finished.summary, &finished.dir, comparison));
        runs.extend(RunRecord::of(&finished.summary, finished.samples));
        summaries.push(finished.summary);
    }
    let outcome = Comparison::overall(&rows, &failures);
    let comparison = Comparison {
        started_at: leaklab_engine::run_dir::utc_seconds(now),
        quick: options.quick,
        baseline: options.baseline.clone(),
        rows,
        failures,
        outcome,
        interrupted,
        skipped,
    };
    let report = CompareReport { comparison, runs, summaries, dir: dir.path.clone() };
    let mut written = report::write_outputs(&COMPARE_OUTPUTS, &report, &dir.path);
    if !attacks::pairs(&report.runs).is_empty() {
        written.extend(report::write_outputs(&ATTACK_OUTPUTS, &report, &dir.path));
    }
    report::append_to_step_summary(&markdown::CompareMarkdown, &report, &mut written);
    Ok(CompareOutcome { report, written })
}

/// Why an external client's scenario cannot run here: its program, or a peer's script it runs
/// (`node target/peers/node/echo_client.js`), is not built.
pub(crate) fn unbuilt(plan: &RunPlan) -> Option<String> {
    let RunPlan::Foreign(plan) = plan else { return None };
    let ForeignClient::Command(argv) = &plan.client else { return None };
    let program = argv.first()?;
    if !program_exists(program) {
        return Some(format!("{program} is not built; `make peers` builds it"));
    }
    let script = argv[1..].iter().find(|arg| arg.starts_with(PEERS_DIR) && !Path::new(arg.as_str()).is_file())?;
    Some(format!("{script} is not built; `make peers` builds it"))
}

/// Where `make peers` puts the foreign clients.
const PEERS_DIR: &str = "target/peers/";

/// Whether `program` can be started: a path that exists, or a bare name found on `PATH`.
fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A finished run, read back from its run directory.
#[derive(Debug)]
pub(crate) struct Finished {
    pub dir: PathBuf,
    pub summary: Summary,
    pub samples: Vec<Sample>,
    /// The user stopped it (exit 130); its report covers the run up to then.
    pub interrupted: bool,
}

/// The flags a comparison adds to `plan`'s run: the quick profile, and baselines.
fn compare_args(plan: &Plan, options: &CompareOptions) -> Vec<String> {
    let mut overrides = Overrides::default();
    if options.quick {
        // Only what the profile changes, so the run validates the same values as the file's.
        let quick = plan.clone().quick();
        if quick.load.max_requests != plan.load.max_requests {
            overrides.set(Opt::Requests, Value::Count(quick.load.max_requests.get()));
        }
        if quick.load.rounds != plan.load.rounds {
            overrides.set(Opt::Rounds, Value::Count(quick.load.rounds.get().into()));
        }
        if quick.sampling.cooldown != plan.sampling.cooldown {
            overrides.set(Opt::Cooldown, Value::Duration(quick.sampling.cooldown));
        }
    }
    let mut args = overrides.to_args();
    for (flag, value) in [("--baseline", &options.baseline), ("--save-baseline", &options.save_baseline)] {
        if let Some(value) = value {
            args.extend([flag.to_owned(), value.clone()]);
        }
    }
    args
}

/// Runs `plan` in its own `loadgen run` process, with `extra_args` after the ones every run gets,
/// and reads its summary and samples back.
pub(crate) async fn run_scenario(
    plan: &RunPlan,
    extra_args: &[String],
    options: &CompareOptions,
) -> anyhow::Result<Finished> {
    let (name, source) = match plan {
        RunPlan::Builtin(plan) => (&plan.name, plan.source.clone()),
        RunPlan::Foreign(plan) => (&plan.name, plan.source.clone().context("a watch has no scenario file to run")?),
    };
    let latest = options.reports_dir.join(name).join("latest");
    let before = std::fs::read_link(&latest).ok();
    let mut command = tokio::process::Command::new(&options.runner);
    command
        .arg("run")
        .arg(&source)
        .arg("--reports-dir")
        .arg(&options.reports_dir)
        .args(&options.run_args)
        .args(extra_args);
    if let Some(dir) = &options.stdout_dir {
        let log = dir.join(format!("{name}.log"));
        command.stdout(std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?);
    }
    let mut child = command.spawn().with_context(|| format!("starting {}", options.runner.display()))?;
    let status = match &options.live {
        Some(board) => follow(&mut child, board, name, &latest, before.as_deref()).await,
        None => child.wait().await,
    }
    .with_context(|| format!("waiting for `loadgen run {}`", source.display()))?;
    let code = status.code().unwrap_or(-1);
    if !REPORTED.contains(&code) && code != INTERRUPTED {
        anyhow::bail!("`loadgen run {}` failed ({status}); its errors are above", source.display());
    }
    let after = std::fs::read_link(&latest).with_context(|| format!("reading {}", latest.display()))?;
    if before.as_ref() == Some(&after) {
        anyhow::bail!("`loadgen run {}` left no new run directory at {}", source.display(), latest.display());
    }
    let dir = options.reports_dir.join(name).join(after);
    let (summary, samples) = RunDir::at(&dir).read_finished()?;
    Ok(Finished { dir, summary, samples, interrupted: code == INTERRUPTED })
}

/// Waits for `child`, meanwhile posting to `board` the samples its run appends to the `samples.jsonl`
/// of the run directory `latest` points to once it no longer points to `before`.
async fn follow(
    child: &mut tokio::process::Child,
    board: &LiveBoard,
    scenario: &str,
    latest: &Path,
    before: Option<&Path>,
) -> std::io::Result<std::process::ExitStatus> {
    let mut tail = SamplesTail::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            status = child.wait() => {
                tail.post_new(board, scenario, latest, before);
                return status;
            }
            _ = tick.tick() => tail.post_new(board, scenario, latest, before),
        }
    }
}

/// How far a child run's `samples.jsonl` has been read.
#[derive(Debug, Default)]
struct SamplesTail {
    file: Option<std::fs::File>,
    /// The end of a line not yet complete.
    partial: Vec<u8>,
}

impl SamplesTail {
    /// Posts every complete line appended since the last call; finds the file first if need be.
    fn post_new(&mut self, board: &LiveBoard, scenario: &str, latest: &Path, before: Option<&Path>) {
        use std::io::Read;
        if self.file.is_none() {
            let Ok(run) = std::fs::read_link(latest) else { return };
            if before == Some(run.as_path()) {
                return;
            }
            let parent = latest.parent().unwrap_or(Path::new("."));
            self.file = std::fs::File::open(RunDir::at(parent.join(run)).file(RunDir::SAMPLES)).ok();
        }
        let Some(file) = self.file.as_mut() else { return };
        if file.read_to_end(&mut self.partial).is_err() {
            return;
        }
        let complete = self.partial.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
        for line in self.partial[..complete].split(|b| *b == b'\n') {
            if let Ok(sample) = serde_json::from_slice::<Sample>(line) {
                board.post(scenario, &sample);
            }
        }
        self.partial.drain(..complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::scenario::WatchSpec;

    fn command(argv: &[&str]) -> RunPlan {
        let client = ForeignClient::Command(argv.iter().map(|arg| arg.to_string()).collect());
        let watch = WatchSpec {
            name: "n".into(),
            description: "d".into(),
            client,
            duration_s: 2.0,
            interval_ms: 100,
            warmup_s: 1.0,
            warmup_requests: 0,
            tolerance_bytes_per_request: 1.0,
            tolerance_bytes_per_second: 1.0,
            pprof: None,
            own_code: Vec::new(),
            call_sites: false,
            channelz: None,
            runtime: Default::default(),
        };
        RunPlan::Foreign(Box::new(watch.plan()))
    }

    #[test]
    fn a_peer_is_unbuilt_when_its_program_or_its_script_is_missing() {
        assert_eq!(unbuilt(&command(&["sh", "-c", "true"])), None);
        let missing_script = unbuilt(&command(&["sh", "target/peers/node/no-such-client.js"])).unwrap();
        assert!(missing_script.starts_with("target/peers/node/no-such-client.js is not built"), "{missing_script}");
        let missing_program = unbuilt(&command(&["target/peers/no-such-peer", "-mode", "leak"])).unwrap();
        assert!(missing_program.starts_with("target/peers/no-such-peer is not built"), "{missing_program}");
    }

    #[test]
    fn a_client_whose_memory_outside_the_heap_decided_its_leak_shows_that_memory() {
        let (summary, _) = leaklab_engine::fixtures::scripted_report();
        let mut verdicts = summary.verdict.clone();
        verdicts.client.expected = Some(leaklab_engine::scenario::Expectation::Leak);
        let mut native = verdicts.client.clone();
        native.quantity = Quantity::NativeBytes;
        native.slope_bytes_per_request = Some(65_536.0);
        assert_eq!(RowVerdict::client(&verdicts), RowVerdict::of(&verdicts.client), "no native verdict: the client's");
        verdicts.client_native = Some(native);
        assert_eq!(RowVerdict::client(&verdicts), RowVerdict::of(&verdicts.client), "the heap decided: the client's");
        verdicts.client.reasons.insert(0, leaklab_verdict::Reason::NativeDecided { slope: 65_536.0, ci_low: 60_000.0 });
        let row = RowVerdict::client(&verdicts);
        assert_eq!((row.quantity, row.slope_bytes_per_request), (Quantity::NativeBytes, Some(65_536.0)));
        assert_eq!((row.kind, row.expected), (verdicts.client.kind, verdicts.client.expected));
        assert!(markdown::slope(&row).ends_with("outside the heap ‡"), "{}", markdown::slope(&row));
    }
}
