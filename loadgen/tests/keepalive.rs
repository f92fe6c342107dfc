//! Client keepalive against the server's policy and the fault proxy, in this
//! process on loopback: what the client sees, and how fast it notices.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leaklab_loadgen::fault::FaultProxy;
use leaklab_loadgen::load::Channels;
use leaklab_loadgen::scenario::{Blackhole, ChannelPolicy, ClientKeepalive, ClientPlan, FaultPlan, Transport};
use leaklab_proto::EchoRequest;
use leaklab_server::{KeepalivePolicy, Server, ServerConfig};

async fn start_server(keepalive: KeepalivePolicy) -> Server {
    let config = ServerConfig { keepalive, ..ServerConfig::default() };
    Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap()
}

fn pinging(interval: Duration, timeout: Duration) -> ClientPlan {
    ClientPlan {
        keepalive: Some(ClientKeepalive { interval, timeout: Some(timeout), while_idle: true }),
        ..ClientPlan::default()
    }
}

#[tokio::test]
async fn the_client_sees_goaway_too_many_pings_and_reconnects() {
    let server = start_server(KeepalivePolicy {
        min_ping_interval: Some(Duration::from_secs(5)),
        permit_without_stream: true,
        ..KeepalivePolicy::default()
    })
    .await;
    let client = pinging(Duration::from_millis(100), Duration::from_secs(1));
    let channels =
        Channels::connect_from(ChannelPolicy::Reused, &server.addr.to_string(), Vec::new(), &client).await.unwrap();
    let mut worker = channels.worker_clients();
    channels.call(&mut worker, 0, EchoRequest::default()).await.unwrap();

    // Idle, pinging 50 times too often: the 4th ping is the third strike.
    let reason = "ENHANCE_YOUR_CALM \"too_many_pings\"";
    let started = Instant::now();
    while !channels.goaways().counts().contains_key(reason) {
        assert!(started.elapsed() < Duration::from_secs(5), "no GOAWAY; got {:?}", channels.goaways().counts());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.metrics.lifecycle.counts().goaway_too_many_pings, 1);
    // The channel dials again for the next call.
    channels.call(&mut worker, 1, EchoRequest::default()).await.unwrap();
    assert_eq!(channels.reconnects(), 1);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_h2_transport_sees_the_idle_goaway_and_fails_the_next_call_without_redialling() {
    let server = start_server(KeepalivePolicy {
        max_connection_idle: Some(Duration::from_millis(200)),
        ..KeepalivePolicy::default()
    })
    .await;
    let client = ClientPlan { transport: Transport::H2, ..ClientPlan::default() };
    let channels =
        Channels::connect_from(ChannelPolicy::Reused, &server.addr.to_string(), Vec::new(), &client).await.unwrap();
    let mut worker = channels.worker_clients();
    channels.call(&mut worker, 0, EchoRequest::default()).await.unwrap();

    let started = Instant::now();
    while channels.connections().counts().open > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the idle connection was not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let goaways = channels.goaways().counts();
    assert_eq!(goaways.len(), 1, "{goaways:?}");
    assert!(goaways.keys().all(|reason| reason.starts_with("NO_ERROR")), "{goaways:?}");
    // One connection, never redialled: the next call fails, and says it was the GOAWAY.
    let error = channels.call(&mut worker, 1, EchoRequest::default()).await.unwrap_err();
    assert_eq!(error.0, "goaway_no_error");
    assert_eq!(channels.connections().counts().opened, 1);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_permitted_ping_rate_gets_no_goaway() {
    let server = start_server(KeepalivePolicy {
        min_ping_interval: Some(Duration::from_millis(100)),
        permit_without_stream: true,
        ..KeepalivePolicy::default()
    })
    .await;
    let client = pinging(Duration::from_millis(200), Duration::from_secs(1));
    let channels =
        Channels::connect_from(ChannelPolicy::Reused, &server.addr.to_string(), Vec::new(), &client).await.unwrap();
    let mut worker = channels.worker_clients();
    channels.call(&mut worker, 0, EchoRequest::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    channels.call(&mut worker, 1, EchoRequest::default()).await.unwrap();
    assert!(channels.goaways().counts().is_empty(), "{:?}", channels.goaways().counts());
    assert_eq!((channels.reconnects(), server.metrics.lifecycle.counts().ping_strikes), (0, 0));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_blackhole_is_noticed_within_interval_plus_timeout() {
    let server = start_server(KeepalivePolicy::default()).await;
    let mut proxy = FaultProxy::start(server.addr, Instant::now()).await.unwrap();
    let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(1));
    let channels =
        Channels::connect_from(ChannelPolicy::Reused, &proxy.addr.to_string(), Vec::new(), &pinging(interval, timeout))
            .await
            .unwrap();
    let mut worker = channels.worker_clients();
    channels.call(&mut worker, 0, EchoRequest::default()).await.unwrap();

    proxy.schedule(FaultPlan { blackhole: Some(Blackhole { at: Duration::ZERO, duration: None }), reset_at: None });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A call on the dead connection: only keepalive can end it before its 10 s deadline.
    let started = Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(10), channels.call(&mut worker, 1, EchoRequest::default()))
        .await
        .expect("keepalive ended the call before the test's own bound");
    let noticed = started.elapsed();
    assert!(lost.is_err(), "a call through the blackhole cannot succeed");
    assert!(noticed <= interval + timeout + Duration::from_secs(1), "noticed after {noticed:?}");

    // A new connection is a new path: the next call goes through.
    channels.call(&mut worker, 2, EchoRequest::default()).await.unwrap();
    let log = proxy.log();
    assert_eq!((log.blackholed_connections, log.connections), (1, 2), "{log:?}");
    assert!(log.time_to_detect().unwrap() <= interval + timeout + Duration::from_secs(1), "{log:?}");
    assert_eq!(channels.reconnects(), 1);
    drop(proxy);
    server.shutdown(Duration::from_secs(1)).await;
}
