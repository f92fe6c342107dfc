//! A client's channels, subchannels and sockets as its own gRPC runtime
//! counts them, read from its channelz service (`--channelz ADDR`, an
//! external scenario's `channelz`): grpc-go's `channelz/service`, grpcio's
//! `grpcio-channelz`, grpc-java's and grpc-js's.
//!
//! A full sweep pages through `GetTopChannels` (the channels the application
//! made), then asks `GetSubchannel` of each distinct subchannel under them
//! for its sockets. The process answers, and allocates, in proportion to its
//! channels, and every answer carries the channel's trace of recent events, so
//! full sweeps are paced ([`FULL_SWEEP_CHANNELS_PER_SECOND`]); the readings in
//! between list only the channels made since the last one (ids only grow),
//! ask their subchannels, and follow those not ready yet with `GetChannel`.
//! Like the socket counts, readings are taken on a thread of their own, one at
//! a time, and a sample carries the latest complete one. Its counts become the
//! client's counters `channelz_channels`, `channelz_subchannels` and
//! `channelz_sockets`.
//!
//! What reading costs the process, measured on `go-leak` (2,000 `ClientConn`s,
//! four runs each): anonymous memory grew by 80–85 KB per `ClientConn` without
//! channelz, 87–93 KB with grpc-go's channelz on (its bookkeeping: each
//! channel's, subchannel's and socket's entry and trace) and 91–106 KB read
//! every 100 ms, as every 1 s: the answers are garbage that the Go heap grows
//! to hold. The 126 readings of a run kept the process answering for 0.42 s of
//! its 12.9 s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leaklab_probe::procfs::Proc;
use leaklab_proto::channelz::channelz_client::ChannelzClient;
use leaklab_proto::channelz::{
    GetChannelRequest, GetSubchannelRequest, GetTopChannelsRequest, channel_connectivity_state,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use super::side::SideThread;

/// The counters a reading gives every sample, by name.
pub const CHANNELS: &str = "channelz_channels";
pub const SUBCHANNELS: &str = "channelz_subchannels";
pub const SOCKETS: &str = "channelz_sockets";

/// Channels asked for per page (grpc-go answers 50 when asked for 0; C-core caps pages at 100).
const PAGE: i64 = 500;
/// `GetSubchannel` calls in flight at once.
const IN_FLIGHT: usize = 16;
/// The longest one channelz call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Full sweeps list at most this many channels a second, on average: a leak that piles up channels would
/// otherwise be measured under a growing load of leaklab's own. In a Go process that garbage inflates the
/// heap the garbage collector lets grow (`GOGC`): full sweeps of `go-leak`'s `ClientConn`s every second
/// added about 40 KB to its 90 KB per `ClientConn`. With 4 channels every reading is a full sweep; with
/// 2,000, one in 10 s is.
const FULL_SWEEP_CHANNELS_PER_SECOND: f64 = 200.0;
/// And a full sweep waits at least this many times as long as the last one took. Some runtimes answer
/// slowly: grpcio's `grpcio-channelz` turns C-core's JSON into messages in Python, about 0.7 ms a
/// channel, so listing `python-leak`'s 1,000 channels took 0.7 s; paced by channels alone, its readings
/// kept the process answering a quarter of the time.
const FULL_SWEEP_PACE: u32 = 50;
/// After a failed reading, how long the process has to exit for the failure to be its end.
const EXIT_GRACE: Duration = Duration::from_millis(300);
/// A reading gives up beyond this many pages (a service that never says `end`).
const MAX_PAGES: usize = 10_000;

/// One complete reading of a process's channelz service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelzReading {
    /// Top-level channels: those the application created (a grpc-go `ClientConn`, a grpcio or grpc-js channel).
    pub channels: u64,
    /// Distinct subchannels under them. Runtimes that share subchannels among channels to one target
    /// (C-core, grpc-js) have fewer subchannels than channels.
    pub subchannels: u64,
    /// Sockets (connections) the subchannels hold.
    pub sockets: u64,
    /// The channels by target, most channels first.
    pub targets: Vec<TargetChannels>,
}

