//! The plan of a run whose client is a process leaklab did not write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leaklab_verdict::VerdictPlan;
use serde::{Deserialize, Serialize};

use super::plan::{CapsPlan, ServerPlan};
use leaklab_probe::GcRuntime;
use leaklab_probe::procfs::Proc;

/// A run whose client is a process leaklab did not write: a command it
/// starts (an `[external]` scenario's, or `loadgen watch -- CMD`) or one
/// already running (`loadgen watch --pid`), sampled from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignPlan {
    /// The run directory's name under `reports/`: the scenario's name, or `watch-` and the process's.
    pub name: String,
    /// The scenario file it came from; `None` for `loadgen watch`.
    pub source: Option<PathBuf>,
    pub description: String,
    pub client: ForeignClient,
    /// The watch ends after this long (a started command is then stopped).
    pub duration: Duration,
    /// Samples from the first this-long are not judged: the process is still starting.
    pub warmup: Duration,
    /// Nor are samples before the client reported this many requests (answered and failed): a
    /// garbage-collected runtime sizes its heap over its first thousands. 0: the warm-up is `warmup` alone.
    pub warmup_requests: u64,
    /// Time between two samples.
    pub interval: Duration,
    /// The toy server to start first, and watch too; `{addr}` in the command becomes its address.
    pub server: Option<ServerPlan>,
    pub verdict: VerdictPlan,
    /// The command is stopped when either process reaches one; `None` for `loadgen watch`.
    pub caps: Option<CapsPlan>,
    /// A Go process's `net/http/pprof` base URL (`http://HOST:PORT/debug/pprof`), or a Rust service's pprof
    /// heap profile's: its profiles are fetched when warm-up ends, at the load's checkpoints and when the
    /// watch ends. `{pprof_addr}` in it and in the command becomes a free loopback HOST:PORT.
    pub pprof: Option<String>,
    /// Function name prefixes (or parts of file paths) of the client's own code, for its call sites;
    /// empty: the runtime's default rule.
    pub own_code: Vec<String>,
    /// Whether leaklab arranges the runtime's own profiler (`--call-sites`): its agent in a Node or
    /// Python command it starts, the class histogram of a JVM; with `pprof`, that endpoint is the profiler.
    pub call_sites: bool,
    /// The client's gRPC channelz service, `HOST:PORT`: its channels, subchannels and sockets are read
    /// beside every sample. `{channelz_addr}` in it and in the command becomes a free loopback HOST:PORT.
    pub channelz: Option<String>,
    /// Whose garbage-collected heap to read after a collection, and judge: the runtime the command or
    /// process is (`auto`), a named one, or none.
    pub runtime: RuntimeChoice,
}

impl ForeignPlan {
    /// What a watch and an external scenario are both checked for: the warm-up ends before the watch,
    /// and own code names the packages of a pprof endpoint. An error is the field at fault and why; the
    /// fields it names are written by `name` (a flag, or a scenario key).
    pub fn check(&self, name: &dyn Fn(&str) -> String) -> Result<(), (&'static str, String)> {
        if self.warmup >= self.duration {
            let duration = humantime::format_duration(self.duration);
            return Err(("warmup", format!("must be shorter than {} ({duration})", name("duration"))));
        }
        if !self.own_code.is_empty() && self.pprof.is_none() && !self.call_sites {
            let needs = format!("needs {} or {}: it names the code of its profiles", name("call_sites"), name("pprof"));
            return Err(("own_code", needs));
        }
        Ok(())
    }
}

/// `loadgen watch`'s options: a process sampled from outside, without a server of leaklab's or caps,
/// judged per request it reports or per second. `run.json` keeps them as they are here, so a watch
/// rebuilt by `loadgen report` is the watch that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchSpec {
    /// The run directory's name: `watch-` and the process's.
    pub name: String,
    pub description: String,
    pub client: ForeignClient,
    /// The watch ends after this many seconds.
    pub duration_s: f64,
    /// Time between two samples, in milliseconds.
    pub interval_ms: u64,
    /// Samples from the first this-many seconds are not judged.
    pub warmup_s: f64,
    /// Nor are samples before the process reported this many requests. Absent in records written
    /// before it was kept.
    #[serde(default)]
    pub warmup_requests: u64,
    /// Growth at or below this is not a leak, per request (a process that reports its requests)…
    pub tolerance_bytes_per_request: f64,
    /// …or per second (one that does not).
    pub tolerance_bytes_per_second: f64,
    /// A Go process's `net/http/pprof` base URL.
    #[serde(default)]
    pub pprof: Option<String>,
    /// Function name prefixes (or parts of file paths) of the process's own code.
    #[serde(default)]
    pub own_code: Vec<String>,
    /// `--call-sites`: leaklab arranged the runtime's profiler.
    #[serde(default)]
    pub call_sites: bool,
    /// The process's gRPC channelz service, `HOST:PORT`.
    #[serde(default)]
    pub channelz: Option<String>,
    /// Whose garbage-collected heap to read (`auto`, `jvm`, `v8`, `none`). Absent in records written before
    /// it was kept: `auto`.
    #[serde(default)]
    pub runtime: RuntimeChoice,
}

