//! One run, start to finish: start (or reach) the server, sample both
//! processes, drive the load, cool down, stop the server, and write the
//! report. Every step takes the previous step's output and nothing else.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use leaklab_probe::SnapshotReader;
use leaklab_probe::procfs::{self, Proc};
use tokio::sync::watch;

use crate::fault::FaultProxy;
use crate::load::{self, Channels, Halt, HaltReason, LoadCounters, StopReason};
use crate::report::progress::{Progress, View};
use crate::report::rebuild::{RUN_RECORD, RunRecord};
use crate::report::summary::{Limits, RunFacts, TargetInfo, TargetKind};
use crate::report::{self, Report, RunDir, Summary};
use crate::sample::{Guard, LiveMeasure, NetworkProbe, NetworkSample, Phase, Recorder, Sample};
use crate::scenario::Plan;
use crate::target::{self, ServerControl, ServerProcess};

/// Which server the run loads.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// Start this `leaklab-server` binary on a free loopback port and measure it.
    Spawn { server_bin: PathBuf },
    /// Load a server that is already running at `host:port`; it is not measured.
    External { authority: String },
}

/// How to run a plan (everything that is not part of the scenario).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: TargetChoice,
    /// Root of the reports tree (`reports/`).
    pub reports_dir: PathBuf,
    /// What to show while the run runs.
    pub view: View,
    /// Turns true when the user asks to stop (Ctrl-C, SIGTERM).
    pub stop: watch::Receiver<bool>,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: Summary,
    pub samples: Vec<Sample>,
    /// Files written into `dir` after the samples.
    pub written: Vec<PathBuf>,
    /// Outputs that could not be written; the others were.
    pub export_errors: Vec<anyhow::Error>,
}

