//! One reading of a channelz service: its pages of top channels, their subchannels' sockets, and what
//! the readings know of the channels from one to the next.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use leaklab_proto::channelz::channelz_client::ChannelzClient;
use leaklab_proto::channelz::{
    GetChannelRequest, GetSubchannelRequest, GetTopChannelsRequest, channel_connectivity_state,
};
use tonic::transport::{Channel, Endpoint};

use super::{ChannelzReading, TargetChannels};

/// Channels asked for per page (grpc-go answers 50 when asked for 0; C-core caps pages at 100).
const PAGE: i64 = 500;
/// `GetSubchannel` calls in flight at once.
const IN_FLIGHT: usize = 16;
/// The longest one channelz call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A reading gives up beyond this many pages (a service that never says `end`).
const MAX_PAGES: usize = 10_000;

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
