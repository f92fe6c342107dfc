//! `loadgen watch`'s flags: a process leaklab did not write, its warm-up, its tolerances, and where its
//! profiles and channelz are.

use std::time::Duration;

use clap::Args;
use leaklab_engine::run::{RunOptions, process_name};
use leaklab_engine::scenario::{self, ForeignClient, RunPlan, RuntimeChoice, WatchSpec};

use super::{CiArgs, Dashboard, OwnCode, ReportsDir};
use crate::live::progress::View;
use crate::session::Session;

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// A running process to watch; it is left running.
    #[arg(long, required_unless_present = "command", conflicts_with = "command")]
    pub(crate) pid: Option<u32>,

    /// Stop watching after this long.
    #[arg(long, default_value = "60s", value_parser = super::duration)]
    pub(crate) duration: Duration,

    /// Time between two samples (at least 10ms).
    #[arg(long, default_value = "100ms", value_parser = super::sample_interval)]
    pub(crate) interval: Duration,

    /// Samples from the first this-long are not judged: a process that has just started is still warming up.
    #[arg(long, default_value = "1s", value_parser = super::duration)]
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

    #[command(flatten)]
    pub(crate) reports: ReportsDir,

    #[command(flatten)]
    pub(crate) dashboard: Dashboard,

    /// A Go process's net/http/pprof base URL (http://HOST:PORT/debug/pprof): its heap and goroutine
    /// profiles are fetched when warm-up ends and when the watch ends, and diffed down to its own call
    /// sites. {pprof_addr} in it and in the command becomes a free loopback HOST:PORT.
    #[arg(long, value_name = "URL", value_parser = scenario::pprof_url)]
    pub(crate) pprof: Option<String>,

    /// Find the process's own call sites with its runtime's profiler, which leaklab arranges: V8's
    /// sampling heap profiler in Node and tracemalloc in Python (an agent loaded through NODE_OPTIONS and
    /// PYTHONPATH, for a command leaklab starts), grpc-java's orphan reports and class histograms in a
    /// JVM. A Go or Rust process is profiled through --pprof.
    #[arg(long)]
    pub(crate) call_sites: bool,

    #[command(flatten)]
    pub(crate) own_code: OwnCode,

    /// The process's gRPC channelz service (HOST:PORT): its channels, subchannels and sockets, as its
    /// gRPC runtime counts them, are read beside every sample. {channelz_addr} in it and in the command
    /// becomes a free loopback HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = scenario::channelz_address)]
    pub(crate) channelz: Option<String>,

    /// Whose garbage-collected heap to read after a full collection, and judge: auto (a java or node
    /// process, from its executable), jvm, v8, or none (anonymous RSS, as for any process).
    #[arg(long, value_name = "RUNTIME", default_value = "auto", value_parser = runtime_choice)]
    pub(crate) runtime: RuntimeChoice,

    #[command(flatten)]
    pub(crate) ci: CiArgs,

    /// The command to start and watch, after `--`; it is stopped at the end if still running.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

impl WatchArgs {
    /// The foreign plan of this watch, checked as an external scenario's is; an error names the flag.
    pub(crate) fn plan(&self) -> anyhow::Result<RunPlan> {
        let client = match self.pid {
            Some(pid) => ForeignClient::Pid(pid),
            None if self.command.first().is_none_or(|program| program.is_empty()) => {
                anyhow::bail!("watch: no command given after --")
            }
            None => ForeignClient::Command(self.command.clone()),
        };
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
        let description = match &client {
            ForeignClient::Command(argv) => format!("`{}`, watched from outside", argv.join(" ")),
            ForeignClient::Pid(pid) => format!("process {pid}, watched from outside"),
        };
        let watch = WatchSpec {
            name: format!("watch-{}", process_name(&client)),
            description,
            client,
            duration_s: self.duration.as_secs_f64(),
            interval_ms: self.interval.as_millis() as u64,
            warmup_s: self.warmup.as_secs_f64(),
            warmup_requests: self.warmup_requests,
            tolerance_bytes_per_request: self.tolerance_per_request as f64,
            tolerance_bytes_per_second: self.tolerance as f64,
            pprof: self.pprof.clone(),
            own_code: self.own_code.prefixes.clone(),
            call_sites: self.call_sites,
            channelz: self.channelz.clone(),
            runtime: self.runtime,
        };
        let plan = watch.plan();
        let flag = |field: &str| format!("--{}", field.replace('_', "-"));
        plan.check(&flag).map_err(|(field, reason)| anyhow::anyhow!("{}: {reason}", flag(field)))?;
        Ok(RunPlan::Foreign(Box::new(plan)))
    }

    pub(crate) fn options(&self, session: &Session, name: &str) -> RunOptions {
        let view = if self.dashboard.on { View::Dashboard } else { View::Quiet };
        let observer = crate::live::observer(view, session.live.as_ref(), name);
        let (stop, reports_dir) = (session.stop.clone(), self.reports.path.clone());
        RunOptions { target: None, reports_dir, stop, observer, start_at: None }
    }
}

fn runtime_choice(name: &str) -> Result<RuntimeChoice, String> {
    RuntimeChoice::parse(name).ok_or_else(|| format!("{name:?} is not one of {}", RuntimeChoice::NAMES.join(", ")))
}
