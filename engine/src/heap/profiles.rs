//! A client's own profiles, in every runtime, compared: what grew between the
//! profile taken as warm-up ended and the last one of the load, where the
//! service's code created it ([`super::sites`]), and how many goroutines each
//! leaked connection keeps (Go).
//!
//! - Go (`[external] pprof`, `watch --pprof`): `heap?gc=1` and `goroutine`
//!   from `net/http/pprof`; a Rust service's jemalloc heap profile (bytes
//!   alone, as `jemalloc_pprof` serves it) from the same kind of URL;
//! - Node and CPython (`call_sites`): leaklab's agent's V8 sampling profile
//!   or `tracemalloc` snapshot, converted to pprof's form ([`super::agent`]);
//! - the JVM (`call_sites`): grpc-java's orphaned-channel reports for the
//!   call sites ([`super::orphans`]) and the class histogram for what grew
//!   ([`super::histogram`]).
//!
//! All are kept in the run directory as `pprof-<process>-<label>.<kind>.pb.gz`
//! (`go tool pprof` reads them), beside the runtime's own form.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ProfileMoment;
use super::histogram;
use super::orphans::OrphanReport;
use super::own::CodeRuntime;
use super::pprof::Profile;
use super::sites::{self, OwnCode};
use leaklab_verdict::Side;

/// The profiles fetched, and the endpoint's path for each. Goroutines first: their count is divided by the
/// connections of the sample just taken, and `heap?gc=1` runs a collection first that takes a while on a
/// busy machine, during which a running load opens more connections.
pub const KINDS: [(&str, &str); 2] = [("goroutine", "/goroutine"), ("heap", "/heap?gc=1")];
/// Allocation sites listed.
const TOP: usize = 8;
/// Samples under the listed call sites below which their ranking is noise: a profile this coarse
/// (Go's default `MemProfileRate`, one sample per 512 KiB) is reported as such.
const MIN_SITE_SAMPLES: f64 = 100.0;

/// The file a profile of `process` fetched at `moment` is kept in.
pub fn file_name(process: Side, moment: ProfileMoment, kind: &str) -> String {
    format!("pprof-{}-{}.{kind}.pb.gz", process.name(), moment.label())
}

/// The file an agent's profile is kept in as the runtime's own tools read it: V8's `.heapprofile`
/// (Chrome DevTools' Memory panel loads it), tracemalloc's statistics as JSON.
pub fn raw_file_name(process: Side, moment: ProfileMoment, runtime: CodeRuntime) -> String {
    let extension = match runtime {
        CodeRuntime::V8 => "heapprofile",
        _ => "tracemalloc.json",
    };
    format!("profile-{}-{}.{extension}", process.name(), moment.label())
}

/// The file a JVM's class histogram taken at `moment` is kept in.
pub fn histogram_file_name(process: Side, moment: ProfileMoment) -> String {
    format!("histogram-{}-{}.txt", process.name(), moment.label())
}

/// Which runtime a pprof profile is of: Go's heap profile counts allocations too (`alloc_space`); a
/// jemalloc one (`jemalloc_pprof`) has in-use bytes alone, and Rust's paths.
pub fn runtime_of(profile: &Profile) -> CodeRuntime {
    let go = profile.sample_types.iter().any(|(kind, _)| kind == "alloc_space");
    let rust = profile.samples.iter().flat_map(|s| &s.frames).any(|frame| frame.function.contains("::"));
    if !go && rust { CodeRuntime::Rust } else { CodeRuntime::Go }
}

