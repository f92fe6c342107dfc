//! Client keepalive against the server's policy and the fault proxy, in this
//! process on loopback: what the client sees, and how fast it notices.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leaklab_engine::fault::FaultProxy;
use leaklab_engine::load::{Channels, Method};
use leaklab_engine::scenario::{Blackhole, ChannelPolicy, ClientKeepalive, ClientPlan, FaultPlan, Transport};
use leaklab_server::{KeepalivePolicy, Server, ServerConfig};

/// Waits until `condition` holds; the bound only guards against a hang.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
    channels.call(&mut worker, 0, &Method::default()).await.unwrap();

    // Idle, pinging 50 times too often: the 4th ping is the third strike.
    let reason = "ENHANCE_YOUR_CALM \"too_many_pings\"";
    wait_until("the GOAWAY came", || channels.goaways().counts().contains_key(reason)).await;
    assert_eq!(server.metrics.lifecycle.counts().goaway_too_many_pings, 1);
    // The channel dials again for the next call.
    channels.call(&mut worker, 1, &Method::default()).await.unwrap();
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
    channels.call(&mut worker, 0, &Method::default()).await.unwrap();

    wait_until("the idle connection was closed", || channels.connections().counts().open == 0).await;
    let goaways = channels.goaways().counts();
    assert_eq!(goaways.len(), 1, "{goaways:?}");
    assert!(goaways.keys().all(|reason| reason.starts_with("NO_ERROR")), "{goaways:?}");
    // One connection, never redialled: the next call fails, and says it was the GOAWAY.
    let error = channels.call(&mut worker, 1, &Method::default()).await.unwrap_err();
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
    channels.call(&mut worker, 0, &Method::default()).await.unwrap();
    // Five pings answered while idle, each within the policy: none is a strike.
    wait_until("five pings were answered", || channels.goaways().ping_acks() >= 5).await;
    channels.call(&mut worker, 1, &Method::default()).await.unwrap();
    assert!(channels.goaways().counts().is_empty(), "{:?}", channels.goaways().counts());
    assert_eq!((channels.reconnects(), server.metrics.lifecycle.counts().ping_strikes), (0, 0));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_blackhole_is_noticed_by_an_unanswered_ping() {
    let server = start_server(KeepalivePolicy::default()).await;
    let mut proxy = FaultProxy::start(server.addr, Instant::now()).await.unwrap();
    let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(1));
    let channels =
        Channels::connect_from(ChannelPolicy::Reused, &proxy.addr.to_string(), Vec::new(), &pinging(interval, timeout))
            .await
            .unwrap();
    let mut worker = channels.worker_clients();
    channels.call(&mut worker, 0, &Method::default()).await.unwrap();

    proxy.schedule(FaultPlan { blackhole: Some(Blackhole { at: Duration::ZERO, duration: None }), reset_at: None });
    wait_until("the blackhole began", || proxy.log().blackhole_started_s.is_some()).await;
    // A call on the dead connection has no deadline of its own and no answer can come: only the
    // unanswered keepalive ping can end it. The test's 30 s bound only guards against a hang.
    let lost = tokio::time::timeout(Duration::from_secs(30), channels.call(&mut worker, 1, &Method::default()))
        .await
        .expect("keepalive did not end the call through the blackhole");
    assert!(lost.is_err(), "a call through the blackhole cannot succeed");

    // A new connection is a new path: the next call goes through.
    channels.call(&mut worker, 2, &Method::default()).await.unwrap();
    let log = proxy.log();
    assert_eq!((log.blackholed_connections, log.connections), (1, 2), "{log:?}");
    assert!(log.time_to_detect().is_some(), "the new connection is the detection: {log:?}");
    assert_eq!(channels.reconnects(), 1);
    drop(proxy);
    server.shutdown(Duration::from_secs(1)).await;
}
