//! Command-line interface. Only clap lives here; arguments are converted into
//! the library's types before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use leaklab_loadgen::report::progress::View;
use leaklab_loadgen::run::TargetChoice;
use leaklab_loadgen::scenario::{Overrides, parse_size};

/// Reproduce, measure and explain gRPC client memory leaks.
///
/// Runs a scenario against the toy leaklab server while sampling the memory,
/// connections and file descriptors of both processes, then writes
/// reports/<scenario>/<time>/ (summary.json, memory.png/svg, report.md,
/// samples.jsonl).
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
    /// Tell the incident as a live demo: run the story's chapters in order, with live charts,
    /// and write one self-contained page, reports/demo/<time>/index.html.
    Demo(Box<DemoArgs>),
    /// Sample any process — running (--pid) or started (-- COMMAND ARGS…) — and judge its RSS over time.
    Watch(WatchArgs),
    /// List the scenarios with their descriptions.
    List(ListArgs),
    /// Print the JSON Schema of summary.json.
    Schema,
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
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) duration: std::time::Duration,

    /// Time between two samples (at least 10ms).
    #[arg(long, default_value = "100ms", value_parser = sample_interval)]
    pub(crate) interval: std::time::Duration,

    /// RSS growth per second that is not a leak, e.g. 64KiB (a command that prints no progress lines).
    #[arg(long, default_value = "64KiB", value_parser = size)]
    pub(crate) tolerance: u64,

    /// RSS growth per request that is not a leak, for a command that prints
    /// `leaklab-progress ok=N failed=M` lines (a garbage-collected runtime breathes by a KB or so).
    #[arg(long, default_value = "2KiB", value_parser = size)]
    pub(crate) tolerance_per_request: u64,

    /// Where run directories go.
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub(crate) reports_dir: PathBuf,

    /// Show live charts of memory and connections while watching (on a terminal).
    #[arg(long)]
    pub(crate) dashboard: bool,

    /// The command to start and watch, after `--`; it is stopped at the end if still running.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

fn sample_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if interval < std::time::Duration::from_millis(10) {
        return Err("must be at least 10ms".to_owned());
    }
    Ok(interval)
}

fn size(text: &str) -> Result<u64, String> {
    leaklab_loadgen::scenario::parse_size(text)
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

    /// Override load.requests.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) requests: Option<u64>,

    /// Override load.duration, e.g. `20s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,

    /// Override load.concurrency.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) concurrency: Option<u64>,

    /// Override load.rate (requests per second, open loop); 0 for closed loop.
    #[arg(long, value_parser = non_negative_rate)]
    pub(crate) rate: Option<f64>,

    /// Override load.warmup_requests.
    #[arg(long)]
    pub(crate) warmup_requests: Option<u64>,

    /// Override load.rounds (6 or more).
    #[arg(long)]
    pub(crate) rounds: Option<u64>,

    /// Override load.idle_between_rounds, e.g. `3s`: the client idles this long before each checkpoint.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) idle_between_rounds: Option<Duration>,

    /// Override sampling.interval, e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) interval: Option<Duration>,

    /// Override sampling.cooldown, e.g. `5s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) cooldown: Option<Duration>,

    /// Override client.source_addresses: spread connections over 127.0.0.2 … 127.0.0.(N+1).
    #[arg(long, value_name = "N")]
    pub(crate) source_addresses: Option<u64>,

    /// Override caps.client_rss, e.g. `300MiB`: the load stops when the load generator's RSS reaches it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) cap_client_rss: Option<u64>,

    /// Override caps.server_rss, e.g. `1GiB`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) cap_server_rss: Option<u64>,

    /// Override caps.fds: open fds of either process.
    #[arg(long, value_name = "N")]
    pub(crate) cap_fds: Option<u64>,

    /// Lift the caps: no fd cap, and RSS caps of half the machine's memory (a guard that stays),
    /// so a leak runs into the limits of the machine (the fd limit, ephemeral ports).
    #[arg(long, conflicts_with_all = ["cap_client_rss", "cap_server_rss", "cap_fds"])]
    pub(crate) no_caps: bool,

    /// Profile the heap of both processes (jemalloc sampling, one per 128 KiB)
    /// and report where the memory that grew was allocated (sampling.heap_profile).
    #[arg(long)]
    pub(crate) heap_profile: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// Scenario names or paths [default: every scenario in the catalog]
    pub(crate) scenarios: Vec<String>,

    /// At most 3,200 requests after warm-up per scenario and a cool-down of at most 1 s,
    /// so the default set runs in under 3 minutes.
    #[arg(long)]
    pub(crate) quick: bool,

    #[command(flatten)]
    pub(crate) common: CommonArgs,

    #[command(flatten)]
    pub(crate) verdict: VerdictArgs,
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

/// Options every run shares.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Load an already running server at HOST:PORT instead of starting one.
    /// Its memory is then not measured.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "server_bin")]
    pub(crate) target: Option<String>,

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

fn non_negative_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a rate in requests per second (0 or more)")),
    }
}

