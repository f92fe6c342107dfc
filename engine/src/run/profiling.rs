//! The client's own profiles during a foreign run (`pprof`, `call_sites`): one as warm-up ends, then one
//! at every checkpoint of the load while the process runs, each replacing the last, and a last one as
//! the watch ends if the process still runs (or, for CPython, whose snapshots disturb its RSS, none at
//! the checkpoints and the one its agent wrote as it exited). A process that ends its own load and exits
//! a few seconds later thus keeps its before and its after.
//!
//! Each runtime is asked with the profiler its users trust ([`Profiler`]): a pprof endpoint (Go's
//! `net/http/pprof`, a Rust service's jemalloc profile), leaklab's in-process agent for Node (V8's
//! sampling heap profiler) and CPython (`tracemalloc`), or HotSpot's class histogram over the attach
//! interface. The profiles are kept in the run directory; `heap::profiles` compares them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::heap::ProfileMoment;
use crate::heap::own::CodeRuntime;
use crate::heap::{agent, histogram, profiles};
use crate::sample::pprof::write_whole;
use crate::sample::runtime::jvm::JvmAttach;
use crate::summary::Note;
use leaklab_probe::procfs::Proc;
use leaklab_verdict::Side;

/// How often the load's profile is taken again: often enough that a process that exits three seconds
/// after its last request still gives one, rarely enough that a collection per profile costs little.
/// A profile that takes long (a tracemalloc snapshot: 1.5 to 3 s of CPU) waits twice its time before
/// the next, so that profiling never takes more than a third of the process's time.
pub(super) const CHECKPOINT_PERIOD: Duration = Duration::from_secs(2);
/// How long a JVM that is still starting is waited for before its first histogram.
const JVM_START_PATIENCE: Duration = Duration::from_secs(10);
/// How long an agent gets to answer: a collection and a walk of the heap.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// In a command's environment: where leaklab's agent listens, in a Node or Python process it starts.
pub(super) const AGENT_LISTEN_ENV: &str = "LEAKLAB_PROFILE_LISTEN";
/// In a command's environment: the file CPython's agent writes its last snapshot to as the process exits
/// (Node's writes none: see its header).
pub(super) const AGENT_EXIT_ENV: &str = "LEAKLAB_PROFILE_EXIT";
/// That file, in the run directory.
const AGENT_EXIT_FILE: &str = "profile-client-exit.json";
/// The Node agent, written into the run directory and required through `NODE_OPTIONS`.
const NODE_AGENT: &str = include_str!("../../agents/node/leaklab-profile.js");
/// The CPython agent, imported at start-up from the directory leaklab puts first on `PYTHONPATH`.
const PYTHON_AGENT: &str = include_str!("../../agents/python/sitecustomize.py");

/// A process's own profiler, as a run reaches it.
pub(super) trait Profiler: Send {
    /// Where it is reached, for the summary and the notes: a URL, or the agent and its address.
    fn source(&self) -> String;

    /// The runtime whose frames it records, once known.
    fn runtime(&self) -> Option<CodeRuntime>;

    /// Takes a profile now and keeps it in `dir` as `moment`'s; what failed, one line each.
    fn take(&mut self, dir: &Path, moment: ProfileMoment) -> Result<(), Vec<String>>;

    /// Whether the load's checkpoints take profiles too: not where taking one disturbs what is judged.
    fn checkpoints(&self) -> bool {
        true
    }

    /// Keeps the profile the process left in `dir` as it exited as the end's; `None` when it left none.
    fn at_exit(&mut self, _dir: &Path) -> Option<Result<(), Vec<String>>> {
        None
    }
}

/// A pprof endpoint: a Go process's `net/http/pprof`, or a Rust service's jemalloc heap profile.
pub(super) struct PprofEndpoint {
    pub(super) url: String,
}

impl Profiler for PprofEndpoint {
    fn source(&self) -> String {
        self.url.clone()
    }

    /// Told from the profile itself when it is read (see `heap::profiles::runtime_of`).
    fn runtime(&self) -> Option<CodeRuntime> {
        None
    }

