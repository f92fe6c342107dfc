//! The built-in client's measure: this process read directly, and the
//! server asked over the toy server's side channel or, for a `--server-pid`
//! leaklab did not start, read from `/proc` and the socket watch, or scraped
//! from its `--server-metrics` endpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use leaklab_probe::control::ServerStats;
use leaklab_probe::jemalloc::purge_all_arenas;
use leaklab_probe::procfs::{self, Proc, ProcError, ProcFiles};
use leaklab_probe::{Connections, ProcessSnapshot, SnapshotReader};

use super::{Measure, MetricsEndpoint, NetworkSample, Phase, ProfileFailure, SocketWatch};
use crate::heap::{self, ProfileMoment};
use crate::target::ServerControl;
use leaklab_verdict::Side;

/// Reads the connection events the client's channels saw: reconnects, and GOAWAYs by reason.
pub type ClientEventsProbe = Box<dyn FnMut() -> (u64, BTreeMap<String, u64>) + Send>;

/// Measures this process directly and the server through its side channel.
pub struct LiveMeasure {
    client: SnapshotReader,
    server: Option<ServerControl>,
    /// A server process leaklab did not start: its pid and its `/proc` files.
    foreign_server: Option<(u32, ProcFiles)>,
    /// The server's metrics endpoint, and what its last scrape recorded.
    metrics: Option<(MetricsEndpoint, BTreeMap<String, f64>)>,
    events: Option<ClientEventsProbe>,
    sockets: Option<SocketWatch>,
    /// Where both processes' heap profiles are dumped (`--heap-profile`).
    heap_dumps: Option<PathBuf>,
    /// A Go server's pprof base URL (`--server-pprof`) and where its profiles are kept.
    server_pprof: Option<(String, PathBuf)>,
    /// The checkpoints whose profiles have been taken.
    profiled: Vec<ProfileMoment>,
}

impl std::fmt::Debug for LiveMeasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMeasure")
            .field("client", &self.client)
            .field("server", &self.server)
            .field("sockets", &self.sockets)
            .finish_non_exhaustive()
    }
}

impl LiveMeasure {
    /// `server` is `None` for an external target, whose figures cannot be read.
    pub fn new(client: SnapshotReader, server: Option<ServerControl>) -> Self {
        Self {
            client,
            server,
            foreign_server: None,
            metrics: None,
            events: None,
            sockets: None,
            heap_dumps: None,
            server_pprof: None,
            profiled: Vec::new(),
        }
    }

    /// Reads the server as process `pid` from outside: RSS, fds and threads from `/proc`, its
    /// connections from the socket watch (started for `pid`). It cannot be purged or profiled.
    pub fn with_foreign_server(mut self, pid: u32) -> Result<Self, ProcError> {
        self.foreign_server = Some((pid, ProcFiles::open(Proc::Pid(pid))?));
        Ok(self)
    }

    /// Scrapes the server's metrics endpoint at every sample: its process figures when there is no
    /// `--server-pid`, and its recorded metrics always.
    pub fn with_server_metrics(mut self, endpoint: MetricsEndpoint) -> Self {
        self.metrics = Some((endpoint, BTreeMap::new()));
        self
    }

    /// Dumps both processes' heap profiles into `dir` at the end of warm-up
    /// and at the end of the load (see [`crate::heap`]).
    pub fn with_heap_profiles(mut self, dir: PathBuf) -> Self {
        self.heap_dumps = Some(dir);
        self
    }

    /// Fetches a Go server's heap and goroutine profiles from `url` into `dir` at the same two moments
    /// (see [`crate::heap::profiles`]).
    pub fn with_server_pprof(mut self, url: String, dir: PathBuf) -> Self {
        self.server_pprof = Some((url, dir));
        self
    }

    /// Adds the client's connection events to every sample.
    pub fn with_events(mut self, probe: ClientEventsProbe) -> Self {
        self.events = Some(probe);
        self
    }

    /// Adds the TIME_WAIT count a [`SocketWatch`] keeps to every sample.
    pub fn with_sockets(mut self, sockets: SocketWatch) -> Self {
        self.sockets = Some(sockets);
        self
    }
}

/// The longest a checkpoint waits for both ends to agree on open connections and be still.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Allocated bytes that may still move between two polls 10 ms apart at rest.
const SETTLED_BYTES: u64 = 16 * 1024;

impl Measure for LiveMeasure {
    fn client(&mut self) -> Result<ProcessSnapshot, ProcError> {
        self.client.read()
    }

