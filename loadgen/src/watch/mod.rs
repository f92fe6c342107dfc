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
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use leaklab_probe::procfs::{self, Proc};
use leaklab_probe::{ConnectionCounts, ProcessSnapshot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::report::RunDir;
use crate::report::plot::{self, Header};
use crate::report::units::{format_mib, human_bytes};
use crate::sample::{Phase, Sample};
use crate::stats::Span;
use verdict::TimeVerdict;

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
    /// Stop watching after this long.
    pub duration: Duration,
    /// Time between two samples.
    pub interval: Duration,
    /// RSS growth at or below this many bytes per second is not a leak.
    pub tolerance_bytes_per_s: f64,
    /// Root of the reports tree; the watch writes `watch-<name>/<UTC time>/` there.
    pub reports_dir: PathBuf,
    /// Turns true when the user asks to stop.
    pub stop: watch::Receiver<bool>,
}

/// Why the watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchEnd {
    /// The watched process exited.
    ProcessExited,
    /// The watch lasted its `duration`.
    Duration,
    /// The user stopped it.
    Interrupted,
}

/// Everything one watch measured, as written to its `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WatchSummary {
    /// `watch-` and the process's name: the directory under `reports/`.
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
    pub verdict: TimeVerdict,
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

/// How long a started command gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Watches `options.target` until it exits, `duration` passes or the user stops, then reports.
pub async fn execute(options: WatchOptions) -> anyhow::Result<WatchOutcome> {
    let (pid, mut child, command) = match &options.target {
        WatchTarget::Pid(pid) => {
            if !Proc::Pid(*pid).is_running() {
                anyhow::bail!("--pid {pid}: no such process (or it has already exited)");
            }
            (*pid, None, None)
        }
        WatchTarget::Command(argv) => {
            let program = argv.first().context("watch: no command given after --")?;
            let child = std::process::Command::new(program)
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("watch: cannot start {program:?}"))?;
            (child.id(), Some(child), Some(argv.clone()))
        }
    };
    let name = format!("watch-{}", process_name(pid, command.as_deref()));
    let dir = RunDir::create(&options.reports_dir, &name, SystemTime::now())?;
    if let Some(child) = child.as_mut() {
        keep_output(child, &dir.path.join("command.log"));
    }

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
        // A --pid that exited but was not reaped yet (a zombie) is over too.
        if child.is_none() && !Proc::Pid(pid).is_running() {
            break WatchEnd::ProcessExited;
        }
        match snapshot(pid) {
            Ok((process, states)) => {
                let sample = Sample {
                    elapsed_s: started.elapsed().as_secs_f64(),
                    phase: if samples.is_empty() { Phase::Baseline } else { Phase::Load },
                    requests_ok: 0,
                    requests_failed: 0,
                    client: process,
                    server: None,
                    settled: false,
                    network: Default::default(),
                };
                if let Err(error) = serde_json::to_writer(&mut sink, &sample)
                    .map_err(std::io::Error::from)
                    .and_then(|()| sink.write_all(b"\n"))
                {
                    notes.push(format!(
                        "Writing samples.jsonl failed ({error}); the summary uses the samples kept in memory."
                    ));
                }
                samples.push(sample);
                tcp_states_at_end = states.into_iter().map(|(state, count)| (state.to_owned(), count)).collect();
            }
            // Gone between two samples: it exited (a --pid, or a child not yet reaped).
            Err(_) if !Proc::Pid(pid).is_running() => break WatchEnd::ProcessExited,
            Err(error) => notes.push(format!("A sample could not be read: {error}.")),
        }
        if started.elapsed() >= options.duration {
            break WatchEnd::Duration;
        }
    };
    let _ = sink.flush();
    if let Some(child) = child.as_mut() {
        if exit_code.is_none() && ended_by != WatchEnd::ProcessExited {
            stop_child(child);
        } else if let Ok(status) = child.wait() {
            exit_code = exit_code.or(status.code());
        }
    }
    notes.dedup();

    let summary = summarize(
        pid,
        command,
        name,
        dir.started_at.clone(),
        &samples,
        ended_by,
        exit_code,
        tcp_states_at_end,
        notes,
        options.tolerance_bytes_per_s,
    );
    let export_errors = write_report(&dir.path, &summary, &samples);
    Ok(WatchOutcome { dir: dir.path, summary, samples, export_errors })
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

