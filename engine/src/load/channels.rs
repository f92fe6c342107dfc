//! Channel policies: how the client gets a channel for each request. Each one
//! behaves like a real client written that way.

use std::collections::HashMap;
use std::sync::Mutex;

use leaklab_probe::{ConnectionCounter, OpenStream, StreamCounter};
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use std::sync::atomic::{AtomicU64, Ordering};

use super::connector::{CountingConnector, GoawaysReceived};
use super::direct::H2Transport;
use super::errors;
use super::method::Method;
use crate::scenario::{ChannelPolicy, ClientPlan, Transport};
use crate::tls::ClientTls;

type Client = Grpc<Channel>;
type DirectClient = Grpc<H2Transport>;

/// The channels of one run, shared by every worker.
#[derive(Debug)]
pub struct Channels {
    endpoint: Endpoint,
    connector: CountingConnector,
    connections: ConnectionCounter,
    /// Server streams open on the client: opened and neither finished nor dropped.
    streams: StreamCounter,
    kind: Kind,
    created: AtomicU64,
}

/// The endpoint with the scenario's connection options, each the tonic call a real client would make.
fn endpoint(authority: &str, client: &ClientPlan) -> Result<Endpoint, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(format!("http://{authority}"))?;
    if let Some(timeout) = client.connect_timeout {
        endpoint = endpoint.connect_timeout(timeout);
    }
    if let Some(keepalive) = client.keepalive {
        endpoint = endpoint.http2_keep_alive_interval(keepalive.interval).keep_alive_while_idle(keepalive.while_idle);
        if let Some(timeout) = keepalive.timeout {
            endpoint = endpoint.keep_alive_timeout(timeout);
        }
    }
    Ok(endpoint)
}

#[derive(Debug)]
enum Kind {
    /// `reused` (one client) and `pool` (several, round-robin by request index).
    Shared(Vec<Client>),
    /// `reused` on the `h2` transport.
    Direct(DirectClient),
    /// `leak`: the "cache" that keeps every request's client reachable.
    Leak(Mutex<HashMap<u64, Client>>),
    PerRequestClose,
    /// `stream-leak` (with the cache that keeps every request's stream) and `stream-cancel`, on one
    /// channel (the worker's [`WorkerClients::Shared`]).
    Streams {
        client: Client,
        held: Option<Mutex<Vec<HeldStream>>>,
        interval: std::time::Duration,
    },
}

/// A server stream read to its first message, counted as open while it lives.
#[derive(Debug)]
struct HeldStream {
    _stream: tonic::Streaming<leaklab_proto::EchoResponse>,
    _open: OpenStream,
}

/// The channels a worker holds for its whole life, so `reused` and `pool`
/// clone their clients once per worker instead of once per call.
#[derive(Debug)]
pub enum WorkerClients {
    Shared(Vec<Client>),
    Direct(DirectClient),
    /// `leak` and `per-request-close` make a client per call.
    None,
}

/// Why the channels a policy keeps up front could not be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Channel(#[from] tonic::transport::Error),
    #[error(transparent)]
    H2(#[from] super::direct::ConnectError),
    #[error("not connected within client.connect_timeout ({})", humantime::format_duration(*.0))]
    Timeout(std::time::Duration),
}

/// A failed call, by kind (see [`errors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError(pub String);

impl Channels {
    /// Connects the channels the policy keeps up front (`reused`, `pool`).
    pub async fn connect(policy: ChannelPolicy, authority: &str) -> Result<Self, ConnectError> {
        Self::connect_from(policy, authority, Vec::new(), &ClientPlan::default()).await
    }

    /// As [`Channels::connect`], binding connections to `sources` in turn (see
    /// [`CountingConnector`]), with the client's connection options.
    pub async fn connect_from(
        policy: ChannelPolicy,
        authority: &str,
        sources: Vec<std::net::Ipv4Addr>,
        client: &ClientPlan,
    ) -> Result<Self, ConnectError> {
        Self::connect_with_tls(policy, authority, sources, client, None).await
    }

