//! The server in this process on port 0, called as any gRPC client would.

use std::net::SocketAddr;
use std::time::Duration;

use leaklab_proto::{EchoClient, EchoRequest, StreamRequest};
use leaklab_server::{MAX_DELAY_MS, Server, ServerConfig};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn start() -> (Server, Channel) {
    let config = ServerConfig { max_message_bytes: 1 << 20, ..ServerConfig::default() };
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap();
    assert_ne!(server.addr.port(), 0, "port 0 must resolve to a real port");
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    (server, channel)
}

#[tokio::test]
async fn unary_echoes_the_payload_or_sends_the_size_asked_for() {
    let (server, channel) = start().await;
    let mut client = EchoClient::new(channel);
    let echoed = client.unary(EchoRequest { payload: "hello".into(), ..Default::default() }).await.unwrap();
    assert_eq!(&echoed.get_ref().payload[..], b"hello");
    let sized = client.unary(EchoRequest { payload: "x".into(), response_bytes: 1000, delay_ms: 1 }).await.unwrap();
    assert_eq!(sized.get_ref().payload.len(), 1000);
    assert_eq!((server.metrics.requests_served(), server.metrics.requests_failed()), (2, 0));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unreasonable_requests_are_refused_and_counted() {
    let (server, channel) = start().await;
    let mut client = EchoClient::new(channel);
    let too_big = client.unary(EchoRequest { response_bytes: 2 << 20, ..Default::default() }).await.unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    let too_slow = client.unary(EchoRequest { delay_ms: MAX_DELAY_MS + 1, ..Default::default() }).await.unwrap_err();
    assert_eq!(too_slow.code(), Code::InvalidArgument);
    assert_eq!((server.metrics.requests_served(), server.metrics.requests_failed()), (0, 2));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_stream_sends_the_messages_asked_for() {
    let (server, channel) = start().await;
    let mut client = EchoClient::new(channel);
    let request = StreamRequest { payload: "p".into(), messages: 5, interval_ms: 1 };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    let mut received = 0;
    while let Some(message) = stream.message().await.unwrap() {
        assert_eq!(&message.payload[..], b"p");
        received += 1;
    }
    assert_eq!(received, 5);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn health_reports_echo_serving_and_connections_are_counted() {
    let (server, channel) = start().await;
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: leaklab_proto::ECHO_SERVICE_NAME.into() })
        .await
        .unwrap();
    assert_eq!(status.get_ref().status, tonic_health::ServingStatus::Serving as i32);
    assert_eq!(server.metrics.connections.counts().open, 1);
    drop(channel);
    // The deadline only guards against a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.metrics.connections.counts().open != 0 {
        assert!(std::time::Instant::now() < deadline, "the closed connection was never counted as closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With no connection left nothing can hold a graceful shutdown; the bound only guards against a hang.
    assert!(server.shutdown(Duration::from_secs(30)).await, "graceful shutdown with no connection open never ended");
}
