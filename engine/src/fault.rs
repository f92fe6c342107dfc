//! A small TCP proxy on loopback that misbehaves on schedule: the network
//! faults keepalive exists for.
//!
//! A scenario with a `[fault]` table sends its client through the proxy. At
//! `blackhole_at` every connection open at that moment stops forwarding in
//! both directions and nothing is closed — the proxy simply stops reading,
//! as a dead peer or a dropped NAT entry would. Bytes then pile up in socket
//! buffers and nothing comes back, so only a keepalive ping that goes
//! unanswered can tell. Connections opened after the start forward normally
//! (a new path). At `reset_at` every open connection is reset (RST to both
//! ends).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::scenario::FaultPlan;

/// What the proxy did, in seconds since the run started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultLog {
    /// When the blackhole began.
    pub blackhole_started_s: Option<f64>,
    /// When it ended (forwarding resumed), if it did.
    pub blackhole_ended_s: Option<f64>,
    /// Connections caught in the blackhole.
    pub blackholed_connections: u64,
    /// The first connection the client opened after the blackhole began: it
    /// had given the old one up. `None`: it never did during the run.
    pub first_connection_after_blackhole_s: Option<f64>,
    /// When connections were reset.
    pub reset_s: Option<f64>,
    /// Connections reset.
    pub reset_connections: u64,
    /// Connections the proxy accepted in all.
    pub connections: u64,
}

impl FaultLog {
    /// How long the client took to give up a blackholed connection and dial a new one.
    pub fn time_to_detect(&self) -> Option<Duration> {
        let started = self.blackhole_started_s?;
        let detected = self.first_connection_after_blackhole_s?;
        Some(Duration::from_secs_f64((detected - started).max(0.0)))
    }
}

/// Which connections are faulted now: those with an id below a mark.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Connections with an id below this forward nothing.
    blackhole_below: Option<u64>,
    /// Connections with an id below this are reset.
    reset_below: Option<u64>,
}

impl Faults {
    fn blackholed(&self, id: u64) -> bool {
        self.blackhole_below.is_some_and(|mark| id < mark)
    }

    fn reset(&self, id: u64) -> bool {
        self.reset_below.is_some_and(|mark| id < mark)
    }
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    run_started: Instant,
    next_id: AtomicU64,
    faults: watch::Sender<Faults>,
    log: Mutex<FaultLog>,
}

impl Shared {
    fn now_s(&self) -> f64 {
        self.run_started.elapsed().as_secs_f64()
    }

    fn log(&self, update: impl FnOnce(&mut FaultLog)) {
        if let Ok(mut log) = self.log.lock() {
            update(&mut log);
        }
    }
}

/// The running proxy. Dropping it stops accepting and ends every relayed connection.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where the client connects instead of the server.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr, run_started: Instant) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(upstream.ip(), 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            run_started,
            next_id: AtomicU64::new(0),
            faults: watch::channel(Faults::default()).0,
            log: Mutex::new(FaultLog::default()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self { addr, shared, tasks: vec![accept] })
    }

    /// Starts the schedule of `plan`, timed from now.
    pub fn schedule(&mut self, plan: FaultPlan) {
        let shared = Arc::clone(&self.shared);
        self.tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut steps: Vec<(Duration, Step)> = Vec::new();
            if let Some(blackhole) = plan.blackhole {
                steps.push((blackhole.at, Step::BlackholeStart));
                if let Some(duration) = blackhole.duration {
                    steps.push((blackhole.at + duration, Step::BlackholeEnd));
                }
            }
            if let Some(at) = plan.reset_at {
                steps.push((at, Step::Reset));
            }
            steps.sort_by_key(|(at, _)| *at);
            for (at, step) in steps {
                tokio::time::sleep_until(start + at).await;
                shared.apply(step);
            }
        }));
    }

    /// What the proxy did so far.
    pub fn log(&self) -> FaultLog {
        self.shared.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Relays end when their sockets do; tell them all to stop now.
        self.shared.faults.send_modify(|faults| faults.reset_below = Some(u64::MAX));
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    BlackholeStart,
    BlackholeEnd,
    Reset,
}