/// The top-level channels to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetChannels {
    /// What the application asked the channels to connect to, as the runtime reports it.
    pub target: String,
    /// How many channels.
    pub channels: u64,
    /// How many are in each connectivity state (`ready`, `idle`, `connecting`, `transient_failure`,
    /// `shutdown`, `unknown`).
    pub states: BTreeMap<String, u64>,
}

impl ChannelzReading {
    /// The reading as the client's counters, by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([
            (CHANNELS.to_owned(), self.channels),
            (SUBCHANNELS.to_owned(), self.subchannels),
            (SOCKETS.to_owned(), self.sockets),
        ])
    }
}

/// What the channelz readings of a run came to, for `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelzSummary {
    /// The channelz service read, `HOST:PORT`.
    pub address: String,
    /// Complete readings taken.
    pub readings: u64,
    /// Seconds spent on readings, waiting for the process to answer them: what reading cost it, at most.
    pub reading_s: f64,
    /// Readings that failed after the first complete one (before it, the process may not be listening yet).
    pub failed_readings: u64,
    /// Why the first failed reading failed, before the first complete one or after; `null` when none did.
    pub first_error: Option<String>,
    /// The last complete reading; `null` when none completed.
    pub last: Option<ChannelzReading>,
}

/// Why a reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelzError {
    #[error("channelz at {address}: {call}: {}", said(status))]
    Call { address: String, call: &'static str, status: Box<tonic::Status> },
    #[error("channelz at {address}: GetTopChannels never said end after {pages} pages")]
    Endless { address: String, pages: usize },
    #[error("channelz at {address}: GetTopChannels went back from channel {from} to {to}")]
    Backwards { address: String, from: i64, to: i64 },
}

/// A channelz service to read.
#[derive(Debug, Clone)]
pub struct ChannelzSource {
    address: String,
    client: ChannelzClient<Channel>,
}

/// Which channels a reading lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Every channel, and every subchannel's sockets: closed channels and changed states are seen.
    Full,
    /// Only the channels made since the last reading (channel ids only grow), and their subchannels'
    /// sockets; what the last full sweep saw of the others stands.
    New,
}

/// What the readings know of the process's channels, from one reading to the next.
#[derive(Debug, Default)]
pub struct Known {
    /// By channel id.
    channels: BTreeMap<i64, KnownChannel>,
    /// One past the highest channel id listed: where a [`Sweep::New`] starts.
    next_id: i64,
    /// Sockets by subchannel id, as last asked.
    sockets: HashMap<i64, u64>,
    /// Channels listed before they were ready (still resolving or connecting), and how many readings
    /// asked again since: each [`Sweep::New`] asks again, up to [`UNSETTLED_ASKS`] times.
    unsettled: HashMap<i64, u32>,
}

/// How many readings ask again a new channel that was not ready.
const UNSETTLED_ASKS: u32 = 20;
/// Of the channels a full sweep finds not ready, at most this many are followed so (the newest): many
/// channels that stay idle, as a server that reaps connections leaves them, wait for the next full sweep.
/// New channels are all followed: there are as many as the process makes between two readings.
const MAX_UNSETTLED: usize = 64;

#[derive(Debug, Clone)]
struct KnownChannel {
    target: String,
    state: channel_connectivity_state::State,
    subchannels: Vec<i64>,
}

impl KnownChannel {
    fn of(channel: leaklab_proto::channelz::Channel) -> (i64, KnownChannel) {
        let id = channel.r#ref.as_ref().map_or(0, |r| r.channel_id);
        let data = channel.data.unwrap_or_default();
        let state = data.state.map_or(channel_connectivity_state::State::Unknown, |s| s.state());
        let subchannels = channel.subchannel_ref.iter().map(|r| r.subchannel_id).collect();
        (id, KnownChannel { target: data.target, state, subchannels })
    }

    fn ready(&self) -> bool {
        self.state == channel_connectivity_state::State::Ready
    }
}

