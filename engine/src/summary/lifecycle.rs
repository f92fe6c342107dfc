//! What happened to a run's connections, from its samples: the server's
//! policy at work, the GOAWAYs and reconnects the client saw, TIME_WAIT
//! sockets, faults, the events on the timeline, and which part of a leaked
//! channel's memory a server that reaps connections gets back.

use std::collections::BTreeMap;

use leaklab_probe::control::ServerLifecycle;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fault::FaultLog;
use crate::sample::{Phase, Sample};
use leaklab_verdict::stats::Span;
use leaklab_verdict::stats::fit::two_slopes;

/// What happened to the run's connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LifecycleSummary {
    /// What the server's keepalive policy did, counted by the server (absent when it was not measured).
    pub server: Option<ServerLifecycle>,
    /// GOAWAY frames the built-in client received, by code and debug data; `null` for a foreign client.
    pub goaways_received: Option<BTreeMap<String, u64>>,
    /// Connections the built-in client's channels dialled again after losing one; `null` for a foreign client.
    pub reconnects: Option<u64>,
    /// TCP sockets in TIME_WAIT towards the server's port: at the start, at the end, and at the peak.
    pub time_wait: Option<Span>,
    /// What the fault proxy did, when the scenario has a `[fault]`.
    pub fault: Option<FaultLog>,
    /// Seconds from the blackhole's start until the client dialled a new connection;
    /// absent when it never did during the run.
    pub time_to_detect_s: Option<f64>,
    /// For a leak whose connections the server reaps: the client's memory per
    /// leaked channel that stays, and per open connection that reaping gives back.
    pub attribution: Option<Attribution>,
    /// Events on the timeline, in time order.
    pub events: Vec<TimelineEvent>,
}

impl LifecycleSummary {
    /// From the samples and the fault proxy's log; `leak_reaped` asks for the
    /// memory split of a leak whose connections the server reaped.
    pub fn of(samples: &[Sample], fault: Option<FaultLog>, leak: bool) -> Self {
        let last = samples.last();
        let server = samples.iter().rev().find_map(|s| s.server).map(|s| s.lifecycle);
        let reaped = server.is_some_and(|s| s.reaped() > 0);
        Self {
            server,
            goaways_received: last.and_then(|s| s.network.goaways_received.clone()),
            reconnects: last.and_then(|s| s.network.reconnects),
            time_wait: Span::of(samples.iter().filter_map(|s| s.network.time_wait)),
            time_to_detect_s: fault.as_ref().and_then(FaultLog::time_to_detect).map(|d| d.as_secs_f64()),
            attribution: if leak && reaped { attribute(samples) } else { None },
            events: timeline(samples, fault.as_ref()),
            fault,
        }
    }
}

/// One event on the run's timeline. Events are found between two samples, so
/// their time is that of the sample that first shows them (±1 interval).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEvent {
    /// Seconds since the run started.
    pub at_s: f64,
    pub kind: EventKind,
    /// What happened, e.g. `GOAWAY max_idle` or `ENHANCE_YOUR_CALM "too_many_pings"`.
    pub label: String,
    /// How many times, since the previous sample.
    pub count: u64,
}

/// Who did what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The server sent GOAWAY (idle, age, too many pings, protocol error), or closed a connection after the grace.
    ServerGoaway,
    /// The client received a GOAWAY.
    ClientGoaway,
    /// The client dialled again after losing a connection.
    Reconnect,
    /// The fault proxy started or ended a blackhole, or reset connections.
    Fault,
    /// One of the server's limits ended streams or refused connections.
    ServerLimit,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ServerGoaway => "server GOAWAY",
            EventKind::ClientGoaway => "client got GOAWAY",
            EventKind::Reconnect => "reconnect",
            EventKind::Fault => "fault",
            EventKind::ServerLimit => "server limit",
        }
    }
}

/// The events between consecutive samples, in time order, then the fault proxy's.
pub fn timeline(samples: &[Sample], fault: Option<&FaultLog>) -> Vec<TimelineEvent> {
    let mut events = Vec::new();
    for pair in samples.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let mut push = |kind, label: String, count: u64| {
            if count > 0 {
                events.push(TimelineEvent { at_s: after.elapsed_s, kind, label, count });
            }
        };
        if let (Some(b), Some(a)) = (before.server, after.server) {
            let (b, a) = (b.lifecycle, a.lifecycle);
            push(
                EventKind::ServerGoaway,
                "GOAWAY max_idle".into(),
                a.goaway_max_idle.saturating_sub(b.goaway_max_idle),
            );
            push(EventKind::ServerGoaway, "GOAWAY max_age".into(), a.goaway_max_age.saturating_sub(b.goaway_max_age));
            push(
                EventKind::ServerGoaway,
                "GOAWAY too_many_pings".into(),
                a.goaway_too_many_pings.saturating_sub(b.goaway_too_many_pings),
            );
            push(
                EventKind::ServerGoaway,
                "GOAWAY protocol_error".into(),
                a.goaway_protocol_error.saturating_sub(b.goaway_protocol_error),
            );
            push(
                EventKind::ServerGoaway,
                "closed after age grace".into(),
                a.closed_after_age_grace.saturating_sub(b.closed_after_age_grace),
            );
            push(
                EventKind::ServerGoaway,
                "GOAWAY limit_exceeded".into(),
                a.goaway_limit_exceeded.saturating_sub(b.goaway_limit_exceeded),
            );
            for (label, before, after) in [
                ("streams_reset_incomplete", b.streams_reset_incomplete, a.streams_reset_incomplete),
                ("responses_reset_unread", b.responses_reset_unread, a.responses_reset_unread),
                ("connections_refused", b.connections_refused, a.connections_refused),
                ("streams_refused", b.streams_refused, a.streams_refused),
            ] {
                push(EventKind::ServerLimit, label.into(), after.saturating_sub(before));
            }
        }
        if let (Some(was), Some(now)) = (&before.network.goaways_received, &after.network.goaways_received) {
            for (reason, count) in now {
                let earlier = was.get(reason).copied().unwrap_or(0);
                push(EventKind::ClientGoaway, reason.clone(), count.saturating_sub(earlier));
            }
        }
        if let (Some(was), Some(now)) = (before.network.reconnects, after.network.reconnects) {
            push(EventKind::Reconnect, "reconnect".into(), now.saturating_sub(was));
        }
    }
    if let Some(log) = fault {
        let mut fault_event = |at: Option<f64>, label: String, count: u64| {
            if let Some(at_s) = at {
                events.push(TimelineEvent { at_s, kind: EventKind::Fault, label, count });
            }
        };
        fault_event(log.blackhole_started_s, "blackhole starts".into(), log.blackholed_connections.max(1));
        fault_event(log.blackhole_ended_s, "blackhole ends".into(), 1);
        fault_event(log.reset_s, "connections reset".into(), log.reset_connections.max(1));
        events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    }
    events
}

