//! The side channel between the load generator and the server it started.
//!
//! It runs over the server's stdin and stdout, never over a measured gRPC
//! connection, so asking for figures does not change them:
//!
//! 1. once bound, the server prints one line: `{"listening":"127.0.0.1:41234"}`;
//! 2. for each line `stats` on its stdin, it prints one line `{"stats":{…}}`
//!    holding a [`ServerStats`];
//! 3. for each line `purge`, it returns its allocator's freed pages to the OS
//!    (see [`crate::jemalloc::purge_all_arenas`]) and prints `"purged"`, or
//!    `{"purge_failed":"reason"}`;
//! 4. when its stdin closes, it shuts down, so a load generator that dies
//!    (even by `kill -9`) takes its server with it.
//!
//! The listening line is printed whether or not the side channel is enabled,
//! so scripts can start the server on port 0 and read the address.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::snapshot::ProcessSnapshot;

/// The line the load generator writes to ask for a [`ServerStats`].
pub const STATS_REQUEST: &str = "stats";

/// The line the load generator writes before a checkpoint, to have the server purge its allocator.
pub const PURGE_REQUEST: &str = "purge";

/// The line that asks the server for a heap profile: `heap-dump PATH`. The
/// server dumps jemalloc's profile to `PATH` (see [`crate::heap::dump`]), then
/// prints `"heap_dumped"` or `{"heap_dump_failed":…}`. The load generator
/// names its stacks after the run, from the memory map the dump ends with.
pub const HEAP_DUMP_REQUEST: &str = "heap-dump";

/// One line the server prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerLine {
    /// The address the server bound, printed once at start.
    Listening(SocketAddr),
    /// The answer to one [`STATS_REQUEST`] (boxed: it is far larger than the other lines).
    Stats(Box<ServerStats>),
    /// The answer to one [`PURGE_REQUEST`] that succeeded.
    Purged,
    /// The answer to one [`PURGE_REQUEST`] that failed, with the reason.
    PurgeFailed(String),
    /// The answer to a [`HEAP_DUMP_REQUEST`] that wrote its file.
    HeapDumped,
    /// The answer to a [`HEAP_DUMP_REQUEST`] that failed, with the reason.
    HeapDumpFailed(String),
}

impl ServerLine {
    /// The line as printed, without its newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("ServerLine serializes to JSON")
    }

    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end())
    }
}

/// The server's own figures at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerStats {
    /// The server process, measured by itself.
    pub process: ProcessSnapshot,
    /// RPCs answered with OK since start (unary calls and completed streams); `null` for a server that
    /// does not count them for leaklab (one measured from outside).
    pub requests_served: Option<u64>,
    /// RPCs answered with an error status since start; `null` as `requests_served` is.
    pub requests_failed: Option<u64>,
    /// What the server's keepalive policy did to connections since start.
    #[serde(default)]
    pub lifecycle: ServerLifecycle,
}

/// Counts, since the server started, of what its connection policy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServerLifecycle {
    /// GOAWAYs sent because a connection had no RPC in flight for `max_connection_idle`.
    pub goaway_max_idle: u64,
    /// GOAWAYs sent because a connection reached `max_connection_age`.
    pub goaway_max_age: u64,
    /// GOAWAYs `ENHANCE_YOUR_CALM` "too_many_pings" sent to clients that pinged too often.
    pub goaway_too_many_pings: u64,
    /// GOAWAYs `PROTOCOL_ERROR` or `FRAME_SIZE_ERROR` sent for bytes that were not HTTP/2.
    pub goaway_protocol_error: u64,
    /// Connections closed because they outlived `max_connection_age` + `max_connection_age_grace`.
    pub closed_after_age_grace: u64,
    /// Client pings that came sooner than the enforcement policy allows.
    pub ping_strikes: u64,
    /// Streams reset because their request had not arrived in full within `request_timeout`, or because
    /// `max_incomplete_requests` needed room for a newer one.
    #[serde(default)]
    pub streams_reset_incomplete: u64,
    /// Streams reset because their response waited behind a closed flow-control window for
    /// `unread_response_timeout`, or because the connection's or the server's unread-response bound needed room;
    /// and responses refused (`RESOURCE_EXHAUSTED`) before they were built, because responses being built
    /// filled `max_unread_response_bytes_total`.
    #[serde(default)]
    pub responses_reset_unread: u64,
    /// Connections closed at once because `max_connections` were already open.
    #[serde(default)]
    pub connections_refused: u64,
    /// GOAWAYs sent to connections one of whose streams a limit ended; each is closed 100 ms later.
    #[serde(default)]
    pub goaway_limit_exceeded: u64,
    /// Streams reset as they opened because the server held `max_concurrent_streams_total` streams
    /// and their connection its fair share of them.
    #[serde(default)]
    pub streams_refused: u64,
}

impl ServerLifecycle {
    /// Connections the server ended by itself: idle, aged, or pinging too often.
    pub fn reaped(&self) -> u64 {
        self.goaway_max_idle + self.goaway_max_age + self.goaway_too_many_pings
    }

    /// Streams, responses and connections the server's limits ended.
    pub fn limited(&self) -> u64 {
        self.streams_reset_incomplete + self.responses_reset_unread + self.connections_refused + self.streams_refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::ConnectionCounts;

    #[test]
    fn lines_round_trip() {
        let listening = ServerLine::Listening("127.0.0.1:41234".parse().unwrap());
        assert_eq!(listening.to_line(), r#"{"listening":"127.0.0.1:41234"}"#);
        assert_eq!(ServerLine::parse(&listening.to_line()).unwrap(), listening);

        let stats = ServerLine::Stats(Box::new(ServerStats {
            process: ProcessSnapshot {
                pid: Some(7),
                rss_bytes: 1,
                rss_parts: None,
                fds: Some(2),
                threads: Some(3),
                jemalloc: None,
                connections: Some(ConnectionCounts { open: 1, opened: 2, closed: 1 }.into()),
                streams: Some(4),
                runtime_heap: None,
            },
            requests_served: Some(10),
            requests_failed: Some(1),
            lifecycle: ServerLifecycle { goaway_max_idle: 3, ..ServerLifecycle::default() },
        }));
        let line = stats.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(ServerLine::parse(&format!("{line}\n")).unwrap(), stats);

        assert_eq!(ServerLine::Purged.to_line(), r#""purged""#);
        assert_eq!(ServerLine::parse(r#""purged""#).unwrap(), ServerLine::Purged);
    }

    #[test]
    fn a_foreign_line_is_an_error_not_a_panic() {
        assert!(ServerLine::parse("hello").is_err());
        assert!(ServerLine::parse(r#"{"unknown":1}"#).is_err());
    }
}
