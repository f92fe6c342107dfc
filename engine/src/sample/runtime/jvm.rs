//! A HotSpot JVM's heap, through its attach interface (what `jcmd` speaks):
//! a UNIX socket `/tmp/.java_pid<PID>` the JVM opens when it receives SIGQUIT
//! and finds a file `.attach_pid<PID>` in its working directory or `/tmp`.
//! A request is the protocol version, the command and three arguments, each
//! NUL-terminated; the answer is a result code on its first line, then the
//! command's output, then the JVM closes the socket.
//!
//! SIGQUIT kills a process that is not a JVM, or one too young to have its
//! handler installed, so leaklab sends it only to a process whose executable is
//! `java` (or that the user named a JVM) once its performance-data file has
//! existed for a while: HotSpot writes that file during start-up, just
//! before it installs the handler.

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use leaklab_probe::procfs::Proc;
use leaklab_probe::{GcRuntime, RuntimeHeap};

use super::HeapReader;

/// How long the JVM gets to open its socket after SIGQUIT (as jattach waits).
const LISTENER_START: Duration = Duration::from_secs(6);
/// How long one command may take: a full collection of a large heap included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a JVM's performance-data file must have been seen before SIGQUIT is safe to send.
const STARTED_FOR: Duration = Duration::from_secs(1);

/// One JVM, attached to on first use.
#[derive(Debug)]
pub struct JvmAttach {
    pid: u32,
    /// The JVM's own pid (inside its pid namespace), which names its files.
    ns_pid: u32,
    /// Its `/tmp`, seen through its mount namespace.
    tmp: PathBuf,
    /// When its performance-data file was first seen.
    perf_data_seen: Option<Instant>,
    /// Why its listener did not start: it is not asked again (each SIGQUIT would print a thread dump).
    refused: Option<String>,
    /// Why its native memory cannot be read (Native Memory Tracking is off): it is not asked again.
    native_untracked: Option<String>,
}

impl JvmAttach {
    pub fn new(pid: u32) -> JvmAttach {
        let (ns_pid, tmp) = (ns_pid(pid).unwrap_or(pid), Proc::Pid(pid).path("root/tmp"));
        JvmAttach { pid, ns_pid, tmp, perf_data_seen: None, refused: None, native_untracked: None }
    }

    /// Runs a diagnostic command (`GC.run`, `GC.heap_info`, …) as `jcmd PID COMMAND` would; its output.
    pub fn jcmd(&mut self, command: &str) -> Result<String, String> {
        let socket = self.tmp.join(format!(".java_pid{}", self.ns_pid));
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        if !is_socket(&socket) {
            self.start_listener(&socket)?;
        }
        let fail = |what: &str, error: std::io::Error| format!("jcmd {command}: {what} {}: {error}", socket.display());
        let mut stream = UnixStream::connect(&socket).map_err(|e| fail("cannot connect to", e))?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| fail("cannot time", e))?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| fail("cannot time", e))?;
        stream.write_all(&request(command)).map_err(|e| fail("cannot write to", e))?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(|e| fail("no answer on", e))?;
        let answer = String::from_utf8_lossy(&answer);
        let (code, output) = answer.split_once('\n').unwrap_or((&answer, ""));
        match code.trim() {
            "0" => Ok(output.to_owned()),
            _ => Err(format!("jcmd {command}: the JVM answered {:?}", answer.trim())),
        }
    }

    /// Waits up to `patience` until the JVM has run long enough to be asked (its performance-data file
    /// seen for a while, see [`STARTED_FOR`]); whether it has.
    pub fn wait_until_started(&mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            if self.perf_data_seen.is_none() && has_perf_data(&self.tmp, self.ns_pid) {
                self.perf_data_seen = Some(Instant::now());
            }
            if self.perf_data_seen.is_some_and(|seen| seen.elapsed() >= STARTED_FOR) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Has the JVM open its attach socket: the trigger file, SIGQUIT, and a wait for the socket.
    fn start_listener(&mut self, socket: &std::path::Path) -> Result<(), String> {
        let seen = match self.perf_data_seen {
            Some(seen) => seen,
            None if has_perf_data(&self.tmp, self.ns_pid) => *self.perf_data_seen.insert(Instant::now()),
            None => {
                return Err(format!(
                    "process {} has no HotSpot performance data in {}/hsperfdata_*: not a HotSpot JVM, still \
                     starting, or run with -XX:-UsePerfData",
                    self.pid,
                    self.tmp.display()
                ));
            }
        };
        if seen.elapsed() < STARTED_FOR {
            return Err(format!("process {}: the JVM is still starting", self.pid));
        }
        let trigger = self.trigger_file()?;
        // SAFETY: kill(2) on a pid; no memory is involved.
        let sent = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGQUIT) };
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        while sent == 0 && !is_socket(socket) && started.elapsed() < LISTENER_START {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        let _ = std::fs::remove_file(&trigger);
        if is_socket(socket) {
            Ok(())
        } else {
            Err(self
                .refused
                .insert(format!(
                    "process {}: the JVM did not open its attach socket {} within {} s (started with \
                 -XX:+DisableAttachMechanism?)",
                    self.pid,
                    socket.display(),
                    LISTENER_START.as_secs()
                ))
                .clone())
        }
    }

    /// Creates `.attach_pid<PID>` where the JVM looks for it: its working directory, else its `/tmp`. The
    /// path returned is the file's own, not through `/proc/PID`, so that it can be removed after the JVM
    /// has exited.
    fn trigger_file(&self) -> Result<PathBuf, String> {
        let name = format!(".attach_pid{}", self.ns_pid);
        let cwd = Proc::Pid(self.pid).path("cwd").join(&name);
        let tmp = self.tmp.join(&name);
        let created = match std::fs::File::create(&cwd) {
            Ok(_) => cwd,
            Err(_) => std::fs::File::create(&tmp)
                .map(|_| tmp)
                .map_err(|error| format!("cannot create {name} in the JVM's directory or /tmp: {error}"))?,
        };
        Ok(std::fs::canonicalize(&created).unwrap_or(created))
    }
}

