//! Per-connection RPC accounting: how many calls are in flight, and since when
//! the connection has had none. `max_connection_idle` and the ping policy's
//! `permit_without_stream` both ask this.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use http_body::{Body, Frame, SizeHint};
use leaklab_probe::{OpenStream, StreamCounter};

/// One connection's RPCs in flight.
#[derive(Debug)]
pub struct ConnActivity {
    started: Instant,
    in_flight: AtomicUsize,
    /// When the last RPC ended, as nanoseconds since `started` (0: none yet).
    idle_since_nanos: AtomicU64,
    /// The server's RPCs in flight over all its connections, which this one's count too.
    streams: StreamCounter,
}

impl Default for ConnActivity {
    fn default() -> Self {
        Self::counting_in(StreamCounter::new())
    }
}

impl ConnActivity {
    /// A new connection's activity, whose RPCs count in the server-wide `streams` too.
    pub fn counting_in(streams: StreamCounter) -> Self {
        Self { started: Instant::now(), in_flight: AtomicUsize::new(0), idle_since_nanos: AtomicU64::new(0), streams }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// An RPC started; it counts until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { activity: Arc::clone(self), _stream: self.streams.open() }
    }

    /// How long the connection has had no RPC in flight (`None`: one is in flight now).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight() > 0 {
            return None;
        }
        let since = Duration::from_nanos(self.idle_since_nanos.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(since))
    }

    /// Resolves once the connection has been idle for `limit` (grpc-go's max-idle timer).
    pub async fn idle_for_at_least(&self, limit: Duration) {
        loop {
            let wait = match self.idle_for() {
                Some(idle) if idle >= limit => return,
                Some(idle) => limit - idle,
                None => limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One RPC in flight, counted (on its connection and server-wide) until dropped.
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<ConnActivity>,
    _stream: OpenStream,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        let now = activity.started.elapsed().as_nanos() as u64;
        activity.idle_since_nanos.store(now.max(1), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its RPC counted as in flight until it has been
/// sent in full (or dropped): a server stream is in flight while it streams.
#[derive(Debug)]
pub(crate) struct CountedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> CountedBody<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Self { body, _in_flight: in_flight }
    }
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Counts each RPC on a connection from its request until its response body ends.
#[derive(Debug, Clone)]
pub(crate) struct CountInFlight<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<ConnActivity>,
}

impl<S, B> tower::Service<http::Request<B>> for CountInFlight<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let in_flight = self.activity.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| tonic::body::Body::new(CountedBody::new(body, in_flight))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The clock is tokio's, paused: it moves only when every task waits, to the next timer.

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_last_rpc() {
        let activity = Arc::new(ConnActivity::default());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let call = activity.begin();
        assert_eq!(activity.idle_for(), None);
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(call);
        assert_eq!(activity.idle_for(), Some(Duration::ZERO), "idle from the end of the last RPC, not its start");
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_eq!(activity.idle_for(), Some(Duration::from_millis(25)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_rpc_in_flight_holds_off_the_idle_limit() {
        let activity = Arc::new(ConnActivity::default());
        let call = activity.begin();
        let waited =
            tokio::time::timeout(Duration::from_millis(120), activity.idle_for_at_least(Duration::from_millis(30)))
                .await;
        assert!(waited.is_err(), "still in flight: never idle");
        drop(call);
        let ended = Instant::now();
        activity.idle_for_at_least(Duration::from_millis(30)).await;
        assert_eq!(ended.elapsed(), Duration::from_millis(30), "the limit counts from the RPC's end");
    }
}