/// What the profiles say, for the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Profiles {
    /// Where they came from: a pprof base URL, leaklab's profile agent and its address, or
    /// `jcmd GC.class_histogram`.
    pub url: String,
    /// The runtime whose profiles they are, which decides what its own code is: `go`, `v8` (Node),
    /// `cpython`, `jvm` or `rust`. For `jvm`, call sites count orphaned channels (grpc-java's reports),
    /// not objects, and have no bytes. Absent in summaries written before: `go`.
    #[serde(default)]
    pub runtime: CodeRuntime,
    /// Bytes per heap-profile sample (the process's `runtime.MemProfileRate`; Go's default is 524288).
    pub sample_period_bytes: Option<i64>,
    /// TCP connections the process opened and kept between the two profiles (its ESTABLISHED sockets).
    pub connections_grown: Option<i64>,
    /// The process's RSS grown between the two profiles, as the samples read it.
    pub rss_growth: Option<i64>,
    /// `rss_growth` per connection grown: what `bytes_per_connection` is checked against.
    pub rss_per_connection: Option<f64>,
    /// In-use bytes and objects grown between the two heap profiles, over all stacks.
    pub inuse_bytes_growth: i64,
    pub inuse_objects_growth: i64,
    /// `inuse_bytes_growth` per connection grown.
    pub bytes_per_connection: Option<f64>,
    /// What grew, by allocation site (the innermost frame), most bytes first.
    pub growth: Vec<AllocationGrowth>,
    /// Where in the process's own code what grew was allocated, most bytes first (see `heap::sites`).
    pub call_sites: Vec<sites::CallSite>,
    /// Own functions under which less was allocated (under 5% of the own-code growth, or under 32 samples'
    /// worth): how many, and their bytes.
    pub smaller_call_sites: u64,
    pub smaller_call_sites_bytes: i64,
    /// Heap-profile samples under the listed call sites (their objects divided by the sampling they stand for).
    pub call_site_samples: f64,
    /// Too few samples under the call sites to rank them: a finer `runtime.MemProfileRate` is needed.
    pub too_coarse: bool,
    /// Goroutines grown, by where they are parked, most first.
    pub goroutines: Vec<GoroutineGrowth>,
    /// All goroutines grown, per connection grown.
    pub goroutines_per_connection: Option<f64>,
}

/// One allocation site's growth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AllocationGrowth {
    pub function: String,
    /// What the incident's profile called it, where known: "the connection's write buffer"…
    pub known_as: Option<String>,
    pub inuse_bytes_growth: i64,
    pub inuse_objects_growth: i64,
    /// Its share of all bytes grown.
    pub share: f64,
    pub bytes_per_connection: Option<f64>,
}

/// Goroutines grown where they are parked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GoroutineGrowth {
    pub parked_in: String,
    pub grown: i64,
    pub per_connection: Option<f64>,
}

/// What the samples read of the process between the two profiles (the first and last loaded samples).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    pub connections_grown: Option<i64>,
    pub rss_growth: Option<i64>,
}

/// Where a process's profiles came from, and what its own code is.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// A URL, or the profiler and how it was reached.
    pub url: &'a str,
    /// The runtime, when the profiler said; otherwise told from the profile.
    pub runtime: Option<CodeRuntime>,
    /// `--own-code`: empty for the runtime's default rule.
    pub own_code: &'a [String],
}

