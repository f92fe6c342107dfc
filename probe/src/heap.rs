//! jemalloc's sampling heap profiler: switch it on, dump a profile, read it
//! back and name its stacks.
//!
//! Both binaries are built with jemalloc's profiling compiled in and set
//! `prof:true,prof_active:false` in their `malloc_conf`, so profiling costs
//! nothing until [`activate`] switches sampling on (one allocation sampled
//! every [`SAMPLE_BYTES`] on average). [`dump`] writes jemalloc's own
//! `heap_v2` text format; [`parse`] reads it, and [`symbolize`] turns each
//! stack's addresses into function names from the binaries' symbol tables,
//! using the memory map the dump ends with. Symbolizing happens outside the
//! measured processes (the load generator does it after the run), so the
//! symbolizer's own memory never shows up in the figures.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// `lg_prof_sample` in the binaries' `malloc_conf`: one sample per 2^17 bytes (128 KiB) allocated, on average.
pub const LG_SAMPLE: u32 = 17;
/// The mean bytes between two samples.
pub const SAMPLE_BYTES: u64 = 1 << LG_SAMPLE;

/// The `malloc_conf` both binaries export: profiling compiled in and enabled, sampling off until [`activate`].
pub const MALLOC_CONF: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:17\0";

/// Why profiling could not be switched on or dumped.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    #[error("jemalloc heap profiling is not available in this build ({0})")]
    Unavailable(String),
    #[error("dumping the heap profile to {path}: {reason}")]
    Dump { path: String, reason: String },
    #[error("{path}: not a jemalloc heap profile: {reason}")]
    Format { path: String, reason: String },
}

/// Starts sampling allocations.
pub fn activate() -> Result<(), HeapError> {
    // SAFETY: "prof.active" is a bool mallctl; the name is NUL-terminated.
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.active\0", true) }
        .map_err(|error| HeapError::Unavailable(error.to_string()))
}

/// Writes the current heap profile to `path` (jemalloc's `heap_v2` format).
pub fn dump(path: &Path) -> Result<(), HeapError> {
    let fail = |reason: String| HeapError::Dump { path: path.display().to_string(), reason };
    let name = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| fail("NUL in the path".into()))?;
    // SAFETY: "prof.dump" takes a `const char *` file name, which outlives the call.
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.dump\0", name.as_ptr()) }.map_err(|error| fail(error.to_string()))
}

/// One sampled stack: its return addresses, innermost first, and what was sampled there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStack {
    pub addresses: Vec<u64>,
    /// Sampled objects still allocated.
    pub objects: u64,
    /// Their bytes, as sampled.
    pub bytes: u64,
}

impl RawStack {
    /// The bytes this stack stands for, unscaled from the samples as jeprof
    /// does: an object of mean size `s` is sampled with probability
    /// `1 - exp(-s / SAMPLE_BYTES)`, so each sampled byte stands for
    /// `1 / (1 - exp(-s / SAMPLE_BYTES))` bytes.
    pub fn estimated_bytes(&self) -> f64 {
        if self.objects == 0 || self.bytes == 0 {
            return 0.0;
        }
        let mean = self.bytes as f64 / self.objects as f64;
        self.bytes as f64 / (1.0 - (-mean / SAMPLE_BYTES as f64).exp())
    }
}

