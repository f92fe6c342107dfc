//! "Where the memory is": the heap profiles of a run with `--heap-profile`.
//!
//! Each process dumps jemalloc's sampling profile at the checkpoint after
//! warm-up and at the one after the load (`heap-warmup.client.heap`,
//! `heap-end.server.heap`…, jemalloc's own format, which jeprof reads too).
//! After the run their stacks are named from the binaries' symbol tables,
//! outside both measured processes. The growth between the two, stack by
//! stack, is what `pprof -base` would show: the Rust counterpart of the
//! incident's `newBufWriter` finding. This module ranks that growth and says
//! how much of the growth the verdict measured the profile accounts for;
//! [`pprof`] encodes a profile for the pprof tools. The report writes the
//! end profiles as `heap.pb.gz` and as flame graphs.

pub mod agent;
pub mod histogram;
pub mod orphans;
pub mod own;
pub mod pprof;
pub mod profiles;
pub mod sites;

use std::collections::BTreeMap;
use std::path::Path;

use leaklab_probe::heap::Folded;
use leaklab_verdict::Side;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When a run takes its profiles: as warm-up ends, and as the load ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileMoment {
    Warmup,
    End,
}

impl ProfileMoment {
    /// The word file names use.
    pub fn label(self) -> &'static str {
        match self {
            ProfileMoment::Warmup => "warmup",
            ProfileMoment::End => "end",
        }
    }
}
/// Stacks listed in the table.
const TOP: usize = 12;

/// One process's heap growth during the measured load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeapGrowth {
    /// In-use bytes the profile estimates at the end minus after warm-up, over all stacks.
    pub profiled_growth_bytes: f64,
    /// jemalloc-allocated bytes at the same two checkpoints, as the verdict measured them.
    pub measured_growth_bytes: Option<f64>,
    /// `profiled / measured`: how much of the measured growth the profile accounts for.
    pub coverage: Option<f64>,
    /// The stacks that grew most, largest first.
    pub top: Vec<StackGrowth>,
    /// Where leaklab's own code allocated what grew, as `profiles.call_sites` says it of a Go process: the
    /// growth summed by the first frame of a stack in leaklab's crates (innermost first; a closure counts
    /// in its function), those holding at least 5% of it, most bytes first. The release build has no line
    /// tables, so functions are not narrowed to lines.
    #[serde(default)]
    pub call_sites: Vec<OwnCallSite>,
}

/// One of leaklab's functions and what grew under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OwnCallSite {
    pub function: String,
    /// Estimated in-use bytes gained under it.
    pub bytes: f64,
    /// Its share of the profile's total growth.
    pub share: f64,
}

/// One allocation stack's growth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StackGrowth {
    /// Estimated in-use bytes gained.
    pub bytes: f64,
    /// Share of the profile's total growth.
    pub share: f64,
    /// The innermost frames a reader recognizes (not the standard library's), innermost first.
    pub frames: Vec<String>,
    /// The whole stack, outermost first, `;`-separated.
    pub stack: String,
}

/// Both processes' growth.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeapReport {
    pub client: Option<HeapGrowth>,
    pub server: Option<HeapGrowth>,
}

/// The file a process's dump at `moment` goes to.
pub fn dump_name(moment: ProfileMoment, process: Side) -> String {
    format!("heap-{}.{}.heap", moment.label(), process.name())
}

/// The profile `process` dumped at `moment` into `dir`, its stacks named; `None` if it is missing or unreadable.
pub fn read(dir: &Path, moment: ProfileMoment, process: Side) -> Option<Folded> {
    leaklab_probe::heap::read_dump(&dir.join(dump_name(moment, process))).ok()
}

/// Reads the profiles in `dir` (absent ones are skipped) and ranks their
/// growth; `measured` is each process's allocated growth between the same
/// two checkpoints, as the verdict measured it.
pub fn build(dir: &Path, measured: [Option<f64>; 2]) -> Option<HeapReport> {
    let [client, server] = [(Side::Client, measured[0]), (Side::Server, measured[1])].map(|(process, measured)| {
        Some(rank(&read(dir, ProfileMoment::Warmup, process)?, &read(dir, ProfileMoment::End, process)?, measured))
    });
    (client.is_some() || server.is_some()).then_some(HeapReport { client, server })
}

/// The stacks' growth from `before` to `after`, largest first (pure).
pub fn rank(before: &Folded, after: &Folded, measured: Option<f64>) -> HeapGrowth {
    let mut grown: Vec<(String, f64)> = after
        .stacks
        .iter()
        .map(|(stack, bytes)| (stack.clone(), bytes - before.stacks.get(stack).copied().unwrap_or(0.0)))
        .collect();
    for (stack, bytes) in &before.stacks {
        if !after.stacks.contains_key(stack) {
            grown.push((stack.clone(), -bytes));
        }
    }
    let total: f64 = grown.iter().map(|(_, bytes)| bytes).sum();
    let call_sites = own_call_sites(&grown, total);
    grown.retain(|(_, bytes)| *bytes > 0.0);
    grown.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top = grown
        .into_iter()
        .take(TOP)
        .map(|(stack, bytes)| StackGrowth {
            bytes,
            share: if total > 0.0 { bytes / total } else { 0.0 },
            frames: recognizable(&stack),
            stack,
        })
        .collect();
    HeapGrowth {
        profiled_growth_bytes: total,
        measured_growth_bytes: measured,
        coverage: measured.filter(|m| *m > 0.0).map(|m| total / m),
        top,
        call_sites,
    }
}