    /// As [`Channels::connect_from`], with TLS on every connection when `tls` is given.
    pub async fn connect_with_tls(
        policy: ChannelPolicy,
        authority: &str,
        sources: Vec<std::net::Ipv4Addr>,
        client: &ClientPlan,
        tls: Option<ClientTls>,
    ) -> Result<Self, ConnectError> {
        let endpoint = endpoint(authority, client)?;
        let connections = ConnectionCounter::new();
        let connector =
            CountingConnector::with_sources(connections.clone(), sources).tcp_keepalive(client.tcp_keepalive).tls(tls);
        let created = AtomicU64::new(0);
        let kind = match policy {
            ChannelPolicy::Reused if client.transport == Transport::H2 => {
                let authority = endpoint.uri().authority().cloned().expect("an endpoint made from http://{authority}");
                let connecting = H2Transport::connect(&connector, authority);
                let transport = match client.connect_timeout {
                    Some(limit) => {
                        tokio::time::timeout(limit, connecting).await.map_err(|_| ConnectError::Timeout(limit))??
                    }
                    None => connecting.await?,
                };
                created.fetch_add(1, Ordering::Relaxed);
                Kind::Direct(Grpc::new(transport))
            }
            ChannelPolicy::Reused
            | ChannelPolicy::Pool { .. }
            | ChannelPolicy::StreamLeak
            | ChannelPolicy::StreamCancel => {
                // `reused` is a pool of one, and the stream policies stream on one channel.
                let size = if let ChannelPolicy::Pool { size } = policy { size.get() } else { 1 };
                let mut clients = Vec::with_capacity(size);
                for _ in 0..size {
                    clients.push(Grpc::new(endpoint.connect_with_connector(connector.clone()).await?));
                    created.fetch_add(1, Ordering::Relaxed);
                }
                if policy.streams() {
                    // The bug's cache, for `stream-leak`: every request's stream stays reachable, unfinished.
                    let held = (policy == ChannelPolicy::StreamLeak).then(|| Mutex::new(Vec::new()));
                    Kind::Streams { client: clients.remove(0), held, interval: client.stream_interval }
                } else {
                    Kind::Shared(clients)
                }
            }
            ChannelPolicy::Leak => Kind::Leak(Mutex::new(HashMap::new())),
            ChannelPolicy::PerRequestClose => Kind::PerRequestClose,
        };
        Ok(Self { endpoint, connector, connections, streams: StreamCounter::new(), kind, created })
    }

    /// Channels created so far: each dials one connection; any further connection is a reconnect.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Connections opened beyond one per channel: a channel whose connection
    /// was closed (GOAWAY, keepalive timeout, reset) dialled again.
    pub fn reconnects(&self) -> u64 {
        self.connections.counts().opened.saturating_sub(self.created())
    }

    /// The GOAWAYs the server sent, by reason.
    pub fn goaways(&self) -> &GoawaysReceived {
        self.connector.goaways()
    }

    /// The client's connection counter: exact open/opened/closed counts.
    pub fn connections(&self) -> &ConnectionCounter {
        &self.connections
    }

    /// The client's open server streams (held by `stream-leak`, in flight otherwise).
    pub fn streams(&self) -> &StreamCounter {
        &self.streams
    }

    pub fn worker_clients(&self) -> WorkerClients {
        match &self.kind {
            Kind::Shared(clients) => WorkerClients::Shared(clients.clone()),
            Kind::Direct(client) => WorkerClients::Direct(client.clone()),
            Kind::Streams { client, .. } => WorkerClients::Shared(vec![client.clone()]),
            Kind::Leak(_) | Kind::PerRequestClose => WorkerClients::None,
        }
    }

    /// Sends call number `index` of `method` the way the policy does.
    pub async fn call(&self, worker: &mut WorkerClients, index: u64, method: &Method) -> Result<(), CallError> {
        if let (Kind::Streams { held, interval, .. }, WorkerClients::Shared(clients)) = (&self.kind, &mut *worker) {
            let stream = method.open_stream(&mut clients[0], *interval).await?;
            let stream = HeldStream { _stream: stream, _open: self.streams.open() };
            if let Some(held) = held
                && let Ok(mut held) = held.lock()
            {
                // The bug: the stream is neither read to its end nor cancelled, so it stays open on
                // both ends and the server keeps sending on it.
                held.push(stream);
            }
            // `stream-cancel`: `stream` drops here, and its drop cancels it (RST_STREAM CANCEL).
            return Ok(());
        }
        match worker {
            WorkerClients::Shared(clients) => {
                let slot = (index % clients.len() as u64) as usize;
                method.invoke(&mut clients[slot], index).await
            }
            WorkerClients::Direct(client) => method.invoke(client, index).await,
            WorkerClients::None => {
                let mut client = self.new_client().await?;
                let result = method.invoke(&mut client, index).await;
                if let Kind::Leak(cache) = &self.kind {
                    // The bug: the client stays reachable after its call, so its
                    // connection, buffers and tasks are never freed.
                    if let Ok(mut cache) = cache.lock() {
                        cache.insert(index, client);
                    }
                }
                // `per-request-close`: `client` drops here, and its channel closes the connection.
                result
            }
        }
    }

    async fn new_client(&self) -> Result<Client, CallError> {
        self.created.fetch_add(1, Ordering::Relaxed);
        match self.endpoint.connect_with_connector(self.connector.clone()).await {
            Ok(channel) => Ok(Grpc::new(channel)),
            Err(error) => Err(CallError(errors::connect_kind(&error))),
        }
    }
}
