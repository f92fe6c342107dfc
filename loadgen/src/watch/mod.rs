//! `loadgen watch`: measure a process the harness did not write.
//!
//! The bug people meet lives in their own clients, often not in Rust. Watch
//! samples any process — one already running (`--pid`), or a command it
//! starts (`-- COMMAND ARGS…`) — for RSS, file descriptors, threads and TCP
//! connections by state, into the same `samples.jsonl` format and plot as a
//! run, and judges its RSS over time (bytes per second) with the same
//! statistics. A foreign process has no allocator the harness can read and no
//! requests it counts, so there are no checkpoints at rest: the verdict is on
//! RSS against seconds.
//!
//! The watch ends when the process exits, when `duration` has passed, or on
//! Ctrl-C; whatever was sampled until then is reported. A command it started
//! is stopped (SIGTERM, then SIGKILL) if it is still running at the end; a
//! `--pid` is never touched.

pub mod verdict;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use leaklab_probe::procfs::{self, Proc};
use leaklab_probe::{ConnectionCounts, ProcessSnapshot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::report::RunDir;
use crate::report::plot::{self, Header};
use crate::report::progress::View;
use crate::report::units::{format_mib, human_bytes};
use crate::sample::{Phase, Sample};
use crate::scenario::{CapsPlan, Expectation};
use crate::stats::Span;
use crate::target::{self, ServerProcess};
use verdict::{Per, TimeVerdict};

/// Samples from the first second are left out of the verdict: a process that
/// has just started is still loading its code and warming its heap.
pub const WARMUP: Duration = Duration::from_secs(1);

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    /// A running process, left running at the end.
    Pid(u32),
    /// A command to start, stopped at the end if it is still running.
    Command(Vec<String>),
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub target: WatchTarget,
    /// The run directory's name under `reports/` (a scenario's name); default `watch-<process name>`.
    pub name: Option<String>,
    /// Start this toy server first and watch it too; `{addr}` in the command becomes its address.
    pub server: Option<ServerLaunch>,
    /// Stop watching after this long.
    pub duration: Duration,
    /// Time between two samples.
    pub interval: Duration,
    /// Samples from the first this-long are not judged.
    pub warmup: Duration,
    /// Growth at or below this many bytes per request is not a leak (when the command reports progress).
    pub tolerance_bytes_per_request: f64,
    /// Growth at or below this many bytes per second is not a leak (otherwise).
    pub tolerance_bytes_per_s: f64,
    /// What the scenario expects of the watched process and of the server.
    pub expect_client: Option<Expectation>,
    pub expect_server: Option<Expectation>,
    /// The command is stopped when either process reaches one.
    pub caps: Option<CapsPlan>,
    /// Root of the reports tree.
    pub reports_dir: PathBuf,
    /// What to show while watching.
    pub view: View,
    /// Turns true when the user asks to stop.
    pub stop: watch::Receiver<bool>,
}

/// A toy server to start before the command.
#[derive(Debug, Clone)]
pub struct ServerLaunch {
    pub bin: PathBuf,
    pub args: Vec<String>,
}

impl WatchOptions {
    /// Watching `target` alone, with the defaults of `loadgen watch`.
    pub fn of(target: WatchTarget, reports_dir: PathBuf, stop: watch::Receiver<bool>) -> Self {
        Self {
            target,
            name: None,
            server: None,
            duration: Duration::from_secs(60),
            interval: Duration::from_millis(100),
            warmup: Duration::from_secs(1),
            tolerance_bytes_per_request: 2048.0,
            tolerance_bytes_per_s: 65_536.0,
            expect_client: None,
            expect_server: None,
            caps: None,
            reports_dir,
            view: View::Quiet,
            stop,
        }
    }
}

/// The line a command prints to report its progress: `leaklab-progress ok=N failed=M`.
pub const PROGRESS_PREFIX: &str = "leaklab-progress ";

/// Reads `ok=N failed=M` after [`PROGRESS_PREFIX`].
pub fn parse_progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix(PROGRESS_PREFIX)?;
    let (mut ok, mut failed) = (None, None);
    for field in rest.split_whitespace() {
        match field.split_once('=') {
            Some(("ok", n)) => ok = n.parse().ok(),
            Some(("failed", n)) => failed = n.parse().ok(),
            _ => {}
        }
    }
    Some((ok?, failed.unwrap_or(0)))
}