/// A leaked channel's client memory, split into what its open connection
/// holds and what the channel itself still holds once the connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attribution {
    /// Allocated bytes per request (each request leaks one channel) that stay
    /// after its connection closed: the channel, its buffer task, its endpoint.
    pub bytes_per_channel: f64,
    /// Allocated bytes per open connection: its HTTP/2 and I/O buffers, its
    /// connection task. Reaping a connection gives these back.
    pub bytes_per_open_connection: f64,
    /// Load samples the fit used.
    pub samples: u64,
}

/// Fits `allocated = c + a · requests + b · open connections` over the load
/// samples (see [`two_slopes`]). A plain leak has open connections =
/// requests, which cannot be split; once a server reaps connections,
/// requests keep climbing while open connections level off.
pub fn attribute(samples: &[Sample]) -> Option<Attribution> {
    let points: Vec<[f64; 3]> = samples
        .iter()
        .filter(|s| s.phase == Phase::Load)
        .filter_map(|s| {
            let allocated = s.client.jemalloc?.allocated_bytes as f64;
            Some([s.requests() as f64, s.client.open_connections()? as f64, allocated])
        })
        .collect();
    let (per_channel, per_connection) = two_slopes(&points, 8)?;
    Some(Attribution {
        bytes_per_channel: per_channel,
        bytes_per_open_connection: per_connection,
        samples: points.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::window::tests::sample;
    use leaklab_probe::JemallocStats;
    use leaklab_probe::control::{ServerLifecycle, ServerStats};

    fn with_memory(mut s: Sample, open: u64, allocated: u64) -> Sample {
        s.client.connections = Some(leaklab_probe::Connections::open_only(open));
        s.client.jemalloc = Some(JemallocStats { allocated_bytes: allocated, ..JemallocStats::default() });
        s
    }

    #[test]
    fn a_reaped_leak_splits_into_channel_and_connection() {
        // 3 KB per channel for ever, 57 KB per connection while open; the server
        // reaps connections idle for 800 requests, so open connections level off.
        let samples: Vec<Sample> = (0..60u64)
            .map(|i| {
                let requests = i * 100;
                let open = requests.min(800) + (i % 3) * 7;
                let noise = (i * 7919 % 13) * 1000;
                with_memory(
                    sample(i as f64, Phase::Load, requests, 0),
                    open,
                    5_000_000 + requests * 3_000 + open * 57_000 + noise,
                )
            })
            .collect();
        let split = attribute(&samples).expect("identifiable");
        assert!((split.bytes_per_channel - 3_000.0).abs() < 150.0, "{split:?}");
        assert!((split.bytes_per_open_connection - 57_000.0).abs() < 2_000.0, "{split:?}");
    }

    #[test]
    fn a_plain_leak_cannot_be_split() {
        let samples: Vec<Sample> = (0..60u64)
            .map(|i| with_memory(sample(i as f64, Phase::Load, i * 100, 0), i * 100, i * 100 * 60_000))
            .collect();
        assert_eq!(attribute(&samples), None);
    }

    #[test]
    fn events_come_from_counter_changes() {
        let mut first = sample(1.0, Phase::Load, 0, 0);
        first.server = Some(ServerStats {
            process: first.client,
            requests_served: Some(0),
            requests_failed: Some(0),
            lifecycle: ServerLifecycle::default(),
        });
        let mut second = first.clone();
        second.elapsed_s = 2.0;
        second.server.as_mut().unwrap().lifecycle.goaway_too_many_pings = 1;
        first.network.goaways_received = Some(BTreeMap::new());
        first.network.reconnects = Some(0);
        second.network.goaways_received = Some([("ENHANCE_YOUR_CALM \"too_many_pings\"".to_owned(), 1)].into());
        second.network.reconnects = Some(2);
        let log = FaultLog { blackhole_started_s: Some(1.5), blackholed_connections: 1, ..FaultLog::default() };
        let events = timeline(&[first, second], Some(&log));
        let summary: Vec<(f64, EventKind, u64)> = events.iter().map(|e| (e.at_s, e.kind, e.count)).collect();
        assert_eq!(
            summary,
            [
                (1.5, EventKind::Fault, 1),
                (2.0, EventKind::ServerGoaway, 1),
                (2.0, EventKind::ClientGoaway, 1),
                (2.0, EventKind::Reconnect, 2)
            ]
        );
        assert_eq!(events[1].label, "GOAWAY too_many_pings");
    }
}
