//! The server child process: started on a free loopback port, read over its
//! stats side channel, and stopped on every exit path.
//!
//! Three things keep it from outliving the load generator: dropping
//! [`ServerProcess`] kills it (this covers errors and panics, which unwind);
//! its stdin is our pipe, and it shuts down when that closes (this covers
//! `kill -9` of the load generator); and the kernel sends it SIGKILL when
//! the thread that started it dies (`PR_SET_PDEATHSIG`). It runs in its own
//! process group, so a Ctrl-C in the terminal reaches only the load
//! generator, which then stops the load, samples, and stops the server.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use leaklab_probe::control::{HEAP_DUMP_REQUEST, PURGE_REQUEST, STATS_REQUEST, ServerLine, ServerStats};

/// How long one stats answer may take before that sample goes without server figures.
const STATS_TIMEOUT: Duration = Duration::from_secs(1);
/// Dumping and symbolizing a heap profile of thousands of stacks takes a few seconds.
const HEAP_DUMP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to print its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start the server {}: {source}", bin.display())]
    Start { bin: PathBuf, source: std::io::Error },
    #[error("the server {} exited before announcing its address ({status}); see {}", bin.display(), log.display())]
    Exited { bin: PathBuf, status: ExitStatus, log: PathBuf },
    #[error("the server {} did not announce its address within {LISTEN_TIMEOUT:?}; see {}", bin.display(), log.display())]
    Silent { bin: PathBuf, log: PathBuf },
}

/// A running server child. Dropping it kills the child.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// The address the server bound.
    pub addr: SocketAddr,
}

/// The side channel to a [`ServerProcess`]: dropping it closes the server's
/// stdin, which asks the server to shut down.
#[derive(Debug)]
pub struct ServerControl {
    stdin: ChildStdin,
    lines: Receiver<ServerLine>,
}

impl ServerProcess {
    /// Starts `bin` on a free port of 127.0.0.1 with `args`, its stderr going to `log`,
    /// and waits for the line that announces its address.
    pub fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<(Self, ServerControl), SpawnError> {
        let start_error = |source| SpawnError::Start { bin: bin.to_owned(), source };
        let log_file = File::create(log).map_err(start_error)?;
        let mut command = Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0", "--control-stdin"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(start_error)?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");

        let (sender, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("server-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Anything else on stdout is not ours to interpret.
                    if let Ok(parsed) = ServerLine::parse(&line)
                        && sender.send(parsed).is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(start_error)?;

        let mut process = ServerProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(ServerLine::Listening(addr)) => {
                    process.addr = addr;
                    return Ok((process, ServerControl { stdin, lines }));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    if let Ok(Some(status)) = process.child.try_wait() {
                        return Err(SpawnError::Exited { bin: bin.to_owned(), status, log: log.to_owned() });
                    }
                    if Instant::now() >= deadline {
                        return Err(SpawnError::Silent { bin: bin.to_owned(), log: log.to_owned() });
                    }
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `grace` for the server to exit (after its [`ServerControl`]
    /// was dropped), then kills it. Returns how it ended.
    pub fn stop(mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl ServerControl {
    /// Asks for the server's figures; `None` if it did not answer in time.
    pub fn stats(&mut self) -> Option<ServerStats> {
        self.ask(STATS_REQUEST, STATS_TIMEOUT, |line| match line {
            ServerLine::Stats(stats) => Some(*stats),
            _ => None,
        })
        .ok()
    }

    /// Has the server dump its heap profile to `path` (see
    /// [`leaklab_probe::control::HEAP_DUMP_REQUEST`]). An error says why it did not.
    pub fn heap_dump(&mut self, path: &Path) -> Result<(), String> {
        self.ask(&format!("{HEAP_DUMP_REQUEST} {}", path.display()), HEAP_DUMP_TIMEOUT, |line| match line {
            ServerLine::HeapDumped => Some(Ok(())),
            ServerLine::HeapDumpFailed(reason) => Some(Err(reason)),
            _ => None,
        })?
    }

    /// Has the server return its allocator's freed pages to the OS. An error
    /// says why it did not (no answer in time, or jemalloc refused).
    pub fn purge(&mut self) -> Result<(), String> {
        self.ask(PURGE_REQUEST, STATS_TIMEOUT, |line| match line {
            ServerLine::Purged => Some(Ok(())),
            ServerLine::PurgeFailed(reason) => Some(Err(reason)),
            _ => None,
        })?
    }

    /// Sends `request` and waits up to `timeout` for the line `answer` picks
    /// out; answers to earlier requests that timed out are dropped first.
    fn ask<T>(
        &mut self,
        request: &str,
        timeout: Duration,
        answer: impl Fn(ServerLine) -> Option<T>,
    ) -> Result<T, String> {
        while self.lines.try_recv().is_ok() {}
        writeln!(self.stdin, "{request}").and_then(|()| self.stdin.flush()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(value) = answer(line) {
                        return Ok(value);
                    }
                }
                Err(_) => return Err("no answer on the side channel in time".to_owned()),
            }
        }
    }
}
