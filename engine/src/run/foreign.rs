//! A foreign client's part of a run: the process leaklab did not write — a
//! command it starts (an external scenario's, `loadgen watch -- CMD`) or one
//! already running (`--pid`) — sampled from outside until it exits, the plan's
//! duration passes, a cap is reached or the user stops. A command it started
//! is stopped at the end (SIGTERM, then SIGKILL); a `--pid` is never touched.
//!
//! A command that prints `leaklab-progress ok=N failed=M` lines reports its
//! requests, and is then judged per request. A garbage-collected runtime's
//! heap is read after a full collection twice a second, beside the sampler.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use leaklab_probe::procfs::{self, FdLimits, Proc};

use super::Sampling;
use super::profiling::{self, Agent, JvmHistogram, PprofEndpoint, Profiled, Profiler, Profiling};
use super::progress::CommandOutput;
use super::server::ServerSide;
use crate::halt::StopReason;
use crate::heap::ProfileMoment;
use crate::heap::orphans::OrphanReport;
use crate::load::LoadCounters;
use crate::run_dir::RunDir;
use crate::sample::runtime::jvm::{JvmAttach, NATIVE_MEMORY_TRACKING};
use crate::sample::runtime::v8::{self, V8Inspector};
use crate::sample::runtime::{HeapReader, HeapWatch, HeapWatchSummary};
use crate::sample::{ChannelzSummary, ChannelzWatch, ForeignMeasure, Phase, Recording, SocketWatch};
use crate::scenario::{ForeignClient, ForeignPlan, RuntimeChoice};
use crate::summary::{CommandInfo, Note};
use leaklab_probe::GcRuntime;

/// In a pprof URL or a command: a free loopback port for the client's pprof server.
const PPROF_ADDR: &str = "{pprof_addr}";
/// In a channelz address or a command: a free loopback port for the client's channelz server.
const CHANNELZ_ADDR: &str = "{channelz_addr}";

/// How long a started command gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often the watch looks whether its process has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// How often a garbage-collected runtime is asked to collect and its heap read: often enough for the
/// ten points a verdict needs in a few seconds of load, rarely enough that its pauses stay small.
const HEAP_PERIOD: Duration = Duration::from_millis(500);

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
    /// Where the client's profiles came from (a pprof URL with `{pprof_addr}` filled in, an agent, a JVM's
    /// histograms) and its runtime; `None` when it was not profiled.
    pub(super) profiled: Option<Profiled>,
    /// What the client's channelz readings came to.
    pub(super) channelz: Option<ChannelzSummary>,
    /// How the readings of the client's runtime heap went.
    pub(super) runtime_heap: Option<HeapWatchSummary>,
    /// grpc-java's reports of the channels the client dropped without `shutdown()`.
    pub(super) orphans: Option<OrphanReport>,
}

impl Ended {
    /// The process as the summary describes it.
    pub(super) fn command(&self, plan: &ForeignPlan) -> CommandInfo {
        let tcp_states = self.tcp_states_at_end.clone();
        CommandInfo::of(plan, self.pid, self.argv.clone(), self.exit_code, self.reported_progress, tcp_states)
    }
}

/// The loopback addresses leaklab fills into a command and the scenario's URLs: the server's `{addr}`, and
/// free ports for the client's pprof and channelz servers when the scenario leaves them to leaklab.
#[derive(Debug)]
struct Addresses {
    server: Option<String>,
    pprof: Option<String>,
    channelz: Option<String>,
    /// Where a Node command's inspector listens (`--inspect` in its `NODE_OPTIONS`), for its heap readings.
    inspector: Option<String>,
    /// Where leaklab's profile agent listens in a Node or Python command (`call_sites` without `pprof`).
    agent: Option<std::net::SocketAddr>,
}

