//! The TCP connector every leaklab channel dials through: plain TCP with
//! `TCP_NODELAY` (what tonic's own connector does), plus a count of the
//! connections that are open, kept exact by [`leaklab_probe::Counted`].
//!
//! It can spread connections over several loopback source addresses
//! (127.0.0.2, 127.0.0.3, …), round-robin. Each source address has its own
//! ~28,000 ephemeral ports towards one server address, so a leak can be
//! driven past one address's ports where the fd limit allows it.
//!
//! Each connection's incoming bytes go through an HTTP/2 frame reader that
//! counts the GOAWAYs the server sends, by code and debug data: tonic says
//! only "transport error" when a server closes a connection under a call.
//! With TLS, the handshake happens here too, under that reader, so it reads
//! HTTP/2 frames either way (tonic's own TLS would sit above it).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use leaklab_probe::{ConnectionCounter, Counted};
use leaklab_wire::frames::{FrameReader, GoAway};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tonic::codegen::http::Uri;

use crate::tls::ClientTls;

/// A client connection: TCP, counted, with TLS on it when the client asked.
#[derive(Debug)]
pub enum Stream {
    Plain(Counted<TcpStream>),
    Tls(Box<tokio_rustls::client::TlsStream<Counted<TcpStream>>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream.get_ref(),
            Stream::Tls(stream) => stream.get_ref().0.get_ref(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// A `tower::Service<Uri>` that opens counted TCP connections.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    counter: ConnectionCounter,
    /// Source addresses to bind, round-robin; empty: let the kernel choose.
    sources: Arc<[Ipv4Addr]>,
    next_source: Arc<AtomicUsize>,
    /// SO_KEEPALIVE idle time for each socket.
    tcp_keepalive: Option<Duration>,
    goaways: GoawaysReceived,
    tls: Option<ClientTls>,
}

/// GOAWAYs the client received, by reason (`ENHANCE_YOUR_CALM "too_many_pings"`, `NO_ERROR`, …),
/// and the PING acknowledgements: each one is a keepalive ping the server answered.
#[derive(Debug, Clone, Default)]
pub struct GoawaysReceived {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    ping_acks: Arc<std::sync::atomic::AtomicU64>,
}

impl GoawaysReceived {
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|counts| counts.clone()).unwrap_or_default()
    }

    /// PING acknowledgements received on every connection.
    pub fn ping_acks(&self) -> u64 {
        self.ping_acks.load(Ordering::Relaxed)
    }

    fn record(&self, goaway: &GoAway) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(goaway.reason()).or_default() += 1;
        }
    }
}

/// The loopback source addresses `127.0.0.2` … `127.0.0.{count + 1}`.
pub fn loopback_sources(count: usize) -> Vec<Ipv4Addr> {
    (0..count.min(253)).map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8)).collect()
}

impl CountingConnector {
    pub fn new(counter: ConnectionCounter) -> Self {
        Self::with_sources(counter, Vec::new())
    }

    /// Binds each connection to the next of `sources` (all IPv4 loopback) before connecting.
    pub fn with_sources(counter: ConnectionCounter, sources: Vec<Ipv4Addr>) -> Self {
        Self {
            counter,
            sources: sources.into(),
            next_source: Arc::new(AtomicUsize::new(0)),
            tcp_keepalive: None,
            goaways: GoawaysReceived::default(),
            tls: None,
        }
    }

    /// Opens TLS on every connection.
    pub fn tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Turns SO_KEEPALIVE on with this idle time.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// The GOAWAYs received on every connection this connector opened.
    pub fn goaways(&self) -> &GoawaysReceived {
        &self.goaways
    }
}

/// A client connection whose incoming frames are watched for GOAWAY.
#[derive(Debug)]
pub struct Observed<T> {
    inner: T,
    frames: FrameReader,
    goaways: GoawaysReceived,
}

impl<T: AsyncRead + Unpin> AsyncRead for Observed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        let goaways = &this.goaways;
        // A server that is not HTTP/2 is h2's to report; the reader just stops.
        let _ = this.frames.feed(&buf.filled()[before..], |frame| {
            if let Some(goaway) = frame.goaway() {
                goaways.record(&goaway);
            }
            if frame.header.kind == leaklab_wire::frames::kind::PING
                && frame.header.flags & leaklab_wire::frames::FLAG_ACK != 0
            {
                goaways.ping_acks.fetch_add(1, Ordering::Relaxed);
            }
        });
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Observed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tower::Service<Uri> for CountingConnector {
    type Response = TokioIo<Observed<Stream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let counter = self.counter.clone();
        let (tcp_keepalive, goaways, tls) = (self.tcp_keepalive, self.goaways.clone(), self.tls.clone());
        let source = (!self.sources.is_empty())
            .then(|| self.sources[self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len()]);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(80);
            let stream = match source {
                None => TcpStream::connect((host.as_str(), port)).await?,
                Some(source) => {
                    let target: std::net::IpAddr = host.parse().map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("source addresses need an IP target, not {host}"),
                        )
                    })?;
                    let socket = TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::from((source, 0)))?;
                    socket.connect(SocketAddr::new(target, port)).await?
                }
            };
            stream.set_nodelay(true)?;
            if let Some(idle) = tcp_keepalive {
                socket2::SockRef::from(&stream).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))?;
            }
            let stream = counter.track(stream);
            let stream = match tls {
                None => Stream::Plain(stream),
                Some(tls) => Stream::Tls(Box::new(tls.connector.connect(tls.server_name, stream).await?)),
            };
            Ok(TokioIo::new(Observed { inner: stream, frames: FrameReader::server_to_client(), goaways }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tower::Service;

    #[tokio::test]
    async fn connections_are_spread_over_the_source_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        let mut connector = CountingConnector::with_sources(ConnectionCounter::new(), loopback_sources(3));
        let mut kept = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..6 {
            kept.push(connector.call(uri.clone()).await.unwrap());
            let (_stream, peer) = listener.accept().await.unwrap();
            peers.push(peer.ip());
        }
        let distinct: BTreeSet<_> = peers.iter().copied().collect();
        let expected: BTreeSet<std::net::IpAddr> =
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().map(|ip| ip.parse().unwrap()).collect();
        assert_eq!(distinct, expected, "peers seen by the server: {peers:?}");
        assert_eq!(peers[0], peers[3], "round-robin");
    }

    #[tokio::test]
    async fn tcp_keepalive_is_set_on_each_socket_when_asked() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        let socket_of = |io: &TokioIo<Observed<Stream>>| {
            let stream = io.inner().inner.tcp();
            let socket = socket2::SockRef::from(stream);
            (socket.keepalive().unwrap(), socket.tcp_keepalive_time().unwrap())
        };
        let mut plain = CountingConnector::new(ConnectionCounter::new());
        let io = plain.call(uri.clone()).await.unwrap();
        assert!(!socket_of(&io).0, "off unless the scenario asks");
        let mut kept = CountingConnector::new(ConnectionCounter::new()).tcp_keepalive(Some(Duration::from_secs(7)));
        let io = kept.call(uri).await.unwrap();
        assert_eq!(socket_of(&io), (true, Duration::from_secs(7)));
    }
}
