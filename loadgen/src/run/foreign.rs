//! A foreign client's part of a run: the process leaklab did not write — a
//! command it starts (an external scenario's, `loadgen watch -- CMD`) or one
//! already running (`--pid`) — sampled from outside until it exits, the plan's
//! duration passes, a cap is reached or the user stops. A command it started
//! is stopped at the end (SIGTERM, then SIGKILL); a `--pid` is never touched.
//!
//! A command that prints `leaklab-progress ok=N failed=M` lines reports its
//! requests, and is then judged per request.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use leaklab_probe::procfs::{self, FdLimits, Proc};

use super::Sampling;
use super::server::ServerSide;
use crate::halt::StopReason;
use crate::load::LoadCounters;
use crate::report::RunDir;
use crate::sample::{ChannelzSummary, ChannelzWatch, ForeignMeasure, Phase, ProfileFailure, Recording, SocketWatch};
use crate::scenario::{ForeignClient, ForeignPlan};
use crate::summary::{CommandInfo, Measured, Note, RunKind};

/// The line a command prints to report its progress: `leaklab-progress ok=N failed=M`.
pub const PROGRESS_PREFIX: &str = "leaklab-progress ";

/// In a pprof URL or a command: a free loopback port for the client's pprof server.
const PPROF_ADDR: &str = "{pprof_addr}";
/// In a channelz address or a command: a free loopback port for the client's channelz server.
const CHANNELZ_ADDR: &str = "{channelz_addr}";

/// How long a started command gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often the watch looks whether its process has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// How the foreign client's part ended.
#[derive(Debug)]
pub(super) struct Ended {
    pub(super) stopped_by: StopReason,
    pub(super) pid: u32,
    pub(super) argv: Option<Vec<String>>,
    pub(super) exit_code: Option<i32>,
    pub(super) reported_progress: bool,
    pub(super) tcp_states_at_end: BTreeMap<String, u64>,
    pub(super) client_fds: Option<FdLimits>,
    /// The pprof base URL profiles were fetched from, `{pprof_addr}` filled in.
    pub(super) pprof: Option<String>,
    /// What the client's channelz readings came to.
    pub(super) channelz: Option<ChannelzSummary>,
}

/// What a summary is built from, for a foreign run that ended so.
pub(super) fn measured<'a>(plan: &'a ForeignPlan, ended: &Ended) -> Measured<'a> {
    Measured::Foreign {
        kind: if plan.source.is_some() { RunKind::External } else { RunKind::Watch },
        name: &plan.name,
        description: &plan.description,
        scenario_file: plan.source.as_ref().map(|path| path.display().to_string()),
        verdict: &plan.verdict,
        command: CommandInfo {
            pid: ended.pid,
            argv: ended.argv.clone(),
            exit_code: ended.exit_code,
            max_duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            warmup_requests: plan.warmup_requests,
            sample_interval_ms: plan.interval.as_millis() as u64,
            reported_progress: ended.reported_progress,
            tcp_states_at_end: ended.tcp_states_at_end.clone(),
        },
    }
}