impl Known {
    /// The reading of what is known now.
    fn reading(&self) -> ChannelzReading {
        let mut targets: BTreeMap<&str, TargetChannels> = BTreeMap::new();
        let mut subchannels = HashSet::new();
        for channel in self.channels.values() {
            let entry = targets.entry(&channel.target).or_insert_with(|| TargetChannels {
                target: channel.target.clone(),
                channels: 0,
                states: BTreeMap::new(),
            });
            entry.channels += 1;
            *entry.states.entry(state_name(channel.state).to_owned()).or_insert(0) += 1;
            subchannels.extend(channel.subchannels.iter().copied());
        }
        let mut targets: Vec<TargetChannels> = targets.into_values().collect();
        targets.sort_by(|a, b| b.channels.cmp(&a.channels).then_with(|| a.target.cmp(&b.target)));
        ChannelzReading {
            channels: self.channels.len() as u64,
            subchannels: subchannels.len() as u64,
            sockets: subchannels.iter().filter_map(|id| self.sockets.get(id)).sum(),
            targets,
        }
    }
}

impl ChannelzSource {
    /// The service at `address` (`HOST:PORT`), connected on first use (and again after a failure).
    /// Call it within a tokio runtime, which then drives the connection.
    pub fn new(address: &str) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| format!("{address:?} is not HOST:PORT: {error}"))?
            .connect_timeout(CALL_TIMEOUT);
        Ok(Self { address: address.to_owned(), client: ChannelzClient::new(endpoint.connect_lazy()) })
    }

    fn failed(&self, call: &'static str, status: tonic::Status) -> ChannelzError {
        ChannelzError::Call { address: self.address.clone(), call, status: Box::new(status) }
    }

    /// One complete reading, of every channel or of the new ones (`sweep`), into what is `known`.
    pub async fn read(&self, known: &mut Known, sweep: Sweep) -> Result<ChannelzReading, ChannelzError> {
        let start = match sweep {
            Sweep::Full => 0,
            Sweep::New => known.next_id,
        };
        let listed = self.channels_from(start).await?;
        if let Some((last, _)) = listed.last_key_value() {
            known.next_id = known.next_id.max(last + 1);
        }
        match sweep {
            Sweep::Full => {
                let subchannels = listed.values().flat_map(|c| c.subchannels.iter().copied()).collect();
                known.sockets = self.sockets(&subchannels).await?;
                known.channels = listed;
                // The newest channels that are not ready yet are followed until they are.
                let unsettled = known.channels.iter().rev().filter(|(_, c)| !c.ready()).take(MAX_UNSETTLED);
                known.unsettled = unsettled.map(|(id, _)| (*id, 0)).collect();
            }
            Sweep::New => {
                // The channels listed before they were ready, as they are now.
                let mut again = BTreeMap::new();
                for (&id, asks) in &mut known.unsettled {
                    *asks += 1;
                    if let Some(channel) = self.channel(id).await? {
                        again.insert(id, channel);
                    } else {
                        known.channels.remove(&id);
                    }
                }
                known.unsettled.retain(|id, asks| *asks < UNSETTLED_ASKS && again.contains_key(id));
                known.unsettled.extend(listed.iter().filter(|(_, c)| !c.ready()).map(|(id, _)| (*id, 0)));
                let subchannels =
                    listed.values().chain(again.values()).flat_map(|c| c.subchannels.iter().copied()).collect();
                known.sockets.extend(self.sockets(&subchannels).await?);
                known.channels.extend(listed.into_iter().chain(again));
                // Settled: ready, with a socket under it (a channel of C-core's or grpc-js's may share it).
                let settled = |id: &i64| {
                    known.channels.get(id).is_some_and(|c| {
                        c.ready() && c.subchannels.iter().any(|s| known.sockets.get(s).is_some_and(|n| *n > 0))
                    })
                };
                let settled: Vec<i64> = known.unsettled.keys().copied().filter(settled).collect();
                for id in settled {
                    known.unsettled.remove(&id);
                }
            }
        }
        Ok(known.reading())
    }

    /// Channel `id` now; `None` once it is gone.
    async fn channel(&self, id: i64) -> Result<Option<KnownChannel>, ChannelzError> {
        let mut request = tonic::Request::new(GetChannelRequest { channel_id: id });
        request.set_timeout(CALL_TIMEOUT);
        match self.client.clone().get_channel(request).await {
            Ok(answer) => Ok(answer.into_inner().channel.map(|channel| KnownChannel::of(channel).1)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(self.failed("GetChannel", status)),
        }
    }

    /// The top channels from id `start` on, a page at a time.
    async fn channels_from(&self, mut start: i64) -> Result<BTreeMap<i64, KnownChannel>, ChannelzError> {
        let mut client = self.client.clone();
        let mut channels = BTreeMap::new();
        for _ in 0..MAX_PAGES {
            let mut request = tonic::Request::new(GetTopChannelsRequest { start_channel_id: start, max_results: PAGE });
            request.set_timeout(CALL_TIMEOUT);
            let page =
                client.get_top_channels(request).await.map_err(|status| self.failed("GetTopChannels", status))?;
            let page = page.into_inner();
            let mut last = None;
            for channel in page.channel {
                let (id, channel) = KnownChannel::of(channel);
                last = last.max(Some(id));
                channels.insert(id, channel);
            }
            match last {
                Some(last) if !page.end => {
                    if last < start {
                        return Err(ChannelzError::Backwards { address: self.address.clone(), from: start, to: last });
                    }
                    start = last + 1;
                }
                _ => return Ok(channels),
            }
        }
        Err(ChannelzError::Endless { address: self.address.clone(), pages: MAX_PAGES })
    }

    /// The sockets each of `subchannels` holds, asked [`IN_FLIGHT`] at a time. A subchannel gone since
    /// the channels were listed holds none.
    async fn sockets(&self, subchannels: &BTreeSet<i64>) -> Result<HashMap<i64, u64>, ChannelzError> {
        let mut pending = subchannels.iter().copied();
        let mut calls = tokio::task::JoinSet::new();
        let mut held = HashMap::new();
        loop {
            while calls.len() < IN_FLIGHT
                && let Some(id) = pending.next()
            {
                let mut client = self.client.clone();
                calls.spawn(async move {
                    let mut request = tonic::Request::new(GetSubchannelRequest { subchannel_id: id });
                    request.set_timeout(CALL_TIMEOUT);
                    (id, client.get_subchannel(request).await)
                });
            }
            let Some(answer) = calls.join_next().await else { return Ok(held) };
            let (id, answer) = answer.expect("a GetSubchannel task does not panic");
            let sockets = match answer {
                Ok(answer) => answer.into_inner().subchannel.map_or(0, |s| s.socket_ref.len() as u64),
                Err(status) if status.code() == tonic::Code::NotFound => 0,
                Err(status) => return Err(self.failed("GetSubchannel", status)),
            };
            held.insert(id, sockets);
        }
    }
}

