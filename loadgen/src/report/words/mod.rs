//! Sentences for the data the analysis produces: a verdict's reasons, a
//! summary's notes, why the load stopped, a baseline comparison. Every output
//! words these the same way, from here.

use super::units::{format_mib, human_bytes, signed_bytes};
use crate::baseline::{BaselineComparison, Delta};
use leaklab_engine::halt::{LimitHit, StopReason};
use leaklab_engine::scenario::PolicyName;
use leaklab_engine::summary::{AtStop, Note, Sides, Summary};
use leaklab_verdict::{Axis, Basis, Count, ProcessVerdict, Quantity, Reason};

mod notes;
pub(crate) use notes::{notes, stop_note};

/// A client's reported counter over the run: `5 → 485 (peak 485), +4.00 per request`.
pub(crate) fn counter(c: &leaklab_engine::summary::CounterSummary) -> String {
    let slope = c.per_request.map(|slope| format!(", {slope:+.2} per request")).unwrap_or_default();
    format!("{} → {} (peak {}){slope}", c.start, c.end, c.peak)
}

/// What the client's channelz service counted last, in its runtime's words: `channelz: 2,000 channels to
/// 127.0.0.1:41234 (2,000 ready) are open, over 2,000 subchannels and 2,000 sockets`.
pub(crate) fn channelz(s: &Summary) -> Option<String> {
    use super::units::thousands;
    let channelz = s.client.channelz.as_ref()?;
    let Some(reading) = &channelz.last else {
        let why = channelz.first_error.as_deref().unwrap_or("no reading completed");
        return Some(format!("channelz at {} gave no reading: {why}", channelz.address));
    };
    let plural = |n: u64, one: &str, many: &str| format!("{} {}", thousands(n), if n == 1 { one } else { many });
    let mut targets: Vec<String> = reading
        .targets
        .iter()
        .take(3)
        .map(|t| {
            let states: Vec<String> = t.states.iter().map(|(state, n)| format!("{} {state}", thousands(*n))).collect();
            let target = if t.target.is_empty() { "an unnamed target".to_owned() } else { t.target.clone() };
            format!("{} to {target} ({})", plural(t.channels, "channel", "channels"), states.join(", "))
        })
        .collect();
    if reading.targets.len() > 3 {
        targets.push(format!("{} more targets", reading.targets.len() - 3));
    }
    let open = match targets.len() {
        0 => "no channel is open".to_owned(),
        1 if reading.channels == 1 => format!("{} is open", targets[0]),
        _ => format!("{} are open", targets.join(", ")),
    };
    let under = match reading.channels {
        0 => String::new(),
        _ => format!(
            ", over {} and {}",
            plural(reading.subchannels, "subchannel", "subchannels"),
            plural(reading.sockets, "socket", "sockets")
        ),
    };
    let failed = match channelz.failed_readings {
        0 => String::new(),
        n => {
            format!("; {} failed: {}", plural(n, "reading", "readings"), channelz.first_error.as_deref().unwrap_or("?"))
        }
    };
    Some(format!("channelz: {open}{under}{failed}"))
}

/// Whether the run's requests were streams: the stream policies, or a foreign client that reports a
/// `streams` counter. A unary call is open too, for the instant it is in flight, and would only add noise
/// to the reports' tables.
pub(crate) fn opened_streams(s: &Summary) -> bool {
    s.policy.is_some_and(PolicyName::streams) || s.client.counters.contains_key("streams")
}

/// Both ends' open streams: `client 0 → 4000 (peak 4000), +1.000/request; server …`.
pub(crate) fn streams(s: &Summary) -> Option<String> {
    if !opened_streams(s) {
        return None;
    }
    let growth = s.growth.per_request();
    let sides: Vec<String> = s
        .processes()
        .iter()
        .filter_map(|(side, process)| {
            let span = process.streams?;
            let slope = growth.get(side).and_then(|g| g.streams);
            let slope = slope.map(|slope| format!(", {slope:+.3}/request")).unwrap_or_default();
            Some(format!("{} {} → {} (peak {}){slope}", side.name(), span.start, span.end, span.peak))
        })
        .collect();
    Some(sides.join("; "))
}

/// `request` or `s`: what a slope is per.
pub(crate) fn per(axis: Axis) -> &'static str {
    match axis {
        Axis::Request => "request",
        Axis::Second => "s",
    }
}