impl HeapReader for JvmAttach {
    fn runtime(&self) -> GcRuntime {
        GcRuntime::Jvm
    }

    fn collect_and_read(&mut self) -> Result<RuntimeHeap, String> {
        self.jcmd("GC.run")?;
        let info = self.jcmd("GC.heap_info")?;
        let (live_bytes, committed_bytes) = heap_info(&info).ok_or_else(|| {
            let first = info.lines().find(|line| !line.trim().is_empty()).unwrap_or("(nothing)");
            format!("jcmd GC.heap_info: no heap totals in its output, which begins {:?}", first.trim())
        })?;
        let native_bytes = self.native_bytes();
        Ok(RuntimeHeap { runtime: GcRuntime::Jvm, live_bytes, committed_bytes, native_bytes })
    }

    fn native_untracked(&self) -> Option<&str> {
        self.native_untracked.as_deref()
    }
}

impl JvmAttach {
    /// What Native Memory Tracking counts outside the heap ([`native_memory`]); `None` once the JVM has
    /// said that it does not track it, and for a reading whose command failed (the heap's reading stands).
    fn native_bytes(&mut self) -> Option<u64> {
        if self.native_untracked.is_some() {
            return None;
        }
        let summary = self.jcmd(NATIVE_MEMORY).ok()?;
        if let Some(bytes) = native_memory(&summary) {
            return Some(bytes);
        }
        let answer = summary.lines().map(str::trim).find(|line| !line.is_empty() && !line.ends_with(':'));
        let answer = answer.unwrap_or("nothing");
        self.native_untracked = Some(if answer.contains("not enabled") {
            format!(
                "the JVM was started without {NATIVE_MEMORY_TRACKING}, which only works from the start ({answer:?})"
            )
        } else {
            format!("jcmd {NATIVE_MEMORY} listed no categories; the JVM answered {answer:?}")
        });
        None
    }
}

/// The option that has a JVM track its native memory at a small cost (a header on each of its `malloc`s);
/// it can only be given at start.
pub const NATIVE_MEMORY_TRACKING: &str = "-XX:NativeMemoryTracking=summary";
/// The Native Memory Tracking summary, in bytes.
const NATIVE_MEMORY: &str = "VM.native_memory summary scale=b";

/// The Native Memory Tracking categories a program's leak outside the heap shows in: `Thread` (the stacks
/// of threads it starts), `Other` (direct buffers: `ByteBuffer.allocateDirect`, netty's pools,
/// `Unsafe.allocateMemory`) and `Internal` (JNI and VM internals). The others grow as the JIT compiles
/// and classes load (`Code`, `Compiler`, `Arena Chunk`, `Class`, `Symbol`, `Metaspace`) or follow the
/// heap's committed size (`GC`), leak or not. Memory native libraries allocate themselves is not tracked.
const NATIVE_CATEGORIES: [&str; 3] = ["Thread", "Other", "Internal"];

