//! The keepalive policy against real tonic clients: the server in this
//! process on port 0, limits of a few hundred milliseconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leaklab_proto::{EchoClient, EchoRequest};
use leaklab_server::{KeepalivePolicy, Server, ServerConfig};
use tonic::transport::{Channel, Endpoint};

async fn start(keepalive: KeepalivePolicy) -> Server {
    let config = ServerConfig { keepalive, ..ServerConfig::default() };
    Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap()
}

fn endpoint(server: &Server) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", server.addr)).unwrap()
}

async fn call(channel: Channel, delay_ms: u32) -> Result<(), tonic::Status> {
    EchoClient::new(channel).unary(EchoRequest { delay_ms, ..Default::default() }).await.map(drop)
}

/// Waits until `done` holds; the bound only guards against a hang.
async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn an_idle_leaked_connection_is_closed_after_max_connection_idle() {
    let idle = Duration::from_millis(300);
    let server = start(KeepalivePolicy { max_connection_idle: Some(idle), ..KeepalivePolicy::default() }).await;
    // The leak: a channel that made its call and is kept, never closed.
    let leaked = endpoint(&server).connect().await.unwrap();
    call(leaked.clone(), 0).await.unwrap();
    assert_eq!(server.metrics.connections.counts().open, 1);

    assert!(wait_until(|| server.metrics.connections.counts().open == 0).await, "the idle connection was never closed");
    // It was the idle limit that closed it: the GOAWAY says so.
    assert_eq!(server.metrics.lifecycle.counts().goaway_max_idle, 1);
    drop(leaked);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_connection_with_an_rpc_in_flight_is_not_idle() {
    let server =
        start(KeepalivePolicy { max_connection_idle: Some(Duration::from_millis(200)), ..KeepalivePolicy::default() })
            .await;
    let channel = endpoint(&server).connect().await.unwrap();
    // In flight for five idle limits: the connection must stay.
    call(channel.clone(), 1000).await.expect("the slow call completes on its connection");
    assert_eq!(server.metrics.connections.counts().opened, 1, "the call's connection was never replaced");
    // Once idle, it goes.
    assert!(wait_until(|| server.metrics.connections.counts().open == 0).await, "the idle connection was never closed");
    assert_eq!(server.metrics.lifecycle.counts().goaway_max_idle, 1);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_third_early_ping_gets_too_many_pings_and_the_client_sees_it() {
    let policy = KeepalivePolicy {
        min_ping_interval: Some(Duration::from_secs(5)),
        permit_without_stream: true,
        ..KeepalivePolicy::default()
    };
    let server = start(policy).await;
    // A client pinging every 100 ms, 50 times more often than the policy allows.
    let channel = endpoint(&server)
        .http2_keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .unwrap();
    // A slow call is in flight, so no HEADERS or DATA from the server clear the strikes. It fails
    // before its 5 s answer comes: the counts below say the policy closed its connection.
    let status = call(channel, 5000).await.expect_err("the connection is closed under the call");
    let counts = server.metrics.lifecycle.counts();
    assert_eq!(counts.goaway_too_many_pings, 1, "{counts:?}");
    assert!(counts.ping_strikes >= 3, "{counts:?}");
    // As with grpc-go, the GOAWAY names the call's stream as processed, so
    // the call fails when the socket closes under it; the load generator's
    // tests read the GOAWAY itself off the client's socket.
    assert!(status.message().contains("transport error"), "{status:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn max_age_sends_goaway_and_closes_after_the_grace() {
    let policy = KeepalivePolicy {
        max_connection_age: Some(Duration::from_millis(200)),
        max_connection_age_grace: Some(Duration::from_millis(300)),
        ..KeepalivePolicy::default()
    };
    let server = start(policy).await;
    let channel = endpoint(&server).connect().await.unwrap();
    // Longer than age + grace: cut off by the hard close.
    let cut = call(channel.clone(), 3000).await.expect_err("the call outlives age + grace");
    let counts = server.metrics.lifecycle.counts();
    assert_eq!((counts.goaway_max_age, counts.closed_after_age_grace), (1, 1), "{counts:?}; the call got {cut:?}");
    // The channel reconnects; a short call fits in the new connection's age.
    call(channel, 0).await.unwrap();
    assert_eq!(server.metrics.connections.counts().opened, 2);
    server.shutdown(Duration::from_secs(1)).await;
}
