//! What the plot says above its panels: its title, what ran, and the verdicts; and what it marks on them.

use leaklab_engine::halt::StopReason;
use leaklab_engine::scenario::PolicyName;
use leaklab_engine::summary::{Side, Sides, Summary, TimelineEvent};
use leaklab_verdict::stats::Span;
use leaklab_verdict::{ProcessVerdict, Quantity};

use crate::report::units::bytes_per_request;
use crate::report::words::{self, per};

/// What the plot says above its panels and marks on them; the samples give the lines.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// The big line: `leak: memory over time`.
    pub title: String,
    /// What ran, in one line.
    pub headline: String,
    /// The verdict, in one line.
    pub verdict: String,
    /// Markers for the timeline.
    pub events: Vec<TimelineEvent>,
    /// Whether to draw the TIME_WAIT line.
    pub time_wait: bool,
    /// Whether to draw both ends' open streams (the stream policies).
    pub streams: bool,
    /// With the streams: the toy server's limit of concurrent streams per connection, drawn as a line.
    pub stream_limit: Option<u64>,
}

impl Header {
    pub(super) fn of(summary: &Summary) -> Header {
        Header {
            title: format!("{}: memory over time", summary.scenario),
            headline: headline(summary),
            verdict: verdict_line(summary),
            events: summary.lifecycle.events.clone(),
            time_wait: summary.lifecycle.time_wait.is_some_and(|tw| tw.peak > tw.start.max(2)),
            streams: words::opened_streams(summary),
            stream_limit: summary
                .plan
                .as_ref()
                .and_then(|plan| plan.max_concurrent_streams)
                .filter(|limit| streams_near(summary, *limit)),
        }
    }
}

/// Whether open streams came within half of the server's stream limit: a limit far above them
/// would only flatten their lines.
fn streams_near(summary: &Summary, limit: u64) -> bool {
    let peak = summary.processes().iter().filter_map(|(_, process)| process.streams.map(|s: Span| s.peak)).max();
    2 * peak.unwrap_or(0) >= limit
}

fn headline(summary: &Summary) -> String {
    let Some(command) = &summary.command else {
        let growth = summary.growth.per_request();
        let allocated = growth.map(|g| bytes_per_request(g.allocated_bytes));
        let mut line = format!(
            "{}{} · {} requests · {:.0} req/s · {} client connections opened · allocated: client {}, server {}",
            summary.policy.map_or("?", PolicyName::name),
            summary
                .plan
                .as_ref()
                .and_then(|plan| plan.other_transport())
                .map(|transport| format!(" on {}", transport.name()))
                .unwrap_or_default(),
            summary.requests_done().unwrap_or(0),
            summary.throughput_rps.unwrap_or(0.0),
            summary.client.connections_opened.unwrap_or(0),
            allocated.client,
            allocated.server.unwrap_or_else(|| bytes_per_request(None)),
        );
        if summary.server.is_none() {
            line.push_str(" (server not measured)");
        }
        if let Some(hit) = &summary.stopped_at {
            line.push_str(&format!(" · stopped: {}", hit.which.name()));
        }
        return line;
    };
    // The program's name, not its path: the line has one plot's width.
    let what = match &command.argv {
        Some(argv) => {
            let name = |program: &String| {
                std::path::Path::new(program).file_name().map_or(program.clone(), |n| n.to_string_lossy().into_owned())
            };
            argv.first().map(name).into_iter().chain(argv.iter().skip(1).cloned()).collect::<Vec<_>>().join(" ")
        }
        None => summary.scenario.trim_start_matches("watch-").to_owned(),
    };
    let requests = summary.requests_done().map(|n| format!(" · {n} requests reported")).unwrap_or_default();
    let ended = match (summary.stopped_by, command.exit_code) {
        (StopReason::ProcessExited, Some(code)) => format!("exited with code {code}"),
        (reason, _) => words::stop_reason(reason).to_owned(),
    };
    format!("{what} · pid {} · {:.1} s watched{requests} · {ended}", command.pid, summary.load_duration_s)
}

/// Each process's verdict, slope and expectation, in one line.
fn verdict_line(summary: &Summary) -> String {
    // `figures` is what the slope is of: the client's memory outside the heap when that decided its LEAK.
    let one = |name: &str, v: &ProcessVerdict, figures: &ProcessVerdict| {
        // Words, not ✔/✖: the compiled-in font has no such glyphs.
        let met = if v.expectation_met == Some(true) { "met" } else { "NOT MET" };
        let expected = v.expected.map(|e| format!(" (expected {}: {met})", e.name()));
        // The headline says the built-in processes' figures are allocated bytes; RSS is the exception to name.
        let judged = match figures.quantity {
            Quantity::AllocatedBytes => "",
            Quantity::RssBytes => "RSS ",
            Quantity::RssAnonBytes => "anonymous ",
            Quantity::LiveHeapBytes => "live heap ",
            Quantity::NativeBytes => "outside the heap ",
        };
        let slope = words::slope(figures);
        format!("{name} {}, {judged}{slope} per {}{}", v.kind, per(v.axis), expected.unwrap_or_default())
    };
    let verdicts: Vec<String> = Sides::of(&summary.verdict)
        .iter()
        .map(|(side, verdict)| match side {
            Side::Client => one(side.name(), verdict, summary.verdict.client_figures()),
            Side::Server => one(side.name(), verdict, verdict),
        })
        .collect();
    format!("verdict: {}", verdicts.join(" · "))
}