/// Committed bytes of [`NATIVE_CATEGORIES`] in a `VM.native_memory summary scale=b` output
/// (`-  Other (reserved=N, committed=M)`); `None` when it lists none of them (tracking is off).
fn native_memory(text: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let Some((name, figures)) = line.trim().strip_prefix('-').and_then(|rest| rest.split_once('(')) else {
            continue;
        };
        if !NATIVE_CATEGORIES.contains(&name.trim()) {
            continue;
        }
        let committed = figures.split([',', ')']).find_map(|part| part.trim().strip_prefix("committed="));
        if let Some(bytes) = committed.and_then(|n| n.parse::<u64>().ok()) {
            *sum.get_or_insert(0) += bytes;
        }
    }
    sum
}

/// The request for one `jcmd` command: protocol 1, `jcmd`, the command line, two empty arguments.
fn request(command: &str) -> Vec<u8> {
    [b"1\0jcmd\0".as_slice(), command.as_bytes(), b"\0\0\0"].concat()
}

/// Used and committed bytes of the Java heap from `GC.heap_info`: the sum of its generations' `total …,
/// used …` lines (G1, Parallel, Serial), or ZGC's `used …, capacity …`. Metaspace is native memory, not heap.
pub fn heap_info(text: &str) -> Option<(u64, u64)> {
    let mut sums = None;
    for line in text.lines() {
        let line = line.trim();
        let words = || line.split([' ', ',']).filter(|word| !word.is_empty());
        let after = |key: &str| words().skip_while(|word| *word != key).nth(1).and_then(size);
        let pair = if line.starts_with("ZHeap") {
            after("used").zip(after("capacity"))
        } else if line.starts_with("Metaspace") || line.starts_with("class space") {
            None
        } else {
            after("used").zip(after("total"))
        };
        if let Some((used, committed)) = pair {
            let (u, c) = sums.get_or_insert((0, 0));
            *u += used;
            *c += committed;
        }
    }
    sums
}

/// `20393K`, `8M`, `1G` as bytes.
fn size(word: &str) -> Option<u64> {
    let unit = match word.chars().last()? {
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return None,
    };
    word[..word.len() - 1].parse::<u64>().ok().map(|n| n * unit)
}

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Whether some `hsperfdata_<user>/<PID>` exists in `tmp`.
fn has_perf_data(tmp: &std::path::Path, ns_pid: u32) -> bool {
    let Ok(dirs) = std::fs::read_dir(tmp) else { return false };
    dirs.flatten()
        .filter(|dir| dir.file_name().to_string_lossy().starts_with("hsperfdata_"))
        .any(|dir| dir.path().join(ns_pid.to_string()).is_file())
}

