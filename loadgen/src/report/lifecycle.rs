//! The run's connections in sentences: what the server's policy did, what the
//! client saw, TIME_WAIT, faults, and where a reaped leak's memory went.
//! The console, `report.md` and the comparison all print these.

use super::units::{human_bytes, signed_bytes};
use leaklab_engine::summary::Summary;

/// One sentence per fact worth telling; empty when nothing happened to connections.
/// Held streams that filled the server's limit, and the calls that then waited for a slot until their deadline.
fn streams_at_the_limit(s: &Summary) -> Option<String> {
    let limit = s.plan.as_ref()?.max_concurrent_streams?;
    let held = s.client.streams.filter(|streams| streams.peak >= limit)?;
    let waited = s.requests.as_ref()?.errors.as_ref()?.get(leaklab_engine::load::errors::TIMEOUT_KIND).copied()?;
    Some(format!(
        "Open streams levelled at the server's limit of {limit} concurrent streams per connection (client peak {}): \
         the held streams take every slot, so each new call waited for one until its deadline and failed \
         ({} × {waited}).",
        held.peak,
        leaklab_engine::load::errors::TIMEOUT_KIND
    ))
}

/// What the scenario's attack did, and whether the well-behaved load noticed.
fn attack(s: &Summary) -> Option<String> {
    let a = s.attack.as_ref()?;
    let kind = a.kind.map_or("attack", leaklab_engine::attack::AttackKind::name);
    let failed = s.requests.as_ref().map(|r| r.failed);
    let allowed = s.plan.as_ref().and_then(|p| p.max_failed_requests);
    let noticed = match (failed, allowed) {
        (Some(failed), Some(allowed)) if failed > allowed => {
            format!(" The load's requests failed {failed} times, more than the {allowed} expected ✖.")
        }
        (Some(failed), _) => format!(" The load's requests failed {failed} times."),
        (None, _) => String::new(),
    };
    Some(format!(
        "Attack {kind}: {} connections dialled, {} streams opened (at most {} held at once); the server reset {} \
         and refused {} of them, answered {} and ended {} connections.{noticed}",
        a.connections,
        a.streams_opened,
        a.peak_held,
        a.streams_reset,
        a.streams_refused,
        a.streams_answered,
        a.connections_ended
    ))
}

pub(crate) fn sentences(s: &Summary) -> Vec<String> {
    let l = &s.lifecycle;
    let mut out = Vec::new();
    out.extend(attack(s));
    if let Some(server) = l.server {
        let counts = [
            ("max_idle", server.goaway_max_idle),
            ("max_age", server.goaway_max_age),
            ("too_many_pings", server.goaway_too_many_pings),
            ("protocol_error", server.goaway_protocol_error),
        ];
        let sent: Vec<String> =
            counts.iter().filter(|(_, n)| *n > 0).map(|(reason, n)| format!("{reason} × {n}")).collect();
        if !sent.is_empty() {
            out.push(format!("Server sent GOAWAY: {}.", sent.join(", ")));
        }
        if server.closed_after_age_grace > 0 {
            out.push(format!(
                "Server closed {} connections still open after max_connection_age_grace.",
                server.closed_after_age_grace
            ));
        }
        if server.ping_strikes > 0 {
            out.push(format!("Client pings sooner than the server's policy allows: {} strikes.", server.ping_strikes));
        }
        let limits = [
            ("streams reset because their request did not arrive in full", server.streams_reset_incomplete),
            ("streams reset because their response was not read", server.responses_reset_unread),
            ("connections refused over max_connections", server.connections_refused),
            ("streams refused over max_concurrent_streams_total", server.streams_refused),
            ("connections closed after a limit ended one of their streams", server.goaway_limit_exceeded),
        ];
        let hit: Vec<String> = limits.iter().filter(|(_, n)| *n > 0).map(|(what, n)| format!("{what} × {n}")).collect();
        if !hit.is_empty() {
            out.push(format!("Server limits: {}.", hit.join("; ")));
        }
    }
    if let Some(received) = l.goaways_received.as_ref().filter(|received| !received.is_empty()) {
        let received: Vec<String> = received.iter().map(|(reason, n)| format!("{reason} × {n}")).collect();
        out.push(format!("Client received GOAWAY: {}.", received.join(", ")));
    }
    if let Some(reconnects) = l.reconnects.filter(|n| *n > 0) {
        out.push(format!("Client reconnected {reconnects} times after losing a connection."));
    }
    if let Some(sentence) = streams_at_the_limit(s) {
        out.push(sentence);
    }
    if let Some(tw) = l.time_wait.filter(|tw| tw.peak > tw.start) {
        out.push(format!("TIME_WAIT sockets towards the server: {} → {}, peak {}.", tw.start, tw.end, tw.peak));
    }
    if let Some(fault) = &l.fault {
        if let Some(start) = fault.blackhole_started_s {
            let span = match fault.blackhole_ended_s {
                Some(end) => format!("from {start:.1} s to {end:.1} s"),
                None => format!("from {start:.1} s to the end of the run"),
            };
            let detected = match l.time_to_detect_s {
                Some(after) => {
                    format!("the client gave the dead connection up and dialled a new one {after:.1} s after it began")
                }
                None => "the client never gave the dead connection up during the run".to_owned(),
            };
            out.push(format!(
                "Blackhole {span} ({} connections caught): {detected}; {} requests failed.",
                fault.blackholed_connections,
                s.requests.as_ref().map_or(0, |r| r.failed)
            ));
        }
        if let Some(at) = fault.reset_s {
            out.push(format!("Reset {} connections at {at:.1} s.", fault.reset_connections));
        }
    }
    if let Some(split) = &l.attribution {
        let whole = split.bytes_per_channel + split.bytes_per_open_connection;
        out.push(format!(
            "Where a leaked channel's client memory went: its connection held {} until the server reaped it \
             (reclaimed: {:.0}% of {} per leaked channel); the channel itself still holds {} (not reclaimed: \
             the tonic Channel with its request queue, worker task and endpoint, and what it keeps of its closed \
             connection until its next use, which a leaked channel never has). Fitted over {} load samples.",
            signed_bytes(split.bytes_per_open_connection),
            100.0 * split.bytes_per_open_connection / whole,
            human_bytes(whole),
            signed_bytes(split.bytes_per_channel),
            split.samples
        ));
    }
    out
}