/// What was judged, as the start of a sentence: `Allocated memory`, `RSS`.
pub(crate) fn quantity(quantity: Quantity) -> &'static str {
    match quantity {
        Quantity::AllocatedBytes => "Allocated memory",
        Quantity::RssBytes => "RSS",
        Quantity::RssAnonBytes => "Anonymous memory",
        Quantity::LiveHeapBytes => "Live heap after a full collection",
        Quantity::NativeBytes => "Memory outside the heap",
    }
}

/// What was judged, in a table: `allocated`, `RSS`.
pub(crate) fn measure(quantity: Quantity) -> &'static str {
    match quantity {
        Quantity::AllocatedBytes => "allocated",
        Quantity::RssBytes => "RSS",
        Quantity::RssAnonBytes => "anonymous RSS",
        Quantity::LiveHeapBytes => "live heap",
        Quantity::NativeBytes => "outside the heap",
    }
}

/// One reason of `verdict`, in a sentence.
pub(crate) fn reason(verdict: &ProcessVerdict, reason: &Reason) -> String {
    let (what, per, b) = (quantity(verdict.quantity), per(verdict.axis), human_bytes);
    let tolerance = b(verdict.tolerance);
    let (steps, halves) = match verdict.basis {
        Basis::Checkpoints => ("rounds", ("early rounds", "late rounds")),
        Basis::Samples => ("steps between samples", ("first half", "second half")),
    };
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    match reason.clone() {
        Reason::TooFew { have, need } => match verdict.basis {
            Basis::Checkpoints => {
                format!("Only {have} round{} completed; a verdict needs at least {need}.", plural(have))
            }
            Basis::Samples => format!("Only {have} sample{} to judge; a verdict needs at least {need}.", plural(have)),
        },
        Reason::NoFigures => no_figures(verdict.quantity).to_owned(),
        Reason::NoSpread => match verdict.axis {
            Axis::Request => "The request count never changed across the points: there is no slope to measure.",
            Axis::Second => "Every point was taken at the same time: there is no slope to measure.",
        }
        .to_owned(),
        Reason::Within { slope, ci_high } => format!(
            "{what} changed by {} per {per} (95% interval up to {}), within the tolerance of {tolerance}.",
            b(slope),
            b(ci_high)
        ),
        Reason::LevelledOff { early_slope, late_slope, late_ci_high } => format!(
            "{what} grew by {} per {per} in the {}, then by {} (95% interval up to {}) in the {}: it levelled off.",
            b(early_slope),
            halves.0,
            b(late_slope),
            b(late_ci_high),
            halves.1
        ),
        Reason::Above { slope, ci_low, ci_high } => format!(
            "{what} grew by {} per {per} (95% interval {} to {}), above the tolerance of {tolerance}.",
            b(slope),
            b(ci_low),
            b(ci_high)
        ),
        Reason::LateAbove { slope, ci_low } => format!(
            "The {} grew by {} per {per} (95% interval from {}), above the tolerance of {tolerance}.",
            halves.1,
            b(slope),
            b(ci_low)
        ),
        Reason::CountRose { count, increases, steps: n, p_value } => format!(
            "{} rose in {increases} of {n} {steps} (sign test p = {p_value:.3}); each holds memory.",
            match count {
                Count::Connections => "Open connections",
                Count::Fds => "Open fds",
            }
        ),
        Reason::CounterRose { name, increases, steps: n, p_value } => {
            format!("{} rose in {increases} of {n} {steps} (sign test p = {p_value:.3}).", counter_label(&name))
        }
        Reason::Straddles { ci_low, ci_high } => format!(
            "The 95% interval, {} to {} per {per}, contains the tolerance of {tolerance}.",
            b(ci_low),
            b(ci_high)
        ),
        Reason::RoundsToDecide { more, total } => {
            format!("About {more} more rounds ({total} in all) would likely decide, if the slope and the noise hold.")
        }
        Reason::OnTheTolerance => "The slope sits on the tolerance: more rounds are unlikely to decide.".to_owned(),
        Reason::FewerRounds { rounds, full } => {
            format!("Judged on {rounds} completed rounds, fewer than the {full} a full run has: the interval is wider.")
        }
        Reason::ConnectionsRose { increases, steps: n } => {
            format!("Open connections rose in {increases} of {n} {steps}.")
        }
        Reason::NativeDecided { slope, ci_low } => format!(
            "Memory the runtime holds outside its heap grew by {} per {per} (95% interval from {}), above the \
             tolerance of {tolerance}: a leak the live heap does not show.",
            b(slope),
            b(ci_low)
        ),
        Reason::CountDecided { name, per_request, late_per_request } => format!(
            "{} climbed by {per_request:.2} per request ({late_per_request:.2} over the {}) and stayed: each one held \
             is leaked, whatever the memory did.",
            counter_label(&name),
            halves.1
        ),
        Reason::Returned => "After the load, the process returned to where the rounds started.".to_owned(),
        Reason::Kept { allocated_kept, allocated_grown, connections_kept, connections_grown } => format!(
            "After the load, the process kept {} of the {} it took, and {connections_kept} of {connections_grown} \
             connections.",
            allocated_kept.map_or("?".to_owned(), |kept| human_bytes(kept as f64)),
            allocated_grown.map_or("?".to_owned(), |grown| human_bytes(grown as f64)),
        ),
    }
}

