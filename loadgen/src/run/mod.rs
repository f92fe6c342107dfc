//! One run, of any kind, start to finish. Every kind goes through the same
//! stages, each taking the previous one's output:
//!
//! 0. [`prepare`]: the method a `[call]` names made callable, and the client's TLS, before
//!    anything else, so that a bad proto, method, JSON or certificate is the command line's
//!    error and nothing runs;
//! 1. the server: start the toy server (or reach a `--target`, or none for a watch);
//! 2. `run.json`: what the run was started with, so `loadgen report` can rebuild it;
//! 3. the client: the built-in load generator ([`builtin`]) or a process
//!    leaklab did not write ([`foreign`]), with the [`Measure`] that reads it;
//! 4. the [`Recorder`]: samples both processes into `samples.jsonl`, checks the caps;
//! 5. drive: the load and its cool-down, or the watch until the process exits;
//! 6. stop the client and the server, then the [`Summary`] with its verdicts;
//! 7. the exporters.

mod builtin;
mod foreign;
mod prepare;
mod server;

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use leaklab_probe::procfs;
use tokio::sync::watch;

pub use foreign::{PROGRESS_PREFIX, parse_progress, process_name};
pub use prepare::{Prepared, prepare};

use crate::baseline::BaselineComparison;
use crate::halt::{Halt, HaltReason, StopReason};
use crate::heap;
use crate::load::LoadCounters;
use crate::report::ci::{Entry, Results};
use crate::report::heap::HeapProfiles;
use crate::report::metrics::LiveBoard;
use crate::report::progress::{Progress, View};
use crate::report::{self, Report, RunDir, Written};
use crate::sample::{Guard, Measure, Observer, ProfileFailure, Recorder, Recording};
use crate::scenario::RunPlan;
use crate::summary::record::{RUN_RECORD, RecordedPlan, RunRecord};
use crate::summary::series::{self, Side};
use crate::summary::{Measured, Note, RunFacts, Summary};
use server::ServerSide;

/// Which server the run loads.
#[derive(Debug, Clone)]
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

/// How to run a plan (everything that is not part of it).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The server to load; `None` for a watch, which loads none.
    pub target: Option<TargetChoice>,
    /// Root of the reports tree (`reports/`).
    pub reports_dir: PathBuf,
    /// What to show while the run runs.
    pub view: View,
    /// Turns true when the user asks to stop (Ctrl-C, SIGTERM).
    pub stop: watch::Receiver<bool>,
    /// `--metrics-listen`: every sample is posted here as it is taken.
    pub live: Option<LiveBoard>,
    /// `--start-at`: the run waits for this time before it starts, so that several load generators start together.
    pub start_at: Option<SystemTime>,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub report: Report,
    /// Files written into `dir` after the samples, and the outputs that could not be written.
    pub written: Written,
}

impl RunOutcome {
    /// The run, beside its baseline if it has one, for the CI exporters.
    pub fn results<'a>(&'a self, command: &'static str, baseline: Option<&'a BaselineComparison>) -> Results<'a> {
        let summary = &self.report.summary;
        let entries = vec![Entry::Ran { summary, dir: &self.dir, baseline }];
        Results { command, started_at: &summary.started_at, entries }
    }

    /// What the console shows of the run, without a baseline.
    pub fn console(&self) -> crate::report::console::RunConsole<'_> {
        crate::report::console::RunConsole {
            summary: &self.report.summary,
            baseline: None,
            saved_as: None,
            dir: &self.dir,
        }
    }
}

/// The runtime a run drives its load on: one thread. A request is handed
/// along a chain of tasks (worker, tonic's buffer, hyper's dispatch, the h2
/// connection); on one thread every hand-off is a local wake instead of a
/// cross-thread one (a futex and a context switch), and the other cores stay
/// with the server that shares the machine. The sampler has its own thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// A side's open connections and RSS grown over the loaded part of the run, where the profiles were taken.
fn profiled_window(samples: &[crate::sample::Sample], side: Side) -> heap::go::Measured {
    let Some(window) = crate::sample::LoadWindow::find(samples) else { return heap::go::Measured::default() };
    heap::go::Measured {
        connections_grown: window.growth(samples, |s| side.of(s)?.open_connections()),
        rss_growth: window.growth(samples, |s| Some(side.of(s)?.rss_bytes)),
    }
}

