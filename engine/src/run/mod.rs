//! One run, of any kind, start to finish. Every kind goes through the same
//! stages, each taking the previous one's output:
//!
//! 0. [`prepare`]: the method a `[call]` names made callable, and the client's TLS, before
//!    anything else, so that a bad proto, method, JSON or certificate is the command line's
//!    error and nothing runs;
//! 1. the server: start the toy server (or reach a `--target`, or none for a watch);
//! 2. `run.json`: what the run was started with, so `loadgen report` can rebuild it;
//! 3. the client: the built-in load generator ([`builtin`]) or a process
//!    leaklab did not write ([`foreign`]), with the [`Measure`](crate::sample::Measure) that reads it;
//! 4. the [`Recorder`]: samples both processes into `samples.jsonl`, checks the caps,
//!    shows each sample to the observer the caller passed in;
//! 5. drive: the load and its cool-down, or the watch until the process exits;
//! 6. stop the client and the server, then the [`Summary`] with its verdicts, returned
//!    with the samples: the caller writes the outputs.

mod builtin;
mod foreign;
mod prepare;
mod profiling;
mod progress;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use leaklab_probe::procfs;
use tokio::sync::watch;

pub use foreign::process_name;
pub use prepare::{Prepared, prepare};
pub use progress::{PROGRESS_PREFIX, Progress, parse_progress};

use crate::halt::{Halt, HaltReason, StopReason};
use crate::heap;
use crate::latency::histogram_log::LatencyLog;
use crate::load::LoadCounters;
use crate::run_dir::{self, RunDir};
use crate::sample::{
    Guard, Measure, MetricsEndpoint, Observer, ProfileFailure, Recorder, RecorderSetup, Recording, Sample, ScrapeError,
};
use crate::scenario::{CapsPlan, RunPlan};
use crate::summary::record::{RecordedPlan, RunRecord};
use crate::summary::series::{self, Side};
use crate::summary::{BuiltinRun, ClientRun, ForeignRun, Note, RunFacts, Summary};
use server::ServerSide;

/// Which server the run loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChoice {
    /// Start this `leaklab-server` binary on a free loopback port and measure it.
    Spawn { server_bin: PathBuf },
    /// Load a server that is already running at `host:port`; measured when it is a process on this
    /// machine named by `server_pid`, or through its metrics endpoint.
    External {
        authority: String,
        server_pid: Option<u32>,
        server_metrics: Option<ServerMetrics>,
        /// `--server-pprof`: a Go server's `net/http/pprof` endpoint.
        server_pprof: Option<ServerPprof>,
    },
}

/// A server's Prometheus metrics endpoint (`--server-metrics`) and the metrics to record from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetrics {
    pub url: String,
    /// `--server-metric`: recorded besides the standard ones.
    pub named: Vec<String>,
}

/// A Go server's `net/http/pprof` base URL (`--server-pprof`) and its own packages (`--own-code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPprof {
    pub url: String,
    /// Function name prefixes; empty: the default rule (see [`crate::heap::sites::OwnCode`]).
    pub own_code: Vec<String>,
}

impl TargetChoice {
    /// The toy server at `server_bin`, or the `leaklab-server` beside this program.
    pub fn spawn(server_bin: Option<PathBuf>) -> anyhow::Result<TargetChoice> {
        let server_bin = match server_bin {
            Some(path) => path,
            None => std::env::current_exe().context("locating this binary")?.with_file_name("leaklab-server"),
        };
        Ok(TargetChoice::Spawn { server_bin })
    }

    /// What can be checked before anything runs: the server binary is there; a server already running is
    /// at HOST:PORT, its process is there, and its metrics endpoint answers with what measures it. An
    /// error names the flag.
    pub fn check(&self) -> anyhow::Result<()> {
        let (authority, server_pid, server_metrics) = match self {
            TargetChoice::Spawn { server_bin } if !server_bin.is_file() => anyhow::bail!(
                "the server binary {} does not exist: build it with `cargo build --release -p leaklab-server`, \
                 pass --server-bin PATH, or load a running server with --target HOST:PORT",
                server_bin.display()
            ),
            TargetChoice::Spawn { .. } => return Ok(()),
            TargetChoice::External { authority, server_pid, server_metrics, .. } => {
                (authority, server_pid, server_metrics)
            }
        };
        if authority.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
            anyhow::bail!("--target {authority:?}: expected HOST:PORT, like 127.0.0.1:50051");
        }
        if let Some(pid) = server_pid
            && !procfs::Proc::Pid(*pid).is_running()
        {
            anyhow::bail!("--server-pid {pid}: no such process");
        }
        if let Some(metrics) = server_metrics {
            // One scrape now, so that an endpoint that cannot measure the server stops the run before it starts.
            MetricsEndpoint::open(&metrics.url, &metrics.named, server_pid.is_none()).map_err(
                |error| match &error {
                    ScrapeError::Missing { name, .. } if metrics.named.contains(name) => {
                        anyhow::anyhow!("--server-metric {name}: {error}")
                    }
                    _ => anyhow::anyhow!("--server-metrics {error}"),
                },
            )?;
        }
        Ok(())
    }
}