impl RunArgs {
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            requests: self.requests,
            duration: self.duration,
            concurrency: self.concurrency,
            rate: self.rate,
            warmup_requests: self.warmup_requests,
            rounds: self.rounds,
            idle_between_rounds: self.idle_between_rounds,
            interval: self.interval,
            cooldown: self.cooldown,
            cap_client_rss: self.cap_client_rss,
            cap_server_rss: self.cap_server_rss,
            cap_fds: self.cap_fds,
            source_addresses: self.source_addresses,
            no_caps: self.no_caps,
            heap_profile: self.heap_profile,
        }
    }
}

impl CommonArgs {
    /// The flags that give each `loadgen run` of a comparison the same target and output.
    pub(crate) fn forwarded(&self, target: &TargetChoice) -> Vec<String> {
        let mut args = match target {
            TargetChoice::Spawn { server_bin } => vec!["--server-bin".to_owned(), server_bin.display().to_string()],
            TargetChoice::External { authority } => vec!["--target".to_owned(), authority.clone()],
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
            return Ok(TargetChoice::External { authority: authority.clone() });
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
        let Command::Compare(args) = cli.command else { panic!("compare expected") };
        assert_eq!(args.scenarios, ["leak", "reused"]);
        assert!(args.quick && args.verdict.bisect);
        assert_eq!(args.verdict.baseline.as_deref(), Some("main"));
    }

    #[test]
    fn zero_requests_is_a_usage_error() {
        let err = Cli::try_parse_from(["loadgen", "run", "leak", "--requests", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--requests"), "{err}");
    }

    #[test]
    fn overrides_reach_a_child_run_unchanged() {
        let overrides = Overrides {
            requests: Some(9),
            duration: Some(Duration::from_secs(2)),
            concurrency: Some(3),
            rate: Some(50.5),
            warmup_requests: Some(1),
            rounds: Some(7),
            idle_between_rounds: Some(Duration::from_millis(1500)),
            interval: Some(Duration::from_millis(20)),
            cooldown: Some(Duration::from_secs(1)),
            cap_client_rss: Some(1 << 20),
            cap_server_rss: Some(2 << 20),
            cap_fds: Some(100),
            source_addresses: Some(2),
            no_caps: false,
            heap_profile: true,
        };
        let lifted = Overrides { no_caps: true, rate: Some(0.0), ..Overrides::default() };
        for overrides in [overrides, lifted, Overrides::default()] {
            let args = overrides.to_args();
            let cli = Cli::try_parse_from(["loadgen", "run", "leak"].into_iter().map(String::from).chain(args.clone()))
                .unwrap_or_else(|error| panic!("{args:?}: {error}"));
            let Command::Run(run) = cli.command else { panic!("run expected") };
            assert_eq!(run.overrides(), overrides, "{args:?}");
        }
    }

    #[test]
    fn overrides_carry_every_flag() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "run",
            "leak",
            "--requests",
            "9",
            "--duration",
            "2s",
            "--concurrency",
            "3",
            "--rate",
            "50",
            "--warmup-requests",
            "1",
            "--interval",
            "20ms",
            "--cooldown",
            "1s",
            "--rounds",
            "7",
            "--idle-between-rounds",
            "3s",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("run expected") };
        let o = args.overrides();
        assert_eq!((o.requests, o.concurrency, o.rate, o.warmup_requests), (Some(9), Some(3), Some(50.0), Some(1)));
        assert_eq!((o.rounds, o.idle_between_rounds), (Some(7), Some(Duration::from_secs(3))));
        assert_eq!(
            (o.duration, o.interval, o.cooldown),
            (Some(Duration::from_secs(2)), Some(Duration::from_millis(20)), Some(Duration::from_secs(1)))
        );
    }
}
