//! Channel policies: how the client gets a channel for each request. Each one
//! behaves like a real client written that way.

use std::collections::HashMap;
use std::sync::Mutex;

use leaklab_probe::ConnectionCounter;
use leaklab_proto::{EchoClient, EchoRequest};
use tonic::transport::{Channel, Endpoint};

use super::connector::CountingConnector;
use super::errors;
use crate::scenario::ChannelPolicy;

/// One sentence for the report on how `leak` keeps its channels.
pub const LEAK_MODEL: &str = "In Rust a dropped tonic Channel closes its connection, so `leak` leaks the way Rust code \
    really does: each request's client goes into a per-request cache (a HashMap keyed by request id) that is never evicted.";

type Client = EchoClient<Channel>;

/// The channels of one run, shared by every worker.
#[derive(Debug)]
pub struct Channels {
    endpoint: Endpoint,
    connector: CountingConnector,
    connections: ConnectionCounter,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// `reused` (one client) and `pool` (several, round-robin by request index).
    Shared(Vec<Client>),
    /// `leak`: the "cache" that keeps every request's client reachable.
    Leak(Mutex<HashMap<u64, Client>>),
    PerRequestClose,
}

/// The channels a worker holds for its whole life, so `reused` and `pool`
/// clone their clients once per worker instead of once per call.
#[derive(Debug)]
pub struct WorkerClients(Vec<Client>);

/// A failed call, by kind (see [`errors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError(pub String);

impl Channels {
    /// Connects the channels the policy keeps up front (`reused`, `pool`).
    pub async fn connect(policy: ChannelPolicy, authority: &str) -> Result<Self, tonic::transport::Error> {
        Self::connect_from(policy, authority, Vec::new()).await
    }

    /// As [`Channels::connect`], binding connections to `sources` in turn (see [`CountingConnector`]).
    pub async fn connect_from(
        policy: ChannelPolicy,
        authority: &str,
        sources: Vec<std::net::Ipv4Addr>,
    ) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))?;
        let connections = ConnectionCounter::new();
        let connector = CountingConnector::with_sources(connections.clone(), sources);
        let kind = match policy {
            ChannelPolicy::Reused | ChannelPolicy::Pool { .. } => {
                // `reused` is a pool of one.
                let size = if let ChannelPolicy::Pool { size } = policy { size.get() } else { 1 };
                let mut clients = Vec::with_capacity(size);
                for _ in 0..size {
                    clients.push(EchoClient::new(endpoint.connect_with_connector(connector.clone()).await?));
                }
                Kind::Shared(clients)
            }
            ChannelPolicy::Leak => Kind::Leak(Mutex::new(HashMap::new())),
            ChannelPolicy::PerRequestClose => Kind::PerRequestClose,
        };
        Ok(Self { endpoint, connector, connections, kind })
    }

    /// The client's connection counter: exact open/opened/closed counts.
    pub fn connections(&self) -> &ConnectionCounter {
        &self.connections
    }

    /// Channels leaked so far (always 0 except for `leak`).
    pub fn leaked(&self) -> usize {
        match &self.kind {
            Kind::Leak(cache) => cache.lock().map(|cache| cache.len()).unwrap_or(0),
            _ => 0,
        }
    }

    pub fn worker_clients(&self) -> WorkerClients {
        match &self.kind {
            Kind::Shared(clients) => WorkerClients(clients.clone()),
            Kind::Leak(_) | Kind::PerRequestClose => WorkerClients(Vec::new()),
        }
    }

    /// Sends request number `index` the way the policy does.
    pub async fn call(&self, worker: &mut WorkerClients, index: u64, request: EchoRequest) -> Result<(), CallError> {
        match &self.kind {
            Kind::Shared(_) => {
                let slot = (index % worker.0.len() as u64) as usize;
                unary(&mut worker.0[slot], request).await
            }
            Kind::Leak(cache) => {
                let mut client = self.new_client().await?;
                let result = unary(&mut client, request).await;
                // The bug: the client stays reachable after its call, so its
                // connection, buffers and tasks are never freed.
                if let Ok(mut cache) = cache.lock() {
                    cache.insert(index, client);
                }
                result
            }
            Kind::PerRequestClose => {
                let mut client = self.new_client().await?;
                unary(&mut client, request).await
                // `client` drops here: its channel closes the connection.
            }
        }
    }

    async fn new_client(&self) -> Result<Client, CallError> {
        match self.endpoint.connect_with_connector(self.connector.clone()).await {
            Ok(channel) => Ok(EchoClient::new(channel)),
            Err(error) => Err(CallError(errors::connect_kind(&error))),
        }
    }
}

async fn unary(client: &mut Client, request: EchoRequest) -> Result<(), CallError> {
    match client.unary(request).await {
        Ok(_response) => Ok(()),
        Err(status) => Err(CallError(errors::status_kind(&status))),
    }
}