/// Why the watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchEnd {
    /// The watched process exited.
    ProcessExited,
    /// The watch lasted its `duration`.
    Duration,
    /// A process reached a cap; the command was stopped.
    Cap,
    /// The user stopped it.
    Interrupted,
}

/// Requests the command said it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportedRequests {
    pub ok: u64,
    pub failed: u64,
}

/// The toy server's figures during the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerFigures {
    pub rss_bytes: Span,
    /// jemalloc-allocated bytes.
    pub allocated_bytes: Option<Span>,
    /// Open connections, counted exactly by the server.
    pub connections: Span,
    pub fds: Span,
}

/// Everything one watch measured, as written to its `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WatchSummary {
    /// The directory under `reports/`: the scenario's name, or `watch-` and the process's name.
    pub name: String,
    /// The watched process.
    pub pid: u32,
    /// The command line, when the watch started it.
    pub command: Option<Vec<String>>,
    /// When the watch started, RFC 3339 in UTC.
    pub started_at: String,
    /// Seconds from the first sample to the last.
    pub watched_s: f64,
    pub ended_by: WatchEnd,
    /// The command's exit code, when it exited by itself with one.
    pub exit_code: Option<i32>,
    /// Samples taken (in `samples.jsonl`, one per line).
    pub samples: u64,
    /// Resident set size, bytes: first sample, last sample, peak.
    pub rss_bytes: Option<Span>,
    /// Open file descriptors.
    pub fds: Option<Span>,
    /// Threads.
    pub threads: Option<Span>,
    /// Open (ESTABLISHED) TCP connections.
    pub tcp_connections: Option<Span>,
    /// The process's TCP sockets by state, at the last sample.
    pub tcp_states_at_end: BTreeMap<String, u64>,
    /// Requests the command reported on its `leaklab-progress` lines; absent if it printed none.
    pub requests: Option<ReportedRequests>,
    /// The watched process's verdict.
    pub verdict: TimeVerdict,
    /// The toy server's figures and verdict, when the watch started it.
    pub server: Option<ServerFigures>,
    pub server_verdict: Option<TimeVerdict>,
    /// `true` when every expectation is met, `false` when one is not, `null` without expectations.
    pub expectation_met: Option<bool>,
    /// Sentences a reader needs to interpret the figures.
    pub notes: Vec<String>,
}

/// What a finished watch left behind.
#[derive(Debug)]
pub struct WatchOutcome {
    pub dir: PathBuf,
    pub summary: WatchSummary,
    pub samples: Vec<Sample>,
    /// Outputs that could not be written; the others were.
    pub export_errors: Vec<anyhow::Error>,
}

/// Distinct request counts needed to judge growth per request: a command
/// that reported its progress only once or twice is judged per second.
const MIN_PROGRESS_STEPS: usize = 5;