impl Addresses {
    fn find(plan: &ForeignPlan, server: Option<&str>) -> anyhow::Result<Addresses> {
        let node = match &plan.client {
            ForeignClient::Command(argv) => argv.first().and_then(|program| plan.runtime.of_program(program)),
            ForeignClient::Pid(_) => None,
        } == Some(GcRuntime::V8);
        Ok(Addresses {
            server: server.map(str::to_owned),
            pprof: free_port_for(plan.pprof.as_deref(), PPROF_ADDR)?,
            channelz: free_port_for(plan.channelz.as_deref(), CHANNELZ_ADDR)?,
            inspector: if node { Some(free_port("the inspector")?) } else { None },
            agent: match (&plan.client, plan.call_sites && plan.pprof.is_none()) {
                (ForeignClient::Command(_), true) => Some(free_port("the profile agent")?.parse()?),
                _ => None,
            },
        })
    }

    /// `text` with every placeholder that has an address filled in.
    fn fill(&self, text: &str) -> String {
        let filled = [("{addr}", &self.server), (PPROF_ADDR, &self.pprof), (CHANNELZ_ADDR, &self.channelz)];
        filled.iter().fold(text.to_owned(), |text, (placeholder, value)| match value {
            Some(value) => text.replace(placeholder, value),
            None => text,
        })
    }
}

/// The process watched: found by its pid, or started from a command whose output is copied.
#[derive(Debug)]
struct Client {
    pid: u32,
    child: Option<Child>,
    argv: Option<Vec<String>>,
    output: Option<CommandOutput>,
}

impl Client {
    fn start(
        plan: &ForeignPlan,
        addresses: &Addresses,
        dir: &RunDir,
        counters: &Arc<LoadCounters>,
    ) -> anyhow::Result<Client> {
        let argv = match &plan.client {
            ForeignClient::Pid(pid) => {
                if !Proc::Pid(*pid).is_running() {
                    anyhow::bail!("--pid {pid}: no such process (or it has already exited)");
                }
                return Ok(Client { pid: *pid, child: None, argv: None, output: None });
            }
            ForeignClient::Command(argv) => argv.iter().map(|arg| addresses.fill(arg)).collect::<Vec<String>>(),
        };
        let (program, args) = argv.split_first().context("watch: no command given after --")?;
        let mut command = std::process::Command::new(program);
        if let Some(inspector) = &addresses.inspector {
            // Node reads NODE_OPTIONS before the script's flags.
            add_option(&mut command, "NODE_OPTIONS", &format!("--inspect={inspector}"));
        }
        // The `java` launcher reads JDK_JAVA_OPTIONS (and says so on stderr); other programs ignore it. A
        // user's own tracking option (`=detail`) is theirs to keep.
        let user_tracks = std::env::var("JDK_JAVA_OPTIONS").is_ok_and(|user| user.contains("-XX:NativeMemoryTracking"));
        if plan.runtime.may_start_jvm(program) && !user_tracks {
            add_option(&mut command, "JDK_JAVA_OPTIONS", NATIVE_MEMORY_TRACKING);
        }
        if let Some(agent) = addresses.agent {
            profiling::arm_agents(&mut command, &dir.path, agent)
                .with_context(|| format!("writing the profile agents into {}", dir.path.display()))?;
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("watch: cannot start {program:?}"))?;
        let output = CommandOutput::copy(&mut child, &dir.file(RunDir::COMMAND_LOG), counters)?;
        Ok(Client { pid: child.id(), child: Some(child), argv: Some(argv), output: Some(output) })
    }

    /// Stops a command still running (SIGTERM, then SIGKILL) or reaps one that exited; its exit code.
    fn stop(&mut self, stopped_by: StopReason, exit_code: Option<i32>, notes: &mut Vec<Note>) -> Option<i32> {
        let Some(child) = self.child.as_mut() else { return exit_code };
        match exit_code {
            Some(_) => exit_code,
            None if stopped_by == StopReason::ProcessExited => child.wait().ok().and_then(|s| s.code()),
            None => {
                if let Err(error) = stop_child(child) {
                    notes.push(Note::CommandStopFailed { error: error.to_string() });
                }
                None
            }
        }
    }
}

