//! Bad peers on the server's port: they are refused or closed, and a
//! well-behaved client on the same server is served all the while.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leaklab_proto::{EchoClient, EchoRequest};
use leaklab_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

async fn start() -> (Server, EchoClient<Channel>) {
    let config = ServerConfig {
        max_message_bytes: 1 << 20,
        preface_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    (server, EchoClient::new(channel))
}

async fn echo_works(client: &mut EchoClient<Channel>) {
    let reply = client.unary(EchoRequest { payload: "still here".into(), ..Default::default() }).await.unwrap();
    assert_eq!(&reply.get_ref().payload[..], b"still here");
}

/// Sends `bytes`, then reads until the server closes the connection. Returns what
/// the server sent back and whether it closed; the 30 s bound only guards against a hang.
async fn send_and_wait_for_close(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_elapsed) => return (received, false),
        }
    }
}

#[tokio::test]
async fn garbage_http1_and_a_broken_preface_are_closed_and_others_are_served() {
    let (server, mut client) = start().await;
    for (what, bytes) in [
        ("garbage", &b"\x00\xff\x13\x37 this is not HTTP at all \x01\x02\x03\r\n\r\n"[..]),
        ("an HTTP/1.1 request", &b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..]),
        ("a corrupt HTTP/2 preface", &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..]),
    ] {
        let (_reply, closed) = send_and_wait_for_close(server.addr, bytes).await;
        assert!(closed, "the server kept a connection that sent {what}");
        echo_works(&mut client).await;
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_silent_connection_or_a_half_sent_preface_is_closed_after_the_deadline() {
    let (server, mut client) = start().await;
    let silent = tokio::spawn(send_and_wait_for_close(server.addr, b""));
    let half = tokio::spawn(send_and_wait_for_close(server.addr, b"PRI * HTTP/2.0\r\n"));
    // The well-behaved client is served while both hang.
    for _ in 0..10 {
        echo_works(&mut client).await;
    }
    // Closed by the server, which only the 300 ms preface deadline does.
    for (what, task) in [("a silent connection", silent), ("half a preface", half)] {
        let (_, closed) = task.await.unwrap();
        assert!(closed, "the server kept {what} open for 30 s");
    }
    // The good client's connection is older than the deadline by now, and untouched by it.
    echo_works(&mut client).await;
    let open = server.metrics.connections.counts().open;
    assert_eq!(open, 1, "only the good client's connection is left");
    // The bound only guards against a hang: the silent connections are gone, so nothing holds it up.
    assert!(server.shutdown(Duration::from_secs(30)).await, "something held the graceful shutdown up");
}

#[tokio::test]
async fn an_oversized_message_gets_resource_exhausted() {
    let (server, mut client) = start().await;
    let payload = vec![b'x'; (1 << 20) + 1];
    let status = client.unary(EchoRequest { payload: payload.into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    echo_works(&mut client).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_undecodable_message_gets_a_grpc_error_status() {
    let (server, client) = start().await;
    drop(client);
    // A well-formed gRPC frame whose body is not an EchoRequest (field 1 claims 100 bytes, has 2).
    let body: &[u8] = &[0x0a, 0x64, 0x01, 0x02];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/leaklab.v1.Echo/Unary");
    let status = grpc
        .unary::<bytes::Bytes, bytes::Bytes, _>(
            tonic::Request::new(bytes::Bytes::from(frame[5..].to_vec())),
            path,
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert!(matches!(status.code(), Code::Internal | Code::InvalidArgument), "{status:?}");
    echo_works(&mut EchoClient::new(channel)).await;
    server.shutdown(Duration::from_secs(1)).await;
}

/// Sends and receives raw bytes as the gRPC message body.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: bytes::Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test]
async fn a_connection_beyond_max_connections_is_closed_and_counted() {
    let limits = leaklab_server::Limits { max_connections: Some(1), ..Default::default() };
    let config = ServerConfig { limits, ..ServerConfig::default() };
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut client = EchoClient::new(channel);
    echo_works(&mut client).await;
    let (_, closed) = send_and_wait_for_close(server.addr, leaklab_wire::frames::CLIENT_PREFACE).await;
    assert!(closed, "a second connection was kept");
    assert_eq!(server.metrics.lifecycle.counts().connections_refused, 1);
    echo_works(&mut client).await;
    server.shutdown(Duration::from_secs(1)).await;
}