/// The same facts in a few words, for a table cell: `GOAWAY max_idle × 4000 · TIME_WAIT peak 35`.
pub(crate) fn brief(s: &Summary) -> String {
    let l = &s.lifecycle;
    let mut parts = Vec::new();
    if let Some(server) = l.server {
        for (reason, n) in [
            ("max_idle", server.goaway_max_idle),
            ("max_age", server.goaway_max_age),
            ("too_many_pings", server.goaway_too_many_pings),
            ("protocol_error", server.goaway_protocol_error),
            ("limit_exceeded", server.goaway_limit_exceeded),
        ] {
            if n > 0 {
                parts.push(format!("GOAWAY {reason} × {n}"));
            }
        }
        let reset = server.streams_reset_incomplete + server.responses_reset_unread;
        if reset > 0 {
            parts.push(format!("streams reset by limits {reset}"));
        }
    }
    if let Some(reconnects) = l.reconnects.filter(|n| *n > 0) {
        parts.push(format!("reconnects {reconnects}"));
    }
    if let Some(tw) = l.time_wait.filter(|tw| tw.peak > tw.start.max(2)) {
        parts.push(format!("TIME_WAIT peak {}", tw.peak));
    }
    if l.fault.as_ref().is_some_and(|f| f.blackhole_started_s.is_some()) {
        parts.push(match l.time_to_detect_s {
            Some(after) => format!("blackhole detected in {after:.1} s"),
            None => "blackhole never detected".to_owned(),
        });
    }
    if parts.is_empty() { "—".to_owned() } else { parts.join(" · ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fault::FaultLog;
    use leaklab_engine::fixtures::scripted_report;
    use leaklab_engine::summary::Attribution;
    use leaklab_probe::control::ServerLifecycle;
    use leaklab_verdict::stats::Span;

    #[test]
    fn nothing_to_tell_without_events() {
        let (summary, _) = scripted_report();
        assert!(sentences(&summary).is_empty());
        assert_eq!(brief(&summary), "—");
    }

    #[test]
    fn goaways_strikes_reconnects_time_wait_and_the_blackhole_are_told() {
        let (mut summary, _) = scripted_report();
        let l = &mut summary.lifecycle;
        l.server = Some(ServerLifecycle { goaway_too_many_pings: 7, ping_strikes: 21, ..ServerLifecycle::default() });
        l.goaways_received = Some([("ENHANCE_YOUR_CALM \"too_many_pings\"".to_owned(), 7)].into());
        l.reconnects = Some(6);
        l.time_wait = Some(Span { start: 1, end: 8, peak: 9 });
        l.fault = Some(FaultLog {
            blackhole_started_s: Some(3.0),
            blackhole_ended_s: Some(7.0),
            blackholed_connections: 1,
            ..FaultLog::default()
        });
        l.time_to_detect_s = Some(2.0);
        let text = sentences(&summary).join("\n");
        for expected in [
            "Server sent GOAWAY: too_many_pings × 7.",
            "21 strikes",
            "Client received GOAWAY: ENHANCE_YOUR_CALM \"too_many_pings\" × 7.",
            "reconnected 6 times",
            "TIME_WAIT sockets towards the server: 1 → 8, peak 9.",
            "Blackhole from 3.0 s to 7.0 s (1 connections caught): the client gave the dead connection up and dialled a new one 2.0 s after it began",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(
            brief(&summary),
            "GOAWAY too_many_pings × 7 · reconnects 6 · TIME_WAIT peak 9 · blackhole detected in 2.0 s"
        );
    }

    #[test]
    fn the_servers_limits_are_told() {
        let (mut summary, _) = scripted_report();
        summary.lifecycle.server = Some(ServerLifecycle {
            streams_reset_incomplete: 850,
            goaway_limit_exceeded: 4,
            ..ServerLifecycle::default()
        });
        let told = sentences(&summary).join(" ");
        assert!(
            told.contains(
                "Server limits: streams reset because their request did not arrive in full × 850; \
                 connections closed after a limit ended one of their streams × 4."
            ),
            "{told}"
        );
        assert_eq!(brief(&summary), "GOAWAY limit_exceeded × 4 · streams reset by limits 850");
    }

    #[test]
    fn a_reaped_leak_says_what_came_back_and_what_stays() {
        let (mut summary, _) = scripted_report();
        summary.lifecycle.attribution =
            Some(Attribution { bytes_per_channel: 23_000.0, bytes_per_open_connection: 37_000.0, samples: 200 });
        let text = sentences(&summary).join("\n");
        assert!(
            text.contains("its connection held +37.0 KB until the server reaped it (reclaimed: 62% of 60.0 KB"),
            "{text}"
        );
        assert!(text.contains("the channel itself still holds +23.0 KB"), "{text}");
    }
}