/// Why there was nothing to judge, by what was to be judged.
fn no_figures(quantity: Quantity) -> &'static str {
    match quantity {
        Quantity::AllocatedBytes => "No allocator figures: the process's allocated bytes could not be read.",
        Quantity::RssBytes | Quantity::RssAnonBytes => "No RSS figures: the process's memory could not be read.",
        Quantity::LiveHeapBytes | Quantity::NativeBytes => "No heap figures: the runtime's heap could not be read.",
    }
}

/// A counter's name as a sentence starts it: `Open streams`, `Goroutines`.
fn counter_label(name: &str) -> String {
    use leaklab_engine::sample::channelz;
    match name {
        "streams" => "Open streams".to_owned(),
        "connections" => "Open connections".to_owned(),
        leaklab_engine::heap::orphans::ORPHANED_CHANNELS => "Channels grpc-java reported orphaned".to_owned(),
        channelz::CHANNELS => "Channels counted by channelz".to_owned(),
        channelz::SUBCHANNELS => "Subchannels counted by channelz".to_owned(),
        channelz::SOCKETS => "Sockets counted by channelz".to_owned(),
        _ => {
            let mut chars = name.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}

/// Every reason of `verdict`, in order.
pub(crate) fn reasons(verdict: &ProcessVerdict) -> Vec<String> {
    verdict.reasons.iter().map(|r| reason(verdict, r)).collect()
}

/// The verdict's slope with its interval, on its axis: `+60.8 KB (+60.7 KB to +60.9 KB)`, or `n/a`.
pub(crate) fn slope(verdict: &ProcessVerdict) -> String {
    match verdict.trend {
        Some(trend) => {
            format!("{} ({} to {})", signed_bytes(trend.slope), signed_bytes(trend.ci_low), signed_bytes(trend.ci_high))
        }
        None => "n/a".to_owned(),
    }
}

/// What a garbage-collected client's memory outside the heap is, as its runtime accounts it.
pub(crate) fn native_source(s: &Summary) -> &'static str {
    match s.client.runtime_heap.as_ref().and_then(|heap| heap.runtime) {
        Some(leaklab_probe::GcRuntime::Jvm) => "Native Memory Tracking: thread stacks, direct buffers, internals",
        Some(leaklab_probe::GcRuntime::V8) => "V8's external memory: Buffers, ArrayBuffers, native objects",
        None => "as the runtime accounts it",
    }
}

/// What ran, in a sentence: the built-in client's policy and load, or the foreign process watched.
pub(crate) fn heading(s: &Summary) -> String {
    match (&s.plan, &s.command) {
        (Some(plan), _) => format!(
            "Policy `{}`{}, {} workers, {} requests ({} warm-up), started {}; the load stopped because {}.",
            s.policy.map_or("?", PolicyName::name),
            plan.other_transport().map(|transport| format!(" on transport `{}`", transport.name())).unwrap_or_default(),
            plan.concurrency,
            s.requests_done().unwrap_or(0),
            s.requests.as_ref().and_then(|r| r.warmup).unwrap_or(0),
            s.started_at,
            stop_reason(s.stopped_by)
        ),
        (None, Some(command)) => {
            let what = match &command.argv {
                Some(argv) => format!("Command `{}` (pid {})", argv.join(" "), command.pid),
                None => format!("Process {} (`--pid`)", command.pid),
            };
            let exit = command.exit_code.map(|code| format!(", with exit code {code}")).unwrap_or_default();
            format!(
                "{what}, watched {:.1} s from {} ({} samples); the watch ended because {}{exit}.",
                s.load_duration_s,
                s.started_at,
                s.samples.count,
                stop_reason(s.stopped_by)
            )
        }
        (None, None) => format!("Started {}; the run stopped because {}.", s.started_at, stop_reason(s.stopped_by)),
    }
}

/// How the points behind the verdict were taken.
pub(crate) fn verdict_intro(s: &Summary) -> String {
    let v = &s.verdict.client;
    match v.basis {
        Basis::Checkpoints => format!(
            "From checkpoints taken at rest (no request in flight, allocators purged): after warm-up and after each \
             of {} completed rounds, with one more at the end of the cool-down for the return-to-baseline check. The \
             slope is the Theil–Sen estimate with its {:.0}% interval.",
            v.rounds.unwrap_or(0),
            s.verdict.confidence * 100.0
        ),
        Basis::Samples => format!(
            "From every sample after the first {} s, as the process ran ({} points judged): a process leaklab did not \
             write cannot be paused for checkpoints. The slope is the Theil–Sen estimate with its {:.0}% interval, \
             per {}.",
            s.command.as_ref().map_or(0.0, |c| c.warmup_s),
            v.trend.map_or(v.points.len() as u32, |t| t.points),
            s.verdict.confidence * 100.0,
            match v.axis {
                Axis::Request => "request the client reported",
                Axis::Second => "second",
            }
        ),
    }
}

/// Why the load stopped, as the end of a sentence ("the load stopped because …").
pub(crate) fn stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Requests => "every planned request was sent",
        StopReason::Duration => "the planned duration ran out",
        StopReason::Interrupted => "the user interrupted it",
        StopReason::Cap => "it reached a cap",
        StopReason::MachineLimit => "it reached a limit of the machine",
        StopReason::ProcessExited => "the watched process exited",
        StopReason::Unfinished => "the run ended before writing its report (rebuilt from its samples)",
    }
}

