//! Socket states counted beside the sampler, never on its path.
//!
//! Counting TIME_WAIT sockets, or a foreign process's connections, asks the
//! kernel for its socket table (sock_diag, see [`leaklab_probe::sockdiag`]),
//! and a foreign process's socket inodes come from listing its fds: both cost
//! more as connections pile up. A thread of its own takes them every period
//! and keeps the latest reading; a sample takes whatever is latest, so a slow
//! reading delays the next reading, not the next sample.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leaklab_probe::procfs::Proc;
use leaklab_probe::sockdiag::{self, TcpState};

use super::side::SideThread;

/// The latest counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketReading {
    /// TCP sockets in TIME_WAIT towards the watched ports; `None` without ports, or when the kernel could not be asked.
    pub time_wait: Option<u64>,
    /// The watched process's TCP sockets by state; `None` without a process, or when they could not be read.
    pub process: Option<BTreeMap<TcpState, u64>>,
}

impl SocketReading {
    /// The watched process's open (ESTABLISHED) connections.
    pub fn established(&self) -> Option<u64> {
        self.process.as_ref().map(|states| states.get(&TcpState::Established).copied().unwrap_or(0))
    }
}

/// What the watch counts: TIME_WAIT towards `ports`, and the sockets of `process` but those on its
/// `side_ports`.
#[derive(Debug, Clone, Default)]
struct Query {
    ports: Vec<u16>,
    process: Option<u32>,
    side_ports: Vec<u16>,
}

impl Query {
    fn read(&self) -> SocketReading {
        SocketReading {
            time_wait: (!self.ports.is_empty()).then(|| sockdiag::time_wait_sockets(&self.ports).ok()).flatten(),
            process: self.process.and_then(|pid| sockdiag::tcp_states_of(Proc::Pid(pid), &self.side_ports).ok()),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    latest: SocketReading,
    busy: Duration,
}

/// The thread that keeps the latest [`SocketReading`]. Dropping it stops the thread.
#[derive(Debug)]
pub struct SocketWatch {
    shared: Arc<Mutex<Shared>>,
    _thread: SideThread,
}

impl SocketWatch {
    /// Counts TIME_WAIT towards `ports` and the sockets of `process` every
    /// `period`; the first reading is taken before this returns, so the first
    /// sample has one. The process's sockets on its `side_ports` (a channelz
    /// or pprof server leaklab reads) are not its connections.
    pub fn start(
        ports: Vec<u16>,
        process: Option<u32>,
        side_ports: Vec<u16>,
        period: Duration,
    ) -> std::io::Result<Self> {
        let query = Query { ports, process, side_ports };
        let started = Instant::now();
        let first = query.read();
        let shared = Arc::new(Mutex::new(Shared { latest: first, busy: started.elapsed() }));
        let thread = {
            let shared = Arc::clone(&shared);
            SideThread::spawn("socket-watch", move |pause| {
                while pause.wait(period) {
                    let started = Instant::now();
                    let reading = query.read();
                    let took = started.elapsed();
                    if let Ok(mut shared) = shared.lock() {
                        shared.latest = reading;
                        shared.busy += took;
                    }
                }
            })?
        };
        Ok(Self { shared, _thread: thread })
    }

    /// The latest reading.
    pub fn latest(&self) -> SocketReading {
        self.shared.lock().map(|shared| shared.latest.clone()).unwrap_or_default()
    }

    /// Wall time the thread spent reading so far.
    pub fn busy(&self) -> Duration {
        self.shared.lock().map(|shared| shared.busy).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_first_reading_is_there_at_once_and_later_ones_follow_the_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let watch = SocketWatch::start(
            vec![listener.local_addr().unwrap().port()],
            Some(std::process::id()),
            Vec::new(),
            Duration::from_millis(5),
        )
        .unwrap();
        let first = watch.latest();
        assert_eq!(first.time_wait, Some(0));
        let established = first.established().unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Wait for the watch to see both ends; the bound only guards against a hang.
        let deadline = Instant::now() + Duration::from_secs(10);
        while watch.latest().established() < Some(established + 2) {
            assert!(Instant::now() < deadline, "the watch never saw the new connection: {:?}", watch.latest());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop((client, server));
        assert!(watch.busy() > Duration::ZERO);
    }

    #[test]
    fn without_ports_or_a_process_there_is_nothing_to_count() {
        let watch = SocketWatch::start(Vec::new(), None, Vec::new(), Duration::from_secs(60)).unwrap();
        assert_eq!(watch.latest(), SocketReading::default());
        // Dropping it wakes the thread rather than waiting out the minute (a hang would fail the test run).
        drop(watch);
    }
}