/// Starts (or finds) the process, samples it and the toy server until the watch ends, and stops what it started.
pub(super) async fn run(
    plan: &ForeignPlan,
    server: &mut ServerSide,
    sampling: &Sampling<'_>,
    notes: &mut Vec<Note>,
) -> anyhow::Result<(Recording, Ended)> {
    let counters = Arc::new(LoadCounters::default());
    let reported = Arc::new(AtomicBool::new(false));
    let malformed = Arc::new(Mutex::new(Malformed::default()));
    let mut copies = Vec::new();
    // Free loopback ports for the client's pprof and channelz servers, when the scenario leaves them to leaklab.
    let pprof_addr = free_port_for(plan.pprof.as_deref(), PPROF_ADDR)?;
    let pprof = plan.pprof.as_ref().map(|url| url.replace(PPROF_ADDR, pprof_addr.as_deref().unwrap_or_default()));
    let channelz_addr = free_port_for(plan.channelz.as_deref(), CHANNELZ_ADDR)?;
    let channelz =
        plan.channelz.as_ref().map(|a| a.replace(CHANNELZ_ADDR, channelz_addr.as_deref().unwrap_or_default()));
    let (pid, mut child, argv) = match &plan.client {
        ForeignClient::Pid(pid) => {
            if !Proc::Pid(*pid).is_running() {
                anyhow::bail!("--pid {pid}: no such process (or it has already exited)");
            }
            (*pid, None, None)
        }
        ForeignClient::Command(argv) => {
            let filled = [
                ("{addr}", server.address()),
                (PPROF_ADDR, pprof_addr.as_deref()),
                (CHANNELZ_ADDR, channelz_addr.as_deref()),
            ];
            let fill = |arg: &String| {
                filled.iter().fold(arg.clone(), |arg, (placeholder, value)| match value {
                    Some(value) => arg.replace(placeholder, value),
                    None => arg,
                })
            };
            let argv: Vec<String> = argv.iter().map(fill).collect();
            let (program, args) = argv.split_first().context("watch: no command given after --")?;
            let mut child = std::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("watch: cannot start {program:?}"))?;
            let progress = Arc::clone(&malformed);
            copies = keep_output(&mut child, &sampling.dir.file("command.log"), &counters, &reported, progress)?;
            (child.id(), Some(child), Some(argv))
        }
    };
    let ports: Vec<u16> = server.address().and_then(address_port).into_iter().collect();
    // leaklab's own connections to the process's pprof and channelz servers are not its connections.
    let side_ports = [pprof.as_deref().and_then(url_port), channelz.as_deref().and_then(address_port)];
    let side_ports = side_ports.into_iter().flatten().collect();
    let sockets = Arc::new(
        SocketWatch::start(ports, Some(pid), side_ports, plan.interval).context("watching the process's sockets")?,
    );
    let channelz = match &channelz {
        Some(address) => Some(Arc::new(
            ChannelzWatch::start(address, pid, plan.interval)
                .with_context(|| format!("reading channelz at {address}"))?,
        )),
        None => None,
    };
    let measure = ForeignMeasure::new(pid, Arc::clone(&sockets), server.take_control(), channelz.clone())
        .with_context(|| format!("reading process {pid}"))?;
    let client_fds = procfs::fd_limits_of(Proc::Pid(pid)).ok();
    let recorder = sampling.record(Box::new(measure), Arc::clone(&counters), Some(plan.interval), plan.caps)?;

    let started = Instant::now();
    let marker = recorder.marker();
    let mut exit_code = None;
    let mut ended = None;
    let end = started + plan.duration;
    let requests = || counters.ok() + counters.failed();
    // The warm-up lasts its seconds and, when the plan counts one in requests, until the client reported them.
    let warmed = |now: Instant| now >= end || (now >= started + plan.warmup && requests() >= plan.warmup_requests);
    let measured = |now: Instant| now >= end;
    for (phase, done) in [(Phase::Warmup, &warmed as &dyn Fn(Instant) -> bool), (Phase::Load, &measured)] {
        if ended.is_some() {
            break;
        }
        if phase == Phase::Load {
            fetch_profiles(pprof.as_deref(), sampling, crate::heap::WARMUP, notes).await;
        }
        marker.mark(phase);
        ended = wait(pid, child.as_mut(), &mut exit_code, done, sampling).await;
    }
    // While the process still runs: one that has exited has no profile to give.
    fetch_profiles(pprof.as_deref(), sampling, crate::heap::END, notes).await;
    let stopped_by = ended.unwrap_or(StopReason::Duration);
    let recording = tokio::task::spawn_blocking(move || recorder.finish_without_last_sample())
        .await
        .context("the sampling thread")?;
    if let Some(child) = child.as_mut() {
        match exit_code {
            Some(_) => {}
            None if stopped_by == StopReason::ProcessExited => exit_code = child.wait().ok().and_then(|s| s.code()),
            None => {
                if let Err(error) = stop_child(child) {
                    notes.push(Note::CommandStopFailed { error: error.to_string() });
                }
            }
        }
    }
    tokio::task::spawn_blocking(move || drain(copies)).await.context("the command's output")?;
    if let Ok(malformed) = malformed.lock()
        && let Some((line, reason)) = malformed.first.clone()
    {
        notes.push(Note::MalformedProgress { line, reason, lines: malformed.lines });
    }
    let tcp_states_at_end = sockets
        .latest()
        .process
        .unwrap_or_default()
        .into_iter()
        .map(|(state, count)| (state.name().to_owned(), count))
        .collect();
    let reported_progress = reported.load(Ordering::Relaxed);
    let channelz = channelz.map(|channelz| channelz.summary());
    let ended =
        Ended { stopped_by, pid, argv, exit_code, reported_progress, tcp_states_at_end, client_fds, pprof, channelz };
    Ok((recording, ended))
}