/// Reads jemalloc's `heap_v2` text: a `@ addr addr…` line opens each stack,
/// and its `t*: objects: bytes [...]` line gives the totals over all threads.
pub fn parse(text: &str) -> Result<Vec<RawStack>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(first) if first.starts_with("heap_v2/") => {}
        other => return Err(format!("expected a heap_v2 header, found {other:?}")),
    }
    let mut stacks = Vec::new();
    let mut current: Option<Vec<u64>> = None;
    for line in lines {
        let line = line.trim();
        if line.starts_with("MAPPED_LIBRARIES") {
            break;
        }
        if let Some(addresses) = line.strip_prefix('@') {
            let parsed: Result<Vec<u64>, _> = addresses
                .split_whitespace()
                .map(|address| u64::from_str_radix(address.trim_start_matches("0x"), 16))
                .collect();
            current = Some(parsed.map_err(|_| format!("bad address in {line:?}"))?);
        } else if let Some(totals) = line.strip_prefix("t*:") {
            let Some(addresses) = current.take() else { continue };
            let mut numbers = totals.split(':').map(|part| part.split_whitespace().next().unwrap_or(""));
            let objects = numbers.next().and_then(|n| n.parse().ok()).ok_or_else(|| format!("bad totals {line:?}"))?;
            let bytes = numbers.next().and_then(|n| n.parse().ok()).ok_or_else(|| format!("bad totals {line:?}"))?;
            stacks.push(RawStack { addresses, objects, bytes });
        }
    }
    Ok(stacks)
}

/// Stacks by their frames, outermost first and joined by `;` (the folded
/// format flame graphs read), with the bytes each stands for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Folded {
    pub stacks: BTreeMap<String, f64>,
}

impl Folded {
    pub fn total(&self) -> f64 {
        self.stacks.values().sum()
    }
}

/// One executable mapping from the dump's `MAPPED_LIBRARIES` section.
#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

fn mappings(text: &str) -> Vec<Mapping> {
    let Some((_, maps)) = text.split_once("MAPPED_LIBRARIES:") else { return Vec::new() };
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
            let path = fields.nth(2)?;
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The function symbols of one ELF file, sorted by address, with the
/// segments that map file offsets to addresses.
struct SymbolTable {
    /// (file offset, file size, virtual address) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
    /// (address, size, demangled name), sorted by address.
    symbols: Vec<(u64, u64, String)>,
}

impl SymbolTable {
    fn load(path: &str) -> Option<SymbolTable> {
        use object::{Object, ObjectSegment, ObjectSymbol};
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(data.as_slice()).ok()?;
        let segments = file
            .segments()
            .map(|segment| {
                let (offset, size) = segment.file_range();
                (offset, size, segment.address())
            })
            .collect();
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|symbol| symbol.kind() == object::SymbolKind::Text && symbol.address() != 0)
            .filter_map(|symbol| {
                let name = symbol.name().ok()?;
                Some((symbol.address(), symbol.size(), format!("{:#}", rustc_demangle::demangle(name))))
            })
            .collect();
        symbols.sort_by_key(|(address, _, _)| *address);
        Some(SymbolTable { segments, symbols })
    }

    /// The function containing file offset `offset`.
    fn name_at(&self, offset: u64) -> Option<&str> {
        let &(file_offset, _, vaddr) =
            self.segments.iter().find(|(start, size, _)| offset >= *start && offset < start + size)?;
        let address = offset - file_offset + vaddr;
        let index = self.symbols.partition_point(|(start, _, _)| *start <= address).checked_sub(1)?;
        let (start, size, name) = &self.symbols[index];
        (*size == 0 || address < start + size).then_some(name.as_str())
    }
}

/// Names each stack's frames from the binaries the dump's memory map names.
/// Frames of the allocator itself are left out; an address in no known
/// function is kept as `0x…`.
pub fn symbolize(profile_text: &str, stacks: &[RawStack]) -> Folded {
    let maps = mappings(profile_text);
    let mut tables: BTreeMap<String, Option<SymbolTable>> = BTreeMap::new();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    let mut folded = Folded::default();
    for stack in stacks {
        let mut frames: Vec<String> = Vec::with_capacity(stack.addresses.len());
        for &address in &stack.addresses {
            let name = names
                .entry(address)
                .or_insert_with(|| {
                    // A return address points after its call: one byte back is inside it.
                    let pc = address.saturating_sub(1);
                    maps.iter()
                        .find(|map| pc >= map.start && pc < map.end)
                        .and_then(|map| {
                            let table = tables.entry(map.path.clone()).or_insert_with(|| SymbolTable::load(&map.path));
                            table.as_ref()?.name_at(pc - map.start + map.offset).map(str::to_owned)
                        })
                        .unwrap_or_else(|| format!("0x{address:x}"))
                })
                .clone();
            if !is_allocator_frame(&name) {
                frames.push(name);
            }
        }
        frames.reverse();
        *folded.stacks.entry(frames.join(";")).or_insert(0.0) += stack.estimated_bytes();
    }
    folded
}

