//! "Where the memory is": the heap profiles of a run with `--heap-profile`.
//!
//! Each process dumps jemalloc's sampling profile at the checkpoint after
//! warm-up and at the one after the load (`heap-warmup.client.heap`,
//! `heap-end.server.heap`…, jemalloc's own format, which jeprof reads too).
//! After the run their stacks are named from the binaries' symbol tables,
//! outside both measured processes. The growth between
//! the two, stack by stack, is what `pprof -base` would show: the Rust
//! counterpart of the incident's `newBufWriter` finding. This module ranks
//! that growth, writes the end profile as `heap.pb.gz` (pprof) and as flame
//! graphs of in-use memory, and says how much of the growth the verdict
//! measured the profile accounts for.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use leaklab_probe::heap::Folded;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sample::{Phase, Sample};

/// The label of the profile taken when warm-up ends.
pub const WARMUP: &str = "warmup";
/// The label of the profile taken when the load ends.
pub const END: &str = "end";
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

/// The file a process's dump at `label` goes to.
pub fn dump_name(label: &str, process: &str) -> String {
    format!("heap-{label}.{process}.heap")
}

fn read(dir: &Path, label: &str, process: &str) -> Option<Folded> {
    leaklab_probe::heap::read_dump(&dir.join(dump_name(label, process))).ok()
}

/// Reads the profiles in `dir` (absent ones are skipped) and ranks their growth.
pub fn build(dir: &Path, samples: &[Sample]) -> Option<HeapReport> {
    let client = growth_of(dir, "client", samples, &|s| s.client.jemalloc.map(|j| j.allocated_bytes));
    let server = growth_of(dir, "server", samples, &|s| s.server?.process.jemalloc.map(|j| j.allocated_bytes));
    (client.is_some() || server.is_some()).then_some(HeapReport { client, server })
}

fn growth_of(
    dir: &Path,
    process: &str,
    samples: &[Sample],
    allocated: &dyn Fn(&Sample) -> Option<u64>,
) -> Option<HeapGrowth> {
    let (before, after) = (read(dir, WARMUP, process)?, read(dir, END, process)?);
    let measured = measured_growth(samples, allocated);
    Some(rank(&before, &after, measured))
}

/// Allocated bytes at the first settled `Cooldown` sample minus at the first
/// settled `Load` sample: the two checkpoints the profiles were taken at.
fn measured_growth(samples: &[Sample], allocated: &dyn Fn(&Sample) -> Option<u64>) -> Option<f64> {
    let at = |phase: Phase| samples.iter().find(|s| s.settled && s.phase == phase).and_then(allocated);
    Some(at(Phase::Cooldown)? as f64 - at(Phase::Load)? as f64)
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
    }
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

/// Writes the end profiles as flame graphs (`flamegraph.client.svg`, `flamegraph.server.svg`)
/// and pprof files (`heap.pb.gz` for the load generator, `heap.server.pb.gz`).
pub fn export(dir: &Path) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    for (process, pprof_name) in [("client", "heap.pb.gz"), ("server", "heap.server.pb.gz")] {
        let Some(end) = read(dir, END, process) else { continue };
        if let Err(error) = flame_graph(&end, process, &dir.join(format!("flamegraph.{process}.svg"))) {
            errors.push(error);
        }
        if let Err(error) = write_pprof(&end, &dir.join(pprof_name)) {
            errors.push(error);
        }
    }
    errors
}

fn flame_graph(profile: &Folded, process: &str, path: &Path) -> anyhow::Result<()> {
    // inferno wants integer counts: bytes, rounded.
    let lines: Vec<String> = profile
        .stacks
        .iter()
        .filter(|(_, bytes)| **bytes >= 1.0)
        .map(|(stack, bytes)| {
            format!("{} {}", if stack.is_empty() { "[unknown]" } else { stack }, bytes.round() as u64)
        })
        .collect();
    if lines.is_empty() {
        anyhow::bail!("{}: the {process} profile has no sampled stacks", path.display());
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!("{process}: in-use memory at the end of the load");
    options.count_name = "bytes".to_owned();
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))
}