/// Starts (or finds) the process, samples it and the toy server until the watch ends, and stops what it started.
pub(super) async fn run(
    plan: &ForeignPlan,
    server: &mut ServerSide,
    sampling: &mut Sampling<'_>,
    notes: &mut Vec<Note>,
) -> anyhow::Result<(Recording, Ended)> {
    let counters = Arc::new(LoadCounters::default());
    let addresses = Addresses::find(plan, server.address())?;
    let pprof = plan.pprof.as_deref().map(|url| addresses.fill(url));
    let channelz = plan.channelz.as_deref().map(|address| addresses.fill(address));
    let mut client = Client::start(plan, &addresses, sampling.dir, &counters)?;
    let pid = client.pid;
    let ports: Vec<u16> = server.address().and_then(address_port).into_iter().collect();
    // leaklab's own connections to the process's pprof, channelz and inspector servers are not its
    // connections; a running Node process opens its inspector at the default address when asked.
    let inspector = match (&addresses.inspector, &plan.client) {
        (Some(address), _) => Some(address.as_str()),
        (None, ForeignClient::Pid(_)) if plan.runtime.of_process(pid) == Some(GcRuntime::V8) => {
            Some(v8::DEFAULT_ADDRESS)
        }
        (None, ForeignClient::Pid(_)) => None,
        (None, ForeignClient::Command(_)) => None,
    };
    let side_ports = [
        pprof.as_deref().and_then(url_port),
        channelz.as_deref().and_then(address_port),
        inspector.and_then(address_port),
        addresses.agent.map(|agent| agent.port()),
    ];
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
    let heap = match plan.runtime {
        RuntimeChoice::None => None,
        choice => Some(Arc::new(
            HeapWatch::start(pid, HEAP_PERIOD, {
                let (inspector, started) = (addresses.inspector.clone(), client.child.is_some());
                move || heap_reader(choice, pid, started, inspector.clone())
            })
            .context("reading the heap")?,
        )),
    };
    let measure = ForeignMeasure::new(pid, Arc::clone(&sockets), server.take_control(), channelz.clone(), heap.clone())
        .with_context(|| format!("reading process {pid}"))?;
    let client_fds = procfs::fd_limits_of(Proc::Pid(pid)).ok();
    let recorder = sampling.record(Box::new(measure), Arc::clone(&counters), Some(plan.interval), plan.caps)?;
    let marker = recorder.marker();
    let requests = || counters.ok() + counters.failed();
    let profiler = Chooser { plan, pid, pprof: pprof.clone(), agent: addresses.agent };
    let (stopped_by, exit_code, profiled) =
        watch(plan, &mut client, &marker, &requests, profiler, sampling, notes).await;
    let recording = tokio::task::spawn_blocking(move || recorder.finish_without_last_sample())
        .await
        .context("the sampling thread")?;
    let exit_code = client.stop(stopped_by, exit_code, notes);
    let (reported_progress, orphans) = match client.output.take() {
        Some(output) => {
            let (reported, malformed, orphans) = output.finish(&plan.own_code).await?;
            notes.extend(malformed);
            (reported, orphans)
        }
        None => (false, None),
    };
    let tcp_states_at_end = sockets
        .latest()
        .process
        .unwrap_or_default()
        .into_iter()
        .map(|(state, count)| (state.name().to_owned(), count))
        .collect();
    let channelz = channelz.map(|channelz| channelz.summary());
    // A process that is no runtime of ours was never read: nothing to say of it.
    let runtime_heap = heap.map(|heap| heap.summary()).filter(|summary| summary.runtime.is_some());
    let Client { argv, .. } = client;
    let ended = Ended {
        stopped_by,
        pid,
        argv,
        exit_code,
        reported_progress,
        tcp_states_at_end,
        client_fds,
        profiled,
        channelz,
        runtime_heap,
        orphans,
    };
    Ok((recording, ended))
}

/// Which profiler a run asks for the client's profiles, chosen once warm-up ends (a launcher script has
/// exec'd its runtime by then).
struct Chooser<'a> {
    plan: &'a ForeignPlan,
    pid: u32,
    pprof: Option<String>,
    agent: Option<std::net::SocketAddr>,
}

