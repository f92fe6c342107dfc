//! The toy `leaklab.v1.Echo` server: the service, its counters, and the accept loop.
//!
//! [`Server::start`] runs it inside the calling process (tests bind
//! `127.0.0.1:0`); the `leaklab-server` binary wraps the same call with flags,
//! signals and the stats side channel of [`leaklab_probe::control`].

mod preface;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use leaklab_probe::control::ServerStats;
use leaklab_probe::procfs::ProcError;
use leaklab_probe::{ConnectionCounter, Counted, SnapshotReader};
use leaklab_proto::{Echo, EchoRequest, EchoResponse, EchoServer, StreamRequest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub use preface::PrefaceDeadline;

/// Largest `delay_ms` a request may ask for; longer ones are refused, so a
/// mistyped request cannot park a task for hours.
pub const MAX_DELAY_MS: u32 = 60_000;

/// How the server is tuned. Every field maps to one `leaklab-server` flag.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest message, in bytes, the server decodes or encodes.
    pub max_message_bytes: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (`None`: no limit, tonic's default).
    pub max_concurrent_streams: Option<u32>,
    /// Interval of server HTTP/2 PING frames (`None`: no pings).
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Option<Duration>,
    /// A connection that has not sent the HTTP/2 preface this long after it was accepted is closed.
    pub preface_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_concurrent_streams: None,
            http2_keepalive_interval: None,
            http2_keepalive_timeout: None,
            preface_timeout: Duration::from_secs(10),
        }
    }
}

/// The server's counters, shared by the service, the accept loop and whoever reports them.
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    /// Every accepted connection, counted until its socket closes.
    pub connections: ConnectionCounter,
    served: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    accept_errors: Arc<AtomicU64>,
}

impl ServerMetrics {
    /// RPCs answered with OK.
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// RPCs answered with an error status.
    pub fn requests_failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Failed `accept` calls (for example: out of file descriptors).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// The figures the stats side channel reports.
    pub fn stats(&self, reader: &SnapshotReader) -> Result<ServerStats, ProcError> {
        Ok(ServerStats {
            process: reader.read()?,
            requests_served: self.requests_served(),
            requests_failed: self.requests_failed(),
        })
    }

    fn outcome<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        let counter = if result.is_ok() { &self.served } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

/// The `Echo` service.
#[derive(Debug, Clone)]
pub struct EchoService {
    metrics: ServerMetrics,
    max_message_bytes: usize,
}

impl EchoService {
    fn response_payload(&self, payload: Bytes, response_bytes: u32) -> Result<Bytes, Status> {
        if response_bytes == 0 {
            return Ok(payload);
        }
        if response_bytes as usize > self.max_message_bytes {
            return Err(Status::invalid_argument(format!(
                "response_bytes {response_bytes} exceeds the server's max message size {}",
                self.max_message_bytes
            )));
        }
        Ok(Bytes::from(vec![0xA5; response_bytes as usize]))
    }
}

fn check_delay(delay_ms: u32) -> Result<Duration, Status> {
    if delay_ms > MAX_DELAY_MS {
        return Err(Status::invalid_argument(format!("delay_ms {delay_ms} exceeds {MAX_DELAY_MS}")));
    }
    Ok(Duration::from_millis(delay_ms.into()))
}

type EchoStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let result = async {
            let EchoRequest { payload, response_bytes, delay_ms } = request.into_inner();
            let delay = check_delay(delay_ms)?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let payload = self.response_payload(payload, response_bytes)?;
            Ok(Response::new(EchoResponse { payload }))
        }
        .await;
        self.metrics.outcome(result)
    }

    type ServerStreamStream = EchoStream;

    async fn server_stream(&self, request: Request<StreamRequest>) -> Result<Response<EchoStream>, Status> {
        let StreamRequest { payload, messages, interval_ms } = request.into_inner();
        let interval = self.metrics.outcome(check_delay(interval_ms))?;
        let (tx, rx) = mpsc::channel(16);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for sent in 0..messages {
                if sent > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                if tx.send(Ok(EchoResponse { payload: payload.clone() })).await.is_err() {
                    // The client went away: the stream did not complete.
                    metrics.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            metrics.served.fetch_add(1, Ordering::Relaxed);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Accepted sockets, each counted until it closes.
///
/// `accept` errors (out of fds, for instance) are counted and retried after a
/// short pause instead of ending the server or spinning on the error.
struct CountedIncoming {
    listener: TcpListener,
    metrics: ServerMetrics,
    preface_timeout: Duration,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

impl Stream for CountedIncoming {
    type Item = io::Result<Counted<PrefaceDeadline<TcpStream>>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                std::task::ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            match std::task::ready!(self.listener.poll_accept(cx)) {
                Ok((stream, _peer)) => {
                    // serve_with_incoming ignores the builder's nodelay; set it as tonic would.
                    let _ = stream.set_nodelay(true);
                    let stream = PrefaceDeadline::new(stream, self.preface_timeout);
                    return Poll::Ready(Some(Ok(self.metrics.connections.track(stream))));
                }
                Err(error) => {
                    self.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("leaklab-server: accept failed: {error}");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_BACKOFF)));
                }
            }
        }
    }
}

/// tonic answers a message over the size limit with OUT_OF_RANGE; the gRPC
/// status code guide and grpc-go answer RESOURCE_EXHAUSTED, and clients
/// written against them look for that. A call refused while decoding its
/// request answers with headers only, so the status is in the headers.
fn oversized_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    const RESOURCE_EXHAUSTED: &str = "8";
    let headers = response.headers_mut();
    let oversized = headers.get("grpc-status").is_some_and(|code| code == OUT_OF_RANGE)
        && headers
            .get("grpc-message")
            .and_then(|message| message.to_str().ok())
            .is_some_and(|message| message.replace("%20", " ").contains("message length too large"));
    if oversized {
        headers.insert("grpc-status", http::HeaderValue::from_static(RESOURCE_EXHAUSTED));
    }
    response
}

/// Serves `Echo` and the gRPC health service on `listener` until `shutdown` resolves,
/// then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    config: &ServerConfig,
    metrics: ServerMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let echo = EchoServer::new(EchoService { metrics: metrics.clone(), max_message_bytes: config.max_message_bytes })
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    health_reporter.set_serving::<EchoServer<EchoService>>().await;

    let incoming = CountedIncoming { listener, metrics, preface_timeout: config.preface_timeout, backoff: None };
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(oversized_is_resource_exhausted))
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(config.http2_keepalive_interval)
        .http2_keepalive_timeout(config.http2_keepalive_timeout)
        .add_service(health_service)
        .add_service(echo)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// A server running on the caller's tokio runtime.
#[derive(Debug)]
pub struct Server {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    pub metrics: ServerMetrics,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    /// Binds `listen` and serves in a background task.
    pub async fn start(listen: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let metrics = ServerMetrics::default();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task_metrics = metrics.clone();
        let task = tokio::spawn(async move {
            serve(listener, &config, task_metrics, async {
                let _ = signal.await;
            })
            .await
        });
        Ok(Self { addr, metrics, shutdown, task })
    }

    /// Stops accepting, closes connections gracefully and waits up to `grace`
    /// for them; returns whether every connection closed in time.
    pub async fn shutdown(self, grace: Duration) -> Result<bool, tonic::transport::Error> {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => joined.expect("server task does not panic").map(|()| true),
            Err(_elapsed) => {
                task.abort();
                Ok(false)
            }
        }
    }
}
