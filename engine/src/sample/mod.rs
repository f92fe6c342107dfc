//! Samples: what both processes look like at one instant, taken at a fixed
//! interval and at every phase change, and appended to `samples.jsonl` as
//! they are taken so an interrupted run keeps what it measured.
//!
//! Measuring sits behind the [`Measure`] trait, and every kind of run records
//! through the one [`Recorder`]:
//! - [`LiveMeasure`] reads this process (the built-in client) and asks the
//!   toy server over its side channel;
//! - [`ForeignMeasure`] reads a process leaklab did not write (`watch`, an
//!   external client) from `/proc` and the kernel's socket tables, and the
//!   toy server when the run started one;
//! - [`ScriptedMeasure`] replays scripted curves, so that recording, verdicts
//!   and reports are tested without a server.
//!
//! Socket states (TIME_WAIT, a foreign process's connections) are counted
//! beside the sampler by a [`SocketWatch`], never on its path, and so is a
//! foreign client's channelz service read ([`ChannelzWatch`]). A server's
//! metrics endpoint ([`MetricsEndpoint`]) is scraped on it, once per sample.

pub mod channelz;
mod endpoint;
mod foreign;
mod live;
pub mod pprof;
mod recorder;
pub mod runtime;
mod side;
mod sockets;
pub(crate) mod window;

use std::collections::{BTreeMap, VecDeque};

use leaklab_probe::ProcessSnapshot;
use leaklab_probe::control::ServerStats;
use leaklab_probe::procfs::ProcError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use channelz::{ChannelzReading, ChannelzSummary, ChannelzWatch};
pub use endpoint::{MetricsEndpoint, Scrape, ScrapeError};
pub use foreign::ForeignMeasure;
pub use live::{ClientEventsProbe, LiveMeasure};
pub use recorder::{Guard, Marker, Observer, Recorder, RecorderSetup, Recording};
pub use sockets::{SocketReading, SocketWatch};
pub use window::LoadWindow;

use crate::halt::{Limit, LimitHit};
use crate::scenario::{CapsPlan, Segment};

/// The file a run's samples are appended to, one JSON line each.
pub const SAMPLES_FILE: &str = "samples.jsonl";

/// Where the run is when a sample is taken; in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first request: the starting point.
    Baseline,
    /// Warm-up: requests (or, for a foreign client, the first seconds) not counted in growth.
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
    /// Wall-clock time of the sample, in seconds since the Unix epoch: what lines up the samples of
    /// runs on several hosts. Absent in samples written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_time_s: Option<f64>,
    /// The phase the run was in. The first sample of each phase is taken the moment it begins.
    pub phase: Phase,
    /// Requests answered OK so far: counted by the built-in client, or reported by a foreign one on its
    /// `leaklab-progress` lines (0 until its first line).
    pub requests_ok: u64,
    /// Requests failed so far, counted or reported the same way.
    pub requests_failed: u64,
    /// The client process: the load generator, or the foreign process watched.
    pub client: ProcessSnapshot,
    /// The server, as it measured itself; absent when its figures are unavailable
    /// (no toy server, an external `--target`, or a side-channel answer that did not come in time).
    pub server: Option<ServerStats>,
    /// A checkpoint: taken at rest, with no request in flight and both allocators purged.
    /// A built-in run's verdict is computed from these; a foreign process has none.
    #[serde(default)]
    pub settled: bool,
    /// Connection events the client saw so far, and TIME_WAIT sockets now.
    #[serde(default)]
    pub network: NetworkSample,
    /// Metrics scraped from the server's `--server-metrics` endpoint besides its process figures:
    /// `go_memstats_heap_inuse_bytes` and `go_goroutines` when it has them, and every `--server-metric`,
    /// each summed over its label sets. Absent without an endpoint, or when this scrape failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_metrics: BTreeMap<String, f64>,
    /// The client's own counters, as its last `leaklab-progress` line reported them (`goroutines`,
    /// `streams`…), and with a channelz service read (`--channelz`), its latest reading's
    /// `channelz_channels`, `channelz_subchannels` and `channelz_sockets`. Absent for the built-in client
    /// and for a client that reports none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// A merged run's (`loadgen merge`) load generators at this instant, by segment (`1/2`); `client` and
    /// the request counts are their sums. Absent in a run of one load generator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<Segment, SegmentSample>,
}

/// One load generator of a merged run at a merged sample's instant: its own nearest sample's client, and
/// its request counts interpolated to that instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentSample {
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub client: ProcessSnapshot,
}

/// The network side of a sample: connection events the built-in client saw,
/// and sockets lingering in TIME_WAIT. The server's side of the events is in
/// [`ServerStats::lifecycle`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkSample {
    /// TCP sockets in TIME_WAIT towards the server's port (and the fault proxy's), both ends: the latest
    /// count taken beside the sampler; absent when there is no server port to count towards.
    pub time_wait: Option<u64>,
    /// Connections the built-in client's channels dialled again after losing one; absent for a foreign client.
    pub reconnects: Option<u64>,
    /// GOAWAY frames the built-in client received so far, by code and debug data; absent for a foreign client.
    pub goaways_received: Option<BTreeMap<String, u64>>,
}

impl Sample {
    /// Requests completed so far, OK or not.
    pub fn requests(&self) -> u64 {
        self.requests_ok + self.requests_failed
    }

    /// The first cap this sample reaches, if any.
    pub fn over_cap(&self, caps: &CapsPlan) -> Option<LimitHit> {
        let server = self.server.map(|s| s.process);
        let hit = |which: Limit, value: Option<u64>, cap: Option<u64>| {
            let (value, cap) = (value?, cap?);
            (value >= cap).then_some(LimitHit { which, value, limit: Some(cap), requests: self.requests() })
        };
        hit(Limit::ClientRss, Some(self.client.rss_bytes), caps.client_rss_bytes)
            .or_else(|| hit(Limit::ServerRss, server.map(|s| s.rss_bytes), caps.server_rss_bytes))
            .or_else(|| hit(Limit::ClientFds, self.client.fds, caps.fds))
            .or_else(|| hit(Limit::ServerFds, server.and_then(|s| s.fds), caps.fds))
    }
}

/// A profile that could not be fetched or kept at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFailure {
    pub process: leaklab_verdict::Side,
    pub moment: crate::heap::ProfileMoment,
    pub error: String,
}

/// Measures both processes once.
pub trait Measure: Send {
    /// The client process now.
    fn client(&mut self) -> Result<ProcessSnapshot, ProcError>;
    /// The server now, or `None` when its figures are not available.
    fn server(&mut self) -> Option<ServerStats>;
    /// The server's recorded metrics from the scrape [`Measure::server`] just made (see [`Sample::server_metrics`]).
    fn server_metrics(&mut self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
    /// Whether both processes can be brought to rest for a checkpoint. A
    /// process leaklab did not write cannot: it is sampled as it runs.
    fn takes_checkpoints(&self) -> bool {
        true
    }
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
    /// Counters read from the client process besides those it reports itself (its channelz service's).
    fn counters(&mut self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    /// A checkpoint at rest was just recorded, the first of `phase`'s: the profiles that could not
    /// be taken then.
    fn checkpoint_taken(&mut self, _phase: Phase) -> Vec<ProfileFailure> {
        Vec::new()
    }
    /// Wall time spent measuring beside the sampler (the socket counts), for the run's cost of sampling.
    fn side_busy(&self) -> std::time::Duration {
        std::time::Duration::ZERO
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