/// How long a started command gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Watches `options.target` until it exits, `duration` passes, a cap is
/// reached or the user stops, then reports.
pub async fn execute(options: WatchOptions) -> anyhow::Result<WatchOutcome> {
    if let WatchTarget::Pid(pid) = options.target
        && !Proc::Pid(pid).is_running()
    {
        anyhow::bail!("--pid {pid}: no such process (or it has already exited)");
    }
    if let WatchTarget::Command(argv) = &options.target
        && argv.first().is_none_or(|program| program.is_empty())
    {
        anyhow::bail!("watch: no command given after --");
    }
    let name = match (&options.name, &options.target) {
        (Some(name), _) => name.clone(),
        (None, WatchTarget::Pid(pid)) => format!("watch-{}", process_name(*pid, None)),
        (None, WatchTarget::Command(argv)) => format!("watch-{}", process_name(0, Some(argv))),
    };
    let dir = RunDir::create(&options.reports_dir, &name, SystemTime::now())?;

    let mut server = match &options.server {
        Some(launch) => {
            let (process, control) = ServerProcess::spawn(&launch.bin, &launch.args, &dir.path.join("server.log"))?;
            let addr = process.addr.to_string();
            target::wait_until_serving(&addr, target::READY_TIMEOUT).await?;
            Some((process, control, addr))
        }
        None => None,
    };
    let progress = Progress::default();
    let (pid, mut child, command) = match &options.target {
        WatchTarget::Pid(pid) => (*pid, None, None),
        WatchTarget::Command(argv) => {
            let addr = server.as_ref().map(|(_, _, addr)| addr.as_str());
            let argv: Vec<String> =
                argv.iter().map(|arg| addr.map_or_else(|| arg.clone(), |addr| arg.replace("{addr}", addr))).collect();
            let mut child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("watch: cannot start {:?}", argv[0]))?;
            keep_output(&mut child, &dir.path.join("command.log"), &progress);
            (child.id(), Some(child), Some(argv))
        }
    };

    let samples_path = dir.path.join("samples.jsonl");
    let mut sink =
        BufWriter::new(File::create(&samples_path).with_context(|| format!("creating {}", samples_path.display()))?);
    let mut samples: Vec<Sample> = Vec::new();
    let mut tcp_states_at_end = BTreeMap::new();
    let mut notes = Vec::new();
    let started = Instant::now();
    let mut stop = options.stop.clone();
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut exit_code = None;
    let mut live = crate::report::progress::Progress::stderr(options.view);
    let ended_by = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break WatchEnd::Interrupted,
        }
        if let Some(child) = child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            exit_code = status.code();
            break WatchEnd::ProcessExited;
        }
        let read = snapshot(pid);
        // Read as it exited (its figures are then zeros), or a --pid that exited unreaped.
        if !Proc::Pid(pid).is_running() {
            break WatchEnd::ProcessExited;
        }
        match read {
            Ok((process, states)) => {
                let (ok, failed) = progress.counts();
                let sample = Sample {
                    elapsed_s: started.elapsed().as_secs_f64(),
                    phase: if samples.is_empty() { Phase::Baseline } else { Phase::Load },
                    requests_ok: ok,
                    requests_failed: failed,
                    client: process,
                    server: server.as_mut().and_then(|(_, control, _)| control.stats()),
                    settled: false,
                    network: Default::default(),
                };
                if let Err(error) = write_line(&mut sink, &sample) {
                    notes.push(format!(
                        "Writing samples.jsonl failed ({error}); the summary uses the samples kept in memory."
                    ));
                }
                if let Some(live) = live.as_mut() {
                    live.observe(&sample);
                }
                let over_cap = options.caps.as_ref().and_then(|caps| sample.over_cap(caps));
                samples.push(sample);
                tcp_states_at_end = states.into_iter().map(|(state, count)| (state.to_owned(), count)).collect();
                if let Some(hit) = over_cap {
                    notes.push(format!(
                        "Stopped at the {} cap: {} reached {} (limit {}).",
                        hit.which,
                        hit.which,
                        hit.value,
                        hit.limit.unwrap_or_default()
                    ));
                    break WatchEnd::Cap;
                }
            }
            Err(error) => notes.push(format!("A sample could not be read: {error}.")),
        }
        if started.elapsed() >= options.duration {
            break WatchEnd::Duration;
        }
    };
    let _ = sink.flush();
    drop(live);
    if let Some(child) = child.as_mut() {
        if exit_code.is_none() && ended_by != WatchEnd::ProcessExited {
            stop_child(child);
        } else if let Ok(status) = child.wait() {
            exit_code = exit_code.or(status.code());
        }
    }
    if let Some((process, control, _)) = server.take() {
        // Closing the side channel is the server's signal to shut down.
        drop(control);
        match process.stop(Duration::from_secs(8)) {
            Ok(status) if status.success() => {}
            Ok(status) => notes.push(format!("The server exited with {status}; see server.log.")),
            Err(error) => notes.push(format!("Stopping the server failed: {error}.")),
        }
    }
    notes.dedup();

    let facts =
        Facts { pid, command, name, started_at: dir.started_at.clone(), ended_by, exit_code, tcp_states_at_end };
    let summary = summarize(facts, &samples, notes, &options);
    let export_errors = write_report(&dir.path, &summary, &samples);
    Ok(WatchOutcome { dir: dir.path, summary, samples, export_errors })
}

fn write_line(sink: &mut impl Write, sample: &Sample) -> std::io::Result<()> {
    serde_json::to_writer(&mut *sink, sample)?;
    sink.write_all(b"\n")
}

/// The counts from the command's latest progress line.
#[derive(Debug, Clone, Default)]
struct Progress(Arc<(AtomicU64, AtomicU64)>);

impl Progress {
    fn counts(&self) -> (u64, u64) {
        (self.0.0.load(Ordering::Relaxed), self.0.1.load(Ordering::Relaxed))
    }

    fn seen(&self, line: &str) {
        if let Some((ok, failed)) = parse_progress(line) {
            self.0.0.store(ok, Ordering::Relaxed);
            self.0.1.store(failed, Ordering::Relaxed);
        }
    }
}

