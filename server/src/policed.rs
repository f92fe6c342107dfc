//! A connection's byte stream with the ping policy enforced on it.
//!
//! [`PolicedIo`] sits between the socket and hyper. It reads the frame
//! headers going both ways ([`FrameReader`]): client PINGs are judged by
//! [`PingStrikes`], and HEADERS or DATA the server writes clear the strikes.
//! On the strike too many it does what grpc-go does: it writes GOAWAY
//! `ENHANCE_YOUR_CALM` with debug data `too_many_pings` between two of the
//! server's frames, then closes the socket. Malformed input gets GOAWAY
//! `PROTOCOL_ERROR` (or `FRAME_SIZE_ERROR`) the same way.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::activity::ConnActivity;
use crate::lifecycle::{GoawayReason, Lifecycle};
use leaklab_wire::frames::{FrameReader, code, goaway_frame};
use leaklab_wire::keepalive::{PingPolicy, PingStrikes, PingVerdict};

/// The socket of one connection, policed (see the module docs).
#[derive(Debug)]
pub struct PolicedIo<IO> {
    inner: IO,
    /// `None`: no ping policy; bytes pass through untouched.
    police: Option<Police>,
    closing: Closing,
}

#[derive(Debug)]
struct Police {
    inbound: FrameReader,
    outbound: FrameReader,
    strikes: PingStrikes,
    activity: Arc<ConnActivity>,
    lifecycle: Lifecycle,
    peer: SocketAddr,
    /// Highest stream the client opened: the GOAWAY's last stream id.
    last_client_stream: u32,
}

#[derive(Debug)]
enum Closing {
    Open,
    /// Writing our GOAWAY; `written` bytes of it are out.
    SendingGoaway {
        frame: Vec<u8>,
        written: usize,
    },
    ShuttingDown,
    Closed,
}

impl<IO> PolicedIo<IO> {
    pub fn new(
        inner: IO,
        policy: Option<PingPolicy>,
        activity: Arc<ConnActivity>,
        lifecycle: Lifecycle,
        peer: SocketAddr,
    ) -> Self {
        let police = policy.map(|policy| Police {
            inbound: FrameReader::client_to_server(),
            outbound: FrameReader::server_to_client(),
            strikes: PingStrikes::new(policy),
            activity,
            lifecycle,
            peer,
            last_client_stream: 0,
        });
        Self { inner, police, closing: Closing::Open }
    }
}

impl Police {
    /// Reads what the client sent; returns the GOAWAY to send if the connection must close.
    fn inbound(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let now = Instant::now();
        let in_flight = self.activity.in_flight();
        let Police { inbound, strikes, last_client_stream, lifecycle, .. } = self;
        let mut too_many = false;
        let result = inbound.feed(bytes, |frame| {
            if frame.header.kind == leaklab_wire::frames::kind::HEADERS {
                *last_client_stream = (*last_client_stream).max(frame.header.stream_id);
            }
            if frame.header.is_ping_request() {
                match strikes.on_ping(now, in_flight) {
                    PingVerdict::Allowed => {}
                    PingVerdict::Strike(_) => lifecycle.ping_strike(),
                    PingVerdict::TooManyPings => {
                        lifecycle.ping_strike();
                        too_many = true;
                    }
                }
            }
        });
        let (reason, code, debug) = match result {
            Err(error) => {
                eprintln!("leaklab-server: {}: {error}", self.peer);
                (GoawayReason::ProtocolError, error.code(), error.to_string())
            }
            Ok(()) if too_many => (GoawayReason::TooManyPings, code::ENHANCE_YOUR_CALM, "too_many_pings".to_owned()),
            Ok(()) => return None,
        };
        self.lifecycle.goaway(reason, self.peer);
        Some(goaway_frame(self.last_client_stream, code, debug.as_bytes()))
    }

    fn outbound(&mut self, bytes: &[u8]) {
        let strikes = &mut self.strikes;
        let result = self.outbound.feed(bytes, |frame| {
            if frame.header.is_headers_or_data() {
                strikes.server_sent_headers_or_data();
            }
        });
        if let Err(error) = result {
            // Our own server's bytes: this would be a bug in the reader, not in the peer.
            eprintln!(
                "leaklab-server: {}: cannot follow the server's frames ({error}); pings no longer policed",
                self.peer
            );
        }
    }
}

