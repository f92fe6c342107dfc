//! A client's channels, subchannels and sockets as its own gRPC runtime
//! counts them, read from its channelz service (`--channelz ADDR`, an
//! external scenario's `channelz`): grpc-go's `channelz/service`, grpcio's
//! `grpcio-channelz`, grpc-java's and grpc-js's.
//!
//! A full sweep pages through `GetTopChannels` (the channels the application
//! made), then asks `GetSubchannel` of each distinct subchannel under them
//! for its sockets. The process answers, and allocates, in proportion to its
//! channels, and every answer carries the channel's trace of recent events, so
//! full sweeps are paced ([`FULL_SWEEP_CHANNELS_PER_SECOND`](watch::FULL_SWEEP_CHANNELS_PER_SECOND)); the readings in
//! between list only the channels made since the last one (ids only grow),
//! ask their subchannels, and follow those not ready yet with `GetChannel`.
//! Like the socket counts, readings are taken on a thread of their own, one at
//! a time, and a sample carries the latest complete one. Its counts become the
//! client's counters `channelz_channels`, `channelz_subchannels` and
//! `channelz_sockets`.
//!
//! What reading costs the process, measured on `go-leak` (2,000 `ClientConn`s,
//! four runs each): anonymous memory grew by 80–85 KB per `ClientConn` without
//! channelz, 87–93 KB with grpc-go's channelz on (its bookkeeping: each
//! channel's, subchannel's and socket's entry and trace) and 91–106 KB read
//! every 100 ms, as every 1 s: the answers are garbage that the Go heap grows
//! to hold. The 126 readings of a run kept the process answering for 0.42 s of
//! its 12.9 s.
//!
//! `source` takes one reading and keeps what it learnt for the next;
//! `watch` is the thread that takes them, paced, and keeps the latest.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod source;
mod watch;

pub use source::{ChannelzError, ChannelzSource, Known, Sweep};
pub use watch::ChannelzWatch;

/// The counters a reading gives every sample, by name.
pub const CHANNELS: &str = "channelz_channels";
pub const SUBCHANNELS: &str = "channelz_subchannels";
pub const SOCKETS: &str = "channelz_sockets";

/// One complete reading of a process's channelz service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelzReading {
    /// Top-level channels: those the application created (a grpc-go `ClientConn`, a grpcio or grpc-js channel).
    pub channels: u64,
    /// Distinct subchannels under them. Runtimes that share subchannels among channels to one target
    /// (C-core, grpc-js) have fewer subchannels than channels.
    pub subchannels: u64,
    /// Sockets (connections) the subchannels hold.
    pub sockets: u64,
    /// The channels by target, most channels first.
    pub targets: Vec<TargetChannels>,
}

/// The top-level channels to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetChannels {
    /// What the application asked the channels to connect to, as the runtime reports it.
    pub target: String,
    /// How many channels.
    pub channels: u64,
    /// How many are in each connectivity state (`ready`, `idle`, `connecting`, `transient_failure`,
    /// `shutdown`, `unknown`).
    pub states: BTreeMap<String, u64>,
}

impl ChannelzReading {
    /// The reading as the client's counters, by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([
            (CHANNELS.to_owned(), self.channels),
            (SUBCHANNELS.to_owned(), self.subchannels),
            (SOCKETS.to_owned(), self.sockets),
        ])
    }
}

/// What the channelz readings of a run came to, for `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelzSummary {
    /// The channelz service read, `HOST:PORT`.
    pub address: String,
    /// Complete readings taken.
    pub readings: u64,
    /// Seconds spent on readings, waiting for the process to answer them: what reading cost it, at most.
    pub reading_s: f64,
    /// Readings that failed after the first complete one (before it, the process may not be listening yet).
    pub failed_readings: u64,
    /// Why the first failed reading failed, before the first complete one or after; `null` when none did.
    pub first_error: Option<String>,
    /// The last complete reading; `null` when none completed.
    pub last: Option<ChannelzReading>,
}

#[cfg(test)]
mod tests;