/// The process's figures now: RSS, fds, threads, and its TCP sockets by state.
fn snapshot(pid: u32) -> Result<(ProcessSnapshot, BTreeMap<&'static str, u64>), procfs::ProcError> {
    let proc_ = Proc::Pid(pid);
    let states = procfs::tcp_states_of(proc_)?;
    let established = states.get("ESTABLISHED").copied().unwrap_or(0);
    let process = ProcessSnapshot {
        pid,
        rss_bytes: procfs::rss_bytes(proc_)?,
        fds: procfs::open_fds(proc_)?,
        threads: procfs::threads(proc_)?,
        jemalloc: None,
        connections: ConnectionCounts { open: established, opened: 0, closed: 0 },
    };
    Ok((process, states))
}

/// The command's program name, or the process's `comm`.
fn process_name(pid: u32, command: Option<&[String]>) -> String {
    let raw = match command.and_then(|argv| argv.first()) {
        Some(program) => {
            Path::new(program).file_name().map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
        }
        None => std::fs::read_to_string(Proc::Pid(pid).path("comm"))
            .map(|comm| comm.trim().to_owned())
            .unwrap_or_else(|_| pid.to_string()),
    };
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() { pid.to_string() } else { clean }
}

/// Copies the command's stdout and stderr into `command.log` as they come,
/// reading its progress lines on the way.
fn keep_output(child: &mut Child, log: &Path, progress: &Progress) {
    let Ok(file) = File::create(log) else { return };
    let file = Arc::new(std::sync::Mutex::new(file));
    let outputs: Vec<Box<dyn std::io::Read + Send>> = [
        child.stdout.take().map(|out| Box::new(out) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|err| Box::new(err) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for output in outputs {
        let (file, progress) = (Arc::clone(&file), progress.clone());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(output)).map_while(Result::ok) {
                progress.seen(&line);
                if let Ok(mut file) = file.lock() {
                    let _ = writeln!(file, "{line}");
                }
            }
        });
    }
}

/// SIGTERM, a grace, then SIGKILL; always reaped.
fn stop_child(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What the watch knows besides its samples.
struct Facts {
    pid: u32,
    command: Option<Vec<String>>,
    name: String,
    started_at: String,
    ended_by: WatchEnd,
    exit_code: Option<i32>,
    tcp_states_at_end: BTreeMap<String, u64>,
}

fn summarize(facts: Facts, samples: &[Sample], mut notes: Vec<String>, options: &WatchOptions) -> WatchSummary {
    let judged: Vec<&Sample> = samples.iter().filter(|s| s.elapsed_s >= options.warmup.as_secs_f64()).collect();
    let judged = if judged.len() >= 10 { judged } else { samples.iter().collect() };
    let reported = samples
        .last()
        .filter(|s| s.requests() > 0)
        .map(|s| ReportedRequests { ok: s.requests_ok, failed: s.requests_failed });
    // Per request when the command reported its progress as it went, else per second.
    let mut counts: Vec<u64> = judged.iter().map(|s| s.requests()).collect();
    counts.dedup();
    let (per, tolerance) = if counts.len() >= MIN_PROGRESS_STEPS {
        (Per::Request, options.tolerance_bytes_per_request)
    } else {
        (Per::Second, options.tolerance_bytes_per_s)
    };
    let x = |s: &Sample| match per {
        Per::Request => s.requests() as f64,
        Per::Second => s.elapsed_s,
    };
    let points = |value: &dyn Fn(&Sample) -> Option<u64>| -> Vec<(f64, f64)> {
        judged.iter().filter_map(|s| value(s).map(|v| (x(s), v as f64))).collect()
    };
    let verdict = verdict::judge(
        "RSS",
        per,
        &points(&|s| Some(s.client.rss_bytes)),
        &points(&|s| Some(s.client.connections.open)),
        tolerance,
        options.expect_client,
    );
    let server_samples: Vec<_> = samples.iter().filter_map(|s| s.server).collect();
    let server = Span::of(server_samples.iter().map(|s| s.process.rss_bytes)).map(|rss_bytes| ServerFigures {
        rss_bytes,
        allocated_bytes: Span::of(server_samples.iter().filter_map(|s| s.process.jemalloc.map(|j| j.allocated_bytes))),
        connections: Span::of(server_samples.iter().map(|s| s.process.connections.open)).unwrap_or(Span {
            start: 0,
            end: 0,
            peak: 0,
        }),
        fds: Span::of(server_samples.iter().map(|s| s.process.fds)).unwrap_or(Span { start: 0, end: 0, peak: 0 }),
    });
    let server_verdict = server.map(|_| {
        verdict::judge(
            "allocated",
            per,
            &points(&|s| s.server?.process.jemalloc.map(|j| j.allocated_bytes)),
            &points(&|s| s.server.map(|x| x.process.connections.open)),
            tolerance,
            options.expect_server,
        )
    });
    let expectations: Vec<bool> = [verdict.expectation_met, server_verdict.as_ref().and_then(|v| v.expectation_met)]
        .into_iter()
        .flatten()
        .collect();
    notes.push(match per {
        Per::Request => format!(
            "Judged per request the command reported, on every sample after the first {} s: a process the harness \
             did not write has no checkpoints at rest, and its allocator cannot be read, so its RSS is what is judged.",
            options.warmup.as_secs_f64()
        ),
        Per::Second => format!(
            "Judged on RSS over time, on every sample after the first {} s: the process reported no requests, and \
             its allocator cannot be read.",
            options.warmup.as_secs_f64()
        ),
    });
    WatchSummary {
        name: facts.name,
        pid: facts.pid,
        command: facts.command,
        started_at: facts.started_at,
        watched_s: match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => last.elapsed_s - first.elapsed_s,
            _ => 0.0,
        },
        ended_by: facts.ended_by,
        exit_code: facts.exit_code,
        samples: samples.len() as u64,
        rss_bytes: Span::of(samples.iter().map(|s| s.client.rss_bytes)),
        fds: Span::of(samples.iter().map(|s| s.client.fds)),
        threads: Span::of(samples.iter().map(|s| s.client.threads)),
        tcp_connections: Span::of(samples.iter().map(|s| s.client.connections.open)),
        tcp_states_at_end: facts.tcp_states_at_end,
        requests: reported,
        expectation_met: (!expectations.is_empty()).then(|| expectations.iter().all(|met| *met)),
        verdict,
        server,
        server_verdict,
        notes,
    }
}