/// The profiles kept in `dir`, compared (pure, apart from reading the files); `None` when a heap
/// profile of either label is missing.
pub fn build(dir: &Path, process: Side, source: Source<'_>, measured: Measured) -> Option<Profiles> {
    let read = |moment: ProfileMoment, kind: &str| {
        let bytes = std::fs::read(dir.join(file_name(process, moment, kind))).ok()?;
        Profile::decode(&bytes).ok()
    };
    let (base, end) = (read(ProfileMoment::Warmup, "heap")?, read(ProfileMoment::End, "heap")?);
    let runtime = source.runtime.unwrap_or_else(|| runtime_of(&end));
    let own = &OwnCode::new(runtime, source.own_code.to_vec());
    let diff = sites::diff(&base, &end).ok()?;
    let bytes = diff.index("inuse_space")?;
    let objects = diff.index("inuse_objects");
    let (total_bytes, total_objects) = (diff.net(bytes), objects.map_or(0, |objects| diff.net(objects)));
    let connections = measured.connections_grown.filter(|n| *n > 0);
    let per_connection = |value: i64| connections.map(|n| value as f64 / n as f64);
    let objects_top = objects.map(|objects| diff.top(objects)).unwrap_or_default();
    let growth = diff
        .top(bytes)
        .into_iter()
        .filter(|row| row.flat > 0)
        .take(TOP)
        .map(|row| AllocationGrowth {
            known_as: sites::known_allocation(&row.function).map(str::to_owned),
            inuse_objects_growth: objects_top.iter().find(|o| o.function == row.function).map_or(0, |o| o.flat),
            inuse_bytes_growth: row.flat,
            share: if total_bytes > 0 { row.flat as f64 / total_bytes as f64 } else { 0.0 },
            bytes_per_connection: per_connection(row.flat),
            function: row.function,
        })
        .collect();
    let mut found = sites::call_sites(&diff, own, base.period)?;
    if runtime == CodeRuntime::V8 {
        for site in &mut found.sites {
            let helper = site.through.as_deref();
            site.line = helper.and_then(|helper| call_line(&site.file, site.line, helper)).unwrap_or(site.line);
        }
    }
    let period = base.period.max(1) as f64;
    // A sample stands for `period` bytes; the listed sites' bytes over it is about how many samples they got.
    let call_site_samples = found.sites.iter().map(|s| s.inuse_bytes_growth as f64 / period).sum::<f64>();
    let goroutine_diff = read(ProfileMoment::Warmup, "goroutine")
        .zip(read(ProfileMoment::End, "goroutine"))
        .and_then(|(a, b)| sites::diff(&a, &b).ok());
    let goroutines_total = goroutine_diff.as_ref().and_then(|d| Some(d.net(d.index("goroutine")?)));
    let goroutines = goroutine_diff
        .as_ref()
        .and_then(sites::goroutines)
        .unwrap_or_default()
        .into_iter()
        .take(TOP)
        .map(|(parked_in, grown)| GoroutineGrowth { parked_in, grown, per_connection: per_connection(grown) })
        .collect();
    Some(Profiles {
        url: source.url.to_owned(),
        runtime,
        sample_period_bytes: (base.period > 0).then_some(base.period),
        connections_grown: measured.connections_grown,
        rss_growth: measured.rss_growth,
        rss_per_connection: measured.rss_growth.and_then(per_connection),
        inuse_bytes_growth: total_bytes,
        inuse_objects_growth: total_objects,
        bytes_per_connection: per_connection(total_bytes),
        growth,
        too_coarse: call_site_samples < MIN_SITE_SAMPLES,
        call_site_samples,
        call_sites: found.sites,
        smaller_call_sites: found.smaller as u64,
        smaller_call_sites_bytes: found.smaller_bytes,
        goroutines,
        goroutines_per_connection: goroutines_total.and_then(per_connection),
    })
}

