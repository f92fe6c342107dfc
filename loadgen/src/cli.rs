//! Command-line interface. Only clap lives here; arguments are converted into
//! the library's types before anything runs. The flags that override a
//! scenario's keys come from the one table of them, `scenario::OPTIONS`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::baseline;
use crate::compare::{self, CompareOptions};
use crate::demo::{DemoOptions, story};
use crate::live::metrics;
use crate::live::progress::View;
use crate::session::Session;
use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use leaklab_engine::run::{RunOptions, ServerMetrics, ServerPprof, TargetChoice, process_name};
use leaklab_engine::sample::{MetricsEndpoint, ScrapeError};
use leaklab_engine::scenario::{self, Catalog, ForeignClient, Kind, OPTIONS, Overrides, RunPlan, WatchSpec, reference};
use leaklab_engine::summary;

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
    Watch(WatchArgs),
    /// Abuse a gRPC server on this machine as a hostile client would, bounded in time and streams, and
    /// print what the attack did and what the server did to it as JSON. Loopback targets only.
    Attack(AttackArgs),
    /// List the scenarios with their descriptions.
    List(ListArgs),
    /// Print the JSON Schema of summary.json, or with --scenario of a scenario file.
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AttackArgs {
    /// slow-streams, unread-responses, declared-size, held-headers or rapid-reset.
    #[arg(long, value_parser = attack_kind)]
    pub(crate) kind: leaklab_engine::attack::AttackKind,
    /// The server, HOST:PORT on loopback (127.0.0.0/8 or ::1).
    #[arg(long)]
    pub(crate) target: std::net::SocketAddr,
    /// Connections the attack keeps open; each is dialled again when the server ends it.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub(crate) connections: u32,
    /// The attack ends this long after it starts (at most 60s).
    #[arg(long, default_value = "10s", value_parser = attack_duration)]
    pub(crate) duration: std::time::Duration,
    /// Streams held open at once over all connections, at most [default: 20000, or fewer so that
    /// they ask a server for at most 4 GiB of responses or declared messages].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) max_streams: Option<u64>,
    /// New streams per second over all connections [default: as fast as the server takes them].
    #[arg(long)]
    pub(crate) streams_per_second: Option<f64>,
    /// unread-responses: the response size each call asks for, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) response_bytes: u32,
    /// declared-size: the message length each stream declares, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub(crate) declared_bytes: u32,
    /// A well-behaved client calls this often during the attack, each call with a 1 s deadline, and
    /// once more on a new connection after it; `off` for none.
    #[arg(long, default_value = "20ms", value_parser = good_client_interval)]
    pub(crate) good_client: GoodClientInterval,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct GoodClientInterval(Option<std::time::Duration>);

fn good_client_interval(text: &str) -> Result<GoodClientInterval, String> {
    if text == "off" {
        return Ok(GoodClientInterval(None));
    }
    let every = scenario::parse_duration(text)?;
    if every < std::time::Duration::from_millis(1) {
        return Err(format!("{text}: at least 1ms between calls, or `off`"));
    }
    Ok(GoodClientInterval(Some(every)))
}

impl AttackArgs {
    pub(crate) fn plan(&self) -> Result<leaklab_engine::attack::AttackPlan, anyhow::Error> {
        use leaklab_engine::attack::AttackPlan;
        leaklab_engine::attack::check_target(self.target).map_err(|error| anyhow::anyhow!("--target: {error}"))?;
        let plan = AttackPlan {
            kind: self.kind,
            target: self.target,
            connections: self.connections,
            duration: self.duration,
            streams_per_second: match self.streams_per_second {
                Some(rate) if !(rate.is_finite() && rate > 0.0) => {
                    anyhow::bail!("--streams-per-second: must be a positive number, got {rate}")
                }
                rate => rate,
            },
            max_streams: self.max_streams.unwrap_or_else(|| {
                AttackPlan::default_max_streams(self.kind, self.response_bytes, self.declared_bytes)
            }),
            response_bytes: self.response_bytes,
            declared_bytes: self.declared_bytes,
            good_client: self.good_client.0,
        };
        plan.check_exposure().map_err(|error| anyhow::anyhow!("--max-streams: {}", error.replace('_', "-")))?;
        Ok(plan)
    }
}

fn attack_kind(text: &str) -> Result<leaklab_engine::attack::AttackKind, String> {
    use leaklab_engine::attack::AttackKind;
    AttackKind::ALL.into_iter().find(|kind| kind.name() == text).ok_or_else(|| {
        let names: Vec<_> = AttackKind::ALL.iter().map(|kind| kind.name()).collect();
        format!("unknown attack {text:?}; expected one of {}", names.join(", "))
    })
}

fn attack_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = scenario::parse_duration(text)?;
    if duration.is_zero() || duration > std::time::Duration::from_secs(60) {
        return Err(format!("{text}: an attack lasts more than 0s and at most 60s"));
    }
    Ok(duration)
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
pub(crate) struct DemoArgs {
    /// Run each chapter with its `fast` overrides: the whole story in under 90 s on 2 cores.
    #[arg(long)]
    pub(crate) fast: bool,

    /// The story to tell [default: ./demo/story.toml, else the source tree's]
    #[arg(long, value_name = "FILE")]
    pub(crate) story: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    #[command(flatten)]
    pub(crate) ci: CiArgs,
}

impl DemoArgs {
    /// The story, checked before anything runs.
    pub(crate) fn story(&self) -> anyhow::Result<story::Story> {
        let path = self.story.clone().unwrap_or_else(story::default_path);
        Ok(story::load(&path, &Catalog::locate(self.common.scenarios_dir.clone()), self.fast)?)
    }

    /// How the demo runs: each chapter in its own `loadgen run`, with the live view unless `--quiet`.
    pub(crate) fn options(&self, session: &Session) -> anyhow::Result<DemoOptions> {
        let target = self.common.target()?;
        if let TargetChoice::External { .. } = target {
            anyhow::bail!("--target: the demo starts and measures its own server in every chapter");
        }
        let mut run_args = self.common.forwarded(&target);
        if !self.common.quiet && !self.common.dashboard {
            run_args.push("--dashboard".to_owned());
        }
        let runner = std::env::current_exe().context("locating this binary")?;
        let (stop, live) = (session.stop.clone(), session.live.clone());
        Ok(DemoOptions { runner, run_args, reports_dir: self.common.reports_dir.clone(), fast: self.fast, stop, live })
    }
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Every segment's run directory, e.g. host-1/leak/latest host-2/leak/latest.
    #[arg(required = true, value_name = "DIR")]
    pub(crate) dirs: Vec<PathBuf>,

    /// Where the merged run directory goes: DIR/<scenario>/<time>/.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) reports_dir: PathBuf,

    #[command(flatten)]
    pub(crate) ci: CiFileArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run directory, e.g. reports/leak/latest.
    pub(crate) dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// A running process to watch; it is left running.
    #[arg(long, required_unless_present = "command", conflicts_with = "command")]
    pub(crate) pid: Option<u32>,

    /// Stop watching after this long.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub(crate) duration: Duration,

    /// Time between two samples (at least 10ms).
    #[arg(long, default_value = "100ms", value_parser = sample_interval)]
    pub(crate) interval: Duration,

    /// Samples from the first this-long are not judged: a process that has just started is still warming up.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub(crate) warmup: Duration,

    /// Nor are samples before the command reported this many requests on its progress lines: a
    /// garbage-collected runtime sizes its heap over its first thousands of requests.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) warmup_requests: u64,

    /// RSS growth per second that is not a leak, e.g. 64KiB (a command that prints no progress lines).
    #[arg(long, default_value = "64KiB", value_parser = scenario::parse_size)]
    pub(crate) tolerance: u64,

    /// RSS growth per request that is not a leak, for a command that prints
    /// `leaklab-progress ok=N failed=M` lines (a garbage-collected runtime breathes by a KB or so).
    #[arg(long, default_value = "2KiB", value_parser = scenario::parse_size)]
    pub(crate) tolerance_per_request: u64,

    /// Where run directories go.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) reports_dir: PathBuf,

    /// Show live charts of memory and connections while watching (on a terminal).
    #[arg(long)]
    pub(crate) dashboard: bool,

    /// A Go process's net/http/pprof base URL (http://HOST:PORT/debug/pprof): its heap and goroutine
    /// profiles are fetched when warm-up ends and when the watch ends, and diffed down to its own call
    /// sites. {pprof_addr} in it and in the command becomes a free loopback HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub(crate) pprof: Option<String>,

    /// With --pprof: the process's own packages, as function name prefixes (repeatable; default: all
    /// but the Go runtime and standard library, gRPC, golang.org/x/net and protobuf).
    #[arg(long = "own-code", value_name = "PREFIX", requires = "pprof")]
    pub(crate) own_code: Vec<String>,

    /// The process's gRPC channelz service (HOST:PORT): its channels, subchannels and sockets, as its
    /// gRPC runtime counts them, are read beside every sample. {channelz_addr} in it and in the command
    /// becomes a free loopback HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = scenario::channelz_address)]
    pub(crate) channelz: Option<String>,

    #[command(flatten)]
    pub(crate) ci: CiArgs,

    /// The command to start and watch, after `--`; it is stopped at the end if still running.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
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

impl WatchArgs {
    /// The foreign plan of this watch.
    pub(crate) fn plan(&self) -> anyhow::Result<RunPlan> {
        let client = match self.pid {
            Some(pid) => ForeignClient::Pid(pid),
            None if self.command.first().is_none_or(|program| program.is_empty()) => {
                anyhow::bail!("watch: no command given after --")
            }
            None => ForeignClient::Command(self.command.clone()),
        };
        if self.warmup >= self.duration {
            anyhow::bail!("--warmup ({}) must be shorter than --duration", humantime::format_duration(self.warmup));
        }
        let description = match &client {
            ForeignClient::Command(argv) => format!("`{}`, watched from outside", argv.join(" ")),
            ForeignClient::Pid(pid) => format!("process {pid}, watched from outside"),
        };
        let name = format!("watch-{}", process_name(&client));
        if let Some(url) = self.pprof.as_ref().filter(|url| !url.starts_with("http://")) {
            anyhow::bail!("--pprof {url:?}: expected http://HOST:PORT/debug/pprof");
        }
        // A free port only helps a command leaklab starts, which is told it; a running process already listens.
        for (flag, value, placeholder) in
            [("--pprof", &self.pprof, "{pprof_addr}"), ("--channelz", &self.channelz, "{channelz_addr}")]
        {
            if self.pid.is_some() && value.as_ref().is_some_and(|value| value.contains(placeholder)) {
                anyhow::bail!(
                    "{flag}: {placeholder} is a port for a command leaklab starts; give --pid's own HOST:PORT"
                );
            }
        }
        let watch = WatchSpec {
            name,
            description,
            client,
            duration_s: self.duration.as_secs_f64(),
            interval_ms: self.interval.as_millis() as u64,
            warmup_s: self.warmup.as_secs_f64(),
            warmup_requests: self.warmup_requests,
            tolerance_bytes_per_request: self.tolerance_per_request as f64,
            tolerance_bytes_per_second: self.tolerance as f64,
            pprof: self.pprof.clone(),
            own_code: self.own_code.clone(),
            channelz: self.channelz.clone(),
        };
        Ok(RunPlan::Foreign(Box::new(watch.plan())))
    }

    pub(crate) fn options(&self, session: &Session, name: &str) -> RunOptions {
        let view = if self.dashboard { View::Dashboard } else { View::Quiet };
        let observer = crate::live::observer(view, session.live.as_ref(), name);
        let stop = session.stop.clone();
        RunOptions { target: None, reports_dir: self.reports_dir.clone(), stop, observer, start_at: None }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Directory of scenario files [default: ./scenarios, else the source tree's]
    #[arg(long)]
    pub(crate) scenarios_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Scenario name (see `loadgen list`) or path to a scenario file.
    pub(crate) scenario: String,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    #[command(flatten)]
    pub(crate) verdict: VerdictArgs,

    #[command(flatten)]
    pub(crate) ci: CiArgs,

    #[command(flatten)]
    pub(crate) segment: SegmentArgs,

    #[command(flatten)]
    pub(crate) overrides: OverrideArgs,
}

/// One scenario split over several load generators, each running `loadgen run --segment I/N`.
#[derive(Debug, Args)]
pub(crate) struct SegmentArgs {
    /// Run segment I (from 1) of N: this run's share of the scenario's requests, warm-up, workers and
    /// rate, with the same rounds, against one --target.
    #[arg(long, value_name = "I/N", env = "LEAKLAB_SEGMENT", value_parser = scenario::Segment::parse)]
    pub(crate) segment: Option<scenario::Segment>,

    /// Run one of N segments, the one Kubernetes' indexed Job gives this pod: JOB_COMPLETION_INDEX (from 0) + 1.
    #[arg(long, value_name = "N", conflicts_with = "segment")]
    pub(crate) segments: Option<u32>,

    /// Start the load at this time (RFC 3339, like 2026-12-03T18:00:00Z), so that every segment starts together.
    #[arg(long, value_name = "TIME", value_parser = start_time)]
    pub(crate) start_at: Option<std::time::SystemTime>,
}

fn start_time(text: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|error| format!("{text:?}: {error}; expected RFC 3339, like 2026-12-03T18:00:00Z"))
}

impl SegmentArgs {
    /// The segment this run is, from --segment (or LEAKLAB_SEGMENT), or from --segments and JOB_COMPLETION_INDEX.
    pub(crate) fn segment(&self) -> anyhow::Result<Option<scenario::Segment>> {
        let Some(count) = self.segments else { return Ok(self.segment) };
        let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
            anyhow::anyhow!("--segments {count}: JOB_COMPLETION_INDEX is not set (a Kubernetes indexed Job sets it)")
        })?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--segments {count}: JOB_COMPLETION_INDEX {index:?} is not a whole number"))?;
        let segment = scenario::Segment::parse(&format!("{}/{count}", index + 1))
            .map_err(|error| anyhow::anyhow!("--segments {count} with JOB_COMPLETION_INDEX {index}: {error}"))?;
        Ok(Some(segment))
    }
}

impl RunArgs {
    /// The scenario's plan, the command line's overrides applied.
    pub(crate) fn plan(&self) -> anyhow::Result<RunPlan> {
        let path = Catalog::locate(self.common.scenarios_dir.clone()).resolve(&self.scenario)?;
        let plan = scenario::load(&path, &self.overrides.0)?;
        let Some(segment) = self.segment.segment()? else { return Ok(plan) };
        match plan {
            RunPlan::Builtin(plan) => Ok(RunPlan::Builtin(Box::new(
                plan.segment(segment).map_err(|error| anyhow::anyhow!("--segment {error}"))?,
            ))),
            RunPlan::Foreign(_) => anyhow::bail!(
                "--segment {segment}: {} runs an external client, which leaklab cannot split",
                path.display()
            ),
        }
    }

    /// What the run does with baselines, checked before anything runs.
    pub(crate) fn baselines(&self, plan: &RunPlan) -> anyhow::Result<baseline::BaselineUse> {
        let (compare_with, save_as) = (self.verdict.baseline.as_deref(), self.verdict.save_baseline.as_deref());
        Ok(baseline::BaselineUse::prepare(&self.common.reports_dir, compare_with, save_as, plan.name())?)
    }

    pub(crate) fn options(&self, session: &Session, name: &str) -> anyhow::Result<RunOptions> {
        let target = Some(self.common.target()?);
        let observer = crate::live::observer(self.common.view(), session.live.as_ref(), name);
        let (stop, start_at) = (session.stop.clone(), self.segment.start_at);
        Ok(RunOptions { target, reports_dir: self.common.reports_dir.clone(), stop, observer, start_at })
    }
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// Scenario names or paths [default: every scenario in the catalog]
    pub(crate) scenarios: Vec<String>,

    /// At most 3,200 requests after warm-up per scenario and a cool-down of at most 1 s:
    /// every scenario, briefly.
    #[arg(long)]
    pub(crate) quick: bool,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    #[command(flatten)]
    pub(crate) verdict: VerdictArgs,

    #[command(flatten)]
    pub(crate) ci: CiArgs,
}

impl CompareArgs {
    /// Every scenario named (or in the catalog), validated before anything runs.
    pub(crate) fn plans(&self) -> anyhow::Result<Vec<RunPlan>> {
        let catalog = Catalog::locate(self.common.scenarios_dir.clone());
        let names: Vec<String> = if self.scenarios.is_empty() {
            catalog.entries().into_iter().map(|entry| entry.name).collect()
        } else {
            self.scenarios.clone()
        };
        if names.is_empty() {
            anyhow::bail!("no scenario files (*.toml) in {}", catalog.dir.display());
        }
        let plans: Vec<RunPlan> = names
            .iter()
            .map(|name| Ok(scenario::load(&catalog.resolve(name)?, &Overrides::default())?))
            .collect::<anyhow::Result<_>>()?;
        if let Some(name) = &self.verdict.baseline {
            compare::check_baselines(&self.common.reports_dir, name, &plans)?;
        }
        if let Some(name) = &self.verdict.save_baseline {
            baseline::check_name(name)?;
        }
        Ok(plans)
    }

    /// How the comparison runs: each scenario in its own `loadgen run` with the same target.
    pub(crate) fn options(&self, session: &Session) -> anyhow::Result<CompareOptions> {
        Ok(CompareOptions {
            runner: std::env::current_exe().context("locating this binary")?,
            run_args: self.common.forwarded(&self.common.target()?),
            reports_dir: self.common.reports_dir.clone(),
            quick: self.quick,
            baseline: self.verdict.baseline.clone(),
            save_baseline: self.verdict.save_baseline.clone(),
            stop: session.stop.clone(),
            stdout_dir: None,
            live: session.live.clone(),
        })
    }
}

/// What a verdict is compared with, and how its outcome becomes an exit code.
#[derive(Debug, Args)]
pub(crate) struct VerdictArgs {
    /// Store each run's summary as baseline NAME (reports/baselines/NAME/<scenario>.json).
    #[arg(long, value_name = "NAME")]
    pub(crate) save_baseline: Option<String>,

    /// Compare each run with baseline NAME; fail when bytes per request grew beyond the tolerance.
    #[arg(long, value_name = "NAME")]
    pub(crate) baseline: Option<String>,

    /// Exit 125 (`git bisect run`'s "skip") instead of 3 when a verdict is inconclusive,
    /// and instead of 4 when the run failed.
    #[arg(long)]
    pub(crate) bisect: bool,
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

/// The flags that override a scenario's keys, one per row of `scenario::OPTIONS`.
#[derive(Debug, Clone, Default)]
pub(crate) struct OverrideArgs(pub(crate) Overrides);

impl Args for OverrideArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        OPTIONS.iter().fold(command, |command, spec| {
            let mut arg = Arg::new(spec.flag).long(spec.flag).help(spec.help).conflicts_with_all(spec.conflicts);
            if let Some(letter) = spec.short {
                arg = arg.short(letter);
            }
            let valued = || arg.clone().value_name(spec.value_name).value_parser(move |text: &str| spec.parse(text));
            command.arg(match spec.kind {
                Kind::Switch => arg.action(ArgAction::SetTrue),
                Kind::Paths => valued().action(ArgAction::Append),
                _ => valued(),
            })
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for OverrideArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut overrides = Overrides::default();
        for spec in &OPTIONS {
            let value = match spec.kind {
                Kind::Switch => matches.get_flag(spec.flag).then_some(scenario::Value::On),
                // Every --proto, each maybe a comma-separated list, in the order given.
                Kind::Paths => matches.get_many::<scenario::Value>(spec.flag).map(|values| {
                    let paths = values.flat_map(|value| match value {
                        scenario::Value::Paths(paths) => paths.clone(),
                        _ => Vec::new(),
                    });
                    scenario::Value::Paths(paths.collect())
                }),
                _ => matches.get_one::<scenario::Value>(spec.flag).cloned(),
            };
            if let Some(value) = value {
                overrides.set(spec.opt, value);
            }
        }
        Ok(OverrideArgs(overrides))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Options every run shares.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Load an already running server at HOST:PORT instead of starting one.
    /// Its memory is then not measured.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "server_bin")]
    pub(crate) target: Option<String>,

    /// The --target server's process id on this machine: its RSS, fds, threads and connections are
    /// sampled from /proc, and its RSS judged per request as the toy server's memory is.
    #[arg(long, value_name = "PID", requires = "target")]
    pub(crate) server_pid: Option<u32>,

    /// The --target server's Prometheus metrics endpoint (http://HOST:PORT/PATH), scraped at every
    /// sample; the server may run on another machine. Its process_resident_memory_bytes is judged per
    /// request (unless --server-pid is given); go_memstats_heap_inuse_bytes and go_goroutines are
    /// recorded when present.
    #[arg(long, value_name = "URL", requires = "target")]
    pub(crate) server_metrics: Option<String>,

    /// The --target server's net/http/pprof base URL (http://HOST:PORT/debug/pprof), for a Go server: its
    /// heap and goroutine profiles are fetched when warm-up ends and when the load ends, and diffed down
    /// to its own call sites, as --pprof does for a watched process.
    #[arg(long, value_name = "URL", requires = "target")]
    pub(crate) server_pprof: Option<String>,

    /// With --server-pprof: the server's own packages, as function name prefixes (repeatable; default:
    /// all but the Go runtime and standard library, gRPC, golang.org/x/net and protobuf).
    #[arg(long = "own-code", value_name = "PREFIX", requires = "server_pprof")]
    pub(crate) server_own_code: Vec<String>,

    /// Another metric of the --server-metrics endpoint to record and plot, summed over its label sets
    /// (repeatable).
    #[arg(long = "server-metric", value_name = "NAME", requires = "server_metrics")]
    pub(crate) server_metric: Vec<String>,

    /// The leaklab-server binary to start [default: next to this binary]
    #[arg(long, value_name = "PATH")]
    pub(crate) server_bin: Option<PathBuf>,

    /// Where run directories go.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) reports_dir: PathBuf,

    /// Directory of scenario files [default: ./scenarios, else the source tree's]
    #[arg(long, value_name = "DIR")]
    pub(crate) scenarios_dir: Option<PathBuf>,

    /// No live progress line.
    #[arg(long, short, conflicts_with = "dashboard")]
    pub(crate) quiet: bool,

    /// Show live charts of memory and connections instead of the progress line
    /// (on a terminal; elsewhere the plain progress line).
    #[arg(long)]
    pub(crate) dashboard: bool,
}

impl CommonArgs {
    /// The flags that give each `loadgen run` of a comparison the same target and output.
    pub(crate) fn forwarded(&self, target: &TargetChoice) -> Vec<String> {
        let mut args = match target {
            TargetChoice::Spawn { server_bin } => vec!["--server-bin".to_owned(), server_bin.display().to_string()],
            TargetChoice::External { authority, server_pid, server_metrics, server_pprof } => {
                let mut args = vec!["--target".to_owned(), authority.clone()];
                if let Some(pprof) = server_pprof {
                    args.extend(["--server-pprof".to_owned(), pprof.url.clone()]);
                    for prefix in &pprof.own_code {
                        args.extend(["--own-code".to_owned(), prefix.clone()]);
                    }
                }
                if let Some(pid) = server_pid {
                    args.extend(["--server-pid".to_owned(), pid.to_string()]);
                }
                if let Some(metrics) = server_metrics {
                    args.extend(["--server-metrics".to_owned(), metrics.url.clone()]);
                    for name in &metrics.named {
                        args.extend(["--server-metric".to_owned(), name.clone()]);
                    }
                }
                args
            }
        };
        if self.quiet {
            args.push("--quiet".to_owned());
        }
        if self.dashboard {
            args.push("--dashboard".to_owned());
        }
        args
    }

    pub(crate) fn view(&self) -> View {
        match (self.quiet, self.dashboard) {
            (true, _) => View::Quiet,
            (false, true) => View::Dashboard,
            (false, false) => View::Line,
        }
    }

    pub(crate) fn target(&self) -> anyhow::Result<TargetChoice> {
        if let Some(authority) = &self.target {
            if authority.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
                anyhow::bail!("--target {authority:?}: expected HOST:PORT, like 127.0.0.1:50051");
            }
            if let Some(pid) = self.server_pid
                && !leaklab_probe::procfs::Proc::Pid(pid).is_running()
            {
                anyhow::bail!("--server-pid {pid}: no such process");
            }
            let server_metrics = match &self.server_metrics {
                Some(url) => {
                    // One scrape now, so that an endpoint that cannot measure the server stops the run before it starts.
                    MetricsEndpoint::open(url, &self.server_metric, self.server_pid.is_none()).map_err(|error| {
                        match &error {
                            ScrapeError::Missing { name, .. } if self.server_metric.contains(name) => {
                                anyhow::anyhow!("--server-metric {name}: {error}")
                            }
                            _ => anyhow::anyhow!("--server-metrics {error}"),
                        }
                    })?;
                    Some(ServerMetrics { url: url.clone(), named: self.server_metric.clone() })
                }
                None => None,
            };
            if let Some(url) = self.server_pprof.as_ref().filter(|url| !url.starts_with("http://")) {
                anyhow::bail!("--server-pprof {url:?}: expected http://HOST:PORT/debug/pprof");
            }
            return Ok(TargetChoice::External {
                authority: authority.clone(),
                server_pid: self.server_pid,
                server_metrics,
                server_pprof: self
                    .server_pprof
                    .clone()
                    .map(|url| ServerPprof { url, own_code: self.server_own_code.clone() }),
            });
        }
        let server_bin = match &self.server_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("locating this binary")?.with_file_name("leaklab-server"),
        };
        if !server_bin.is_file() {
            anyhow::bail!(
                "the server binary {} does not exist: build it with `cargo build --release -p leaklab-server`, \
                 pass --server-bin PATH, or load a running server with --target HOST:PORT",
                server_bin.display()
            );
        }
        Ok(TargetChoice::Spawn { server_bin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use leaklab_engine::scenario::{Opt, Value};

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn target_must_be_host_and_port() {
        let cli = Cli::try_parse_from(["loadgen", "run", "leak", "--target", "localhost"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("run expected") };
        let err = args.common.target().unwrap_err().to_string();
        assert!(err.contains("--target \"localhost\": expected HOST:PORT"), "{err}");
    }

    #[test]
    fn compare_takes_names_and_the_quick_profile() {
        let cli =
            Cli::try_parse_from(["loadgen", "compare", "leak", "reused", "--quick", "--baseline", "main", "--bisect"])
                .unwrap();
        let Command::Compare(args) = cli.command else { panic!("run expected") };
        assert_eq!(args.scenarios, ["leak", "reused"]);
        assert!(args.quick && args.verdict.bisect);
        assert_eq!(args.verdict.baseline.as_deref(), Some("main"));
    }

    #[test]
    fn a_value_that_is_not_one_is_a_usage_error_naming_the_flag() {
        let err = Cli::try_parse_from(["loadgen", "run", "leak", "--requests", "many"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--requests"), "{err}");
        let err = Cli::try_parse_from(["loadgen", "run", "leak", "--no-caps", "--cap-fds", "10"]).unwrap_err();
        assert!(err.to_string().contains("--no-caps") && err.to_string().contains("--cap-fds"), "{err}");
    }

    #[test]
    fn overrides_reach_a_child_run_unchanged() {
        let every = OPTIONS.iter().fold(Overrides::default(), |overrides, spec| {
            let value = match spec.kind {
                Kind::Count => Value::Count(9),
                Kind::Duration => Value::Duration(Duration::from_millis(1500)),
                Kind::Rate => Value::Rate(50.5),
                Kind::Size => Value::Size(1 << 20),
                Kind::Switch => Value::On,
                Kind::Text => Value::Text("{\"name\": \"a b\"}".to_owned()),
                Kind::Path => Value::Text("/data/requests.jsonl".to_owned()),
                Kind::Paths => Value::Paths(vec!["/protos/a.proto".to_owned(), "/protos/b.proto".to_owned()]),
                Kind::Metadata => Value::Metadata([("x-team".to_owned(), "a".to_owned())].into()),
            };
            // --data-file conflicts with --data, --insecure with --cacert.
            if matches!(spec.opt, Opt::DataFile | Opt::Insecure) {
                return overrides;
            }
            // --no-caps refuses the caps it lifts.
            if spec.opt == Opt::NoCaps { overrides } else { overrides.with(spec.opt, value) }
        });
        let lifted = Overrides::default().with(Opt::NoCaps, Value::On).with(Opt::Rate, Value::Rate(0.0));
        for overrides in [every, lifted, Overrides::default()] {
            let args = overrides.to_args();
            let cli = Cli::try_parse_from(["loadgen", "run", "leak"].into_iter().map(String::from).chain(args.clone()))
                .unwrap_or_else(|error| panic!("{args:?}: {error}"));
            let Command::Run(run) = cli.command else { panic!("run expected") };
            assert_eq!(run.overrides.0, overrides, "{args:?}");
        }
    }

    #[test]
    fn a_watch_without_a_command_or_with_a_long_warmup_is_refused() {
        let cli = Cli::try_parse_from(["loadgen", "watch", "--warmup", "5s", "--duration", "2s", "--", "sleep", "1"])
            .unwrap();
        let Command::Watch(args) = cli.command else { panic!("watch expected") };
        assert!(args.plan().unwrap_err().to_string().contains("--warmup"));
    }
}