/// The verdict in one line: `LEAK, RSS +90.1 KB per request (+89.8 KB to +90.4 KB), expected leak ✔`.
pub fn verdict_line(verdict: &TimeVerdict) -> String {
    let mut line = match &verdict.growth {
        Some(trend) => format!(
            "{}, {} {} per {} ({} to {})",
            verdict.kind,
            verdict.measured,
            signed(trend.slope),
            verdict.per.unit(),
            signed(trend.ci_low),
            signed(trend.ci_high)
        ),
        None => verdict.kind.to_string(),
    };
    if let Some(expected) = verdict.expected {
        line.push_str(&format!(
            ", expected {} {}",
            expected.name(),
            crate::report::units::expectation_mark(verdict.kind, verdict.expectation_met)
        ));
    }
    line
}

fn signed(bytes: f64) -> String {
    crate::report::units::signed_bytes(bytes)
}

fn ended(summary: &WatchSummary) -> String {
    match (summary.ended_by, summary.exit_code) {
        (WatchEnd::ProcessExited, Some(code)) => format!("the process exited with code {code}"),
        (WatchEnd::ProcessExited, None) => "the process exited".to_owned(),
        (WatchEnd::Duration, _) => "the watch lasted its duration".to_owned(),
        (WatchEnd::Cap, _) => "a process reached a cap".to_owned(),
        (WatchEnd::Interrupted, _) => "the user interrupted it".to_owned(),
    }
}

/// Writes `summary.json`, `report.md`, `memory.png` and `memory.svg`; returns what failed.
fn write_report(dir: &Path, summary: &WatchSummary, samples: &[Sample]) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    let json = serde_json::to_string_pretty(summary).expect("a watch summary serializes") + "\n";
    if let Err(error) = std::fs::write(dir.join("summary.json"), json) {
        errors.push(anyhow::Error::from(error).context(format!("writing {}", dir.join("summary.json").display())));
    }
    if let Err(error) = std::fs::write(dir.join("report.md"), markdown(summary)) {
        errors.push(anyhow::Error::from(error).context(format!("writing {}", dir.join("report.md").display())));
    }
    let what = summary
        .command
        .as_ref()
        .map_or_else(|| summary.name.trim_start_matches("watch-").to_owned(), |argv| argv.join(" "));
    let header = Header {
        title: format!("{}: memory over time", summary.name),
        headline: format!(
            "{what} · pid {} · {:.1} s watched · ended: {}",
            summary.pid,
            summary.watched_s,
            ended(summary)
        ),
        verdict: match &summary.server_verdict {
            Some(server) => format!("verdict: client {} · server {}", plain(&summary.verdict), plain(server)),
            None => format!("verdict: {}", plain(&summary.verdict)),
        },
        events: Vec::new(),
        time_wait: false,
    };
    if let Err(error) = plot::write_png(&header, samples, &dir.join("memory.png")) {
        errors.push(error);
    }
    if let Err(error) = plot::write_svg(&header, samples, &dir.join("memory.svg")) {
        errors.push(error);
    }
    errors
}

