//! A scenario's `[attack]`: an abusive client `loadgen attack` runs beside the load, and the bounds
//! every attack keeps, whether a scenario or the command line sets it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an abusive client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Streams whose headers are sent and whose request never is.
    SlowStreams,
    /// Calls asking for large responses on streams whose flow-control window is zero, never read.
    UnreadResponses,
    /// Streams that declare a message near the server's maximum and send a few bytes of it.
    DeclaredSize,
    /// A HEADERS frame without END_HEADERS on each connection, its CONTINUATION never sent.
    HeldHeaders,
    /// Streams opened and at once reset (CVE-2023-44487), which h2 sheds with GOAWAY.
    RapidReset,
}

impl AttackKind {
    pub const ALL: [AttackKind; 5] = [
        AttackKind::SlowStreams,
        AttackKind::UnreadResponses,
        AttackKind::DeclaredSize,
        AttackKind::HeldHeaders,
        AttackKind::RapidReset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttackKind::SlowStreams => "slow-streams",
            AttackKind::UnreadResponses => "unread-responses",
            AttackKind::DeclaredSize => "declared-size",
            AttackKind::HeldHeaders => "held-headers",
            AttackKind::RapidReset => "rapid-reset",
        }
    }
}

impl std::str::FromStr for AttackKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        AttackKind::ALL.into_iter().find(|kind| kind.name() == text).ok_or_else(|| {
            let names: Vec<_> = AttackKind::ALL.iter().map(|kind| kind.name()).collect();
            format!("unknown attack {text:?}; expected one of {}", names.join(", "))
        })
    }
}

/// The most memory an attack may ask a server without limits to hold: streams held × the bytes
/// each asks for. Far below this machine's memory, far above the limits' bounds.
pub const MAX_EXPOSURE: u64 = 4 << 30;

/// The most connections an attack keeps open.
pub const MAX_CONNECTIONS: u32 = 1_000;
/// The most streams an attack may be told to hold at once.
pub const MAX_STREAMS: u64 = 1_000_000;
/// The longest an attack runs.
pub const MAX_DURATION: Duration = Duration::from_secs(60);

/// A value of an attack outside the bounds every attack keeps: its field (`max_streams`), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackError {
    pub field: &'static str,
    pub reason: String,
}

/// The most streams an attack holds at once when it does not say.
pub const DEFAULT_MAX_STREAMS: u64 = 20_000;

/// A scenario's `[attack]`: what `loadgen attack` runs beside the load, on the run's server.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackSpec {
    pub kind: AttackKind,
    /// Connections kept open, each dialled again when the server ends it.
    pub connections: u32,
    /// Streams held open at once over all connections.
    pub max_streams: u64,
    /// New streams per second over all connections; `None`: as fast as the server takes them.
    pub streams_per_second: Option<f64>,
    pub response_bytes: u32,
    pub declared_bytes: u32,
    /// The longest it runs; it stops when the load ends.
    pub duration: Duration,
}

impl AttackSpec {
    /// The bounds every attack keeps, whether a scenario's `[attack]` or `loadgen attack`'s flags set it: at
    /// most [`MAX_CONNECTIONS`] connections, [`MAX_STREAMS`] streams and [`MAX_DURATION`], a positive rate,
    /// and never more than [`MAX_EXPOSURE`] asked of a server without limits.
    pub fn check(&self) -> Result<(), AttackError> {
        let outside = |field, reason: String| Err(AttackError { field, reason });
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return outside(
                "connections",
                format!("must be between 1 and {MAX_CONNECTIONS}, got {}", self.connections),
            );
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            let most = humantime::format_duration(MAX_DURATION);
            let got = humantime::format_duration(self.duration);
            return outside("duration", format!("an attack lasts more than 0s and at most {most}, got {got}"));
        }
        if !(1..=MAX_STREAMS).contains(&self.max_streams) {
            return outside("max_streams", format!("must be between 1 and {MAX_STREAMS}, got {}", self.max_streams));
        }
        if let Some(rate) = self.streams_per_second.filter(|rate| !(rate.is_finite() && *rate > 0.0)) {
            return outside("streams_per_second", format!("must be a positive number, got {rate}"));
        }
        for (field, bytes) in [("response_bytes", self.response_bytes), ("declared_bytes", self.declared_bytes)] {
            if bytes == 0 {
                return outside(field, "must be at least 1 byte".to_owned());
            }
        }
        Self::check_exposure(self.kind, self.max_streams, self.response_bytes, self.declared_bytes)
            .map_err(|reason| AttackError { field: "max_streams", reason })
    }

    /// The bytes one held stream asks the server to hold, beyond the stream itself.
    fn bytes_per_stream(kind: AttackKind, response_bytes: u32, declared_bytes: u32) -> u64 {
        match kind {
            AttackKind::UnreadResponses => response_bytes.into(),
            AttackKind::DeclaredSize => declared_bytes.into(),
            _ => 0,
        }
    }

    /// [`DEFAULT_MAX_STREAMS`], or fewer where each stream asks for so much that they would pass
    /// [`MAX_EXPOSURE`].
    pub fn default_max_streams(kind: AttackKind, response_bytes: u32, declared_bytes: u32) -> u64 {
        match Self::bytes_per_stream(kind, response_bytes, declared_bytes) {
            0 => DEFAULT_MAX_STREAMS,
            bytes => (MAX_EXPOSURE / bytes).clamp(1, DEFAULT_MAX_STREAMS),
        }
    }

    /// Fails when `max_streams` held could ask a server without limits for more than [`MAX_EXPOSURE`].
    pub fn check_exposure(
        kind: AttackKind,
        max_streams: u64,
        response_bytes: u32,
        declared_bytes: u32,
    ) -> Result<(), String> {
        let per_stream = Self::bytes_per_stream(kind, response_bytes, declared_bytes);
        let exposure = max_streams.saturating_mul(per_stream);
        if exposure > MAX_EXPOSURE {
            let what = match kind {
                AttackKind::UnreadResponses => "response_bytes",
                _ => "declared_bytes",
            };
            return Err(format!(
                "max_streams {max_streams} × {what} {per_stream} = {} MiB: more than the {} MiB an attack may ask a \
                 server to hold; lower either",
                exposure >> 20,
                MAX_EXPOSURE >> 20
            ));
        }
        Ok(())
    }
}