/// Runs `plan` and writes its report.
pub async fn execute(plan: &RunPlan, options: RunOptions) -> anyhow::Result<RunOutcome> {
    if let Some(start_at) = options.start_at {
        wait_until(start_at, options.stop.clone()).await?;
    }
    let run_started = Instant::now();
    let started_wall = SystemTime::now();
    let prepared = prepare(plan, options.target.as_ref()).await?;
    let dir = RunDir::create(&options.reports_dir, plan.name(), SystemTime::now())?;
    let mut server = ServerSide::start(plan, options.target.as_ref(), &dir, &prepared).await?;
    // The load generator's own limits; a foreign client's are read once it runs.
    let own_fds = matches!(plan, RunPlan::Builtin(_)).then(|| procfs::fd_limits().ok()).flatten();
    let record = RunRecord {
        started_at: dir.started_at.clone(),
        plan: RecordedPlan::of(plan),
        target: server.info(),
        limits: server.limits(own_fds),
    };
    let record_path = dir.file(RUN_RECORD);
    std::fs::write(&record_path, serde_json::to_string_pretty(&record).expect("a run record serializes") + "\n")
        .with_context(|| format!("writing {}", record_path.display()))?;

    // One stop signal for the load, whatever its reason: the user's stop, a cap, a limit of the machine.
    let halt = Arc::new(Halt::default());
    let forward_user_stop = {
        let (halt, mut stop) = (Arc::clone(&halt), options.stop.clone());
        tokio::spawn(async move {
            if stop.wait_for(|stop| *stop).await.is_ok() {
                halt.trigger(HaltReason::Interrupted);
            }
        })
    };
    let live = options.live.clone().map(|board| (board, plan.name().to_owned()));
    let sampling = Sampling { dir: &dir, run_started, view: options.view, halt: Arc::clone(&halt), live };
    let mut notes = Vec::new();
    let (recording, driven) = match plan {
        RunPlan::Builtin(plan) => {
            let (recording, load, fault, attack) =
                builtin::run(plan, prepared, &mut server, &sampling, &options.stop).await?;
            (recording, Driven::Builtin { plan, load: Box::new(load), fault, attack })
        }
        RunPlan::Foreign(plan) => {
            let (recording, ended) = foreign::run(plan, &mut server, &sampling, &mut notes).await?;
            (recording, Driven::Foreign { plan, ended })
        }
    };
    forward_user_stop.abort();
    // Read while the server is still there.
    let target = server.info();
    let limits = server.limits(match &driven {
        Driven::Builtin { .. } => own_fds,
        Driven::Foreign { ended, .. } => ended.client_fds,
    });
    server.stop(&mut notes).await;
    if let (Driven::Foreign { ended, .. }, true) = (&driven, recording.samples.is_empty()) {
        anyhow::bail!("{}: nothing to judge: {}", plan.name(), foreign::unsampled(ended, &dir));
    }
    notes.extend(recording_notes(&recording));

    let stopped_by = match &driven {
        Driven::Builtin { load, .. } => load.stopped_by,
        Driven::Foreign { ended, .. } => ended.stopped_by,
    };
    if stopped_by == StopReason::Interrupted {
        notes.push(Note::Interrupted { requests: recording.samples.last().map_or(0, |s| s.requests()) });
    } else if *options.stop.borrow() {
        notes.push(Note::CooldownCut);
    }
    let facts = RunFacts {
        started_at: dir.started_at.clone(),
        target,
        samples_file: "samples.jsonl".to_owned(),
        sampling_busy: recording.busy,
        notes,
        limits,
        stopped_by,
        // A cap reached in the cool-down, after the load, stopped nothing.
        stopped_at: halt.reason().and_then(HaltReason::limit).filter(|_| stopped_by.at_limit()),
        fault: match &driven {
            Driven::Builtin { fault, .. } => fault.clone(),
            Driven::Foreign { .. } => None,
        },
        attack: match &driven {
            Driven::Builtin { attack, .. } => attack.clone(),
            Driven::Foreign { .. } => None,
        },
    };
    let samples = recording.samples;
    let mut summary = match &driven {
        Driven::Builtin { plan, load, .. } => {
            Summary::build(Measured::Builtin { plan, load: Some(load) }, &samples, facts)
        }
        Driven::Foreign { plan, ended } => Summary::build(foreign::measured(plan, ended), &samples, facts),
    };
    let heap_profiled = matches!(plan, RunPlan::Builtin(plan) if plan.sampling.heap_profile);
    if heap_profiled {
        let measured = [Side::Client, Side::Server].map(|side| series::checkpoint_growth(&samples, side));
        summary.heap_profile = heap::build(&dir.path, measured);
        if summary.heap_profile.is_none() {
            summary.notes.push(Note::HeapProfilesMissing);
        }
    }
    if let Driven::Foreign { ended, .. } = &driven {
        summary.client.channelz = ended.channelz.clone();
    }
    if let Driven::Foreign { plan, ended } = &driven
        && let Some(url) = &ended.pprof
    {
        let own = crate::heap::sites::OwnCode::prefixes(plan.own_code.clone());
        summary.profiles =
            heap::go::build(&dir.path, heap::Process::Client, url, &own, profiled_window(&samples, Side::Client));
    }
    if let Some(pprof) = server.pprof() {
        let own = crate::heap::sites::OwnCode::prefixes(pprof.own_code.clone());
        let window = profiled_window(&samples, Side::Server);
        summary.server_profiles = heap::go::build(&dir.path, heap::Process::Server, &pprof.url, &own, window);
    }
    let report = Report { summary, samples };
    let mut written = report::write_outputs(&report::RUN_OUTPUTS, &report, &dir.path);
    if let Driven::Builtin { load, .. } = &driven {
        written.extend(latency_log(load, started_wall, &dir.path));
    }
    if heap_profiled {
        let profiles = HeapProfiles::read(&dir.path);
        written.extend(report::write_outputs(&profiles.outputs(), &profiles, &dir.path));
    }
    Ok(RunOutcome { dir: dir.path, report, written })
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

/// `latency.hlog`: the load's latency histograms, losslessly, so runs of several hosts merge exactly.
pub fn latency_log(load: &crate::load::LoadReport, started: SystemTime, dir: &std::path::Path) -> Written {
    let mut histograms = vec![("sent", &load.latency_us)];
    if let Some(intended) = &load.latency_from_intended_us {
        histograms.push(("intended", intended));
    }
    let path = dir.join(LATENCY_LOG);
    let mut written = Written::default();
    match crate::stats::histogram_log::encode(&histograms, started, load.elapsed) {
        Ok(bytes) => match std::fs::write(&path, bytes) {
            Ok(()) => written.files.push(path),
            Err(error) => {
                written.errors.push(anyhow::Error::from(error).context(format!("writing {}", path.display())))
            }
        },
        Err(error) => written.errors.push(anyhow::anyhow!("writing {}: {error}", path.display())),
    }
    written
}

/// The file a built-in run keeps its latency histograms in.
pub const LATENCY_LOG: &str = "latency.hlog";

/// What every kind of run records through: its directory, its clock, its live view, its stop signal.
struct Sampling<'a> {
    dir: &'a RunDir,
    run_started: Instant,
    view: View,
    halt: Arc<Halt>,
    /// Where every sample is posted for `--metrics-listen`, under the scenario's name.
    live: Option<(LiveBoard, String)>,
}

