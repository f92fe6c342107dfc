//! The typed, validated plan a scenario file becomes. Nothing downstream
//! re-checks these values: if a `Plan` exists, it is runnable.

use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// Everything one run needs to know, decided before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Scenario name: the file's stem (`leak` for `scenarios/leak.toml`).
    pub name: String,
    /// The file the plan came from.
    pub source: PathBuf,
    /// The scenario's one-line description.
    pub description: String,
    pub policy: ChannelPolicy,
    pub load: LoadPlan,
    pub sampling: SamplingPlan,
    pub server: ServerPlan,
}

/// How the client gets a channel for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelPolicy {
    /// One channel (one HTTP/2 connection) shared by every request.
    Reused,
    /// A new channel per request, kept reachable forever: the bug.
    Leak,
    /// A new channel per request, dropped after its call.
    PerRequestClose,
    /// A fixed set of channels, used round-robin.
    Pool { size: NonZeroUsize },
}

impl ChannelPolicy {
    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ChannelPolicy::Reused => "reused",
            ChannelPolicy::Leak => "leak",
            ChannelPolicy::PerRequestClose => "per-request-close",
            ChannelPolicy::Pool { .. } => "pool",
        }
    }
}

impl fmt::Display for ChannelPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelPolicy::Pool { size } => write!(f, "pool of {size}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The load: who sends, how fast, and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Workers, each with at most one request in flight.
    pub concurrency: NonZeroUsize,
    /// Stop after this many requests (warm-up included)…
    pub max_requests: NonZeroU64,
    /// …or after this long, whichever comes first.
    pub max_duration: Duration,
    /// Open-loop pacing: request `i` is not sent before `start + i / rate`.
    /// `None`: closed loop, each worker sends as soon as its last call returned.
    pub rate_per_s: Option<f64>,
    /// Requests whose memory effect is not counted as growth (connection set-up,
    /// allocator and buffer warm-up). Always below `max_requests`.
    pub warmup_requests: u64,
    /// The request every call sends.
    pub request: RequestShape,
    /// A call not answered within this long fails as `deadline_exceeded`.
    pub request_timeout: Duration,
}

/// What each `Unary` call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    /// Sent in every request; cloning `Bytes` does not copy it.
    pub payload: Bytes,
    /// Response size; 0 echoes the payload.
    pub response_bytes: u32,
    /// Server-side delay before answering.
    pub delay_ms: u32,
}

/// How memory is sampled around the load.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    /// Time between two periodic samples. `None` samples only at phase changes
    /// (used to measure what sampling itself costs).
    pub interval: Option<Duration>,
    /// Sampling continues this long after the load stops, with no load.
    pub cooldown: Duration,
}

/// Flags for the server the run starts (ignored with `--target`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerPlan {
    pub max_message_bytes: Option<u32>,
    pub max_concurrent_streams: Option<u32>,
    pub http2_keepalive_interval: Option<Duration>,
    pub http2_keepalive_timeout: Option<Duration>,
}

impl ServerPlan {
    /// The `leaklab-server` arguments that apply this plan.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(bytes) = self.max_message_bytes {
            args.extend(["--max-message-size".to_owned(), bytes.to_string()]);
        }
        if let Some(streams) = self.max_concurrent_streams {
            args.extend(["--max-concurrent-streams".to_owned(), streams.to_string()]);
        }
        if let Some(interval) = self.http2_keepalive_interval {
            args.extend(["--http2-keepalive-interval".to_owned(), humantime::format_duration(interval).to_string()]);
        }
        if let Some(timeout) = self.http2_keepalive_timeout {
            args.extend(["--http2-keepalive-timeout".to_owned(), humantime::format_duration(timeout).to_string()]);
        }
        args
    }
}