/// How to run a plan (everything that is not part of it).
pub struct RunOptions {
    /// The server to load; `None` for a watch, which loads none.
    pub target: Option<TargetChoice>,
    /// Root of the reports tree (`reports/`).
    pub reports_dir: PathBuf,
    /// Turns true when the user asks to stop (Ctrl-C, SIGTERM).
    pub stop: watch::Receiver<bool>,
    /// Sees every sample as it is taken, on the sampling thread: the caller's live views.
    pub observer: Option<Observer>,
    /// `--start-at`: the run waits for this time before it starts, so that several load generators start together.
    pub start_at: Option<SystemTime>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("target", &self.target)
            .field("reports_dir", &self.reports_dir)
            .field("observer", &self.observer.is_some())
            .field("start_at", &self.start_at)
            .finish_non_exhaustive()
    }
}

/// A finished run: its directory (holding `run.json`, `samples.jsonl` and the processes' logs), its
/// summary and samples, and what its outputs need besides.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: RunDir,
    pub summary: Summary,
    pub samples: Vec<Sample>,
    /// The built-in client's latency histograms, to keep losslessly; `None` for a foreign client.
    pub latency: Option<LatencyLog>,
    /// Whether both processes dumped heap profiles into the directory (`--heap-profile`).
    pub heap_profiled: bool,
}

/// The runtime a run drives its load on: one thread. A request is handed
/// along a chain of tasks (worker, tonic's buffer, hyper's dispatch, the h2
/// connection); on one thread every hand-off is a local wake instead of a
/// cross-thread one (a futex and a context switch), and the other cores stay
/// with the server that shares the machine. The sampler has its own thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Runs `plan`; its directory holds what the run recorded, its outputs are the caller's to write.
pub async fn execute(plan: &RunPlan, options: RunOptions) -> anyhow::Result<RunOutcome> {
    let RunOptions { target, reports_dir, stop, observer, start_at } = options;
    if let Some(start_at) = start_at {
        wait_until(start_at, stop.clone()).await?;
    }
    let run_started = Instant::now();
    let started_wall = SystemTime::now();
    let prepared = prepare(plan, target.as_ref()).await?;
    let now = SystemTime::now();
    let dir = RunDir::create(&reports_dir, plan.name(), now)?;
    let started_at = run_dir::utc_seconds(now);
    let mut server = ServerSide::start(plan, target.as_ref(), &dir, &prepared).await?;
    // The load generator's own limits; a foreign client's are read once it runs.
    let own_fds = matches!(plan, RunPlan::Builtin(_)).then(|| procfs::fd_limits().ok()).flatten();
    let plan_record = RecordedPlan::of(plan);
    let record = RunRecord { started_at, plan: plan_record, target: server.info(), limits: server.limits(own_fds) };
    dir.write_record(&record)?;

    // One stop signal for the load, whatever its reason: the user's stop, a cap, a limit of the machine.
    let halt = Arc::new(Halt::default());
    let forward_user_stop = {
        let (halt, mut stop) = (Arc::clone(&halt), stop.clone());
        tokio::spawn(async move {
            if stop.wait_for(|stop| *stop).await.is_ok() {
                halt.trigger(HaltReason::Interrupted);
            }
        })
    };
    let mut sampling = Sampling { dir: &dir, run_started, halt: Arc::clone(&halt), observer };
    let mut notes = Vec::new();
    let driven = match plan {
        RunPlan::Builtin(plan) => {
            let (recording, load, fault, attack) =
                builtin::run(plan, prepared, &mut server, &mut sampling, &stop).await?;
            Driven::Builtin { plan, recording, load: Box::new(load), fault, attack }
        }
        RunPlan::Foreign(plan) => {
            let (recording, ended) = foreign::run(plan, &mut server, &mut sampling, &mut notes).await?;
            Driven::Foreign { plan, recording, ended }
        }
    };
    forward_user_stop.abort();
    // Read while the server is still there.
    let target = server.info();
    let limits = server.limits(driven.client_fds(own_fds));
    server.stop(&mut notes).await;
    let recording = driven.recording();
    if let Driven::Foreign { ended, .. } = &driven
        && recording.samples.is_empty()
    {
        anyhow::bail!("{}: nothing to judge: {}", plan.name(), foreign::unsampled(ended, &dir));
    }
    notes.extend(recording_notes(recording));
    let stopped_by = driven.stopped_by();
    if stopped_by == StopReason::Interrupted {
        notes.push(Note::Interrupted { requests: recording.samples.last().map_or(0, Sample::requests) });
    } else if *stop.borrow() {
        notes.push(Note::CooldownCut);
    }
    let facts = RunFacts {
        sampling_busy: recording.busy,
        notes,
        // A cap reached in the cool-down, after the load, stopped nothing.
        stopped_at: halt.reason().and_then(HaltReason::limit).filter(|_| stopped_by.at_limit()),
        ..RunFacts::new(record.started_at, target, limits, stopped_by)
    };
    let facts = driven.analyse(facts, &dir, server.pprof());
    Ok(driven.summarize(dir, facts, started_wall))
}

