//! Why the load stops early: the user asked, a cap was reached, or the
//! machine ran out of something (file descriptors, ephemeral ports). The
//! first reason wins; the load sees one stop signal whatever the reason.

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A limit that stopped the run, and where it was when it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LimitHit {
    /// Which limit: a cap (`client_rss`, `server_rss`, `client_fds`, `server_fds`) or, for a
    /// limit of the machine, the failure kind (`too_many_open_files`, `address_not_available`).
    pub which: String,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_stops_every_subscriber() {
        let halt = Halt::default();
        let before = halt.subscribe();
        assert!(!*before.borrow() && halt.reason().is_none());
        let hit = LimitHit { which: "client_rss".into(), value: 301, limit: Some(300), requests: 7 };
        halt.trigger(HaltReason::Cap(hit.clone()));
        halt.trigger(HaltReason::Interrupted);
        assert_eq!(halt.reason(), Some(&HaltReason::Cap(hit)));
        assert!(*before.borrow(), "a receiver taken before the trigger sees it");
        assert!(*halt.subscribe().borrow(), "and so does one taken after");
    }
}
