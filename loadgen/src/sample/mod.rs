//! Samples: what both processes look like at one instant, taken at a fixed
//! interval and at every phase change, and appended to `samples.jsonl` as
//! they are taken so an interrupted run keeps what it measured.
//!
//! Measuring sits behind the [`Measure`] trait: [`LiveMeasure`] reads this
//! process and asks the server over its side channel; [`ScriptedMeasure`]
//! replays scripted curves so reports and statistics can be tested without
//! a server.

mod recorder;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use leaklab_probe::control::ServerStats;
use leaklab_probe::jemalloc::purge_all_arenas;
use leaklab_probe::procfs::ProcError;
use leaklab_probe::{ProcessSnapshot, SnapshotReader};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use recorder::{Guard, Marker, Observer, Recorder, Recording};

use crate::load::LimitHit;
use crate::scenario::CapsPlan;
use crate::target::ServerControl;

/// Where the run is when a sample is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first request: the starting point.
    Baseline,
    /// Warm-up requests, not counted in growth.
    Warmup,
    /// The measured load.
    Load,
    /// After the load: no requests, sampling continues.
    Cooldown,
}

/// One line of `samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// The phase the run was in. The first sample of each phase is taken the moment it begins.
    pub phase: Phase,
    /// Requests answered OK so far, counted by the load generator.
    pub requests_ok: u64,
    /// Requests failed so far, counted by the load generator.
    pub requests_failed: u64,
    /// The load generator process.
    pub client: ProcessSnapshot,
    /// The server, as it measured itself; absent when its figures are unavailable
    /// (an external `--target`, or a side-channel answer that did not come in time).
    pub server: Option<ServerStats>,
    /// A checkpoint: taken at rest, with no request in flight and both
    /// allocators purged. The verdict is computed from these.
    #[serde(default)]
    pub settled: bool,
    /// Connection events the client saw so far, and TIME_WAIT sockets now.
    #[serde(default)]
    pub network: NetworkSample,
}

/// The network side of a sample: cumulative connection events seen by the
/// client, and sockets lingering in TIME_WAIT. The server's side of the events
/// is in [`ServerStats::lifecycle`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkSample {
    /// TCP sockets in TIME_WAIT towards the server's port (and the fault proxy's), both ends;
    /// counted at most once a second (samples in between repeat the last count).
    pub time_wait: Option<u64>,
    /// Connections the client's channels dialled again after losing one.
    pub reconnects: u64,
    /// GOAWAY frames the client received so far, by code and debug data.
    pub goaways_received: std::collections::BTreeMap<String, u64>,
}

impl Sample {
    /// Requests completed so far, OK or not.
    pub fn requests(&self) -> u64 {
        self.requests_ok + self.requests_failed
    }

    /// The first cap this sample reaches, if any.
    pub fn over_cap(&self, caps: &CapsPlan) -> Option<LimitHit> {
        let server = self.server.map(|s| s.process);
        let hit = |which: &str, value: Option<u64>, cap: Option<u64>| {
            let (value, cap) = (value?, cap?);
            (value >= cap).then(|| LimitHit {
                which: which.to_owned(),
                value,
                limit: Some(cap),
                requests: self.requests(),
            })
        };
        hit("client_rss", Some(self.client.rss_bytes), caps.client_rss_bytes)
            .or_else(|| hit("server_rss", server.map(|s| s.rss_bytes), caps.server_rss_bytes))
            .or_else(|| hit("client_fds", Some(self.client.fds), caps.fds))
            .or_else(|| hit("server_fds", server.map(|s| s.fds), caps.fds))
    }
}

/// Measures both processes once.
pub trait Measure: Send {
    /// The load generator process now.
    fn client(&mut self) -> Result<ProcessSnapshot, ProcError>;
    /// The server now, or `None` when its figures are not available.
    fn server(&mut self) -> Option<ServerStats>;
    /// Brings both processes to rest before a checkpoint, once no request is
    /// in flight: waits (briefly) until connections the client closed are
    /// closed at the server too and the client's figures stop moving, then
    /// purges both allocators. An error says what could not be done; the
    /// checkpoint is taken anyway.
    fn settle(&mut self) -> Result<(), String>;
    /// Connection events and TIME_WAIT sockets now.
    fn network(&mut self) -> NetworkSample {
        NetworkSample::default()
    }
    /// A checkpoint at rest was just recorded, the first of `phase`'s.
    fn checkpoint_taken(&mut self, _phase: Phase) {}
}

