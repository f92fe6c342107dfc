//! What the server did to its connections: GOAWAYs by reason, forced closes,
//! ping strikes. The counts go to the load generator with every stats answer,
//! which turns their changes into events on the run's timeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use leaklab_probe::control::ServerLifecycle;

/// Why the server sent a GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoawayReason {
    /// `max_connection_idle` passed with no RPC in flight.
    MaxIdle,
    /// The connection reached `max_connection_age`.
    MaxAge,
    /// The third ping sooner than the enforcement policy allows.
    TooManyPings,
    /// Bytes that are not HTTP/2.
    ProtocolError,
    /// A limit ended one of the connection's streams.
    LimitExceeded,
    /// The server is shutting down.
    Shutdown,
}

impl GoawayReason {
    /// grpc-go's debug data for the same GOAWAY.
    pub fn name(self) -> &'static str {
        match self {
            GoawayReason::MaxIdle => "max_idle",
            GoawayReason::MaxAge => "max_age",
            GoawayReason::TooManyPings => "too_many_pings",
            GoawayReason::ProtocolError => "protocol_error",
            GoawayReason::LimitExceeded => "limit_exceeded",
            GoawayReason::Shutdown => "shutdown",
        }
    }
}

/// The server's connection-lifecycle counters, shared by every connection.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    goaway_max_idle: AtomicU64,
    goaway_max_age: AtomicU64,
    goaway_too_many_pings: AtomicU64,
    goaway_protocol_error: AtomicU64,
    closed_after_age_grace: AtomicU64,
    ping_strikes: AtomicU64,
    streams_reset_incomplete: AtomicU64,
    responses_reset_unread: AtomicU64,
    connections_refused: AtomicU64,
    goaway_limit_exceeded: AtomicU64,
    streams_refused: AtomicU64,
}

/// Which of the server's limits ended a stream or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// A request that had not arrived in full in time, or the oldest of too many.
    IncompleteRequest,
    /// A response stuck behind a closed flow-control window too long, or the oldest of too many bytes.
    UnreadResponse,
    /// A connection beyond `max_connections`.
    ConnectionRefused,
    /// A stream beyond `max_concurrent_streams_total` and its connection's fair share.
    StreamRefused,
}

impl Lifecycle {
    /// Counts and logs one GOAWAY.
    pub fn goaway(&self, reason: GoawayReason, peer: SocketAddr) {
        let counter = match reason {
            GoawayReason::MaxIdle => &self.0.goaway_max_idle,
            GoawayReason::MaxAge => &self.0.goaway_max_age,
            GoawayReason::TooManyPings => &self.0.goaway_too_many_pings,
            GoawayReason::ProtocolError => &self.0.goaway_protocol_error,
            GoawayReason::LimitExceeded => {
                // Counted without a log line: an attack makes them by the hundred.
                self.0.goaway_limit_exceeded.fetch_add(1, Ordering::Relaxed);
                return;
            }
            GoawayReason::Shutdown => {
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        eprintln!("leaklab-server: GOAWAY to {peer}: {}", reason.name());
    }

    pub fn closed_after_age_grace(&self, peer: SocketAddr) {
        self.0.closed_after_age_grace.fetch_add(1, Ordering::Relaxed);
        eprintln!("leaklab-server: closed {peer}: still open after max_connection_age_grace");
    }

    pub fn ping_strike(&self) {
        self.0.ping_strikes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one stream or connection a limit ended (not logged: an attack hits them by the thousand).
    pub fn limit_hit(&self, hit: LimitHit) {
        let counter = match hit {
            LimitHit::IncompleteRequest => &self.0.streams_reset_incomplete,
            LimitHit::UnreadResponse => &self.0.responses_reset_unread,
            LimitHit::ConnectionRefused => &self.0.connections_refused,
            LimitHit::StreamRefused => &self.0.streams_refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> ServerLifecycle {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerLifecycle {
            goaway_max_idle: load(&self.0.goaway_max_idle),
            goaway_max_age: load(&self.0.goaway_max_age),
            goaway_too_many_pings: load(&self.0.goaway_too_many_pings),
            goaway_protocol_error: load(&self.0.goaway_protocol_error),
            closed_after_age_grace: load(&self.0.closed_after_age_grace),
            ping_strikes: load(&self.0.ping_strikes),
            streams_reset_incomplete: load(&self.0.streams_reset_incomplete),
            responses_reset_unread: load(&self.0.responses_reset_unread),
            connections_refused: load(&self.0.connections_refused),
            goaway_limit_exceeded: load(&self.0.goaway_limit_exceeded),
            streams_refused: load(&self.0.streams_refused),
        }
    }
}
