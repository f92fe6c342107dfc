//! Why a run stops: its plan was done, the user asked, a cap was reached, the
//! machine ran out of something (file descriptors, ephemeral ports), or the
//! process it watched exited. The first reason to stop early wins; the run
//! sees one stop signal whatever the reason.

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A limit a run can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The client's resident set size reached `caps.client_rss`.
    ClientRss,
    /// The server's resident set size reached `caps.server_rss`.
    ServerRss,
    /// The client's open file descriptors reached `caps.fds`.
    ClientFds,
    /// The server's open file descriptors reached `caps.fds`.
    ServerFds,
    /// The machine refused a file descriptor (EMFILE, ENFILE).
    TooManyOpenFiles,
    /// The machine had no ephemeral port left on the source address (EADDRNOTAVAIL).
    AddressNotAvailable,
}

impl Limit {
    /// The limits of the machine, by the failure kind of a request that met one.
    pub fn of_failure(kind: &str) -> Option<Limit> {
        match kind {
            "too_many_open_files" => Some(Limit::TooManyOpenFiles),
            "address_not_available" => Some(Limit::AddressNotAvailable),
            _ => None,
        }
    }

    /// Whether the limit's value and cap are bytes (an RSS cap) rather than counts.
    pub fn is_bytes(self) -> bool {
        matches!(self, Limit::ClientRss | Limit::ServerRss)
    }

    /// The name summaries, notes and the plot use (`client_rss`, `too_many_open_files`…).
    pub fn name(self) -> &'static str {
        match self {
            Limit::ClientRss => "client_rss",
            Limit::ServerRss => "server_rss",
            Limit::ClientFds => "client_fds",
            Limit::ServerFds => "server_fds",
            Limit::TooManyOpenFiles => "too_many_open_files",
            Limit::AddressNotAvailable => "address_not_available",
        }
    }
}

/// A limit that stopped the run, and where it was when it did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LimitHit {
    /// Which limit: a cap (`client_rss`, `server_rss`, `client_fds`, `server_fds`) or, for a
    /// limit of the machine, the failure kind (`too_many_open_files`, `address_not_available`).
    pub which: Limit,
    /// The measured value when it hit: bytes for RSS, a count for fds; for a limit of the
    /// machine, the client's open connections.
    pub value: u64,
    /// The cap, or for a limit of the machine the client's soft fd limit (`null` if unknown).
    pub limit: Option<u64>,
    /// Requests completed by then.
    pub requests: u64,
}

/// Why a run stopped before its plan was done.
#[derive(Debug, Clone, PartialEq)]
pub enum HaltReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// A cap of the scenario was reached.
    Cap(LimitHit),
    /// The machine refused a resource (file descriptors, ephemeral ports).
    MachineLimit(LimitHit),
}

impl HaltReason {
    /// The limit that stopped the run, if one did.
    pub fn limit(&self) -> Option<LimitHit> {
        match self {
            HaltReason::Cap(hit) | HaltReason::MachineLimit(hit) => Some(*hit),
            HaltReason::Interrupted => None,
        }
    }
}

/// The stop signal of one run, and its first reason.
#[derive(Debug)]
pub struct Halt {
    reason: OnceLock<HaltReason>,
    stop: watch::Sender<bool>,
}

impl Default for Halt {
    fn default() -> Self {
        Self { reason: OnceLock::new(), stop: watch::channel(false).0 }
    }
}

impl Halt {
    /// Stops the run for `reason`, unless it was already stopped for another.
    pub fn trigger(&self, reason: HaltReason) {
        if self.reason.set(reason).is_ok() {
            self.stop.send_replace(true);
        }
    }

    /// The first reason, once triggered.
    pub fn reason(&self) -> Option<&HaltReason> {
        self.reason.get()
    }

    /// Turns true when the run is stopped.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Why the run's load or watch ended, once it has: the halt's reason if it
    /// had one, else `otherwise` (the plan was done, or the process exited).
    pub fn stop_reason(&self, otherwise: StopReason) -> StopReason {
        match self.reason() {
            Some(HaltReason::Interrupted) => StopReason::Interrupted,
            Some(HaltReason::Cap(_)) => StopReason::Cap,
            Some(HaltReason::MachineLimit(_)) => StopReason::MachineLimit,
            None => otherwise,
        }
    }
}

/// Why the load (or the watch of a process) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every planned request was sent.
    Requests,
    /// The planned duration ran out first.
    Duration,
    /// The user interrupted the run (Ctrl-C or SIGTERM).
    Interrupted,
    /// A cap of the scenario was reached (see `stopped_at`).
    Cap,
    /// The machine refused a resource: file descriptors or ephemeral ports (see `stopped_at`).
    MachineLimit,
    /// The watched process exited.
    ProcessExited,
    /// The run ended without writing its report (killed); `loadgen report` rebuilt it from its samples.
    Unfinished,
}

impl StopReason {
    /// Whether the run stopped at a cap or a limit of the machine (exit code 5).
    pub fn at_limit(self) -> bool {
        matches!(self, StopReason::Cap | StopReason::MachineLimit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_stops_every_subscriber() {
        let halt = Halt::default();
        let before = halt.subscribe();
        assert!(!*before.borrow() && halt.reason().is_none());
        let hit = LimitHit { which: Limit::ClientRss, value: 301, limit: Some(300), requests: 7 };
        halt.trigger(HaltReason::Cap(hit));
        halt.trigger(HaltReason::Interrupted);
        assert_eq!(halt.reason(), Some(&HaltReason::Cap(hit)));
        assert_eq!(halt.stop_reason(StopReason::Requests), StopReason::Cap);
        assert!(*before.borrow(), "a receiver taken before the trigger sees it");
        assert!(*halt.subscribe().borrow(), "and so does one taken after");
    }

    #[test]
    fn limits_keep_their_names_in_json() {
        assert_eq!(serde_json::to_string(&Limit::ClientRss).unwrap(), "\"client_rss\"");
        assert_eq!(Limit::of_failure("address_not_available"), Some(Limit::AddressNotAvailable));
        assert_eq!(Limit::of_failure("unavailable"), None);
        for limit in [Limit::ClientRss, Limit::ServerFds, Limit::TooManyOpenFiles] {
            assert_eq!(serde_json::to_string(&limit).unwrap(), format!("\"{}\"", limit.name()));
        }
    }
}