impl WatchSpec {
    /// The foreign plan of this watch.
    pub fn plan(&self) -> ForeignPlan {
        ForeignPlan {
            name: self.name.clone(),
            source: None,
            description: self.description.clone(),
            client: self.client.clone(),
            duration: Duration::from_secs_f64(self.duration_s),
            warmup: Duration::from_secs_f64(self.warmup_s),
            warmup_requests: self.warmup_requests,
            interval: Duration::from_millis(self.interval_ms),
            server: None,
            verdict: VerdictPlan {
                tolerance_bytes_per_request: self.tolerance_bytes_per_request,
                tolerance_bytes_per_second: self.tolerance_bytes_per_second,
                expect_client: None,
                expect_server: None,
                max_failed_requests: None,
            },
            caps: None,
            pprof: self.pprof.clone(),
            own_code: self.own_code.clone(),
            call_sites: self.call_sites,
            channelz: self.channelz.clone(),
            runtime: self.runtime,
        }
    }

    /// The options of the watch `plan` is.
    pub fn of(plan: &ForeignPlan) -> WatchSpec {
        WatchSpec {
            name: plan.name.clone(),
            description: plan.description.clone(),
            client: plan.client.clone(),
            duration_s: plan.duration.as_secs_f64(),
            interval_ms: plan.interval.as_millis() as u64,
            warmup_s: plan.warmup.as_secs_f64(),
            warmup_requests: plan.warmup_requests,
            tolerance_bytes_per_request: plan.verdict.tolerance_bytes_per_request,
            tolerance_bytes_per_second: plan.verdict.tolerance_bytes_per_second,
            pprof: plan.pprof.clone(),
            own_code: plan.own_code.clone(),
            call_sites: plan.call_sites,
            channelz: plan.channelz.clone(),
            runtime: plan.runtime,
        }
    }
}

/// The foreign client's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignClient {
    /// A command to start (argv), stopped at the end if it is still running.
    Command(Vec<String>),
    /// A running process, left running at the end.
    Pid(u32),
}

/// Which runtime's heap to read: the one the command or process is (`auto`), a named one, or none (judge
/// anonymous RSS as for any process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeChoice {
    #[default]
    Auto,
    Jvm,
    V8,
    None,
}

impl RuntimeChoice {
    pub const NAMES: [&'static str; 4] = ["auto", "jvm", "v8", "none"];

    pub fn parse(name: &str) -> Option<RuntimeChoice> {
        match name {
            "auto" => Some(RuntimeChoice::Auto),
            "jvm" | "java" => Some(RuntimeChoice::Jvm),
            "v8" | "node" => Some(RuntimeChoice::V8),
            "none" => Some(RuntimeChoice::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RuntimeChoice::Auto => "auto",
            RuntimeChoice::Jvm => "jvm",
            RuntimeChoice::V8 => "v8",
            RuntimeChoice::None => "none",
        }
    }

    /// The runtime of a command about to start, from its program's name; `None` when it is not known
    /// yet (a script may still `exec` one: the process tells later).
    pub fn of_program(self, program: &str) -> Option<GcRuntime> {
        match self {
            RuntimeChoice::Auto => runtime_of_name(program),
            RuntimeChoice::Jvm => Some(GcRuntime::Jvm),
            RuntimeChoice::V8 => Some(GcRuntime::V8),
            RuntimeChoice::None => None,
        }
    }

    /// Whether a command about to start may be a JVM, or start one (a script that `exec`s `java`): it
    /// then gets what lets its native memory be read.
    pub fn may_start_jvm(self, program: &str) -> bool {
        match self {
            RuntimeChoice::Auto => runtime_of_name(program) != Some(GcRuntime::V8),
            RuntimeChoice::Jvm => true,
            RuntimeChoice::V8 | RuntimeChoice::None => false,
        }
    }

    /// The runtime of a running process: the one chosen, or the one its executable is.
    pub fn of_process(self, pid: u32) -> Option<GcRuntime> {
        match self {
            RuntimeChoice::Auto => {
                let exe = std::fs::read_link(Proc::Pid(pid).path("exe")).ok()?;
                runtime_of_name(&exe.to_string_lossy())
            }
            other => other.of_program(""),
        }
    }
}

/// `java` is a JVM, `node` or `nodejs` V8, by the file name of a path.
fn runtime_of_name(path: &str) -> Option<GcRuntime> {
    let name = Path::new(path).file_name()?.to_string_lossy();
    match name.as_ref() {
        "java" => Some(GcRuntime::Jvm),
        "node" | "nodejs" => Some(GcRuntime::V8),
        _ => None,
    }
}
