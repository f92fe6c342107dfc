//! What a reader needs to know to interpret a run's figures, as data; the
//! report words each note.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use leaklab_verdict::Axis;

use crate::heap::ProfileMoment;
use leaklab_verdict::Side;

/// A process's memory and connections when the load stopped at a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AtStop {
    pub rss_bytes: u64,
    pub connections: Option<u64>,
}

/// One note of a summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// `leak` keeps each request's client in a cache that is never evicted: a dropped tonic Channel would close.
    LeakModel,
    /// The server at `address` was started by someone else (`--target`): its figures are absent.
    ServerNotMeasured { address: String },
    /// This many samples lack server figures: its side channel did not answer in time, or its process or
    /// metrics endpoint could not be read.
    ServerMisses { samples: u64 },
    /// The run never got past its warm-up, so growth per request is not measured.
    NeverPastWarmup,
    /// The load stopped at the limit in `stopped_at`; both processes then.
    StoppedAt { client: Option<AtStop>, server: Option<AtStop> },
    /// The server exited with this status; see `server.log`.
    ServerExited { status: String },
    /// Stopping the server failed.
    ServerStopFailed { error: String },
    /// Writing `samples.jsonl` failed; the summary uses the samples kept in memory.
    SamplesWriteFailed { error: String },
    /// The user interrupted the run after this many requests; the figures cover the run up to then.
    Interrupted { requests: u64 },
    /// The user cut the cool-down short; `end` values are from then.
    CooldownCut,
    /// This many checkpoints could not fully settle, for the first of these reasons; they were taken anyway.
    SettleFailed { checkpoints: u64, reason: String },
    /// This many samples were skipped: the client's `/proc` figures could not be read.
    ClientUnreadable { samples: u64 },
    /// Heap profiling was on, but no pair of profiles could be read.
    HeapProfilesMissing,
    /// A profile of `process` (`client`, `server`) could not be taken when `label`'s moment came (`warmup`,
    /// `end`): the URL or the profiler, and why. An `end` profile is missing only when no checkpoint of
    /// the load gave one either.
    ProfileFetchFailed {
        #[serde(default = "client")]
        #[schemars(with = "String")]
        process: Side,
        #[schemars(with = "String")]
        label: ProfileMoment,
        error: String,
    },
    /// This many `leaklab-progress` lines could not be read (they were skipped): the first, and why.
    MalformedProgress { line: String, reason: String, lines: u64 },
    /// Rebuilt by `loadgen report` from `run.json` and `samples.jsonl`: latency and error kinds are missing.
    Rebuilt,
    /// This many lines at the end of `samples.jsonl` were cut short and are left out.
    CutLines { lines: u64 },
    /// A foreign process is judged on its samples after its warm-up, per request it reported or per second:
    /// it has no checkpoints at rest, and its allocator cannot be read, so its RSS is what is judged.
    JudgedOnSamples { axis: Axis, warmup_s: f64 },
    /// The watched command could not be stopped cleanly.
    CommandStopFailed { error: String },
    /// The process is a garbage-collected runtime (`jvm`, `v8`) whose heap could not be read: its
    /// anonymous memory was judged instead. Why the last attempt failed.
    RuntimeHeapUnread { runtime: String, error: String },
    /// Reading the runtime's heap failed this many times after it had worked; the last failure.
    RuntimeHeapFailures { runtime: String, failures: u64, error: String },
    /// The runtime's heap was read, but not what it holds outside the heap (a JVM started without Native
    /// Memory Tracking): that memory was not judged. Why.
    NativeUntracked { runtime: String, reason: String },
    /// `call_sites` was asked for, but the process's runtime offers no profiler leaklab can reach: why.
    CallSitesUnavailable { reason: String },
}

/// The process of a note written before notes named it.
fn client() -> Side {
    Side::Client
}
