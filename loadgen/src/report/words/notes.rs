//! The notes of a run, each in a sentence: what a reader should know of its
//! figures before the verdict.

use super::*;

/// The stop at a limit: "Stopped at cap: client_rss, at 301.2 MiB after 8123 requests (cap 300.0 MiB)",
/// with both processes' memory and connections at that point.
fn stopped_at(stopped_by: StopReason, hit: &LimitHit, client: Option<AtStop>, server: Option<AtStop>) -> String {
    let memory = client.map_or_else(String::new, |client| {
        let server = server.map_or_else(
            || "server not measured".to_owned(),
            |server| match server.connections {
                Some(open) => format!("server RSS {}, {open} connections", format_mib(server.rss_bytes)),
                None => format!("server RSS {}", format_mib(server.rss_bytes)),
            },
        );
        format!(
            " At that point: client RSS {}, {} connections open; {server}.",
            format_mib(client.rss_bytes),
            client.connections.unwrap_or(0)
        )
    });
    let show = |value: u64| if hit.which.is_bytes() { format_mib(value) } else { value.to_string() };
    match stopped_by {
        StopReason::MachineLimit => format!(
            "Stopped at a limit of the machine: the first `{}` after {} requests, with {} client connections open \
             (fd limit {}).{memory}",
            hit.which.name(),
            hit.requests,
            hit.value,
            hit.limit.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
        ),
        _ => format!(
            "Stopped at cap: {}, at {} after {} requests (cap {}).{memory}",
            hit.which.name(),
            show(hit.value),
            hit.requests,
            hit.limit.map_or_else(|| "?".to_owned(), show)
        ),
    }
}

/// One note of `summary`, in a sentence.
pub(crate) fn note(summary: &Summary, note: &Note) -> String {
    match note {
        Note::LeakModel => "In Rust a dropped tonic Channel closes its connection, so `leak` leaks the way Rust code \
                            really does: each request's client goes into a per-request cache (a HashMap keyed by \
                            request id) that is never evicted."
            .to_owned(),
        Note::ServerNotMeasured { address } => format!(
            "The server at {address} was started by someone else (--target): its memory, connections and fds are \
             not measured, and the server figures are absent."
        ),
        Note::ServerMisses { samples } => {
            let why = match summary.target.server_measured_by {
                Some(leaklab_engine::summary::ServerSource::Metrics) => "its metrics endpoint did not answer in time",
                Some(leaklab_engine::summary::ServerSource::Process) => "its process could not be read",
                _ => "the server did not answer its side channel in time",
            };
            format!("{samples} samples lack server figures: {why}.")
        }
        Note::NeverPastWarmup => {
            "The run never got past its warm-up, so growth per request is not measured.".to_owned()
        }
        Note::StoppedAt { client, server } => match &summary.stopped_at {
            Some(hit) => stopped_at(summary.stopped_by, hit, *client, *server),
            None => "Stopped at a limit.".to_owned(),
        },
        Note::ServerExited { status } => format!("The server exited with {status}; see server.log."),
        Note::ServerStopFailed { error } => format!("Stopping the server failed: {error}."),
        Note::SamplesWriteFailed { error } => {
            format!("Writing samples.jsonl failed ({error}); the summary uses the samples kept in memory.")
        }
        Note::Interrupted { requests } => {
            format!("Interrupted by the user after {requests} requests; the figures cover the run up to then.")
        }
        Note::CooldownCut => "The user cut the cool-down short; `end` values are from then.".to_owned(),
        Note::SettleFailed { checkpoints, reason } => format!(
            "{checkpoints} checkpoints could not fully settle ({reason}); they were taken anyway, so the verdict may \
             be noisier."
        ),
        Note::ClientUnreadable { samples } => {
            format!("{samples} samples were skipped: the client's /proc figures could not be read.")
        }
        Note::HeapProfilesMissing => {
            "Heap profiling was on, but no pair of profiles could be read; see the run's stderr.".to_owned()
        }
        Note::ProfileFetchFailed { process, label, error } => {
            let (process, label) = (process.name(), label.label());
            format!("The {process}'s {label} profile could not be fetched, so its profiles are not compared: {error}.")
        }
        Note::MalformedProgress { line, reason, lines } => format!(
            "{lines} `leaklab-progress` line(s) could not be read and were skipped; the first, {line:?}: {reason}."
        ),
        Note::Rebuilt => "Rebuilt by `loadgen report` from run.json and samples.jsonl: the run ended without \
                          writing its report (killed?). Latency and error kinds lived only in its memory and are \
                          missing; the load duration is approximate (from samples)."
            .to_owned(),
        Note::CutLines { lines } => {
            format!("{lines} line(s) at the end of samples.jsonl were cut short and are left out.")
        }
        Note::JudgedOnSamples { warmup_s, .. } if summary.verdict.client.quantity == Quantity::LiveHeapBytes => {
            format!(
                "Judged on the live heap the runtime reported after each full collection leaklab asked for, twice a \
             second, after the first {warmup_s} s: its RSS grows in steps as the runtime sizes its heap, leak or not. \
             What the runtime holds outside its heap, where it reports it, is judged apart and decides a LEAK too."
            )
        }
        Note::JudgedOnSamples { axis: Axis::Request, warmup_s } => format!(
            "Judged per request the command reported, on every sample after the first {warmup_s} s: a process the \
             harness did not write has no checkpoints at rest, and its allocator cannot be read, so its RSS is what \
             is judged."
        ),
        Note::JudgedOnSamples { axis: Axis::Second, warmup_s } => format!(
            "Judged on RSS over time, on every sample after the first {warmup_s} s: the process reported no \
             requests, and its allocator cannot be read."
        ),
        Note::CommandStopFailed { error } => format!("Stopping the watched command failed: {error}."),
        Note::RuntimeHeapUnread { runtime, error } => format!(
            "The process is a {runtime} runtime, but its heap could not be read ({error}): its anonymous memory \
             was judged instead, which grows in steps as the runtime sizes its heap, leak or not."
        ),
        Note::RuntimeHeapFailures { runtime, failures, error } => format!(
            "Reading the {runtime} heap failed {failures} time(s) after it had worked (last: {error}); the \
             verdict judged the readings that came."
        ),
        Note::NativeUntracked { runtime, reason } => {
            format!("The {runtime} runtime's memory outside its heap was not read, so not judged: {reason}.")
        }
        Note::CallSitesUnavailable { reason } => format!("No call sites: {reason}."),
    }
}

/// Every note of `summary`, in order.
pub(crate) fn notes(summary: &Summary) -> Vec<String> {
    summary.notes.iter().map(|n| note(summary, n)).collect()
}

/// The sentence for the note that says where the load stopped at a limit, if it did.
pub(crate) fn stop_note(summary: &Summary) -> Option<String> {
    summary.notes.iter().find(|n| matches!(n, Note::StoppedAt { .. })).map(|n| note(summary, n))
}