/// pprof's `profile.proto`, the fields a heap profile needs.
mod pprof {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub(super) sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub(super) sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub(super) location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub(super) function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub(super) string_table: Vec<String>,
        #[prost(message, optional, tag = "11")]
        pub(super) period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub(super) period: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ValueType {
        #[prost(int64, tag = "1")]
        pub(super) r#type: i64,
        #[prost(int64, tag = "2")]
        pub(super) unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub(super) location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub(super) value: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Location {
        #[prost(uint64, tag = "1")]
        pub(super) id: u64,
        #[prost(message, repeated, tag = "4")]
        pub(super) line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub(super) function_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
        #[prost(uint64, tag = "1")]
        pub(super) id: u64,
        #[prost(int64, tag = "2")]
        pub(super) name: i64,
    }
}

/// The profile in pprof's format, gzipped: one sample per stack with its
/// in-use bytes, a location and function per frame name.
fn encode_pprof(profile: &Folded) -> Vec<u8> {
    use prost::Message;
    let mut strings: Vec<String> = vec![String::new(), "inuse_space".into(), "bytes".into()];
    let mut ids: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = pprof::Profile {
        sample_type: vec![pprof::ValueType { r#type: 1, unit: 2 }],
        period_type: Some(pprof::ValueType { r#type: 1, unit: 2 }),
        period: leaklab_probe::heap::SAMPLE_BYTES as i64,
        ..Default::default()
    };
    for (stack, bytes) in &profile.stacks {
        let mut location_id = Vec::new();
        // pprof lists a sample's locations leaf first.
        for frame in stack.split(';').filter(|frame| !frame.is_empty()).rev() {
            let next = ids.len() as u64 + 1;
            let id = *ids.entry(frame.to_owned()).or_insert_with(|| {
                strings.push(frame.to_owned());
                out.function.push(pprof::Function { id: next, name: strings.len() as i64 - 1 });
                out.location.push(pprof::Location { id: next, line: vec![pprof::Line { function_id: next }] });
                next
            });
            location_id.push(id);
        }
        out.sample.push(pprof::Sample { location_id, value: vec![bytes.round() as i64] });
    }
    out.string_table = strings;
    out.encode_to_vec()
}

fn write_pprof(profile: &Folded, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gzip.write_all(&encode_pprof(profile))
        .and_then(|()| gzip.finish().map(drop))
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a `heap.pb.gz` back: its samples' values and frame names, leaf first (for tests and checks).
pub fn read_pprof(path: &Path) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    use prost::Message;
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: not gzip", path.display()))?;
    let profile =
        pprof::Profile::decode(bytes.as_slice()).with_context(|| format!("{}: not a pprof profile", path.display()))?;
    let name_of = |location: u64| -> String {
        profile
            .location
            .iter()
            .find(|l| l.id == location)
            .and_then(|l| l.line.first())
            .and_then(|line| profile.function.iter().find(|f| f.id == line.function_id))
            .and_then(|f| profile.string_table.get(f.name as usize))
            .cloned()
            .unwrap_or_default()
    };
    Ok(profile
        .sample
        .iter()
        .map(|sample| {
            (sample.value.first().copied().unwrap_or(0), sample.location_id.iter().map(|&id| name_of(id)).collect())
        })
        .collect())
}

/// The "where the memory is" section of `report.md`, its heading at `level` (2: `##`).
pub fn markdown(report: &HeapReport, level: usize) -> String {
    use crate::report::units::human_bytes;
    let (heading, subheading) = ("#".repeat(level), "#".repeat(level + 1));
    let mut out = format!(
        "{heading} Where the memory is\n\nThe allocation stacks whose in-use bytes grew most between the checkpoint after \
         warm-up and the one after the load, from jemalloc's sampling heap profiler (one sample per 128 KiB \
         allocated, unscaled as jeprof does), like `pprof -base`. The frames are the innermost ones outside the \
         standard library. `heap.pb.gz` (`heap.server.pb.gz`) holds the end profile for the pprof tools, and \
         `flamegraph.client.svg` (`flamegraph.server.svg`) draws it.\n",
    );
    for (name, growth) in [("client", &report.client), ("server", &report.server)] {
        let Some(growth) = growth else { continue };
        out += &format!("\n{subheading} {name}\n\n");
        match (growth.measured_growth_bytes, growth.coverage) {
            (Some(measured), Some(coverage)) => {
                out += &format!(
                    "The profile accounts for {} of growth; the allocator counted {} between the same checkpoints ({:.0}%).\n\n",
                    human_bytes(growth.profiled_growth_bytes),
                    human_bytes(measured),
                    coverage * 100.0
                );
            }
            _ => {
                out += &format!("The profile accounts for {} of growth.\n\n", human_bytes(growth.profiled_growth_bytes))
            }
        }
        out += "| grew by | share | where (innermost first) |\n|---:|---:|---|\n";
        for stack in &growth.top {
            let frames: Vec<String> =
                stack.frames.iter().map(|frame| format!("`{}`", frame.replace('|', "\\|"))).collect();
            out +=
                &format!("| {} | {:.1}% | {} |\n", human_bytes(stack.bytes), stack.share * 100.0, frames.join(" ← "));
        }
    }
    out
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
    fn pprof_round_trips_and_flame_graphs_are_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let profile = folded(&[("main;h2::codec::FramedWrite::new", 4096.0), ("main;tokio::spawn", 1024.0)]);
        write_pprof(&profile, &dir.path().join("heap.pb.gz")).unwrap();
        let samples = read_pprof(&dir.path().join("heap.pb.gz")).unwrap();
        assert!(
            samples.contains(&(4096, vec!["h2::codec::FramedWrite::new".to_owned(), "main".to_owned()])),
            "{samples:?}"
        );
        flame_graph(&profile, "client", &dir.path().join("f.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("f.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("FramedWrite"));
    }
}