/// How long a stopped server may take to exit before it is killed.
const SERVER_EXIT_GRACE: Duration = Duration::from_secs(8);
/// How long to wait for the readiness probe's connection to close at the server.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The runtime a run drives its load on: one thread. A request is handed
/// along a chain of tasks (worker, tonic's buffer, hyper's dispatch, the h2
/// connection); on one thread every hand-off is a local wake instead of a
/// cross-thread one (a futex and a context switch), and the other cores stay
/// with the server that shares the machine. The sampler has its own thread.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Runs `plan` and writes its report.
pub async fn execute(plan: &Plan, options: RunOptions) -> anyhow::Result<RunOutcome> {
    let run_started = Instant::now();
    let dir = RunDir::create(&options.reports_dir, &plan.name, SystemTime::now())?;

    let (server, mut control, authority) = match &options.target {
        TargetChoice::Spawn { server_bin } => {
            let mut args = plan.server.args();
            if plan.sampling.heap_profile {
                args.push("--heap-profile".to_owned());
            }
            let (process, control) = ServerProcess::spawn(server_bin, &args, &dir.file("server.log"))?;
            let authority = process.addr.to_string();
            (Some(process), Some(control), authority)
        }
        TargetChoice::External { authority } => (None, None, authority.clone()),
    };
    target::wait_until_serving(&authority, target::READY_TIMEOUT).await?;
    if let Some(control) = control.as_mut() {
        settle(control).await;
    }
    let limits = Limits {
        client_fds: procfs::fd_limits().ok(),
        server_fds: server.as_ref().and_then(|s| procfs::fd_limits_of(Proc::Pid(s.pid())).ok()),
    };
    let target_info = TargetInfo {
        kind: if server.is_some() { TargetKind::Spawned } else { TargetKind::External },
        address: authority.clone(),
        server_pid: server.as_ref().map(ServerProcess::pid),
    };

    let record = RunRecord {
        started_at: dir.started_at.clone(),
        scenario_file: plan.source.clone(),
        scenario_text: plan.origin.text.clone(),
        overrides: plan.origin.overrides.clone(),
        target: target_info.clone(),
        limits,
    };
    let record_path = dir.file(RUN_RECORD);
    std::fs::write(&record_path, serde_json::to_string_pretty(&record).expect("a run record serializes") + "\n")
        .with_context(|| format!("writing {}", record_path.display()))?;

    // With a fault scheduled, the client dials the fault proxy, which relays to the server.
    let mut proxy = match plan.fault.any() {
        true => {
            let upstream = tokio::net::lookup_host(&authority)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .with_context(|| format!("fault: cannot resolve the server address {authority}"))?;
            Some(FaultProxy::start(upstream, run_started).await.context("fault: starting the fault proxy")?)
        }
        false => None,
    };
    let dial = proxy.as_ref().map_or_else(|| authority.clone(), |proxy| proxy.addr.to_string());
    let channels = Arc::new(
        Channels::connect_from(plan.policy, &dial, sources(plan, &dial)?, &plan.client)
            .await
            .with_context(|| format!("connecting to the server at {dial}"))?,
    );
    let counters = Arc::new(LoadCounters::default());
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
    let samples_path = dir.file("samples.jsonl");
    let samples_file = File::create(&samples_path).with_context(|| format!("creating {}", samples_path.display()))?;
    let mut measure = LiveMeasure::new(SnapshotReader::new(channels.connections().clone()), control)
        .with_network(network_probe(Arc::clone(&channels), &[&authority, &dial]));
    if plan.sampling.heap_profile {
        leaklab_probe::heap::activate().context("sampling.heap_profile")?;
        measure = measure.with_heap_profiles(dir.path.clone());
    }
    let recorder = Recorder::start(
        Box::new(measure),
        Arc::clone(&counters),
        run_started,
        plan.sampling.interval,
        Box::new(BufWriter::new(samples_file)),
        Progress::stderr(options.view).map(Progress::into_observer),
        Some(Guard { caps: plan.caps, halt: Arc::clone(&halt) }),
    )
    .context("starting the sampling thread")?;

    let marker = recorder.marker();
    if plan.load.warmup_requests > 0 {
        marker.mark(Phase::Warmup);
    }
    if let Some(proxy) = proxy.as_mut() {
        proxy.schedule(plan.fault);
    }
    let load =
        load::drive(Arc::clone(&channels), &plan.load, counters, Arc::new(marker.clone()), Arc::clone(&halt)).await;
    if load.stopped_by != StopReason::Interrupted {
        let mut stop = options.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(plan.sampling.cooldown) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
    // Its last checkpoint waits for closed connections to tear down, which happens on this
    // runtime's one thread: wait for it from another.
    let recording = tokio::task::spawn_blocking(move || recorder.finish()).await.context("the sampling thread")?;
    forward_user_stop.abort();
    // Only now may the leaked channels go: the cool-down had to see them.
    drop(channels);
    let fault = proxy.take().map(|proxy| proxy.log());

    let mut notes = Vec::new();
    if let Some(server) = server {
        // Waited for off the runtime's one thread: the dropped channels' connection tasks
        // must still run to close their sockets, or the server's graceful shutdown waits on them.
        let stopped = tokio::task::spawn_blocking(move || server.stop(SERVER_EXIT_GRACE))
            .await
            .unwrap_or_else(|error| Err(std::io::Error::other(error)));
        match stopped {
            Ok(status) if status.success() => {}
            Ok(status) => notes.push(format!("The server exited with {status}; see server.log.")),
            Err(error) => notes.push(format!("Stopping the server failed: {error}.")),
        }
    }
    if let Some(error) = &recording.write_error {
        notes.push(format!("Writing samples.jsonl failed ({error}); the summary uses the samples kept in memory."));
    }
    if load.stopped_by == StopReason::Interrupted {
        notes.push(format!(
            "Interrupted by the user after {} requests; the figures cover the run up to then.",
            load.ok + load.failed
        ));
    } else if *options.stop.borrow() {
        notes.push("The user cut the cool-down short; `end` values are from then.".to_owned());
    }
    if let (count @ 1.., Some(reason)) = &recording.settle_errors {
        notes.push(format!(
            "{count} checkpoints could not fully settle ({reason}); they were taken anyway, so the verdict may be noisier."
        ));
    }
    if recording.client_errors > 0 {
        notes.push(format!(
            "{} samples were skipped: this process's /proc figures could not be read.",
            recording.client_errors
        ));
    }
    let facts = RunFacts {
        started_at: dir.started_at.clone(),
        target: target_info,
        samples_file: "samples.jsonl".to_owned(),
        sampling_busy: recording.busy,
        notes,
        limits,
        // A cap reached in the cool-down, after the load, stopped nothing.
        stopped_at: match (halt.reason(), load.stopped_by) {
            (
                Some(HaltReason::Cap(hit) | HaltReason::MachineLimit(hit)),
                StopReason::Cap | StopReason::MachineLimit,
            ) => Some(hit.clone()),
            _ => None,
        },
        fault,
    };
    let mut summary = Summary::build(plan, &recording.samples, &load, facts);
    let mut heap_errors = Vec::new();
    if plan.sampling.heap_profile {
        summary.heap_profile = report::heap::build(&dir.path, &recording.samples);
        if summary.heap_profile.is_none() {
            summary
                .notes
                .push("Heap profiling was on, but no pair of profiles could be read; see the run's stderr.".to_owned());
        }
        heap_errors = report::heap::export(&dir.path);
    }
    let (written, mut export_errors) =
        report::export_all(&Report { summary: &summary, samples: &recording.samples }, &dir.path);
    export_errors.extend(heap_errors);
    Ok(RunOutcome { dir: dir.path, summary, samples: recording.samples, written, export_errors })
}

/// Reads what the client saw of its connections, and TIME_WAIT sockets
/// towards the ports of `authorities` (the server's, and the proxy's).
fn network_probe(channels: Arc<Channels>, authorities: &[&str]) -> NetworkProbe {
    let ports: Vec<u16> =
        authorities.iter().filter_map(|authority| authority.rsplit_once(':')?.1.parse().ok()).collect();
    let mut time_wait: Option<(Instant, Option<u64>)> = None;
    Box::new(move || {
        // Counting TIME_WAIT walks every bucket of the kernel's connection
        // table, milliseconds on a machine with much memory however few
        // sockets it holds; sockets linger 60 s, so once a second tells as much.
        if time_wait.is_none_or(|(read_at, _)| read_at.elapsed() >= TIME_WAIT_EVERY) {
            time_wait = Some((Instant::now(), procfs::time_wait_sockets(&ports).ok()));
        }
        NetworkSample {
            time_wait: time_wait.and_then(|(_, count)| count),
            reconnects: channels.reconnects(),
            goaways_received: channels.goaways().counts(),
        }
    })
}

/// How often TIME_WAIT sockets are counted.
const TIME_WAIT_EVERY: Duration = Duration::from_secs(1);

/// The source addresses of `plan`, checked against the target: they are
/// loopback addresses, so they can only reach a loopback IPv4 target.
fn sources(plan: &Plan, authority: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    if plan.source_addresses == 0 {
        return Ok(Vec::new());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) if ip.is_loopback() => Ok(crate::load::connector::loopback_sources(plan.source_addresses.into())),
        _ => anyhow::bail!(
            "client.source_addresses: loopback source addresses can only reach a 127.0.0.0/8 target, not {authority}"
        ),
    }
}

/// Waits until the server counts no open connection (the readiness probe's
/// has closed), so the baseline sample starts from zero.
/// The probe's connection closes on this runtime, so the wait yields to it between two looks.
async fn settle(control: &mut ServerControl) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while Instant::now() < deadline {
        match control.stats() {
            Some(stats) if stats.process.connections.open == 0 => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