impl Sampling<'_> {
    /// Starts the recorder on `measure`: samples every `interval` into `samples.jsonl`, shown live,
    /// each checked against `caps`.
    fn record(
        &self,
        measure: Box<dyn Measure>,
        counters: Arc<LoadCounters>,
        interval: Option<std::time::Duration>,
        caps: Option<crate::scenario::CapsPlan>,
    ) -> anyhow::Result<Recorder> {
        let path = self.dir.file("samples.jsonl");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Recorder::start(
            measure,
            counters,
            self.run_started,
            interval,
            Box::new(BufWriter::new(file)),
            observer(Progress::stderr(self.view).map(Progress::into_observer), self.live.clone()),
            caps.map(|caps| Guard { caps, halt: Arc::clone(&self.halt) }),
        )
        .context("starting the sampling thread")
    }
}

/// The progress view, and the live board when there is one, in one observer.
fn observer(progress: Option<Observer>, live: Option<(LiveBoard, String)>) -> Option<Observer> {
    let Some((board, scenario)) = live else { return progress };
    let mut progress = progress;
    Some(Box::new(move |sample| {
        board.post(&scenario, sample);
        if let Some(progress) = progress.as_mut() {
            progress(sample);
        }
    }))
}

/// What the client side did.
enum Driven<'a> {
    Builtin {
        plan: &'a crate::scenario::Plan,
        load: Box<crate::load::LoadReport>,
        fault: Option<crate::fault::FaultLog>,
        attack: Option<crate::attack::AttackReport>,
    },
    Foreign {
        plan: &'a crate::scenario::ForeignPlan,
        ended: foreign::Ended,
    },
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
    let ProfileFailure { process, label, error } = failure;
    Note::ProfileFetchFailed { process: process.name().to_owned(), label: label.to_owned(), error }
}

/// [`runtime`], and a flag that Ctrl-C and SIGTERM turn true (see [`stop_on_signals`]).
pub fn runtime_with_stop() -> std::io::Result<(tokio::runtime::Runtime, watch::Receiver<bool>)> {
    with_stop(runtime()?)
}

/// `runtime`, and a flag that Ctrl-C and SIGTERM turn true (see [`stop_on_signals`]).
pub fn with_stop(
    runtime: tokio::runtime::Runtime,
) -> std::io::Result<(tokio::runtime::Runtime, watch::Receiver<bool>)> {
    let (stop_tx, stop) = watch::channel(false);
    runtime.spawn(stop_on_signals(stop_tx));
    Ok((runtime, stop))
}

/// First SIGINT or SIGTERM: stop the load, cool down no further, write the
/// report. A second one: quit at once (the server still dies with us).
async fn stop_on_signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    for round in 0.. {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        if round > 0 {
            // The dashboard hides the cursor; exiting here skips the drop that shows it again.
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprint!("\x1b[?25h");
            }
            eprintln!("\nloadgen: stopping now, without a report");
            std::process::exit(crate::exit::INTERRUPTED.into());
        }
        eprintln!("\nloadgen: stopping the load and writing the report (interrupt again to quit at once)");
        let _ = stop.send(true);
    }
}