/// The process's pid in its own pid namespace (the last of `NSpid` in its status).
fn ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(Proc::Pid(pid).path("status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_info_of_each_collector_sums_its_generations_and_skips_metaspace() {
        let g1 = " garbage-first heap   total 258048K, used 20393K [0x0000000708e00000, 0x0000000800000000)\n  \
                  region size 2048K, 10 young (20480K), 2 survivors (4096K)\n Metaspace       used 6571K, \
                  committed 6784K, reserved 1114112K\n  class space    used 596K, committed 704K, reserved 1048576K\n";
        assert_eq!(heap_info(g1), Some((20393 << 10, 258048 << 10)));
        let parallel = " PSYoungGen      total 76288K, used 3932K [0x1, 0x2, 0x3)\n  eden space 65536K, 6% used \
                        [0x1,0x2,0x3)\n ParOldGen       total 175104K, used 100K [0x1, 0x2, 0x3)\n  object space \
                        175104K, 0% used [0x1,0x2,0x3)\n Metaspace       used 900K, committed 1024K, reserved 1056768K\n";
        assert_eq!(heap_info(parallel), Some(((3932 + 100) << 10, (76288 + 175104) << 10)));
        let serial = " def new generation   total 4928K, used 2110K [0x1, 0x2, 0x3)\n  eden space 4416K,  47% used \
                      [0x1, 0x2, 0x3)\n tenured generation   total 10944K, used 300K [0x1, 0x2, 0x3)\n   the space \
                      10944K,   2% used [0x1, 0x2, 0x3)\n";
        assert_eq!(heap_info(serial), Some(((2110 + 300) << 10, (4928 + 10944) << 10)));
        let z = " ZHeap           used 8M, capacity 256M, max capacity 4096M\n Metaspace       used 6M, committed 7M\n";
        assert_eq!(heap_info(z), Some((8 << 20, 256 << 20)));
        assert_eq!(heap_info("Metaspace used 1K, committed 2K\n"), None);
    }

    #[test]
    fn native_memory_is_the_committed_threads_direct_buffers_and_internals() {
        // As JDK 17 prints it (shortened): the Java heap, the JIT's and class loading's categories are not counted.
        let summary = "\nNative Memory Tracking:\n\nTotal: reserved=8027648698, committed=484250298\n       \
            malloc: 7279290 #3838\n\n-                 Java Heap (reserved=6320816128, committed=406847488)\n   \
            (mmap: reserved=6320816128, committed=406847488) \n \n-                    Thread (reserved=19974504, \
            committed=862568)\n                            (thread #19)\n-                      Code \
            (reserved=253671480, committed=7768120)\n-                  Internal (reserved=202138, \
            committed=202138)\n-                     Other (reserved=8421936, committed=8421936)\n   \
            (malloc=8421936 #12)\n-               Arena Chunk (reserved=272920, committed=272920)\n";
        assert_eq!(native_memory(summary), Some(862_568 + 202_138 + 8_421_936));
        assert_eq!(native_memory("12518:\nNative memory tracking is not enabled\n"), None);
    }

    #[test]
    fn a_request_is_the_protocol_the_command_and_empty_arguments() {
        assert_eq!(request("GC.run"), b"1\0jcmd\0GC.run\0\0\0");
    }

    #[test]
    fn a_process_without_performance_data_is_never_sent_sigquit() {
        // This test process is no JVM: the attach must refuse before any signal (SIGQUIT would end it).
        let error = JvmAttach::new(std::process::id()).jcmd("GC.run").unwrap_err();
        assert!(error.contains("no HotSpot performance data"), "{error}");
    }

    /// A scripted JVM: an attach socket in a directory of the test's, answering each command from a table.
    fn scripted(answers: Vec<(&'static str, &'static str)>) -> (tempfile::TempDir, JvmAttach) {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let listener = UnixListener::bind(dir.path().join(format!(".java_pid{pid}"))).unwrap();
        std::thread::spawn(move || {
            for (expected, answer) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = vec![0u8; request(expected).len()];
                stream.read_exact(&mut request).unwrap();
                assert_eq!(request, self::request(expected));
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let jvm = JvmAttach {
            pid,
            ns_pid: pid,
            tmp: dir.path().to_owned(),
            perf_data_seen: None,
            refused: None,
            native_untracked: None,
        };
        (dir, jvm)
    }

    #[test]
    fn a_reading_is_a_collection_then_the_heap_info_and_a_refusal_names_the_answer() {
        let info = "0\n garbage-first heap   total 65536K, used 2048K [0x1, 0x2)\n Metaspace used 1K, committed 2K\n";
        let untracked = "0\nNative memory tracking is not enabled\n";
        let (_dir, mut jvm) = scripted(vec![
            ("GC.run", "0\n"),
            ("GC.heap_info", info),
            (NATIVE_MEMORY, untracked),
            ("GC.run", "0\n"),
            ("GC.heap_info", info),
            ("GC.run", "101\nNo such command\n"),
        ]);
        let heap = jvm.collect_and_read().unwrap();
        let expected = RuntimeHeap {
            runtime: GcRuntime::Jvm,
            live_bytes: 2048 << 10,
            committed_bytes: 65536 << 10,
            native_bytes: None,
        };
        assert_eq!(heap, expected);
        let why = jvm.native_untracked().unwrap();
        assert!(why.contains("not enabled") && why.contains(NATIVE_MEMORY_TRACKING), "{why}");
        // Tracking cannot be turned on in a running JVM: the second reading does not ask again.
        assert_eq!(jvm.collect_and_read().unwrap(), expected);
        let error = jvm.collect_and_read().unwrap_err();
        assert!(error.starts_with("jcmd GC.run: the JVM answered") && error.contains("No such command"), "{error}");
    }
}
