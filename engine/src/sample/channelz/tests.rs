//! Readings of a scripted channelz service, and the watch that keeps the latest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leaklab_proto::channelz::channel_connectivity_state::State;
use leaklab_proto::channelz::channelz_server::{Channelz, ChannelzServer};
use leaklab_proto::channelz::{
    ChannelConnectivityState, ChannelData, ChannelRef, GetChannelRequest, GetChannelResponse, GetSubchannelRequest,
    GetSubchannelResponse, GetTopChannelsRequest, GetTopChannelsResponse, SocketRef, Subchannel, SubchannelRef,
};
use tonic::{Request, Response, Status};

use super::*;

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

    async fn get_channel(&self, request: Request<GetChannelRequest>) -> Result<Response<GetChannelResponse>, Status> {
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
    assert_eq!(watch.counters(), BTreeMap::from([(CHANNELS.into(), 1), (SOCKETS.into(), 1), (SUBCHANNELS.into(), 1)]));
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