impl Shared {
    fn apply(&self, step: Step) {
        let now = self.now_s();
        let open_below = self.next_id.load(Ordering::SeqCst);
        match step {
            Step::BlackholeStart => {
                self.faults.send_modify(|faults| faults.blackhole_below = Some(open_below));
                self.log(|log| log.blackhole_started_s = Some(now));
            }
            Step::BlackholeEnd => {
                self.faults.send_modify(|faults| faults.blackhole_below = None);
                self.log(|log| log.blackhole_ended_s = Some(now));
            }
            Step::Reset => {
                self.faults.send_modify(|faults| faults.reset_below = Some(open_below));
                self.log(|log| log.reset_s = Some(now));
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let now = shared.now_s();
        shared.log(|log| {
            log.connections += 1;
            if log.blackhole_started_s.is_some() && log.first_connection_after_blackhole_s.is_none() {
                log.first_connection_after_blackhole_s = Some(now);
            }
        });
        tokio::spawn(relay(client, id, Arc::clone(&shared)));
    }
}

/// Relays one connection until either end closes, or a reset.
async fn relay(mut client: TcpStream, id: u64, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let fds = [client.as_raw_fd(), server.as_raw_fd()];
    // Borrowed halves: owned ones would send FIN when dropped, before a reset's RST.
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let mut faults = shared.faults.subscribe();
    let mut counted_in_blackhole = false;
    let up = pump(client_read, server_write, id, shared.faults.subscribe());
    let down = pump(server_read, client_write, id, shared.faults.subscribe());
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            () = &mut up, if !up_done => up_done = true,
            () = &mut down, if !down_done => down_done = true,
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *faults.borrow_and_update();
                if now.blackholed(id) && !counted_in_blackhole {
                    counted_in_blackhole = true;
                    shared.log(|log| log.blackholed_connections += 1);
                }
                if now.reset(id) {
                    for fd in fds {
                        zero_linger(fd);
                    }
                    shared.log(|log| log.reset_connections += 1);
                    // Closing the sockets now sends RST to both ends.
                    return;
                }
            }
        }
    }
}

/// Copies `from` to `to` except while the connection is blackholed: then it
/// neither reads nor writes, so the sender's bytes wait in socket buffers.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    id: u64,
    mut faults: watch::Receiver<Faults>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if faults.wait_for(|faults| !faults.blackholed(id)).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = faults.wait_for(|faults| faults.blackholed(id)) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Bytes read just as the blackhole began are held, not delivered.
        if faults.wait_for(|faults| !faults.blackholed(id)).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// SO_LINGER with a zero timeout: closing the socket sends RST instead of FIN.
fn zero_linger(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `fd` is an open socket owned by a half that is still alive, and
    // `linger` is a valid `struct linger` of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Blackhole;

    /// Bounds on waits for events: they only guard against a hang.
    const HANG_GUARD: Duration = Duration::from_secs(30);

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 4];
        stream.write_all(b"ping").await.unwrap();
        matches!(tokio::time::timeout(limit, stream.read_exact(&mut buf)).await, Ok(Ok(_)))
    }

    /// Waits until the proxy's log shows `happened`.
    async fn until(proxy: &FaultProxy, happened: impl Fn(&FaultLog) -> bool) -> FaultLog {
        let wait = async {
            loop {
                let log = proxy.log();
                if happened(&log) {
                    return log;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(HANG_GUARD, wait).await.expect("the proxy's log never showed it")
    }

    #[tokio::test]
    async fn a_blackhole_silences_open_connections_only_and_ends() {
        let upstream = echo_server().await;
        let mut proxy = FaultProxy::start(upstream, Instant::now()).await.unwrap();
        let mut old = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut old, HANG_GUARD).await, "forwards before the fault");
        // Long enough that the checks below all happen inside the blackhole.
        let blackhole = Blackhole { at: Duration::ZERO, duration: Some(Duration::from_secs(2)) };
        proxy.schedule(FaultPlan { blackhole: Some(blackhole), reset_at: None });
        until(&proxy, |log| log.blackholed_connections == 1).await;

        assert!(!round_trip(&mut old, Duration::from_millis(150)).await, "nothing comes back through the blackhole");
        let mut new = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut new, HANG_GUARD).await, "a new connection is a new path");
        let log = until(&proxy, |log| log.blackhole_ended_s.is_some()).await;
        let mut held = [0u8; 4];
        tokio::time::timeout(HANG_GUARD, old.read_exact(&mut held)).await.unwrap().unwrap();
        assert_eq!(&held, b"ping", "after the blackhole the held bytes go through");

        assert_eq!((log.blackholed_connections, log.connections), (1, 2), "{log:?}");
        let (started, first_new) = (log.blackhole_started_s.unwrap(), log.first_connection_after_blackhole_s.unwrap());
        assert!(first_new >= started, "{log:?}");
        assert_eq!(log.time_to_detect(), Some(Duration::from_secs_f64(first_new - started)));
        assert!(log.blackhole_ended_s.unwrap() > started);
    }

    #[tokio::test]
    async fn a_reset_sends_rst_to_the_client() {
        let upstream = echo_server().await;
        let mut proxy = FaultProxy::start(upstream, Instant::now()).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut stream, HANG_GUARD).await);
        proxy.schedule(FaultPlan { blackhole: None, reset_at: Some(Duration::from_millis(20)) });
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(HANG_GUARD, stream.read(&mut buf)).await.unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(proxy.log().reset_connections, 1);
    }
}