/// Where the server's figures came from, as a phrase: "the toy server's side channel", "/proc of pid 4242",
/// "its metrics endpoint http://…"; `None` when it was not measured.
pub(crate) fn server_source(target: &leaklab_engine::summary::TargetInfo) -> Option<String> {
    use leaklab_engine::summary::ServerSource;
    let scraped = target.server_metrics_url.as_ref().map(|url| format!(" (and metrics scraped from {url})"));
    Some(match target.server_measured_by? {
        ServerSource::SideChannel => "the toy server's own side channel".to_owned(),
        ServerSource::Process => {
            format!("/proc of pid {}{}", target.server_pid.unwrap_or_default(), scraped.unwrap_or_default())
        }
        ServerSource::Metrics => {
            format!("its metrics endpoint {}", target.server_metrics_url.as_deref().unwrap_or_default())
        }
    })
}

/// One line per figure of a baseline comparison, for the console and `compare.md`.
pub(crate) fn baseline_lines(comparison: &BaselineComparison) -> Vec<String> {
    let bytes = |d: &Delta| {
        format!("{} → {} per request ({})", human_bytes(d.baseline), human_bytes(d.current), signed_bytes(d.change))
    };
    let percent = |d: &Delta| {
        if d.baseline != 0.0 { format!("{:+.1}%", 100.0 * d.change / d.baseline) } else { "n/a".to_owned() }
    };
    let mut lines = Vec::new();
    if let Some(d) = &comparison.client_bytes_per_request {
        lines.push(format!("client allocated: {}", bytes(d)));
    }
    if let Some(d) = &comparison.server_bytes_per_request {
        lines.push(format!("server allocated: {}", bytes(d)));
    }
    if let Some(t) = &comparison.throughput_rps {
        lines.push(format!("throughput: {:.0} → {:.0} req/s ({})", t.baseline, t.current, percent(t)));
    }
    if let Some(p) = &comparison.latency_p99_us {
        lines.push(format!("p99 latency: {:.0} → {:.0} µs ({})", p.baseline, p.current, percent(p)));
    }
    let peaks = Sides { client: &comparison.client_peak_rss_bytes, server: comparison.server_peak_rss_bytes.as_ref() };
    for (side, r) in peaks.iter() {
        let (baseline, current) = (human_bytes(r.baseline), human_bytes(r.current));
        lines.push(format!("{} peak RSS: {baseline} → {current} ({})", side.name(), percent(r)));
    }
    lines
}