/// jemalloc's and the allocator shims' own frames, which every stack shares.
fn is_allocator_frame(name: &str) -> bool {
    name.starts_with("_rjem_")
        || name.starts_with("je_")
        || name.starts_with("prof_")
        || name.starts_with("imalloc")
        || name.starts_with("do_rallocx")
        || name.contains("tikv_jemallocator")
        || name.starts_with("__rust_alloc")
        || name.starts_with("__rust_realloc")
        || name.starts_with("__rustc::")
        || name.starts_with("alloc::alloc::")
}

/// Reads a dump written by [`dump`] and names its stacks.
pub fn read_dump(path: &Path) -> Result<Folded, HeapError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| HeapError::Format { path: path.display().to_string(), reason: error.to_string() })?;
    let stacks = parse(&text).map_err(|reason| HeapError::Format { path: path.display().to_string(), reason })?;
    Ok(symbolize(&text, &stacks))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "heap_v2/131072
  t*: 3: 393216 [0: 0]
  t0: 3: 393216 [0: 0]
@ 0x5555000010a0 0x555500002000 0x555500003000
  t*: 2: 262144 [0: 0]
  t0: 2: 262144 [0: 0]
@ 0x5555000010a0 0x555500004000
  t*: 1: 131072 [0: 0]

MAPPED_LIBRARIES:
5555000000-5555100000 r-xp 00000000 00:00 0 /bin/x
";

    #[test]
    fn stacks_and_totals_are_read() {
        let stacks = parse(PROFILE).unwrap();
        assert_eq!(stacks.len(), 2);
        assert_eq!(stacks[0].addresses, [0x5555000010a0, 0x555500002000, 0x555500003000]);
        assert_eq!((stacks[0].objects, stacks[0].bytes), (2, 262144));
        assert_eq!((stacks[1].objects, stacks[1].bytes), (1, 131072));
    }

    #[test]
    fn sampled_bytes_are_unscaled() {
        // Objects the size of the sample period are sampled with probability 1 - 1/e.
        let stack = RawStack { addresses: vec![1], objects: 1, bytes: SAMPLE_BYTES };
        let expected = SAMPLE_BYTES as f64 / (1.0 - (-1.0f64).exp());
        assert!((stack.estimated_bytes() - expected).abs() < 1.0);
        // Small objects stand for many more.
        let small = RawStack { addresses: vec![1], objects: 100, bytes: 6_400 };
        assert!(small.estimated_bytes() > 100.0 * small.bytes as f64);
    }

    #[test]
    fn not_a_profile_is_an_error() {
        assert!(parse("hello").is_err());
        assert!(parse("heap_v2/1\n@ 0xZZ\n").is_err());
    }

    #[test]
    fn this_process_s_functions_are_named_from_its_memory_map() {
        let here = this_process_s_functions_are_named_from_its_memory_map as *const () as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let text = format!("heap_v2/131072\n@ 0x{:x}\n  t*: 1: 100 [0: 0]\n\nMAPPED_LIBRARIES:\n{maps}", here + 1);
        let folded = symbolize(&text, &parse(&text).unwrap());
        let stack = folded.stacks.keys().next().unwrap();
        assert!(stack.contains("this_process_s_functions_are_named_from_its_memory_map"), "{stack}");
        // Without a map, the address stays an address.
        let bare = symbolize("heap_v2/1\n", &[RawStack { addresses: vec![0x1234], objects: 1, bytes: 8 }]);
        assert!(bare.stacks.contains_key("0x1234"), "{bare:?}");
    }
}