/// A free loopback `HOST:PORT` when `setting` holds `placeholder`.
fn free_port_for(setting: Option<&str>, placeholder: &str) -> anyhow::Result<Option<String>> {
    if !setting.is_some_and(|setting| setting.contains(placeholder)) {
        return Ok(None);
    }
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").with_context(|| format!("finding a free port for {placeholder}"))?;
    Ok(Some(listener.local_addr().with_context(|| format!("finding a free port for {placeholder}"))?.to_string()))
}

/// The port of `HOST:PORT`.
fn address_port(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}

/// The port of `http://HOST:PORT/…`.
fn url_port(url: &str) -> Option<u16> {
    let authority = url.strip_prefix("http://")?.split('/').next()?;
    address_port(authority)
}

/// Fetches the client's profiles for `label` into the run directory (off the runtime: the GET blocks);
/// what failed becomes a note.
async fn fetch_profiles(pprof: Option<&str>, sampling: &Sampling<'_>, label: &'static str, notes: &mut Vec<Note>) {
    let Some(url) = pprof else { return };
    let (url, dir) = (url.to_owned(), sampling.dir.path.clone());
    let process = crate::heap::Process::Client;
    let errors = tokio::task::spawn_blocking(move || crate::sample::pprof::fetch(&url, &dir, process, label))
        .await
        .unwrap_or_else(|error| vec![error.to_string()]);
    let failures = errors.into_iter().map(|error| ProfileFailure { process, label, error });
    notes.extend(failures.map(super::profile_note));
}

/// Why a foreign run has no sample: its process was gone before the first one.
pub(super) fn unsampled(ended: &Ended, dir: &RunDir) -> String {
    let exit = ended.exit_code.map_or(String::new(), |code| format!(" with code {code}"));
    let output = match ended.argv {
        Some(_) => format!("; its output is in {}", dir.file("command.log").display()),
        None => String::new(),
    };
    format!("process {} exited{exit} before its first sample{output}", ended.pid)
}

/// Waits until `deadline`, or until the process exits or the run is halted
/// (the user, a cap); `None` when the deadline came first.
async fn wait(
    pid: u32,
    mut child: Option<&mut Child>,
    exit_code: &mut Option<i32>,
    done: &dyn Fn(Instant) -> bool,
    sampling: &Sampling<'_>,
) -> Option<StopReason> {
    let mut halted = sampling.halt.subscribe();
    loop {
        if *halted.borrow() {
            return Some(sampling.halt.stop_reason(StopReason::Duration));
        }
        if let Some(child) = child.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            *exit_code = status.code();
            return Some(StopReason::ProcessExited);
        }
        // A --pid that exited (or a zombie no one reaps).
        if !Proc::Pid(pid).is_running() {
            return Some(StopReason::ProcessExited);
        }
        if done(Instant::now()) {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(EXIT_POLL) => {}
            _ = halted.changed() => {}
        }
    }
}

/// Reads `ok=N failed=M NAME=COUNT…` after [`PROGRESS_PREFIX`]: `None` for a line that is not a progress
/// line, an error saying why for one that cannot be read.
pub fn parse_progress(line: &str) -> Option<Result<Progress, String>> {
    let rest = line.trim().strip_prefix(PROGRESS_PREFIX.trim_end())?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut progress = Progress::default();
    let mut ok = None;
    for field in rest.split_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            return Some(Err(format!("{field:?} is not NAME=COUNT")));
        };
        let named = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !named {
            return Some(Err(format!("{name:?} is not a counter name (a-z, 0-9 and _, from a letter)")));
        }
        let Ok(count) = value.parse::<u64>() else {
            return Some(Err(format!("{name}={value}: not a whole number")));
        };
        match name {
            "ok" => ok = Some(count),
            "failed" => progress.failed = count,
            _ => {
                progress.counters.insert(name.to_owned(), count);
            }
        }
    }
    match ok {
        Some(ok) => Some(Ok(Progress { ok, ..progress })),
        None => Some(Err("no ok=N".to_owned())),
    }
}

/// What a progress line reports: requests so far, and the client's own counters (`goroutines=37`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub ok: u64,
    pub failed: u64,
    pub counters: BTreeMap<String, u64>,
}

/// The first malformed progress line, why, and how many there were.
#[derive(Debug, Default)]
struct Malformed {
    first: Option<(String, String)>,
    lines: u64,
}