/// A status as a sentence: its code, its message, and the error at the root of it (`connection refused`).
fn said(status: &tonic::Status) -> String {
    let text = format!("{:?}: {}", status.code(), status.message());
    match crate::load::errors::chain(status).skip(1).last() {
        Some(root) => format!("{text} ({root})"),
        None => text,
    }
}

fn state_name(state: channel_connectivity_state::State) -> &'static str {
    use channel_connectivity_state::State;
    match state {
        State::Unknown => "unknown",
        State::Idle => "idle",
        State::Connecting => "connecting",
        State::Ready => "ready",
        State::TransientFailure => "transient_failure",
        State::Shutdown => "shutdown",
    }
}

/// The thread that keeps the latest [`ChannelzReading`]. Dropping it stops the thread.
#[derive(Debug)]
pub struct ChannelzWatch {
    /// What the readings came to so far, kept as they are taken.
    shared: Arc<Mutex<ChannelzSummary>>,
    _thread: SideThread,
}

impl ChannelzWatch {
    /// Reads the channelz service of process `pid` at `address` now and then once every `period` after
    /// the last reading ended, until dropped or the process is gone. The process may not be listening
    /// yet: a failed reading is counted and the next one tried a period later; one that failed because
    /// the process had exited is not a failure, and ends the readings.
    pub fn start(address: &str, pid: u32, period: Duration) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // The lazy channel's worker task is spawned on the thread's own runtime.
        let source = {
            let _inside = runtime.enter();
            ChannelzSource::new(address).map_err(std::io::Error::other)?
        };
        let shared = Arc::new(Mutex::new(ChannelzSummary {
            address: address.to_owned(),
            readings: 0,
            reading_s: 0.0,
            failed_readings: 0,
            first_error: None,
            last: None,
        }));
        let thread = {
            let shared = Arc::clone(&shared);
            SideThread::spawn("channelz-watch", move |pause| {
                let mut known = Known::default();
                let mut full_due = Instant::now();
                loop {
                    let started = Instant::now();
                    let sweep = if started >= full_due { Sweep::Full } else { Sweep::New };
                    let reading = runtime.block_on(source.read(&mut known, sweep));
                    let took = started.elapsed();
                    if let (Sweep::Full, Ok(reading)) = (sweep, &reading) {
                        let rest = reading.channels as f64 / FULL_SWEEP_CHANNELS_PER_SECOND;
                        full_due = Instant::now() + Duration::from_secs_f64(rest).max(took * FULL_SWEEP_PACE);
                    }
                    // A process on its way out closes its channelz server first: a failure followed by its
                    // exit is its end, not a failure.
                    if reading.is_err() && (!pause.wait(EXIT_GRACE) || !Proc::Pid(pid).is_running()) {
                        return;
                    }
                    if let Ok(mut shared) = shared.lock() {
                        shared.reading_s += took.as_secs_f64();
                        match reading {
                            Ok(reading) => {
                                shared.readings += 1;
                                shared.last = Some(reading);
                            }
                            Err(error) => {
                                // Before its first answer, the process may not be listening yet.
                                if shared.readings > 0 {
                                    shared.failed_readings += 1;
                                }
                                shared.first_error.get_or_insert(error.to_string());
                            }
                        }
                    }
                    if !pause.wait(period) {
                        return;
                    }
                }
            })?
        };
        Ok(Self { shared, _thread: thread })
    }

    /// The latest complete reading's counters; empty before the first one.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.locked().last.as_ref().map(ChannelzReading::counters).unwrap_or_default()
    }

    /// Wall time the thread spent reading so far.
    pub fn busy(&self) -> Duration {
        Duration::from_secs_f64(self.locked().reading_s)
    }

    /// What the readings came to so far.
    pub fn summary(&self) -> ChannelzSummary {
        self.locked().clone()
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ChannelzSummary> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_proto::channelz::channelz_server::{Channelz, ChannelzServer};
    use leaklab_proto::channelz::{
        ChannelConnectivityState, ChannelData, ChannelRef, GetChannelResponse, GetSubchannelResponse,
        GetTopChannelsResponse, SocketRef, Subchannel, SubchannelRef,
    };
    use tonic::{Request, Response, Status};

    use channel_connectivity_state::State;

    /// A runtime's channelz service as the test scripts it: its channels and each subchannel's sockets.
    #[derive(Debug, Default)]
    struct World {
        channels: BTreeMap<i64, leaklab_proto::channelz::Channel>,
        sockets: BTreeMap<i64, u64>,
    }

    /// Answers from a [`World`], three channels to a page whatever the client asks, as a runtime may.
    #[derive(Debug, Clone, Default)]
    struct Scripted(Arc<Mutex<World>>);

    const PAGE_OF_THREE: usize = 3;

    fn channel(id: i64, target: &str, state: State, subchannels: &[i64]) -> leaklab_proto::channelz::Channel {
        leaklab_proto::channelz::Channel {
            r#ref: Some(ChannelRef { channel_id: id, name: String::new() }),
            data: Some(ChannelData {
                state: Some(ChannelConnectivityState { state: state as i32 }),
                target: target.to_owned(),
                ..ChannelData::default()
            }),
            subchannel_ref: subchannels
                .iter()
                .map(|&id| SubchannelRef { subchannel_id: id, name: String::new() })
                .collect(),
            ..Default::default()
        }
    }

    impl Scripted {
        fn set(&self, channel: leaklab_proto::channelz::Channel) {
            let id = channel.r#ref.as_ref().unwrap().channel_id;
            self.0.lock().unwrap().channels.insert(id, channel);
        }
        fn sockets(&self, subchannel: i64, sockets: u64) {
            self.0.lock().unwrap().sockets.insert(subchannel, sockets);
        }
        fn close(&self, id: i64) {
            self.0.lock().unwrap().channels.remove(&id);
        }
    }

    #[tonic::async_trait]
    impl Channelz for Scripted {
        async fn get_top_channels(
            &self,
            request: Request<GetTopChannelsRequest>,
        ) -> Result<Response<GetTopChannelsResponse>, Status> {
            let start = request.into_inner().start_channel_id;
            let world = self.0.lock().unwrap();
            let after: Vec<_> = world.channels.range(start..).map(|(_, c)| c.clone()).collect();
            let end = after.len() <= PAGE_OF_THREE;
            Ok(Response::new(GetTopChannelsResponse { channel: after.into_iter().take(PAGE_OF_THREE).collect(), end }))
        }

        async fn get_channel(
            &self,
            request: Request<GetChannelRequest>,
        ) -> Result<Response<GetChannelResponse>, Status> {
            let id = request.into_inner().channel_id;
            match self.0.lock().unwrap().channels.get(&id) {
                Some(channel) => Ok(Response::new(GetChannelResponse { channel: Some(channel.clone()) })),
                None => Err(Status::not_found(format!("no channel {id}"))),
            }
        }

        async fn get_subchannel(
            &self,
            request: Request<GetSubchannelRequest>,
        ) -> Result<Response<GetSubchannelResponse>, Status> {
            let id = request.into_inner().subchannel_id;
            let Some(sockets) = self.0.lock().unwrap().sockets.get(&id).copied() else {
                return Err(Status::not_found(format!("no subchannel {id}")));
            };
            let socket_ref = (0..sockets).map(|n| SocketRef { socket_id: 1000 * id + n as i64, name: String::new() });
            Ok(Response::new(GetSubchannelResponse {
                subchannel: Some(Subchannel {
                    r#ref: Some(SubchannelRef { subchannel_id: id, name: String::new() }),
                    socket_ref: socket_ref.collect(),
                    ..Default::default()
                }),
            }))
        }
    }

    /// Serves `world` on a free loopback port of `runtime`; its address.
    fn serve(runtime: &tokio::runtime::Runtime, world: Scripted) -> String {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(ChannelzServer::new(world))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        address
    }

    fn counts(reading: &ChannelzReading) -> (u64, u64, u64) {
        (reading.channels, reading.subchannels, reading.sockets)
    }

    #[test]
    fn sweeps_count_channels_distinct_subchannels_and_sockets_across_pages() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let world = Scripted::default();
        // Channels 1 and 2 share subchannel 10, as C-core and grpc-js share one among channels to one target.
        world.set(channel(1, "dns:///127.0.0.1:1", State::Ready, &[10]));
        world.set(channel(2, "dns:///127.0.0.1:1", State::Ready, &[10]));
        world.sockets(10, 1);
        // A grpc-go ClientConn each, with its own subchannel and connection.
        for id in 3..=6 {
            world.set(channel(id, "127.0.0.1:2", State::Ready, &[id * 10]));
            world.sockets(id * 10, 1);
        }
        // A channel still resolving: no subchannel yet.
        world.set(channel(7, "127.0.0.1:2", State::Connecting, &[]));
        let address = serve(&runtime, world.clone());
        let source = {
            let _inside = runtime.enter();
            ChannelzSource::new(&address).unwrap()
        };
        let mut known = Known::default();

        let first = runtime.block_on(source.read(&mut known, Sweep::Full)).unwrap();
        assert_eq!(counts(&first), (7, 5, 5), "seven channels over three pages, subchannel 10 counted once");
        assert_eq!(first.targets[0].target, "127.0.0.1:2", "most channels first");
        assert_eq!(first.targets[0].channels, 5);
        assert_eq!(first.targets[0].states, BTreeMap::from([("connecting".into(), 1), ("ready".into(), 4)]));
        assert_eq!(first.targets[1].channels, 2);

        // New channels are listed from the last id on; the one that was connecting is asked again.
        world.set(channel(8, "127.0.0.1:2", State::Connecting, &[80]));
        world.set(channel(9, "127.0.0.1:2", State::Ready, &[90]));
        world.sockets(90, 2);
        let second = runtime.block_on(source.read(&mut known, Sweep::New)).unwrap();
        assert_eq!(counts(&second), (9, 7, 7), "channel 8's subchannel has no socket yet");
        world.sockets(80, 1);
        world.set(channel(8, "127.0.0.1:2", State::Ready, &[80]));
        let third = runtime.block_on(source.read(&mut known, Sweep::New)).unwrap();
        assert_eq!(counts(&third), (9, 7, 8), "a channel listed before it was ready is asked again");
        world.set(channel(7, "127.0.0.1:2", State::Ready, &[70]));
        world.sockets(70, 1);
        let fourth = runtime.block_on(source.read(&mut known, Sweep::New)).unwrap();
        assert_eq!(counts(&fourth), (9, 8, 9), "channel 7, connecting at the full sweep, is asked again too");

        // A closed channel stays counted until the next full sweep sees it gone.
        world.close(3);
        let fifth = runtime.block_on(source.read(&mut known, Sweep::New)).unwrap();
        assert_eq!(fifth.channels, 9);
        let sixth = runtime.block_on(source.read(&mut known, Sweep::Full)).unwrap();
        assert_eq!(counts(&sixth), (8, 7, 8), "channel 3 gone with its subchannel and socket");
        assert_eq!(sixth.targets[0].states, BTreeMap::from([("ready".into(), 6)]));
    }

    #[test]
    fn the_watch_keeps_the_latest_reading() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let world = Scripted::default();
        world.set(channel(1, "127.0.0.1:2", State::Ready, &[10]));
        world.sockets(10, 1);
        let address = serve(&runtime, world.clone());
        let watch = ChannelzWatch::start(&address, std::process::id(), Duration::from_millis(5)).unwrap();
        // Wait for readings to follow the world; the bound only guards against a hang.
        let deadline = Instant::now() + Duration::from_secs(30);
        let until = |channels: u64| {
            while watch.counters().get(CHANNELS) != Some(&channels) {
                assert!(Instant::now() < deadline, "never read {channels} channels: {:?}", watch.summary());
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        until(1);
        assert_eq!(
            watch.counters(),
            BTreeMap::from([(CHANNELS.into(), 1), (SOCKETS.into(), 1), (SUBCHANNELS.into(), 1)])
        );
        world.set(channel(2, "127.0.0.1:2", State::Ready, &[20]));
        world.sockets(20, 1);
        until(2);
        let summary = watch.summary();
        assert_eq!((summary.address.as_str(), summary.failed_readings), (address.as_str(), 0));
        assert!(summary.readings >= 2, "{summary:?}");
        assert_eq!(summary.last.map(|last| last.sockets), Some(2));
        assert!(watch.busy() > Duration::ZERO);
    }

    #[test]
    fn a_service_that_never_answers_leaves_its_error() {
        // A port nothing listens on: bound, then closed.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let watch = ChannelzWatch::start(&address, std::process::id(), Duration::from_millis(5)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while watch.summary().first_error.is_none() {
            assert!(Instant::now() < deadline, "no reading failed");
            std::thread::sleep(Duration::from_millis(5));
        }
        let summary = watch.summary();
        assert_eq!(
            (summary.readings, summary.failed_readings, summary.last),
            (0, 0, None),
            "never answered: no failure after a first answer"
        );
        assert!(summary.first_error.unwrap().contains(&format!("channelz at {address}: GetTopChannels")));
        assert!(watch.counters().is_empty());
    }
}
