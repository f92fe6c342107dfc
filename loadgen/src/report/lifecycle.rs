//! The run's connections in sentences: what the server's policy did, what the
//! client saw, TIME_WAIT, faults, and where a reaped leak's memory went.
//! The console, `report.md` and the comparison all print these.

use super::summary::Summary;
use super::units::{human_bytes, signed_bytes};

/// One sentence per fact worth telling; empty when nothing happened to connections.
pub fn sentences(s: &Summary) -> Vec<String> {
    let l = &s.lifecycle;
    let mut out = Vec::new();
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
    }
    if !l.goaways_received.is_empty() {
        let received: Vec<String> = l.goaways_received.iter().map(|(reason, n)| format!("{reason} × {n}")).collect();
        out.push(format!("Client received GOAWAY: {}.", received.join(", ")));
    }
    if l.reconnects > 0 {
        out.push(format!("Client reconnected {} times after losing a connection.", l.reconnects));
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
                fault.blackholed_connections, s.requests.failed
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
             the tonic Channel, its buffer task and queue, its endpoint). Fitted over {} load samples.",
            signed_bytes(split.bytes_per_open_connection),
            100.0 * split.bytes_per_open_connection / whole,
            human_bytes(whole),
            signed_bytes(split.bytes_per_channel),
            split.samples
        ));
    }
    out
}