impl<IO: AsyncWrite + Unpin> PolicedIo<IO> {
    /// Sends the pending GOAWAY (only between two frames, never inside one),
    /// then shuts the socket down.
    fn poll_close_connection(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.closing {
                Closing::Open | Closing::Closed => return Poll::Ready(()),
                Closing::SendingGoaway { frame, written } => {
                    let between_frames = self.police.as_ref().is_some_and(|police| police.outbound.at_frame_boundary());
                    if *written == 0 && !between_frames {
                        // hyper is half-way through a frame: a GOAWAY now would corrupt it. Close without one.
                        self.closing = Closing::ShuttingDown;
                        continue;
                    }
                    while *written < frame.len() {
                        match ready!(Pin::new(&mut self.inner).poll_write(cx, &frame[*written..])) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => *written += n,
                        }
                    }
                    let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
                    self.closing = Closing::ShuttingDown;
                }
                Closing::ShuttingDown => {
                    let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
                    self.closing = Closing::Closed;
                }
            }
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed by the keepalive policy")
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for PolicedIo<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !matches!(this.closing, Closing::Open) {
            ready!(this.poll_close_connection(cx));
            return Poll::Ready(Ok(())); // end of stream for hyper
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(police) = this.police.as_mut() else { return Poll::Ready(Ok(())) };
        let Some(goaway) = police.inbound(&buf.filled()[before..]) else { return Poll::Ready(Ok(())) };
        // The connection is over: hyper does not see these bytes.
        buf.set_filled(before);
        this.closing = Closing::SendingGoaway { frame: goaway, written: 0 };
        ready!(this.poll_close_connection(cx));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for PolicedIo<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !matches!(this.closing, Closing::Open) {
            ready!(this.poll_close_connection(cx));
            return Poll::Ready(Err(closed()));
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if let Some(police) = this.police.as_mut() {
            police.outbound(&buf[..written]);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !matches!(self.closing, Closing::Open) {
            ready!(self.poll_close_connection(cx));
            return Poll::Ready(Err(closed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !matches!(self.closing, Closing::Open) {
            ready!(self.poll_close_connection(cx));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_wire::frames::{CLIENT_PREFACE, FrameReader, kind};
    use leaklab_wire::keepalive::PingPolicy;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ping() -> Vec<u8> {
        let mut frame = vec![0, 0, 8, kind::PING, 0, 0, 0, 0, 0];
        frame.extend_from_slice(b"pingpong");
        frame
    }

    /// The server side of an in-memory connection, policed; and the client side.
    fn policed(policy: PingPolicy) -> (PolicedIo<tokio::io::DuplexStream>, tokio::io::DuplexStream, Lifecycle) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let lifecycle = Lifecycle::default();
        let io = PolicedIo::new(
            server,
            Some(policy),
            Arc::new(ConnActivity::default()),
            lifecycle.clone(),
            "127.0.0.1:1".parse().unwrap(),
        );
        (io, client, lifecycle)
    }

    async fn read_goaway(client: &mut tokio::io::DuplexStream) -> Option<leaklab_wire::frames::GoAway> {
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        let mut reader = FrameReader::server_to_client();
        let mut goaway = None;
        reader.feed(&received, |frame| goaway = goaway.take().or(frame.goaway())).unwrap();
        goaway
    }

    #[tokio::test]
    async fn the_third_early_ping_gets_goaway_too_many_pings_and_eof() {
        let policy = PingPolicy { min_interval: Duration::from_secs(60), permit_without_stream: true };
        let (mut server, mut client, lifecycle) = policed(policy);
        let mut sent = CLIENT_PREFACE.to_vec();
        for _ in 0..4 {
            sent.extend(ping());
        }
        // Split the pings across writes, as a socket may.
        for chunk in sent.chunks(5) {
            client.write_all(chunk).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.len() < sent.len(), "hyper never sees the ping that broke the policy");
        assert!(server.write(b"late").await.is_err(), "writes after the GOAWAY fail");
        drop(server);
        let goaway = read_goaway(&mut client).await.expect("a GOAWAY was sent");
        assert_eq!(goaway.code, code::ENHANCE_YOUR_CALM);
        assert_eq!(goaway.debug_data, "too_many_pings");
        let counts = lifecycle.counts();
        assert_eq!((counts.goaway_too_many_pings, counts.ping_strikes), (1, 3));
    }

    #[tokio::test]
    async fn data_from_the_server_clears_the_strikes() {
        let policy = PingPolicy { min_interval: Duration::from_secs(60), permit_without_stream: true };
        let (mut server, mut client, lifecycle) = policed(policy);
        let data = [0, 0, 1, kind::DATA, 0, 0, 0, 0, 1, 42];
        client.write_all(CLIENT_PREFACE).await.unwrap();
        let mut buf = vec![0u8; 4096];
        for _ in 0..10 {
            client.write_all(&ping()).await.unwrap();
            client.write_all(&ping()).await.unwrap();
            // Read until both pings are through, then answer with data.
            let mut got = 0;
            while got < 2 * ping().len() {
                got += server.read(&mut buf).await.unwrap().max(1);
            }
            server.write_all(&data).await.unwrap();
        }
        assert_eq!(lifecycle.counts().goaway_too_many_pings, 0);
    }

    #[tokio::test]
    async fn garbage_gets_a_protocol_error_not_a_panic() {
        let policy = PingPolicy { min_interval: Duration::from_secs(1), permit_without_stream: false };
        let (mut server, mut client, lifecycle) = policed(policy);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0, "EOF for hyper");
        drop(server);
        let goaway = read_goaway(&mut client).await.expect("a GOAWAY was sent");
        assert_eq!(goaway.code, code::PROTOCOL_ERROR);
        assert_eq!(lifecycle.counts().goaway_protocol_error, 1);
    }
}
