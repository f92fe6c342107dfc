//! The toy `leaklab.v1.Echo` server: the service, its counters, and the accept loop.
//!
//! [`Server::start`] runs it inside the calling process (tests bind
//! `127.0.0.1:0`); the `leaklab-server` binary wraps the same call with flags,
//! signals and the stats side channel of [`leaklab_probe::control`].

mod activity;
mod lifecycle;
pub mod limits;
pub mod metrics_endpoint;
mod policed;
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
use leaklab_probe::{ConnectionCounter, Counted, SnapshotReader, StreamCounter};
use leaklab_proto::{Echo, EchoRequest, EchoResponse, EchoServer, StreamRequest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub use activity::ConnActivity;
pub use leaklab_wire::KeepalivePolicy;
pub use lifecycle::{GoawayReason, Lifecycle, LimitHit, ServerLifecycle};
pub use limits::Limits;
pub use policed::PolicedIo;
pub use preface::PrefaceDeadline;

/// Largest `delay_ms` a request may ask for; longer ones are refused, so a
/// mistyped request cannot park a task for hours.
pub const MAX_DELAY_MS: u32 = 60_000;

/// How the server is tuned. Every field maps to one `leaklab-server` flag.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest message, in bytes, the server decodes or encodes.
    pub max_message_bytes: usize,
    /// What one client may make the server hold: streams, waiting requests and responses, connections.
    pub limits: Limits,
    /// Idle and age limits, server pings and the client ping policy.
    pub keepalive: KeepalivePolicy,
    /// A connection that has not sent the HTTP/2 preface this long after it was accepted is closed
    /// (with TLS: that has not finished its handshake).
    pub preface_timeout: Duration,
    /// TLS on every connection; `None`: plaintext HTTP/2.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            limits: Limits::default(),
            keepalive: KeepalivePolicy::default(),
            preface_timeout: Duration::from_secs(10),
            tls: None,
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
    tls_failures: Arc<AtomicU64>,
    /// What the keepalive policy did to connections.
    pub lifecycle: Lifecycle,
    /// RPCs in flight over every connection: a server stream counts until it ends or its client
    /// cancels it.
    pub streams: StreamCounter,
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

    /// TLS handshakes that failed or did not finish in time.
    pub fn tls_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }

    /// Failed `accept` calls (for example: out of file descriptors).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// The figures the stats side channel reports.
    pub fn stats(&self, reader: &SnapshotReader) -> Result<ServerStats, ProcError> {
        Ok(ServerStats {
            process: reader.read()?,
            requests_served: Some(self.requests_served()),
            requests_failed: Some(self.requests_failed()),
            lifecycle: self.lifecycle.counts(),
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
    /// Where a large response reserves room before it is built.
    ledger: Arc<limits::Ledger>,
}

impl EchoService {
    fn response(&self, payload: Bytes, response_bytes: u32) -> Result<Response<EchoResponse>, Status> {
        if response_bytes == 0 {
            return Ok(Response::new(EchoResponse { payload }));
        }
        if response_bytes as usize > self.max_message_bytes {
            return Err(Status::invalid_argument(format!(
                "response_bytes {response_bytes} exceeds the server's max message size {}",
                self.max_message_bytes
            )));
        }
        let reservation = self.ledger.reserve_response(response_bytes.into()).map_err(|_| {
            Status::resource_exhausted("responses being built fill the server's max_unread_response_bytes_total")
        })?;
        let mut response = Response::new(EchoResponse { payload: Bytes::from(vec![0xA5; response_bytes as usize]) });
        if let Some(reservation) = reservation {
            response.extensions_mut().insert(Arc::new(reservation));
        }
        Ok(response)
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
            self.response(payload, response_bytes)
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
                    // A cancelled stream ends now, not at its next message: as a grpc-go handler
                    // watching ctx.Done(), the server holds nothing for a client that went away.
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = tx.closed() => {
                            metrics.failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
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
    max_connections: Option<u32>,
    preface_timeout: Duration,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// An accepted connection, counted until it closes, with its peer.
type Accepted = (Counted<PrefaceDeadline<TcpStream>>, SocketAddr);

impl Stream for CountedIncoming {
    type Item = Accepted;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                std::task::ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            match std::task::ready!(self.listener.poll_accept(cx)) {
                Ok((stream, peer)) => {
                    let full =
                        self.max_connections.is_some_and(|max| self.metrics.connections.counts().open >= max.into());
                    if full {
                        self.metrics.lifecycle.limit_hit(LimitHit::ConnectionRefused);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let stream = PrefaceDeadline::new(stream, self.preface_timeout);
                    return Poll::Ready(Some((self.metrics.connections.track(stream), peer)));
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
/// then sends every connection GOAWAY and waits for them to finish.
///
/// The accept loop is our own rather than tonic's, because tonic has neither
/// a max-idle limit nor a ping policy, and its `max_connection_age_grace`
/// drops a connection at age + grace without ever sending GOAWAY. Each
/// connection here is served by hyper under [`KeepalivePolicy`], as grpc-go
/// serves it: GOAWAY at idle or at age, a hard close only after the grace.
pub async fn serve(
    listener: TcpListener,
    config: &ServerConfig,
    metrics: ServerMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let ledger = limits::Ledger::new(config.limits, config.max_message_bytes, metrics.lifecycle.clone());
    let echo = EchoServer::new(EchoService {
        metrics: metrics.clone(),
        max_message_bytes: config.max_message_bytes,
        ledger: Arc::clone(&ledger),
    })
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);
    health_reporter.set_serving::<EchoServer<EchoService>>().await;
    let routes = tonic::service::Routes::new(health_service).add_service(echo).prepare();
    let service = tower::util::MapResponse::new(routes, oversized_is_resource_exhausted as fn(_) -> _);

    let policy = config.keepalive;
    let sweeper = ledger.sweeper();
    // One builder per connection: its executor counts that connection's streams.
    let http2_for = |executor: limits::StreamExecutor| {
        let mut http2 = hyper::server::conn::http2::Builder::new(executor);
        http2
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(config.limits.max_concurrent_streams)
            .keep_alive_interval(policy.keepalive_time);
        if let Some(timeout) = policy.keepalive_timeout {
            http2.keep_alive_timeout(timeout);
        }
        http2
    };

    let (drain, draining) = tokio::sync::watch::channel(false);
    let mut incoming = CountedIncoming {
        listener,
        metrics: metrics.clone(),
        max_connections: config.limits.max_connections,
        preface_timeout: config.preface_timeout,
        backoff: None,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some((io, peer)) = tokio_stream::StreamExt::next(&mut incoming) => {
                let service = ledger.limit(service.clone());
                let connection = Connection {
                    policy,
                    lifecycle: metrics.lifecycle.clone(),
                    streams: metrics.streams.clone(),
                    peer,
                    draining: draining.clone(),
                    offender: service.offender(),
                };
                let http2 = http2_for(limits::StreamExecutor::new(&service));
                match config.tls.clone() {
                    None => tokio::spawn(connection.serve(io, service, http2)),
                    Some(tls) => {
                        let (handshake_limit, failures) = (config.preface_timeout, Arc::clone(&metrics.tls_failures));
                        tokio::spawn(async move {
                            let accepting = tokio_rustls::TlsAcceptor::from(tls).accept(io);
                            match tokio::time::timeout(handshake_limit, accepting).await {
                                Ok(Ok(io)) => connection.serve(io, service, http2).await,
                                Ok(Err(error)) => {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("leaklab-server: TLS handshake with {peer} failed: {error}");
                                }
                                Err(_) => {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("leaklab-server: TLS handshake with {peer} not done within {handshake_limit:?}");
                                }
                            }
                        })
                    }
                };
            }
        }
    }
    // Stop accepting at once, then drain.
    drop(incoming);
    drop(draining);
    let _ = drain.send(true);
    drain.closed().await;
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
}

/// One accepted connection and the limits it is served under.
struct Connection {
    policy: KeepalivePolicy,
    lifecycle: Lifecycle,
    streams: StreamCounter,
    peer: SocketAddr,
    /// Becomes `true` when the server shuts down.
    draining: tokio::sync::watch::Receiver<bool>,
    /// Told when a limit ended one of this connection's streams.
    offender: Arc<limits::Offender>,
}

/// How long a connection closed for exceeding a limit has to take its GOAWAY before it is dropped.
const OFFENDER_GRACE: Duration = Duration::from_millis(100);

impl Connection {
    async fn serve<IO, S>(mut self, io: IO, service: S, http2: Http2Builder)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<tonic::body::Body>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let activity = Arc::new(activity::ConnActivity::counting_in(self.streams.clone()));
        let io =
            PolicedIo::new(io, self.policy.ping_policy(), Arc::clone(&activity), self.lifecycle.clone(), self.peer);
        let counted = activity::CountInFlight { inner: service, activity: Arc::clone(&activity) };
        let connection = http2
            .serve_connection(hyper_util::rt::TokioIo::new(io), hyper_util::service::TowerToHyperService::new(counted));
        tokio::pin!(connection);

        let idle = async {
            match self.policy.max_connection_idle {
                Some(limit) => activity.idle_for_at_least(limit).await,
                None => std::future::pending().await,
            }
        };
        let age = sleep_or_never(self.policy.max_connection_age);
        tokio::pin!(idle, age);
        let mut grace_ends: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut going_away = false;
        loop {
            tokio::select! {
                // A peer that vanishes mid-call is routine for a leak harness: nothing to report.
                _ = &mut connection => return,
                () = &mut idle, if !going_away => {
                    self.lifecycle.goaway(GoawayReason::MaxIdle, self.peer);
                    connection.as_mut().graceful_shutdown();
                    going_away = true;
                }
                () = &mut age, if !going_away => {
                    self.lifecycle.goaway(GoawayReason::MaxAge, self.peer);
                    connection.as_mut().graceful_shutdown();
                    going_away = true;
                    grace_ends = self.policy.max_connection_age_grace.map(|grace| Box::pin(tokio::time::sleep(grace)));
                }
                () = async { grace_ends.as_mut().expect("guarded").await }, if grace_ends.is_some() => {
                    if !self.offender.is_offended() {
                        self.lifecycle.closed_after_age_grace(self.peer);
                    }
                    return;
                }
                // Its streams wait on what the client does not send or read: close it, not just them.
                () = self.offender.offended(), if grace_ends.is_none() => {
                    self.lifecycle.goaway(GoawayReason::LimitExceeded, self.peer);
                    connection.as_mut().graceful_shutdown();
                    going_away = true;
                    grace_ends = Some(Box::pin(tokio::time::sleep(OFFENDER_GRACE)));
                }
                _ = self.draining.changed(), if !going_away => {
                    self.lifecycle.goaway(GoawayReason::Shutdown, self.peer);
                    connection.as_mut().graceful_shutdown();
                    going_away = true;
                }
            }
        }
    }
}

type Http2Builder = hyper::server::conn::http2::Builder<limits::StreamExecutor>;

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// A server running on the caller's tokio runtime.
#[derive(Debug)]
pub struct Server {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    pub metrics: ServerMetrics,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
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
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => {
                joined.expect("server task does not panic");
                true
            }
            Err(_elapsed) => {
                task.abort();
                false
            }
        }
    }
}