    fn take(&mut self, dir: &Path, moment: ProfileMoment) -> Result<(), Vec<String>> {
        let mut errors = crate::sample::pprof::fetch(&self.url, dir, Side::Client, moment);
        // A Rust service serves its heap alone (no `alloc_space`, a jemalloc profile): it has no goroutines
        // to miss, when this fetch's heap came.
        let heap_came = !errors.iter().any(|error| error.contains("/heap"));
        let heap_only = || {
            let bytes = std::fs::read(dir.join(profiles::file_name(Side::Client, moment, "heap"))).ok()?;
            let profile = crate::heap::pprof::Profile::decode(&bytes).ok()?;
            Some(profiles::runtime_of(&profile) == CodeRuntime::Rust)
        };
        if heap_came && heap_only() == Some(true) {
            errors.retain(|error| !error.contains("/goroutine"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// leaklab's agent in a Node or Python process it started, on a loopback port.
pub(super) struct Agent {
    pub(super) address: SocketAddr,
    runtime: Option<CodeRuntime>,
}

impl Agent {
    pub(super) fn new(address: SocketAddr) -> Agent {
        Agent { address, runtime: None }
    }

    fn ask(&self) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(AGENT_TIMEOUT))?;
        stream.write_all(b"profile\n")?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        Ok(reply)
    }
}

impl Profiler for Agent {
    fn source(&self) -> String {
        format!("leaklab's profile agent at {}", self.address)
    }

    fn runtime(&self) -> Option<CodeRuntime> {
        self.runtime
    }

    fn take(&mut self, dir: &Path, moment: ProfileMoment) -> Result<(), Vec<String>> {
        let source = self.source();
        let fail = |error: String| vec![format!("{source}: {error}")];
        let reply = self.ask().map_err(|error| {
            fail(format!("{error} (a Node or Python process loads the agent; this one did not answer)"))
        })?;
        self.keep(dir, moment, &reply)
    }

    /// A tracemalloc snapshot costs 1.5 to 3 s of the process's CPU and leaves it megabytes larger (the
    /// snapshot's objects freed, their pages kept), which its RSS verdict would judge as growth: the
    /// agent writes its last snapshot as the process exits instead.
    fn checkpoints(&self) -> bool {
        self.runtime != Some(CodeRuntime::Cpython)
    }

    fn at_exit(&mut self, dir: &Path) -> Option<Result<(), Vec<String>>> {
        let file = std::path::absolute(dir).ok()?.join(AGENT_EXIT_FILE);
        let reply = std::fs::read(&file).ok()?;
        Some(
            self.keep(dir, ProfileMoment::End, &reply)
                .map_err(|errors| errors.into_iter().map(|error| format!("{}: {error}", file.display())).collect()),
        )
    }
}

impl Agent {
    /// Converts an agent's `reply` and keeps it in `dir` as `moment`'s, in pprof's form and the runtime's own.
    fn keep(&mut self, dir: &Path, moment: ProfileMoment, reply: &[u8]) -> Result<(), Vec<String>> {
        let source = self.source();
        let fail = |error: String| vec![format!("{source}: {error}")];
        let (runtime, profile) = agent::convert(reply).map_err(fail)?;
        self.runtime = Some(runtime);
        let raw = dir.join(profiles::raw_file_name(Side::Client, moment, runtime));
        let pprof = dir.join(profiles::file_name(Side::Client, moment, "heap"));
        for (file, bytes) in [(&raw, agent::raw_profile(reply, runtime)), (&pprof, profile.encode_gzipped())] {
            write_whole(file, &bytes).map_err(|error| fail(format!("writing {}: {error}", file.display())))?;
        }
        Ok(())
    }
}

/// HotSpot's class histogram (`jcmd PID GC.class_histogram`, over the attach interface).
pub(super) struct JvmHistogram {
    attach: JvmAttach,
}

impl JvmHistogram {
    pub(super) fn new(pid: u32) -> JvmHistogram {
        JvmHistogram { attach: JvmAttach::new(pid) }
    }
}

impl Profiler for JvmHistogram {
    fn source(&self) -> String {
        "jcmd GC.class_histogram".to_owned()
    }

    fn runtime(&self) -> Option<CodeRuntime> {
        Some(CodeRuntime::Jvm)
    }

    fn take(&mut self, dir: &Path, moment: ProfileMoment) -> Result<(), Vec<String>> {
        // A warm-up shorter than the JVM's start-up still gets its histogram, a moment late.
        self.attach.wait_until_started(JVM_START_PATIENCE);
        let histogram = self.attach.jcmd("GC.class_histogram").map_err(|error| vec![error])?;
        // A JVM on its way out answers with less: only a histogram that reads replaces the last one.
        histogram::parse(&histogram).map_err(|error| vec![format!("{}: {error}", self.source())])?;
        let file = dir.join(profiles::histogram_file_name(Side::Client, moment));
        write_whole(&file, histogram.as_bytes()).map_err(|error| vec![format!("{}: {error}", file.display())])
    }
}

/// Writes the agents into `dir` and sets `command`'s environment so that a Node or Python program loads
/// them and listens at `address`; a program of another runtime ignores all three variables.
pub(super) fn arm_agents(command: &mut std::process::Command, dir: &Path, address: SocketAddr) -> std::io::Result<()> {
    // Absolute: the command may run elsewhere, and Node resolves a relative --require from its own directory.
    let dir = &std::path::absolute(dir)?;
    let node = dir.join("leaklab-profile.js");
    std::fs::write(&node, NODE_AGENT)?;
    let python = dir.join("leaklab_profile");
    std::fs::create_dir_all(&python)?;
    std::fs::write(python.join("sitecustomize.py"), PYTHON_AGENT)?;
    command.env(AGENT_LISTEN_ENV, address.to_string());
    command.env(AGENT_EXIT_ENV, dir.join(AGENT_EXIT_FILE));
    // NODE_OPTIONS splits on spaces unless a value is quoted.
    super::foreign::add_option(command, "NODE_OPTIONS", &format!("--require=\"{}\"", node.display()));
    let path = std::env::var("PYTHONPATH").unwrap_or_default();
    let python = python.display().to_string();
    command.env("PYTHONPATH", if path.is_empty() { python } else { format!("{python}:{path}") });
    Ok(())
}

/// What the run learned of the client's profiles.
#[derive(Debug, Clone)]
pub(super) struct Profiled {
    pub(super) source: String,
    pub(super) runtime: Option<CodeRuntime>,
}

/// A profiler through a run: its warm-up profile, the checkpoints of the load on a thread of their own,
/// and the last profile.
pub(super) struct Profiling {
    profiler: Arc<Mutex<Box<dyn Profiler>>>,
    dir: PathBuf,
    period: Duration,
    /// The process profiled: a checkpoint asks nothing of one that has exited (its pid may be another's).
    pid: u32,
    /// Whether the warm-up's profile was taken: without it there is nothing to compare with.
    based: bool,
    checkpoints: Option<(Arc<AtomicBool>, std::thread::JoinHandle<Checkpointed>)>,
    notes: Vec<Note>,
}

/// What the checkpoints of the load came to: whether one was taken, and the last failure.
#[derive(Debug, Default)]
struct Checkpointed {
    taken: bool,
    last_error: Option<String>,
}

impl Profiling {
    pub(super) fn new(profiler: Box<dyn Profiler>, dir: PathBuf, pid: u32) -> Profiling {
        let profiler = Arc::new(Mutex::new(profiler));
        let period = CHECKPOINT_PERIOD;
        Profiling { profiler, dir, period, pid, based: false, checkpoints: None, notes: Vec::new() }
    }

    /// The warm-up's profile, then the load's checkpoints every [`CHECKPOINT_PERIOD`] until [`finish`].
    pub(super) async fn load_begins(&mut self) {
        let (profiler, dir) = (Arc::clone(&self.profiler), self.dir.clone());
        let taken = tokio::task::spawn_blocking(move || take(&profiler, &dir, ProfileMoment::Warmup)).await;
        if let Err(errors) = taken.unwrap_or_else(|error| Err(vec![error.to_string()])) {
            self.notes.extend(errors.into_iter().map(|error| failure(ProfileMoment::Warmup, error)));
            return;
        }
        self.based = true;
        if !self.profiler.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).checkpoints() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (profiler, dir, stopped, period) =
            (Arc::clone(&self.profiler), self.dir.clone(), Arc::clone(&stop), self.period);
        let pid = self.pid;
        let thread = std::thread::Builder::new().name("profile-checkpoints".into()).spawn(move || {
            let mut checkpointed = Checkpointed::default();
            let mut wait = period;
            while !sleep_unless(&stopped, wait) {
                if !Proc::Pid(pid).is_running() {
                    break;
                }
                let started = std::time::Instant::now();
                let taken = take(&profiler, &dir, ProfileMoment::End);
                wait = period.max(2 * started.elapsed());
                match taken {
                    Ok(()) => checkpointed.taken = true,
                    Err(errors) => checkpointed.last_error = errors.into_iter().next(),
                }
            }
            checkpointed
        });
        self.checkpoints = thread.ok().map(|thread| (stop, thread));
    }

    /// Stops the checkpoints, takes the last profile if the process `still_runs` (or reads the one it left
    /// as it exited), and says what is missing: the notes, and where the profiles came from.
    pub(super) async fn finish(mut self, still_runs: bool) -> (Profiled, Vec<Note>) {
        if !self.based {
            return (self.profiled(), std::mem::take(&mut self.notes));
        }
        let checkpointed = match self.checkpoints.take() {
            Some((stop, thread)) => {
                stop.store(true, Ordering::SeqCst);
                tokio::task::spawn_blocking(move || thread.join().unwrap_or_default()).await.unwrap_or_default()
            }
            None => Checkpointed::default(),
        };
        let (profiler, dir) = (Arc::clone(&self.profiler), self.dir.clone());
        let last = tokio::task::spawn_blocking(move || {
            let mut profiler = profiler.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // One still running may be on its way out: what it left as it exited stands in.
            let taken = match still_runs {
                true => profiler.take(&dir, ProfileMoment::End),
                false => Err(Vec::new()),
            };
            taken.or_else(|errors| {
                profiler.at_exit(&dir).unwrap_or_else(|| match errors.is_empty() {
                    true => Err(vec![format!(
                        "{}: the process exited before the end of the watch, leaving no profile",
                        profiler.source()
                    )]),
                    false => Err(errors),
                })
            })
        })
        .await
        .unwrap_or_else(|error| Err(vec![error.to_string()]));
        // A checkpoint's profile stands for the end when the last could not be taken.
        if let (Err(errors), false) = (last, checkpointed.taken) {
            let error = checkpointed.last_error.or_else(|| errors.into_iter().next()).unwrap_or_default();
            self.notes.push(failure(ProfileMoment::End, error));
        }
        (self.profiled(), std::mem::take(&mut self.notes))
    }

    fn profiled(&self) -> Profiled {
        let profiler = self.profiler.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Profiled { source: profiler.source(), runtime: profiler.runtime() }
    }
}

impl Drop for Profiling {
    /// A profiling dropped before `finish` stops its checkpoints all the same.
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.checkpoints {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

fn take(profiler: &Mutex<Box<dyn Profiler>>, dir: &Path, moment: ProfileMoment) -> Result<(), Vec<String>> {
    profiler.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take(dir, moment)
}

fn failure(moment: ProfileMoment, error: String) -> Note {
    Note::ProfileFetchFailed { process: Side::Client, label: moment, error }
}

/// Sleeps `period` in short steps; true as soon as `stop` is set.
fn sleep_unless(stop: &AtomicBool, period: Duration) -> bool {
    let step = Duration::from_millis(50).min(period);
    let mut slept = Duration::ZERO;
    while slept < period {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(step);
        slept += step;
    }
    stop.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::mpsc;

    /// Answers from a script, then fails as a process that has exited does; says each time it is asked.
    struct Scripted {
        answers: VecDeque<Result<(), String>>,
        asked: mpsc::Sender<ProfileMoment>,
        /// A profiler whose profiles disturb the process: none at checkpoints, one left at its exit.
        left_at_exit: Option<Result<(), String>>,
    }

    impl Profiler for Scripted {
        fn source(&self) -> String {
            "http://127.0.0.1:1/debug/pprof".to_owned()
        }
        fn runtime(&self) -> Option<CodeRuntime> {
            Some(CodeRuntime::Go)
        }
        fn take(&mut self, _: &Path, moment: ProfileMoment) -> Result<(), Vec<String>> {
            let _ = self.asked.send(moment);
            let refused = Err("connection refused".to_owned());
            self.answers.pop_front().unwrap_or(refused).map_err(|error| vec![error])
        }
        fn checkpoints(&self) -> bool {
            self.left_at_exit.is_none()
        }
        fn at_exit(&mut self, _: &Path) -> Option<Result<(), Vec<String>>> {
            self.left_at_exit.clone().map(|left| left.map_err(|error| vec![error]))
        }
    }

    /// A profiling of the scripted answers, checkpoints every 10 ms, and what it is asked for.
    fn scripted(answers: &[Result<(), &str>]) -> (Profiling, mpsc::Receiver<ProfileMoment>) {
        let (asked, heard) = mpsc::channel();
        let answers = answers.iter().map(|a| a.map_err(str::to_owned)).collect();
        let scripted = Scripted { answers, asked, left_at_exit: None };
        let mut profiling = Profiling::new(Box::new(scripted), PathBuf::from("/nonexistent"), std::process::id());
        profiling.period = Duration::from_millis(10);
        (profiling, heard)
    }

    /// Waits until the load's profile has been asked for `times` times.
    fn checkpoints(heard: &mpsc::Receiver<ProfileMoment>, times: usize) {
        let ends = heard.iter().filter(|moment| *moment == ProfileMoment::End).take(times).count();
        assert_eq!(ends, times);
    }

    #[tokio::test]
    async fn a_process_that_exits_after_its_load_keeps_a_checkpoints_profile_as_its_end() {
        let (mut profiling, heard) = scripted(&[Ok(()), Ok(())]);
        profiling.load_begins().await;
        // The warm-up's profile, a checkpoint's, then the process is gone: refused from then on.
        checkpoints(&heard, 2);
        let (profiled, notes) = profiling.finish(false).await;
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(profiled.source, "http://127.0.0.1:1/debug/pprof");
    }

    #[tokio::test]
    async fn an_end_no_checkpoint_gave_is_a_note_naming_the_url_and_the_reason() {
        let (mut profiling, heard) = scripted(&[Ok(())]);
        profiling.load_begins().await;
        checkpoints(&heard, 1);
        let (_, notes) = profiling.finish(true).await;
        assert_eq!(
            notes,
            [Note::ProfileFetchFailed {
                process: Side::Client,
                label: ProfileMoment::End,
                error: "connection refused".to_owned()
            }]
        );
        // Without the warm-up's profile there is no base: that alone is said, and nothing more is asked.
        let (mut profiling, heard) = scripted(&[Err("404 Not Found")]);
        profiling.load_begins().await;
        let (_, notes) = profiling.finish(true).await;
        assert!(matches!(&notes[..], [Note::ProfileFetchFailed { label: ProfileMoment::Warmup, .. }]), "{notes:?}");
        assert_eq!(heard.try_iter().collect::<Vec<_>>(), [ProfileMoment::Warmup]);
    }

    #[tokio::test]
    async fn a_profiler_that_disturbs_the_process_takes_no_checkpoint_and_keeps_its_exit_profile() {
        let (asked, heard) = mpsc::channel();
        let answers = [Ok(())].into_iter().collect();
        let scripted = Scripted { answers, asked, left_at_exit: Some(Ok(())) };
        let mut profiling = Profiling::new(Box::new(scripted), PathBuf::from("/nonexistent"), std::process::id());
        profiling.period = Duration::from_millis(1);
        profiling.load_begins().await;
        let (_, notes) = profiling.finish(false).await;
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(heard.try_iter().collect::<Vec<_>>(), [ProfileMoment::Warmup], "no checkpoint was taken");
    }
}
