//! What one client may make the toy server hold, as the server takes it and
//! as a scenario or a command line writes it.

use std::time::Duration;

/// What one client may make the server hold. `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.
    pub max_concurrent_streams: Option<u32>,
    /// Streams open at once over all connections. Beyond it, a connection may open a new stream
    /// only while it holds less than its fair share (this bound over the connections with a
    /// stream open); otherwise the stream is refused (reset) before anything is spent on it.
    pub max_concurrent_streams_total: Option<u32>,
    /// Connections open at once; beyond it, a new connection is closed as soon as it is accepted.
    pub max_connections: Option<u32>,
    /// A request must have arrived in full (END_STREAM) this long after its headers, or its stream is reset.
    pub request_timeout: Option<Duration>,
    /// Requests still arriving, over all connections; beyond it, the oldest one of the connection holding the most is reset (a client with one slow request keeps it).
    pub max_incomplete_requests: Option<u32>,
    /// A response whose next bytes wait this long behind a closed flow-control window is reset.
    pub unread_response_timeout: Option<Duration>,
    /// Response bytes one connection may have waiting for flow-control window; beyond it, the
    /// connection's oldest waiting response is reset. Each waiting response counts
    /// [`STREAM_BYTES`] more, for the stream that holds it.
    pub max_unread_response_bytes: Option<u64>,
    /// The same bound over all connections.
    pub max_unread_response_bytes_total: Option<u64>,
    /// Gather a request message as its bytes arrive and hand it on whole; `false` hands the bytes
    /// on at once, and tonic reserves the length the message's prefix declares before its bytes come.
    pub gather_messages: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: Some(100),
            max_concurrent_streams_total: Some(1_000),
            max_connections: None,
            request_timeout: Some(Duration::from_secs(5)),
            max_incomplete_requests: Some(1_000),
            unread_response_timeout: Some(Duration::from_secs(10)),
            max_unread_response_bytes: Some(16 << 20),
            max_unread_response_bytes_total: Some(64 << 20),
            gather_messages: true,
        }
    }
}

impl Limits {
    /// Every limit off, as tonic and hyper serve by default.
    pub fn unlimited() -> Self {
        Self {
            max_concurrent_streams: None,
            max_concurrent_streams_total: None,
            max_connections: None,
            request_timeout: None,
            max_incomplete_requests: None,
            unread_response_timeout: None,
            max_unread_response_bytes: None,
            max_unread_response_bytes_total: None,
            gather_messages: false,
        }
    }
}