/// Sleeps until `time`, said on stderr; a time already past starts at once. The user's stop ends the wait.
async fn wait_until(time: SystemTime, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let Ok(wait) = time.duration_since(SystemTime::now()) else { return Ok(()) };
    eprintln!("loadgen: starting at {} ({:.1} s from now)", humantime::format_rfc3339_millis(time), wait.as_secs_f64());
    tokio::select! {
        () = tokio::time::sleep(wait) => Ok(()),
        _ = stop.wait_for(|stop| *stop) => anyhow::bail!("interrupted before --start-at"),
    }
}

/// What every kind of run records through: its directory, its clock, its stop signal, its observer.
struct Sampling<'a> {
    dir: &'a RunDir,
    run_started: Instant,
    halt: Arc<Halt>,
    /// Taken by the one recorder the run starts.
    observer: Option<Observer>,
}

impl Sampling<'_> {
    /// Starts the recorder on `measure`: samples every `interval` into `samples.jsonl`, shown to the
    /// observer, each checked against `caps`.
    fn record(
        &mut self,
        measure: Box<dyn Measure>,
        counters: Arc<LoadCounters>,
        interval: Option<std::time::Duration>,
        caps: Option<CapsPlan>,
    ) -> anyhow::Result<Recorder> {
        let setup = RecorderSetup {
            counters,
            run_started: self.run_started,
            interval,
            sink: Box::new(self.dir.samples_writer()?),
            observer: self.observer.take(),
            guard: caps.map(|caps| Guard { caps, halt: Arc::clone(&self.halt) }),
        };
        Ok(Recorder::start(measure, setup)?)
    }
}

/// What the client side did.
enum Driven<'a> {
    Builtin {
        plan: &'a crate::scenario::Plan,
        recording: Recording,
        load: Box<crate::load::LoadReport>,
        fault: Option<crate::fault::FaultLog>,
        attack: Option<crate::attack::AttackReport>,
    },
    Foreign {
        plan: &'a crate::scenario::ForeignPlan,
        recording: Recording,
        ended: foreign::Ended,
    },
}

