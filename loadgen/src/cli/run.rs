//! The flags of the commands that run scenarios — `run`, `compare`, `demo` — and what they share: the
//! server they load, the views, the baselines, the segments of a split run, and the overrides of a
//! scenario's keys, one flag per row of `scenario::OPTIONS`.

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};
use leaklab_engine::run::{RunOptions, ServerMetrics, ServerPprof, TargetChoice};
use leaklab_engine::scenario::{self, Catalog, Kind, OPTIONS, Overrides, RunPlan};

use super::{CiArgs, Dashboard, OwnCode, ReportsDir, ScenariosDir};
use crate::baseline;
use crate::compare::{self, CompareOptions};
use crate::demo::{DemoOptions, story};
use crate::live::progress::View;
use crate::session::Session;

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

impl RunArgs {
    /// The scenario's plan, the command line's overrides applied.
    pub(crate) fn plan(&self) -> anyhow::Result<RunPlan> {
        let path = self.common.catalog().resolve(&self.scenario)?;
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
        Ok(baseline::BaselineUse::prepare(&self.common.reports.path, compare_with, save_as, plan.name())?)
    }

    pub(crate) fn options(&self, session: &Session, name: &str) -> anyhow::Result<RunOptions> {
        let target = Some(self.common.target()?);
        let observer = crate::live::observer(self.common.view(), session.live.as_ref(), name);
        let (stop, start_at, reports_dir) =
            (session.stop.clone(), self.segment.start_at, self.common.reports.path.clone());
        Ok(RunOptions { target, reports_dir, stop, observer, start_at })
    }
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

    /// The pod's index in a Kubernetes indexed Job, which sets it in the environment.
    #[arg(long, env = "JOB_COMPLETION_INDEX", hide = true)]
    pub(crate) job_completion_index: Option<String>,

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
        let index = self.job_completion_index.as_deref().ok_or_else(|| {
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
        let catalog = self.common.catalog();
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
            compare::check_baselines(&self.common.reports.path, name, &plans)?;
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
            reports_dir: self.common.reports.path.clone(),
            quick: self.quick,
            baseline: self.verdict.baseline.clone(),
            save_baseline: self.verdict.save_baseline.clone(),
            stop: session.stop.clone(),
            stdout_dir: None,
            live: session.live.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Run each chapter with its `fast` overrides: the whole story in under 90 s on 2 cores.
    #[arg(long)]
    pub(crate) fast: bool,

    /// The story to tell [default: ./demo/story.toml, else the source tree's]
    #[arg(long, value_name = "FILE")]
    pub(crate) story: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    #[command(flatten)]
    pub(crate) ci: CiArgs,
}

impl DemoArgs {
    /// The story, checked before anything runs.
    pub(crate) fn story(&self) -> anyhow::Result<story::Story> {
        let path = self.story.clone().unwrap_or_else(story::default_path);
        Ok(story::load(&path, &self.common.catalog(), self.fast)?)
    }

    /// How the demo runs: each chapter in its own `loadgen run`, with the live view unless `--quiet`.
    pub(crate) fn options(&self, session: &Session) -> anyhow::Result<DemoOptions> {
        let target = self.common.target()?;
        if let TargetChoice::External { .. } = target {
            anyhow::bail!("--target: the demo starts and measures its own server in every chapter");
        }
        let mut run_args = self.common.forwarded(&target);
        if !self.common.quiet && !self.common.dashboard.on {
            run_args.push("--dashboard".to_owned());
        }
        let runner = std::env::current_exe().context("locating this binary")?;
        let (stop, live, reports_dir) = (session.stop.clone(), session.live.clone(), self.common.reports.path.clone());
        Ok(DemoOptions { runner, run_args, reports_dir, fast: self.fast, stop, live })
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

/// Options every run shares: the server it loads, where its outputs go, what it shows.
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
    #[arg(long, value_name = "URL", requires = "target", value_parser = scenario::pprof_url)]
    pub(crate) server_pprof: Option<String>,

    #[command(flatten)]
    pub(crate) server_own_code: OwnCode,

    /// Another metric of the --server-metrics endpoint to record and plot, summed over its label sets
    /// (repeatable).
    #[arg(long = "server-metric", value_name = "NAME", requires = "server_metrics")]
    pub(crate) server_metric: Vec<String>,

    /// The leaklab-server binary to start [default: next to this binary]
    #[arg(long, value_name = "PATH")]
    pub(crate) server_bin: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub(crate) reports: ReportsDir,

    #[command(flatten)]
    pub(crate) scenarios: ScenariosDir,

    /// No live progress line.
    #[arg(long, short, conflicts_with = "dashboard")]
    pub(crate) quiet: bool,

    #[command(flatten)]
    pub(crate) dashboard: Dashboard,
}

impl CommonArgs {
    pub(crate) fn catalog(&self) -> Catalog {
        Catalog::locate(self.scenarios.path.clone())
    }

    pub(crate) fn view(&self) -> View {
        match (self.quiet, self.dashboard.on) {
            (true, _) => View::Quiet,
            (false, true) => View::Dashboard,
            (false, false) => View::Line,
        }
    }

    /// The server the run loads, as the flags give it.
    pub(crate) fn choice(&self) -> anyhow::Result<TargetChoice> {
        let own_code = &self.server_own_code.prefixes;
        if !own_code.is_empty() && self.server_pprof.is_none() {
            anyhow::bail!("--own-code: needs --server-pprof (or --pprof for a watch): it names the profiled packages");
        }
        let Some(authority) = self.target.clone() else { return TargetChoice::spawn(self.server_bin.clone()) };
        Ok(TargetChoice::External {
            authority,
            server_pid: self.server_pid,
            server_metrics: self
                .server_metrics
                .clone()
                .map(|url| ServerMetrics { url, named: self.server_metric.clone() }),
            server_pprof: self.server_pprof.clone().map(|url| ServerPprof { url, own_code: own_code.clone() }),
        })
    }

    /// The server the run loads, checked before anything runs.
    pub(crate) fn target(&self) -> anyhow::Result<TargetChoice> {
        let target = self.choice()?;
        target.check()?;
        Ok(target)
    }

    /// The flags that give each `loadgen run` of a comparison or a demo the same target and view: what
    /// [`CommonArgs::choice`] and [`CommonArgs::view`] read back.
    pub(crate) fn forwarded(&self, target: &TargetChoice) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |flag: &str, value: &str| args.extend([format!("--{flag}"), value.to_owned()]);
        match target {
            TargetChoice::Spawn { server_bin } => flag("server-bin", &server_bin.display().to_string()),
            TargetChoice::External { authority, server_pid, server_metrics, server_pprof } => {
                flag("target", authority);
                if let Some(pprof) = server_pprof {
                    flag("server-pprof", &pprof.url);
                    pprof.own_code.iter().for_each(|prefix| flag("own-code", prefix));
                }
                if let Some(pid) = server_pid {
                    flag("server-pid", &pid.to_string());
                }
                if let Some(metrics) = server_metrics {
                    flag("server-metrics", &metrics.url);
                    metrics.named.iter().for_each(|name| flag("server-metric", name));
                }
            }
        }
        let view = match self.view() {
            View::Quiet => Some("--quiet"),
            View::Dashboard => Some("--dashboard"),
            View::Line => None,
        };
        args.extend(view.map(str::to_owned));
        args
    }
}