/// The verdict line without ✔/✖, which the plot's font has no glyphs for.
fn plain(verdict: &TimeVerdict) -> String {
    let line = verdict_line(verdict);
    line.split(", expected").next().unwrap_or(&line).to_owned()
}

fn markdown(s: &WatchSummary) -> String {
    let span = |span: &Option<Span>, bytes: bool| match span {
        Some(span) if bytes => {
            format!("{} → {}, peak {}", format_mib(span.start), format_mib(span.end), format_mib(span.peak))
        }
        Some(span) => format!("{} → {}, peak {}", span.start, span.end, span.peak),
        None => "n/a".to_owned(),
    };
    let mut out = format!("# {} — pid {}\n\n", s.name, s.pid);
    if let Some(argv) = &s.command {
        out += &format!("Command: `{}`.\n\n", argv.join(" "));
    }
    out += &format!(
        "Watched {:.1} s from {} ({} samples); the watch ended because {}.\n\n![memory over time](memory.png)\n\n",
        s.watched_s,
        s.started_at,
        s.samples,
        ended(s)
    );
    out += &format!("## Verdict: {}\n\n", verdict_line(&s.verdict));
    out += &format!("Tolerance: {} per {}.\n\n", human_bytes(s.verdict.tolerance), s.verdict.per.unit());
    for reason in &s.verdict.reasons {
        out += &format!("- {reason}\n");
    }
    if let Some(requests) = s.requests {
        out += &format!("\nThe command reported {} requests OK and {} failed.\n", requests.ok, requests.failed);
    }
    if let (Some(server), Some(verdict)) = (&s.server, &s.server_verdict) {
        out += &format!("\n## Server: {}\n\n", verdict_line(verdict));
        for reason in &verdict.reasons {
            out += &format!("- {reason}\n");
        }
        out += &format!(
            "\nServer RSS {} → {} (peak {}); open connections {} → {} (peak {}).\n",
            format_mib(server.rss_bytes.start),
            format_mib(server.rss_bytes.end),
            format_mib(server.rss_bytes.peak),
            server.connections.start,
            server.connections.end,
            server.connections.peak
        );
    }
    out += "\n## Process (start → end, peak)\n\n| | |\n|---|---:|\n";
    out += &format!("| RSS | {} |\n", span(&s.rss_bytes, true));
    out += &format!("| fds | {} |\n", span(&s.fds, false));
    out += &format!("| threads | {} |\n", span(&s.threads, false));
    out += &format!("| TCP connections (established) | {} |\n", span(&s.tcp_connections, false));
    if !s.tcp_states_at_end.is_empty() {
        let states: Vec<String> = s.tcp_states_at_end.iter().map(|(state, n)| format!("{state} {n}")).collect();
        out += &format!("\nTCP sockets at the end, by state: {}.\n", states.join(", "));
    }
    if !s.notes.is_empty() {
        out += "\n## Notes\n\n";
        for note in &s.notes {
            out += &format!("- {note}\n");
        }
    }
    out += "\nFiles: `summary.json`, `samples.jsonl`, `memory.png`, `memory.svg`, and `command.log` for a started command.\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_read_and_others_ignored() {
        assert_eq!(parse_progress("leaklab-progress ok=1200 failed=3"), Some((1200, 3)));
        assert_eq!(parse_progress("  leaklab-progress failed=0 ok=7\n"), Some((7, 0)));
        assert_eq!(parse_progress("leaklab-progress ok=12"), Some((12, 0)));
        assert_eq!(parse_progress("leaklab-progress failed=2"), None, "no ok count");
        assert_eq!(parse_progress("leaklab-progress ok=lots"), None);
        assert_eq!(parse_progress("2026/11/28 dialing 127.0.0.1:1"), None);
    }

    #[test]
    fn names_are_safe_for_a_directory() {
        assert_eq!(process_name(0, Some(&["target/peers/go-echo-client".to_owned()])), "go-echo-client");
        assert_eq!(process_name(0, Some(&["/bin/my tool!".to_owned()])), "my_tool_");
    }
}