/// Copies the command's stdout and stderr into `command.log` as they come.
fn keep_output(child: &mut Child, log: &Path) {
    let Ok(file) = File::create(log) else { return };
    let outputs: Vec<Box<dyn std::io::Read + Send>> = [
        child.stdout.take().map(|out| Box::new(out) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|err| Box::new(err) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for mut output in outputs {
        let Ok(mut file) = file.try_clone() else { continue };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut output, &mut file);
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

#[allow(clippy::too_many_arguments)]
fn summarize(
    pid: u32,
    command: Option<Vec<String>>,
    name: String,
    started_at: String,
    samples: &[Sample],
    ended_by: WatchEnd,
    exit_code: Option<i32>,
    tcp_states_at_end: BTreeMap<String, u64>,
    mut notes: Vec<String>,
    tolerance_bytes_per_s: f64,
) -> WatchSummary {
    let judged: Vec<&Sample> = samples.iter().filter(|s| s.elapsed_s >= WARMUP.as_secs_f64()).collect();
    let judged = if judged.len() >= 10 { judged } else { samples.iter().collect() };
    let rss: Vec<(f64, f64)> = judged.iter().map(|s| (s.elapsed_s, s.client.rss_bytes as f64)).collect();
    let connections: Vec<(f64, f64)> = judged.iter().map(|s| (s.elapsed_s, s.client.connections.open as f64)).collect();
    let verdict = verdict::judge(&rss, &connections, tolerance_bytes_per_s);
    notes.push(format!(
        "Judged on RSS over time, samples from {} s on: a process the harness did not start has no allocator it can read.",
        WARMUP.as_secs()
    ));
    WatchSummary {
        name,
        pid,
        command,
        started_at,
        watched_s: match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => last.elapsed_s - first.elapsed_s,
            _ => 0.0,
        },
        ended_by,
        exit_code,
        samples: samples.len() as u64,
        rss_bytes: Span::of(samples.iter().map(|s| s.client.rss_bytes)),
        fds: Span::of(samples.iter().map(|s| s.client.fds)),
        threads: Span::of(samples.iter().map(|s| s.client.threads)),
        tcp_connections: Span::of(samples.iter().map(|s| s.client.connections.open)),
        tcp_states_at_end,
        verdict,
        notes,
    }
}

/// The verdict in one line: `LEAK, +18.0 MB/s (+17.6 MB/s to +18.3 MB/s)`.
pub fn verdict_line(verdict: &TimeVerdict) -> String {
    match &verdict.rss_bytes_per_s {
        Some(trend) => format!(
            "{}, RSS {}/s ({}/s to {}/s)",
            verdict.kind,
            signed(trend.slope),
            signed(trend.ci_low),
            signed(trend.ci_high)
        ),
        None => verdict.kind.to_string(),
    }
}

fn signed(bytes: f64) -> String {
    crate::report::units::signed_bytes(bytes)
}

fn ended(summary: &WatchSummary) -> String {
    match (summary.ended_by, summary.exit_code) {
        (WatchEnd::ProcessExited, Some(code)) => format!("the process exited with code {code}"),
        (WatchEnd::ProcessExited, None) => "the process exited".to_owned(),
        (WatchEnd::Duration, _) => "the watch lasted its duration".to_owned(),
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
        verdict: format!("verdict: {}", verdict_line(&summary.verdict)),
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
    out += &format!("Tolerance: {}/s.\n\n", human_bytes(s.verdict.tolerance_bytes_per_s));
    for reason in &s.verdict.reasons {
        out += &format!("- {reason}\n");
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