/// Reads the network side of a sample.
pub type NetworkProbe = Box<dyn FnMut() -> NetworkSample + Send>;

/// Measures this process directly and the server through its side channel.
pub struct LiveMeasure {
    client: SnapshotReader,
    server: Option<ServerControl>,
    network: Option<NetworkProbe>,
    heap: Option<HeapDumps>,
}

/// Where heap profiles go, and which have been taken.
#[derive(Debug)]
struct HeapDumps {
    dir: std::path::PathBuf,
    taken: Vec<&'static str>,
}

impl std::fmt::Debug for LiveMeasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMeasure")
            .field("client", &self.client)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl LiveMeasure {
    /// `server` is `None` for an external target, whose figures cannot be read.
    pub fn new(client: SnapshotReader, server: Option<ServerControl>) -> Self {
        Self { client, server, network: None, heap: None }
    }

    /// Dumps both processes' heap profiles into `dir` at the end of warm-up
    /// and at the end of the load (see [`crate::report::heap`]).
    pub fn with_heap_profiles(mut self, dir: std::path::PathBuf) -> Self {
        self.heap = Some(HeapDumps { dir, taken: Vec::new() });
        self
    }

    /// Adds the network side to every sample.
    pub fn with_network(mut self, probe: NetworkProbe) -> Self {
        self.network = Some(probe);
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

    fn network(&mut self) -> NetworkSample {
        self.network.as_mut().map(|probe| probe()).unwrap_or_default()
    }

    fn checkpoint_taken(&mut self, phase: Phase) {
        let Some(heap) = self.heap.as_mut() else { return };
        let label = match phase {
            Phase::Load => crate::report::heap::WARMUP,
            Phase::Cooldown => crate::report::heap::END,
            Phase::Baseline | Phase::Warmup => return,
        };
        if heap.taken.contains(&label) {
            return;
        }
        heap.taken.push(label);
        // Raw dumps only: naming their stacks allocates, and waits until after the run.
        let client = heap.dir.join(crate::report::heap::dump_name(label, "client"));
        if let Err(error) = leaklab_probe::heap::dump(&client) {
            eprintln!("loadgen: heap profile {label} of the load generator: {error}");
        }
        if let Some(server) = self.server.as_mut() {
            let path = heap.dir.join(crate::report::heap::dump_name(label, "server"));
            if let Err(error) = server.heap_dump(&path) {
                eprintln!("loadgen: heap profile {label} of the server: {error}");
            }
        }
    }

    fn server(&mut self) -> Option<ServerStats> {
        self.server.as_mut().and_then(ServerControl::stats)
    }

    fn settle(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut previous: Option<(u64, Option<u64>)> = None;
        loop {
            let client = self.client.connections().counts().open;
            let allocated = self.client.read().ok().and_then(|s| s.jemalloc).map(|j| j.allocated_bytes);
            let agree = match self.server.as_mut() {
                // The run's client is the server's only one, so at rest both count the same.
                Some(server) => server.stats().is_some_and(|stats| stats.process.connections.open == client),
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

/// Replays scripted snapshots, one per call, repeating the last one when the
/// script runs out. For tests of everything downstream of measuring.
#[derive(Debug, Clone, Default)]
pub struct ScriptedMeasure {
    client: VecDeque<ProcessSnapshot>,
    server: VecDeque<Option<ServerStats>>,
    last_client: Option<ProcessSnapshot>,
    last_server: Option<ServerStats>,
}

impl ScriptedMeasure {
    pub fn new(client: Vec<ProcessSnapshot>, server: Vec<Option<ServerStats>>) -> Self {
        Self { client: client.into(), server: server.into(), ..Self::default() }
    }
}

impl Measure for ScriptedMeasure {
    fn client(&mut self) -> Result<ProcessSnapshot, ProcError> {
        if let Some(next) = self.client.pop_front() {
            self.last_client = Some(next);
        }
        self.last_client.ok_or_else(|| ProcError::Format { path: "scripted".into(), reason: "empty script".into() })
    }

    fn server(&mut self) -> Option<ServerStats> {
        if let Some(next) = self.server.pop_front() {
            self.last_server = next;
        }
        self.last_server
    }

    fn settle(&mut self) -> Result<(), String> {
        Ok(())
    }
}