impl Chooser<'_> {
    /// The profiler: the pprof endpoint when there is one; with `call_sites`, a JVM's class histograms or
    /// the agent leaklab put in the command; `Err` says why a process has none.
    fn choose(self) -> Result<Option<Box<dyn Profiler>>, Note> {
        if let Some(url) = self.pprof {
            return Ok(Some(Box::new(PprofEndpoint { url })));
        }
        if !self.plan.call_sites {
            return Ok(None);
        }
        if self.plan.runtime.of_process(self.pid) == Some(GcRuntime::Jvm) {
            return Ok(Some(Box::new(JvmHistogram::new(self.pid))));
        }
        match self.agent {
            Some(address) => Ok(Some(Box::new(Agent::new(address)))),
            None => Err(Note::CallSitesUnavailable {
                reason: format!(
                    "process {} is no JVM, and a Node or Python process loads leaklab's profile agent only when \
                     leaklab starts it (a command, not --pid); a Go or Rust process is profiled through --pprof",
                    self.pid
                ),
            }),
        }
    }
}

/// Marks warm-up, then the load, and waits through each until the process exits, the run is halted
/// or the plan's time is up; the client's profiles are taken as the warm-up ends, at checkpoints of the
/// load, and as the watch ends. Why the watch ended, the command's exit code when it exited by itself,
/// and where its profiles came from.
async fn watch(
    plan: &ForeignPlan,
    client: &mut Client,
    marker: &crate::sample::Marker,
    requests: &dyn Fn() -> u64,
    profiler: Chooser<'_>,
    sampling: &Sampling<'_>,
    notes: &mut Vec<Note>,
) -> (StopReason, Option<i32>, Option<Profiled>) {
    let mut profiler = Some(profiler);
    let mut profiling: Option<Profiling> = None;
    let started = Instant::now();
    let end = started + plan.duration;
    let mut exit_code = None;
    let mut ended = None;
    // The warm-up lasts its seconds and, when the plan counts one in requests, until the client reported them.
    let warmed = |now: Instant| now >= end || (now >= started + plan.warmup && requests() >= plan.warmup_requests);
    let measured = |now: Instant| now >= end;
    for (phase, done) in [(Phase::Warmup, &warmed as &dyn Fn(Instant) -> bool), (Phase::Load, &measured)] {
        if ended.is_some() {
            break;
        }
        if phase == Phase::Load {
            match profiler.take().map(Chooser::choose) {
                Some(Ok(Some(chosen))) => {
                    let mut started = Profiling::new(chosen, sampling.dir.path.clone(), client.pid);
                    started.load_begins().await;
                    profiling = Some(started);
                }
                Some(Err(note)) => notes.push(note),
                Some(Ok(None)) | None => {}
            }
        }
        marker.mark(phase);
        ended = wait(client.pid, client.child.as_mut(), &mut exit_code, done, sampling).await;
    }
    // A process that ended before its warm-up did was never profiled: said, where it was to be.
    if let Some(unused) = profiler.filter(|chooser| chooser.pprof.is_some() || chooser.plan.call_sites) {
        let error = format!("process {} ended before its warm-up did: no profile was taken", unused.pid);
        notes.push(Note::ProfileFetchFailed {
            process: leaklab_verdict::Side::Client,
            label: ProfileMoment::Warmup,
            error,
        });
    }
    let still_runs = ended != Some(StopReason::ProcessExited);
    let profiled = match profiling {
        Some(profiling) => {
            let (profiled, failures) = profiling.finish(still_runs).await;
            notes.extend(failures);
            Some(profiled)
        }
        None => None,
    };
    (ended.unwrap_or(StopReason::Duration), exit_code, profiled)
}