/// V8 records each frame's function, not the line it was at: the line of `file` where the function that
/// begins at `line` first calls `helper`, found in its source (up to the function's end, the first `}`
/// as far in as the line it begins on; comments skipped); `None` without the source or the call.
pub fn call_line(file: &str, line: i64, helper: &str) -> Option<i64> {
    let path = file.strip_prefix("file://").unwrap_or(file);
    let source = std::fs::read_to_string(path).ok()?;
    let name = helper.rsplit('.').next().unwrap_or(helper);
    let calls = |text: &str| {
        text.match_indices(&format!("{name}(")).any(|(at, _)| {
            text[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'))
        })
    };
    let first = usize::try_from(line).ok()?.checked_sub(1)?;
    let indent = |text: &str| text.len() - text.trim_start().len();
    let opening = indent(source.lines().nth(first)?);
    for (index, text) in source.lines().enumerate().skip(first).take(500) {
        let code = text.trim_start();
        if code.starts_with("//") || code.starts_with('*') || code.starts_with("/*") {
            continue;
        }
        if calls(text) {
            return Some(index as i64 + 1);
        }
        if index > first && code.starts_with('}') && indent(text) <= opening {
            return None;
        }
    }
    None
}

/// A JVM's profiles: the call sites from grpc-java's orphaned-channel reports, what grew from its class
/// histograms in `dir`; `None` when there is neither.
pub fn build_jvm(
    dir: &Path,
    process: Side,
    source: Source<'_>,
    orphans: Option<&OrphanReport>,
    measured: Measured,
) -> Option<Profiles> {
    let read = |moment: ProfileMoment| {
        let text = std::fs::read_to_string(dir.join(histogram_file_name(process, moment))).ok()?;
        histogram::parse(&text).ok()
    };
    let histograms = read(ProfileMoment::Warmup).zip(read(ProfileMoment::End));
    if histograms.is_none() && orphans.is_none() {
        return None;
    }
    let connections = measured.connections_grown.filter(|n| *n > 0);
    let per_connection = |value: i64| connections.map(|n| value as f64 / n as f64);
    let net = histograms.as_ref().map(|(before, after)| histogram::net(before, after)).unwrap_or_default();
    let growth = histograms
        .as_ref()
        .map(|(before, after)| histogram::growth(before, after))
        .unwrap_or_default()
        .into_iter()
        .take(TOP)
        .map(|(class, grown)| AllocationGrowth {
            known_as: sites::known_allocation(&class).map(str::to_owned),
            inuse_bytes_growth: grown.bytes,
            inuse_objects_growth: grown.instances,
            share: if net.bytes > 0 { grown.bytes as f64 / net.bytes as f64 } else { 0.0 },
            bytes_per_connection: per_connection(grown.bytes),
            function: class,
        })
        .collect();
    let call_sites: Vec<sites::CallSite> = orphans
        .map(|report| &report.call_sites[..])
        .unwrap_or_default()
        .iter()
        .map(|site| sites::CallSite {
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
            inuse_bytes_growth: 0,
            inuse_objects_growth: site.channels as i64,
            share: site.share,
            through: site.through.clone(),
        })
        .collect();
    let reported: f64 = call_sites.iter().map(|site| site.inuse_objects_growth as f64).sum();
    Some(Profiles {
        url: source.url.to_owned(),
        runtime: CodeRuntime::Jvm,
        sample_period_bytes: None,
        connections_grown: measured.connections_grown,
        rss_growth: measured.rss_growth,
        rss_per_connection: measured.rss_growth.and_then(per_connection),
        inuse_bytes_growth: net.bytes,
        inuse_objects_growth: net.instances,
        bytes_per_connection: histograms.as_ref().and_then(|_| per_connection(net.bytes)),
        growth,
        call_sites,
        smaller_call_sites: 0,
        smaller_call_sites_bytes: 0,
        call_site_samples: reported,
        // Every orphaned channel is reported with its stack: nothing is sampled.
        too_coarse: false,
        goroutines: Vec::new(),
        goroutines_per_connection: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go-app");

    #[test]
    fn the_committed_profiles_read_as_a_run_would_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        for (label, fixture) in [(ProfileMoment::Warmup, "warmup"), (ProfileMoment::End, "end")] {
            for (kind, _) in KINDS {
                std::fs::copy(
                    format!("{FIXTURES}/{kind}-{fixture}.pb.gz"),
                    dir.path().join(file_name(Side::Client, label, kind)),
                )
                .unwrap();
            }
        }
        let measured = Measured { connections_grown: Some(188), rss_growth: Some(188 * 100_000) };
        let source = Source { url: "http://127.0.0.1:1/debug/pprof", runtime: None, own_code: &[] };
        let profiles = build(dir.path(), Side::Client, source, measured).unwrap();
        assert_eq!(profiles.runtime, CodeRuntime::Go, "told from the profile");
        assert_eq!(profiles.sample_period_bytes, Some(1024));
        assert_eq!(profiles.rss_per_connection, Some(100_000.0));
        assert_eq!(profiles.call_sites.len(), 3);
        assert!(!profiles.too_coarse, "{} samples", profiles.call_site_samples);
        let write = &profiles.growth[0];
        assert_eq!(write.known_as.as_deref(), Some("the connection's write buffer"));
        // 64 KiB of write buffer per connection, as grpc-go 1.33 allocates it (bufio's default 32 KiB read).
        let per = write.bytes_per_connection.unwrap();
        assert!((per - 65_536.0).abs() < 0.15 * 65_536.0, "{per}");
        let watcher = profiles.goroutines.iter().find(|g| g.parked_in.ends_with("(*ccBalancerWrapper).watcher"));
        assert_eq!(watcher.and_then(|g| g.per_connection), Some(1.0));
        assert!(build(dir.path(), Side::Server, source, Measured::default()).is_none());
    }

    #[test]
    fn a_v8_sites_line_is_where_its_function_calls_the_helper() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("payments.js");
        let source = "'use strict';\n\nfunction chargePayment(deadline) {\n  if (app.fixed) {\n    return 1;\n  }\n  \
                      // not newClient() here\n  const client = clients.newClient();\n  return client;\n}\n\n\
                      function other() {\n  newClient();\n}\n\nclass Shop {\n  quote() {\n    return 1;\n  }\n\n  \
                      later() {\n    newClient();\n  }\n}\n";
        std::fs::write(&file, source).unwrap();
        let url = format!("file://{}", file.display());
        assert_eq!(call_line(&url, 3, "newClient"), Some(8), "past the comment");
        assert_eq!(call_line(&url, 3, "makeClient"), None, "not past the function's end");
        assert_eq!(call_line(&url, 12, "newClient"), Some(13));
        assert_eq!(call_line(&url, 17, "newClient"), None, "a method ends at its own closing brace");
        assert_eq!(call_line("/nonexistent.js", 3, "newClient"), None);
    }

    /// A Rust service's heap profile as `jemalloc_pprof` serves it (`to_pprof(("inuse_space", "bytes"),
    /// ("space", "bytes"), None)`, symbolized): bytes alone, no objects, no goroutines.
    fn jemalloc_profile(leaked: &[(&str, i64)]) -> Profile {
        use super::super::pprof::{Frame, ProfileSample};
        let frame = |function: &str, line| Frame {
            function: function.into(),
            file: "src/lib.rs".into(),
            line,
            inlined: false,
            address: line as u64,
        };
        let samples = leaked
            .iter()
            .map(|(handler, bytes)| ProfileSample {
                values: vec![*bytes],
                frames: vec![
                    frame("alloc::raw_vec::RawVec<T,A>::allocate_in", 1),
                    frame("h2::codec::framed_write::FramedWrite<T,B>::new", 2),
                    frame("tonic::transport::channel::Channel::connect::{{closure}}", 3),
                    frame("shop::clients::new_client::{{closure}}", 40),
                    frame(handler, 12),
                    frame("shop::serve::{{closure}}", 90),
                    frame("tokio::runtime::task::raw::poll", 4),
                ],
                labels: Vec::new(),
            })
            .collect();
        Profile {
            sample_types: vec![("inuse_space".into(), "bytes".into())],
            period: 4096,
            period_type: Some(("space".into(), "bytes".into())),
            samples,
        }
    }

    #[test]
    fn a_heap_only_jemalloc_profile_decodes_diffs_and_names_the_rust_callers() {
        let dir = tempfile::tempdir().unwrap();
        let payments = "shop::payments::charge::{{closure}}";
        let inventory = "shop::inventory::reserve::{{closure}}";
        for (moment, scale) in [(ProfileMoment::Warmup, 1), (ProfileMoment::End, 5)] {
            let profile = jemalloc_profile(&[(payments, 2_000_000 * scale), (inventory, 1_000_000 * scale)]);
            std::fs::write(dir.path().join(file_name(Side::Client, moment, "heap")), profile.encode_gzipped()).unwrap();
        }
        let source = Source { url: "http://127.0.0.1:1/debug/pprof", runtime: None, own_code: &[] };
        let profiles = build(dir.path(), Side::Client, source, Measured::default()).unwrap();
        assert_eq!(profiles.runtime, CodeRuntime::Rust, "told from the profile: bytes alone, Rust's paths");
        assert_eq!(profiles.inuse_bytes_growth, 12_000_000);
        let sites: Vec<(&str, i64, i64, Option<&str>)> = profiles
            .call_sites
            .iter()
            .map(|s| (s.function.as_str(), s.inuse_bytes_growth, s.inuse_objects_growth, s.through.as_deref()))
            .collect();
        let helper = Some("shop::clients::new_client::{{closure}}");
        assert_eq!(sites, [(payments, 8_000_000, 0, helper), (inventory, 4_000_000, 0, helper)]);
        assert_eq!(profiles.growth[0].function, "alloc::raw_vec::RawVec<T,A>::allocate_in");
    }
}