impl Driven<'_> {
    fn recording(&self) -> &Recording {
        match self {
            Driven::Builtin { recording, .. } | Driven::Foreign { recording, .. } => recording,
        }
    }

    fn stopped_by(&self) -> StopReason {
        match self {
            Driven::Builtin { load, .. } => load.stopped_by,
            Driven::Foreign { ended, .. } => ended.stopped_by,
        }
    }

    /// The client's fd limits: the load generator's own, or the foreign process's as read while it ran.
    fn client_fds(&self, own: Option<procfs::FdLimits>) -> Option<procfs::FdLimits> {
        match self {
            Driven::Builtin { .. } => own,
            Driven::Foreign { ended, .. } => ended.client_fds,
        }
    }

    /// The facts only this kind of run has, and the profiles it took, analysed.
    fn analyse(&self, mut facts: RunFacts, dir: &RunDir, server_pprof: Option<&ServerPprof>) -> RunFacts {
        let samples = &self.recording().samples;
        match self {
            Driven::Builtin { plan, fault, attack, .. } => {
                facts.fault = fault.clone();
                facts.attack = attack.clone();
                if plan.sampling.heap_profile {
                    let measured = [Side::Client, Side::Server].map(|side| series::checkpoint_growth(samples, side));
                    facts.heap_profile = heap::build(&dir.path, measured);
                    if facts.heap_profile.is_none() {
                        facts.notes.push(Note::HeapProfilesMissing);
                    }
                }
            }
            Driven::Foreign { plan, ended, .. } => {
                facts.channelz = ended.channelz.clone();
                facts.runtime_heap = ended.runtime_heap.clone();
                facts.orphaned_channels = ended.orphans.clone();
                facts.notes.extend(ended.runtime_heap.iter().flat_map(foreign::runtime_heap_notes));
                let window = profiled_window(samples, Side::Client);
                let orphans = ended.orphans.as_ref();
                facts.profiles = match &ended.profiled {
                    Some(profiled) => {
                        let source = heap::profiles::Source {
                            url: &profiled.source,
                            runtime: profiled.runtime,
                            own_code: &plan.own_code,
                        };
                        match profiled.runtime {
                            Some(heap::own::CodeRuntime::Jvm) => {
                                heap::profiles::build_jvm(&dir.path, Side::Client, source, orphans, window)
                            }
                            _ => heap::profiles::build(&dir.path, Side::Client, source, window),
                        }
                    }
                    // grpc-java's reports name the call sites without a profiler.
                    None => orphans.and_then(|orphans| {
                        let url = "grpc-java's orphaned-channel reports";
                        let source = heap::profiles::Source { url, runtime: None, own_code: &plan.own_code };
                        heap::profiles::build_jvm(&dir.path, Side::Client, source, Some(orphans), window)
                    }),
                };
            }
        }
        if let Some(pprof) = server_pprof {
            let source = heap::profiles::Source { url: &pprof.url, runtime: None, own_code: &pprof.own_code };
            let window = profiled_window(samples, Side::Server);
            facts.server_profiles = heap::profiles::build(&dir.path, Side::Server, source, window);
        }
        facts
    }

    /// The summary of the run, with its samples and what the outputs need besides.
    fn summarize(self, dir: RunDir, facts: RunFacts, started_wall: SystemTime) -> RunOutcome {
        match self {
            Driven::Builtin { plan, recording, load, .. } => {
                let summary = Summary::build(&BuiltinRun { plan, load: Some(&load) }, &recording.samples, facts);
                let latency = load.latency_log(started_wall);
                let heap_profiled = plan.sampling.heap_profile;
                RunOutcome { dir, summary, samples: recording.samples, latency: Some(latency), heap_profiled }
            }
            Driven::Foreign { plan, recording, ended } => {
                let run = ForeignRun { plan, command: ended.command(plan) };
                let summary = Summary::build(&run as &dyn ClientRun, &recording.samples, facts);
                RunOutcome { dir, summary, samples: recording.samples, latency: None, heap_profiled: false }
            }
        }
    }
}

/// A side's open connections and RSS grown over the loaded part of the run, where the profiles were taken.
fn profiled_window(samples: &[Sample], side: Side) -> heap::profiles::Measured {
    let Some(window) = crate::sample::LoadWindow::find(samples) else { return heap::profiles::Measured::default() };
    heap::profiles::Measured {
        connections_grown: window.growth(samples, |s| s.process(side)?.open_connections()),
        rss_growth: window.growth(samples, |s| Some(s.process(side)?.rss_bytes)),
    }
}

/// What the recorder met on the way, as notes.
fn recording_notes(recording: &Recording) -> Vec<Note> {
    let mut notes = Vec::new();
    if let Some(error) = &recording.write_error {
        notes.push(Note::SamplesWriteFailed { error: error.to_string() });
    }
    if let (count @ 1.., Some(reason)) = &recording.settle_errors {
        notes.push(Note::SettleFailed { checkpoints: *count, reason: reason.clone() });
    }
    if recording.client_errors > 0 {
        notes.push(Note::ClientUnreadable { samples: recording.client_errors });
    }
    notes.extend(recording.profile_failures.iter().cloned().map(profile_note));
    notes
}

fn profile_note(failure: ProfileFailure) -> Note {
    let ProfileFailure { process, moment, error } = failure;
    Note::ProfileFetchFailed { process, label: moment, error }
}
