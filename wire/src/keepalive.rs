//! The server's connection policy, modelled on grpc-go's
//! `keepalive.ServerParameters` and `keepalive.EnforcementPolicy`, and the
//! ping-strike rule that enforces the latter.

use std::time::{Duration, Instant};

/// grpc-go's `keepalive.ServerParameters` and `keepalive.EnforcementPolicy`.
/// Every limit is off (`None`) unless set, like tonic's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepalivePolicy {
    /// A connection with no RPC in flight for this long gets GOAWAY and is closed.
    pub max_connection_idle: Option<Duration>,
    /// A connection this old gets GOAWAY (RPCs in flight may finish)…
    pub max_connection_age: Option<Duration>,
    /// …and is closed this long after that GOAWAY if it is still open. `None`: it may take as long as it needs.
    pub max_connection_age_grace: Option<Duration>,
    /// The server pings a connection after this long without activity…
    pub keepalive_time: Option<Duration>,
    /// …and closes it when the ping is not answered within this long.
    pub keepalive_timeout: Option<Duration>,
    /// Client pings closer together than this are strikes. `None`: pings are not policed.
    pub min_ping_interval: Option<Duration>,
    /// Whether a client may ping while it has no RPC in flight.
    pub permit_without_stream: bool,
}

impl KeepalivePolicy {
    /// The ping policy to enforce, if any.
    pub fn ping_policy(&self) -> Option<PingPolicy> {
        self.min_ping_interval
            .map(|min_interval| PingPolicy { min_interval, permit_without_stream: self.permit_without_stream })
    }
}

/// How often a client may ping (grpc-go's `EnforcementPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingPolicy {
    pub min_interval: Duration,
    pub permit_without_stream: bool,
}

/// grpc-go's `maxPingStrikes`: the strike after this many closes the connection.
pub const MAX_PING_STRIKES: u32 = 2;

/// grpc-go's `defaultPingTimeout`: without an RPC in flight (and without
/// `permit_without_stream`), any two pings closer than this are a strike.
pub const PING_INTERVAL_WITHOUT_STREAM: Duration = Duration::from_secs(2 * 60 * 60);

/// What one client ping means under the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingVerdict {
    /// Within the policy (or the first since the server sent headers or data).
    Allowed,
    /// Too soon; this is the strike with this number.
    Strike(u32),
    /// Too soon once too often: GOAWAY `ENHANCE_YOUR_CALM` "too_many_pings", then close.
    TooManyPings,
}

/// The strike count of one connection, exactly as grpc-go's `handlePing` keeps it.
#[derive(Debug, Clone)]
pub struct PingStrikes {
    policy: PingPolicy,
    last_ping_at: Option<Instant>,
    strikes: u32,
    /// The server sent headers or data since the last ping: the next ping is
    /// not judged and clears the strikes.
    reset_pending: bool,
}

impl PingStrikes {
    pub fn new(policy: PingPolicy) -> Self {
        Self { policy, last_ping_at: None, strikes: 0, reset_pending: false }
    }

    /// The server sent a HEADERS or DATA frame.
    pub fn server_sent_headers_or_data(&mut self) {
        self.reset_pending = true;
    }

    /// A client PING (not an ACK) arrived at `now`, with `rpcs_in_flight` open.
    pub fn on_ping(&mut self, now: Instant, rpcs_in_flight: usize) -> PingVerdict {
        let last = self.last_ping_at.replace(now);
        if std::mem::take(&mut self.reset_pending) {
            self.strikes = 0;
            return PingVerdict::Allowed;
        }
        let allowed_interval = if rpcs_in_flight == 0 && !self.policy.permit_without_stream {
            PING_INTERVAL_WITHOUT_STREAM
        } else {
            self.policy.min_interval
        };
        let too_soon = last.is_some_and(|last| now.duration_since(last) < allowed_interval);
        if !too_soon {
            return PingVerdict::Allowed;
        }
        self.strikes += 1;
        if self.strikes > MAX_PING_STRIKES { PingVerdict::TooManyPings } else { PingVerdict::Strike(self.strikes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strikes(min_ms: u64, permit_without_stream: bool) -> PingStrikes {
        PingStrikes::new(PingPolicy { min_interval: Duration::from_millis(min_ms), permit_without_stream })
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn the_third_early_ping_is_too_many() {
        let start = Instant::now();
        let mut policy = strikes(5000, true);
        assert_eq!(policy.on_ping(at(start, 0), 0), PingVerdict::Allowed, "the first ping has nothing to be early for");
        assert_eq!(policy.on_ping(at(start, 1000), 0), PingVerdict::Strike(1));
        assert_eq!(policy.on_ping(at(start, 2000), 0), PingVerdict::Strike(2));
        assert_eq!(policy.on_ping(at(start, 3000), 0), PingVerdict::TooManyPings);
    }

    #[test]
    fn pings_at_the_minimum_interval_are_allowed() {
        let start = Instant::now();
        let mut policy = strikes(1000, true);
        for second in 0..20 {
            assert_eq!(policy.on_ping(at(start, second * 1000), 0), PingVerdict::Allowed);
        }
    }

    #[test]
    fn headers_or_data_sent_clear_the_strikes() {
        let start = Instant::now();
        let mut policy = strikes(5000, true);
        policy.on_ping(at(start, 0), 1);
        assert_eq!(policy.on_ping(at(start, 100), 1), PingVerdict::Strike(1));
        assert_eq!(policy.on_ping(at(start, 200), 1), PingVerdict::Strike(2));
        policy.server_sent_headers_or_data();
        assert_eq!(policy.on_ping(at(start, 300), 1), PingVerdict::Allowed, "not judged, strikes cleared");
        assert_eq!(policy.on_ping(at(start, 400), 1), PingVerdict::Strike(1), "counting starts again");
    }

    #[test]
    fn without_permission_any_idle_ping_after_the_first_is_a_strike() {
        let start = Instant::now();
        let mut policy = strikes(10, false);
        assert_eq!(policy.on_ping(at(start, 0), 0), PingVerdict::Allowed);
        assert_eq!(
            policy.on_ping(at(start, 60_000), 0),
            PingVerdict::Strike(1),
            "a minute apart, but no RPC in flight"
        );
        assert_eq!(policy.on_ping(at(start, 120_000), 1), PingVerdict::Allowed, "with an RPC in flight, 10 ms apply");
    }
}