/// The reader of process `pid`'s heap, once it is known to be a runtime leaklab reads: a command leaklab
/// `started` is Node's only with the `inspector` it was given (a script that runs node has none); a
/// running process is asked to open its own.
fn heap_reader(
    choice: RuntimeChoice,
    pid: u32,
    started: bool,
    inspector: Option<String>,
) -> Option<Box<dyn HeapReader>> {
    match choice.of_process(pid)? {
        GcRuntime::Jvm => Some(Box::new(JvmAttach::new(pid))),
        GcRuntime::V8 => match (started, inspector) {
            (_, Some(address)) => Some(Box::new(V8Inspector::started(pid, address))),
            (false, None) => Some(Box::new(V8Inspector::running(pid))),
            (true, None) => None,
        },
    }
}

/// A free loopback `HOST:PORT` when `setting` holds `placeholder`.
fn free_port_for(setting: Option<&str>, placeholder: &str) -> anyhow::Result<Option<String>> {
    match setting.is_some_and(|setting| setting.contains(placeholder)) {
        true => free_port(placeholder).map(Some),
        false => Ok(None),
    }
}

/// A free loopback `HOST:PORT` for `what`.
fn free_port(what: &str) -> anyhow::Result<String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").with_context(|| format!("finding a free port for {what}"))?;
    Ok(listener.local_addr().with_context(|| format!("finding a free port for {what}"))?.to_string())
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

/// Why a foreign run has no sample: its process was gone before the first one.
pub(super) fn unsampled(ended: &Ended, dir: &RunDir) -> String {
    let exit = ended.exit_code.map_or(String::new(), |code| format!(" with code {code}"));
    let output = match ended.argv {
        Some(_) => format!("; its output is in {}", dir.file(RunDir::COMMAND_LOG).display()),
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

/// What a reader should know of a runtime's heap readings: that there were none, or that some failed;
/// and that they had no native memory to judge.
pub(super) fn runtime_heap_notes(readings: &HeapWatchSummary) -> Vec<Note> {
    let Some(runtime) = readings.runtime.map(|runtime| runtime.name().to_owned()) else { return Vec::new() };
    let error = readings.error.clone().unwrap_or_else(|| "no reading was taken before the process ended".to_owned());
    let untracked = readings.native_untracked.clone().filter(|_| readings.readings > 0);
    let read = match readings.readings {
        0 => Some(Note::RuntimeHeapUnread { runtime: runtime.clone(), error }),
        _ if readings.failures > 0 => {
            Some(Note::RuntimeHeapFailures { runtime: runtime.clone(), failures: readings.failures, error })
        }
        _ => None,
    };
    read.into_iter().chain(untracked.map(|reason| Note::NativeUntracked { runtime, reason })).collect()
}

/// Sets the options variable `name` of `command` to what it holds so far (the user's own value, and
/// options leaklab added before) with `option` after it.
pub(super) fn add_option(command: &mut std::process::Command, name: &str, option: &str) {
    let set = command.get_envs().find(|(key, _)| *key == name).and_then(|(_, value)| value);
    let user = match set {
        Some(value) => value.to_string_lossy().into_owned(),
        None => std::env::var(name).unwrap_or_default(),
    };
    command.env(name, format!("{user} {option}").trim_start());
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
    fn options_added_one_after_another_are_all_kept() {
        let mut command = std::process::Command::new("node");
        add_option(&mut command, "LEAKLAB_TEST_OPTIONS", "--inspect=127.0.0.1:1");
        add_option(&mut command, "LEAKLAB_TEST_OPTIONS", "--require=\"/a b/agent.js\"");
        let value = command.get_envs().find(|(key, _)| *key == "LEAKLAB_TEST_OPTIONS").and_then(|(_, v)| v);
        assert_eq!(value.unwrap(), "--inspect=127.0.0.1:1 --require=\"/a b/agent.js\"");
    }

    #[test]
    fn names_are_safe_for_a_directory() {
        let command = |program: &str| ForeignClient::Command(vec![program.to_owned()]);
        assert_eq!(process_name(&command("target/peers/go-echo-client")), "go-echo-client");
        assert_eq!(process_name(&command("/bin/my tool!")), "my_tool_");
    }
}