    fn server(&mut self) -> Option<ServerStats> {
        let scrape = self.metrics.as_mut().and_then(|(endpoint, recorded)| {
            let scrape = endpoint.scrape().ok();
            *recorded = scrape.as_ref().map(|scrape| endpoint.recorded(scrape)).unwrap_or_default();
            scrape
        });
        let from_outside = |process| ServerStats {
            process,
            requests_served: None,
            requests_failed: None,
            lifecycle: Default::default(),
        };
        if self.foreign_server.is_none()
            && let Some(scrape) = scrape
        {
            return scrape.process().map(from_outside);
        }
        if let Some((pid, files)) = self.foreign_server.as_ref() {
            let established = self.sockets.as_ref().and_then(|sockets| sockets.latest().established());
            let process = ProcessSnapshot {
                pid: Some(*pid),
                rss_bytes: files.rss_bytes().ok()?,
                rss_parts: files.rss_parts().ok(),
                fds: Some(procfs::open_fds(Proc::Pid(*pid)).ok()?),
                threads: Some(files.threads().ok()?),
                jemalloc: None,
                connections: Some(Connections::open_only(established?)),
                streams: None,
                runtime_heap: None,
            };
            return Some(from_outside(process));
        }
        self.server.as_mut().and_then(ServerControl::stats)
    }

    fn server_metrics(&mut self) -> BTreeMap<String, f64> {
        self.metrics.as_mut().map(|(_, recorded)| std::mem::take(recorded)).unwrap_or_default()
    }

    fn network(&mut self) -> NetworkSample {
        let (reconnects, goaways) = match self.events.as_mut() {
            Some(probe) => {
                let (reconnects, goaways) = probe();
                (Some(reconnects), Some(goaways))
            }
            None => (None, None),
        };
        NetworkSample {
            time_wait: self.sockets.as_ref().and_then(|sockets| sockets.latest().time_wait),
            reconnects,
            goaways_received: goaways,
        }
    }

    fn side_busy(&self) -> Duration {
        self.sockets.as_ref().map_or(Duration::ZERO, SocketWatch::busy)
    }

    fn checkpoint_taken(&mut self, phase: Phase) -> Vec<ProfileFailure> {
        let moment = match phase {
            Phase::Load => ProfileMoment::Warmup,
            Phase::Cooldown => ProfileMoment::End,
            Phase::Baseline | Phase::Warmup => return Vec::new(),
        };
        if self.profiled.contains(&moment) {
            return Vec::new();
        }
        self.profiled.push(moment);
        let label = moment.label();
        if let Some(dir) = &self.heap_dumps {
            // Raw dumps only: naming their stacks allocates, and waits until after the run.
            let client = dir.join(heap::dump_name(moment, Side::Client));
            if let Err(error) = leaklab_probe::heap::dump(&client) {
                eprintln!("loadgen: heap profile {label} of the load generator: {error}");
            }
            if let Some(server) = self.server.as_mut() {
                let path = dir.join(heap::dump_name(moment, Side::Server));
                if let Err(error) = server.heap_dump(&path) {
                    eprintln!("loadgen: heap profile {label} of the server: {error}");
                }
            }
        }
        let Some((url, dir)) = &self.server_pprof else { return Vec::new() };
        let process = Side::Server;
        let failed = super::pprof::fetch(url, dir, process, moment);
        failed.into_iter().map(|error| ProfileFailure { process, moment, error }).collect()
    }

    fn settle(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut previous: Option<(u64, Option<u64>)> = None;
        loop {
            let client = self.client.connections().counts().open;
            let allocated = self.client.read().ok().and_then(|s| s.jemalloc).map(|j| j.allocated_bytes);
            let agree = match self.server.as_mut() {
                // The run's client is the server's only one, so at rest both count the same.
                Some(server) => server.stats().is_some_and(|stats| stats.process.open_connections() == Some(client)),
                None => true,
            };
            // Closed connections finish tearing down on the runtime a moment later: wait until the
            // client's count and allocated bytes stop moving too.
            let still = previous.is_some_and(|(open, before)| {
                open == client && before.zip(allocated).is_none_or(|(a, b)| a.abs_diff(b) < SETTLED_BYTES)
            });
            if (agree && still) || Instant::now() >= deadline {
                break;
            }
            previous = Some((client, allocated));
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.client.reads_jemalloc() {
            purge_all_arenas().map_err(|error| format!("the load generator: {error}"))?;
        }
        match self.server.as_mut() {
            Some(server) => server.purge().map_err(|reason| format!("the server: {reason}")),
            None => Ok(()),
        }
    }
}
