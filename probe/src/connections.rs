//! Exact counts of open connections, kept by wrapping each socket.
//!
//! Parsing `/proc/net/tcp` at every sample would cost O(connections) and see
//! other processes' sockets too; a counter bumped when a socket is wrapped and
//! again when the wrapper drops costs two atomic adds per connection and is
//! exact for this process. The wrapper drops when the transport drops its
//! socket, which is when the fd is closed.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Connection counts at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionCounts {
    /// Connections open now (`opened - closed`).
    pub open: u64,
    /// Connections opened since the counter was created.
    pub opened: u64,
    /// Connections closed since the counter was created.
    pub closed: u64,
}

/// Shared counter of the connections one process opened and closed.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounter {
    inner: Arc<Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    opened: AtomicU64,
    closed: AtomicU64,
}

impl ConnectionCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `io` as open until the returned wrapper drops.
    pub fn track<T>(&self, io: T) -> Counted<T> {
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
        Counted { io, totals: Arc::clone(&self.inner) }
    }

    pub fn counts(&self) -> ConnectionCounts {
        // Read `closed` first so `open` can never come out negative.
        let closed = self.inner.closed.load(Ordering::Acquire);
        let opened = self.inner.opened.load(Ordering::Acquire);
        ConnectionCounts { open: opened - closed, opened, closed }
    }
}

/// An I/O object that counts as one open connection while it lives.
#[derive(Debug)]
pub struct Counted<T> {
    io: T,
    totals: Arc<Totals>,
}

impl<T> Counted<T> {
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.totals.closed.fetch_add(1, Ordering::Release);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_follows_wrappers_alive() {
        let counter = ConnectionCounter::new();
        let a = counter.track(());
        let b = counter.track(());
        assert_eq!(counter.counts(), ConnectionCounts { open: 2, opened: 2, closed: 0 });
        drop(a);
        assert_eq!(counter.counts(), ConnectionCounts { open: 1, opened: 2, closed: 1 });
        let clone = counter.clone();
        drop(b);
        assert_eq!(clone.counts(), ConnectionCounts { open: 0, opened: 2, closed: 2 });
    }

    #[tokio::test]
    async fn a_counted_socket_passes_bytes_through() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let counter = ConnectionCounter::new();
        let (a, b) = tokio::io::duplex(64);
        let (mut a, mut b) = (counter.track(a), counter.track(b));
        a.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        assert_eq!(counter.counts().open, 2);
    }
}

/// Shared count of the gRPC streams one process has open: the client's streams not yet finished,
/// the server's RPCs in flight. Two atomic adds per stream, like [`ConnectionCounter`].
#[derive(Debug, Clone, Default)]
pub struct StreamCounter {
    inner: Arc<AtomicU64>,
}

impl StreamCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one stream as open until the returned guard drops.
    pub fn open(&self) -> OpenStream {
        self.inner.fetch_add(1, Ordering::AcqRel);
        OpenStream(Arc::clone(&self.inner))
    }

    /// Streams open now.
    pub fn open_now(&self) -> u64 {
        self.inner.load(Ordering::Acquire)
    }
}

/// One stream counted as open while this lives.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicU64>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