/// The growth of `grown` (each stack's, outermost frame first) by its innermost frame in leaklab's crates;
/// see [`HeapGrowth::call_sites`].
fn own_call_sites(grown: &[(String, f64)], total: f64) -> Vec<OwnCallSite> {
    let own = |frame: &&str| frame.starts_with("leaklab_") || frame.starts_with("<leaklab_");
    let mut by_function: BTreeMap<&str, f64> = BTreeMap::new();
    for (stack, bytes) in grown {
        if let Some(frame) = stack.rsplit(';').find(own) {
            let mut function = frame;
            while let Some(outer) = function.strip_suffix("::{{closure}}") {
                function = outer;
            }
            *by_function.entry(function).or_default() += bytes;
        }
    }
    let own_growth: f64 = by_function.values().filter(|bytes| **bytes > 0.0).sum();
    let mut sites: Vec<OwnCallSite> = by_function
        .into_iter()
        .filter(|(_, bytes)| *bytes > 0.0 && *bytes >= sites::MIN_SITE_SHARE * own_growth)
        .map(|(function, bytes)| OwnCallSite {
            function: function.to_owned(),
            bytes,
            share: if total > 0.0 { bytes / total } else { 0.0 },
        })
        .collect();
    sites.sort_by(|a, b| b.bytes.total_cmp(&a.bytes));
    sites
}

/// The innermost frames outside the standard library and the allocator, innermost first, at most three.
fn recognizable(stack: &str) -> Vec<String> {
    const GENERIC: [&str; 8] =
        ["alloc::", "<alloc::", "core::", "<core::", "std::", "<std::", "hashbrown::", "<hashbrown::"];
    stack
        .rsplit(';')
        .filter(|frame| !GENERIC.iter().any(|prefix| frame.starts_with(prefix)))
        .take(3)
        .map(|frame| frame.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(stacks: &[(&str, f64)]) -> Folded {
        Folded { stacks: stacks.iter().map(|(stack, bytes)| (stack.to_string(), *bytes)).collect() }
    }

    #[test]
    fn growth_is_ranked_like_pprof_base() {
        let before =
            folded(&[("main;h2::codec::FramedWrite::new;alloc::raw_vec::finish_grow", 100.0), ("main;gone", 50.0)]);
        let after = folded(&[
            ("main;h2::codec::FramedWrite::new;alloc::raw_vec::finish_grow", 800.0),
            ("main;tokio::runtime::task::new", 300.0),
        ]);
        let growth = rank(&before, &after, Some(1000.0));
        assert_eq!(growth.profiled_growth_bytes, 950.0, "700 + 300 - 50");
        assert_eq!(growth.top.len(), 2);
        assert_eq!(growth.top[0].bytes, 700.0);
        assert_eq!(
            growth.top[0].frames,
            ["h2::codec::FramedWrite::new", "main"],
            "alloc:: frames are not what a reader looks for"
        );
        assert!((growth.coverage.unwrap() - 0.95).abs() < 1e-9);
    }

    #[test]
    fn growth_is_grouped_by_the_innermost_frame_of_leaklabs_own_crates() {
        let dial = "leaklab_engine::load::channels::Channels::call::{{closure}}";
        let worker = "leaklab_engine::load::worker::{{closure}}";
        let before = folded(&[(&format!("main;{worker};{dial};h2::codec::FramedWrite::new"), 100.0)]);
        let after = folded(&[
            (&format!("main;{worker};{dial};h2::codec::FramedWrite::new"), 900.0),
            (&format!("main;{worker};{dial}::{{{{closure}}}};tokio::sync::mpsc::chan::channel"), 400.0),
            (&format!("main;{worker};bytes::BytesMut::with_capacity"), 200.0),
            // Under 5% of what grew under leaklab's frames: not listed.
            ("main;<leaklab_engine::sample::Recorder as core::ops::Drop>::drop;alloc::vec", 30.0),
            // No frame of leaklab's: in the total, in no call site.
            ("tokio::runtime::task::new", 70.0),
        ]);
        let sites = rank(&before, &after, None).call_sites;
        let listed: Vec<(&str, f64)> = sites.iter().map(|site| (site.function.as_str(), site.bytes)).collect();
        assert_eq!(
            listed,
            [("leaklab_engine::load::channels::Channels::call", 1200.0), ("leaklab_engine::load::worker", 200.0)],
            "a closure counts in its function; the first own frame from the inside wins"
        );
        assert!((sites[0].share - 1200.0 / 1500.0).abs() < 1e-9, "of all growth");
    }
}