/// Why a comparison failed its baseline, one sentence per slope that grew too much.
pub(crate) fn regressions(comparison: &BaselineComparison) -> Vec<String> {
    comparison
        .regressions
        .iter()
        .map(|regression| {
            let delta = regression.bytes_per_request;
            format!(
                "The {} keeps {} more per request than in baseline {:?} ({} → {}), beyond the tolerance of {}.",
                regression.process.name(),
                human_bytes(delta.change),
                comparison.name,
                human_bytes(delta.baseline),
                human_bytes(delta.current),
                human_bytes(comparison.tolerance)
            )
        })
        .collect()
}

/// A merged run's load generator in one line: its requests, and its client judged on its own.
pub(crate) fn segment(segment: &leaklab_engine::summary::SegmentSummary) -> String {
    let verdict = &segment.client_verdict;
    format!(
        "segment {}: {} requests, {:.0} req/s; client {} — {} {} per {}",
        segment.segment,
        segment.requests.ok + segment.requests.failed,
        segment.throughput_rps.unwrap_or(0.0),
        verdict.kind,
        measure(verdict.quantity),
        slope(verdict),
        per(verdict.axis),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn a_leak_s_reasons_read_as_they_always_have() {
        let (summary, _) = scripted_report();
        let client = reasons(&summary.verdict.client);
        assert!(
            client[0].starts_with(
                "Allocated memory grew by 60.0 KB per request (95% interval 60.0 KB to 60.0 KB), \
                                   above the tolerance of 256 B."
            ),
            "{client:?}"
        );
        let leak = notes(&summary);
        assert!(leak.iter().any(|n| n.contains("never evicted")), "{leak:?}");
    }

    #[test]
    fn the_same_reason_reads_per_second_for_a_watched_process() {
        let (mut summary, _) = scripted_report();
        let verdict = &mut summary.verdict.client;
        verdict.quantity = Quantity::RssBytes;
        verdict.axis = Axis::Second;
        verdict.basis = Basis::Samples;
        let text = reason(verdict, &Reason::Within { slope: 12.0, ci_high: 900.0 });
        assert_eq!(text, "RSS changed by 12 B per s (95% interval up to 900 B), within the tolerance of 256 B.");
        let text = reason(verdict, &Reason::TooFew { have: 4, need: 10 });
        assert_eq!(text, "Only 4 samples to judge; a verdict needs at least 10.");
    }

    #[test]
    fn a_stop_at_a_cap_says_where_both_processes_were() {
        let (mut summary, _) = scripted_report();
        summary.stopped_by = StopReason::Cap;
        summary.stopped_at = Some(LimitHit {
            which: leaklab_engine::halt::Limit::ClientRss,
            value: 315_000_000,
            limit: Some(300 << 20),
            requests: 8212,
        });
        summary.notes.push(Note::StoppedAt {
            client: Some(AtStop { rss_bytes: 315_000_000, connections: Some(8212) }),
            server: Some(AtStop { rss_bytes: 200 << 20, connections: Some(8212) }),
        });
        let text = stop_note(&summary).unwrap();
        assert_eq!(
            text,
            "Stopped at cap: client_rss, at 300.4 MiB after 8212 requests (cap 300.0 MiB). At that point: client RSS \
             300.4 MiB, 8212 connections open; server RSS 200.0 MiB, 8212 connections."
        );
    }

    #[test]
    fn open_streams_read_for_each_process_that_counted_them() {
        let (mut summary, _) = scripted_report();
        assert_eq!(streams(&summary), None, "a unary policy's streams are noise");
        summary.policy = Some(PolicyName::StreamLeak);
        summary.client.streams = Some(leaklab_verdict::stats::Span { start: 0, end: 1000, peak: 1000 });
        summary.growth.client_streams_per_request = Some(1.0);
        assert_eq!(streams(&summary).unwrap(), "client 0 → 1000 (peak 1000), +1.000/request");
        summary.server.as_mut().unwrap().streams = Some(leaklab_verdict::stats::Span { start: 0, end: 4, peak: 9 });
        assert_eq!(streams(&summary).unwrap(), "client 0 → 1000 (peak 1000), +1.000/request; server 0 → 4 (peak 9)");
    }
}