/// Copies the command's stdout and stderr into `command.log` as they come,
/// reading its progress lines into `counters` on the way; the copying threads, which end at the pipes' end.
fn keep_output(
    child: &mut Child,
    log: &Path,
    counters: &Arc<LoadCounters>,
    reported: &Arc<AtomicBool>,
    malformed: Arc<Mutex<Malformed>>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    let outputs: Vec<Box<dyn Read + Send>> = [
        child.stdout.take().map(|out| Box::new(out) as Box<dyn Read + Send>),
        child.stderr.take().map(|err| Box::new(err) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut copies = Vec::new();
    for output in outputs {
        let (file, counters, reported) = (Arc::clone(&file), Arc::clone(counters), Arc::clone(reported));
        let malformed = Arc::clone(&malformed);
        copies.push(std::thread::Builder::new().name("command-output".into()).spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                match parse_progress(&line) {
                    Some(Ok(progress)) => {
                        counters.store(progress.ok, progress.failed);
                        counters.report(progress.counters);
                        reported.store(true, Ordering::Relaxed);
                    }
                    // Kept for the report, once: a client's typo must not stop the watch nor flood it.
                    Some(Err(reason)) => {
                        if let Ok(mut malformed) = malformed.lock() {
                            malformed.lines += 1;
                            malformed.first.get_or_insert((line.clone(), reason));
                        }
                    }
                    None => {}
                }
                if let Ok(mut file) = file.lock() {
                    let _ = writeln!(file, "{line}");
                }
            }
        })?);
    }
    Ok(copies)
}

/// How long the output of a command that has ended may take to reach `command.log`.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// Waits (briefly) until the copying threads have written all the command's output: a command that
/// ended before its first sample is reported with what it said. A grandchild holding the pipes open
/// would keep them going; it is not waited for.
fn drain(copies: Vec<std::thread::JoinHandle<()>>) {
    let deadline = Instant::now() + OUTPUT_DRAIN;
    while copies.iter().any(|copy| !copy.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM, a grace, then SIGKILL; always reaped.
fn stop_child(child: &mut Child) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait().map(drop)
}

/// A name for the run directory of a watch: the command's program name, or the process's `comm`.
pub fn process_name(client: &ForeignClient) -> String {
    let raw = match client {
        ForeignClient::Command(argv) => argv.first().map_or_else(String::new, |program| {
            Path::new(program).file_name().map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
        }),
        ForeignClient::Pid(pid) => std::fs::read_to_string(Proc::Pid(*pid).path("comm"))
            .map(|comm| comm.trim().to_owned())
            .unwrap_or_else(|_| pid.to_string()),
    };
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() { "process".to_owned() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_read_and_others_ignored() {
        let read = |line: &str| parse_progress(line).map(|p| p.map(|p| (p.ok, p.failed, p.counters)));
        let none = BTreeMap::new();
        assert_eq!(read("leaklab-progress ok=1200 failed=3"), Some(Ok((1200, 3, none.clone()))));
        assert_eq!(read("  leaklab-progress failed=0 ok=7\n"), Some(Ok((7, 0, none.clone()))));
        assert_eq!(read("leaklab-progress ok=12"), Some(Ok((12, 0, none))), "no counters");
        let counters = BTreeMap::from([("goroutines".to_owned(), 37), ("streams".to_owned(), 12)]);
        assert_eq!(read("leaklab-progress ok=1200 failed=0 goroutines=37 streams=12"), Some(Ok((1200, 0, counters))));
        assert_eq!(read("2026/11/28 dialing 127.0.0.1:1"), None);
        assert_eq!(read("leaklab-progressive rock"), None, "another word");
        // Malformed: said why, never a panic.
        for (line, reason) in [
            ("leaklab-progress failed=2", "no ok=N"),
            ("leaklab-progress ok=lots", "ok=lots: not a whole number"),
            ("leaklab-progress ok=1 goroutines=-3", "goroutines=-3: not a whole number"),
            ("leaklab-progress ok=1 goroutines", "\"goroutines\" is not NAME=COUNT"),
            ("leaklab-progress ok=1 Streams=2", "\"Streams\" is not a counter name"),
            ("leaklab-progress", "no ok=N"),
        ] {
            match read(line) {
                Some(Err(error)) => assert!(error.starts_with(reason), "{line}: {error}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_are_safe_for_a_directory() {
        let command = |program: &str| ForeignClient::Command(vec![program.to_owned()]);
        assert_eq!(process_name(&command("target/peers/go-echo-client")), "go-echo-client");
        assert_eq!(process_name(&command("/bin/my tool!")), "my_tool_");
    }
}
