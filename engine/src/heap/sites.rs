//! What grew between two pprof profiles of one process, as `pprof -top -base`
//! shows it, and where in the process's own code it was created.
//!
//! A leaked gRPC connection's buffers are allocated by the library's own
//! goroutines, so no frame of the service is on their stacks; what the
//! service's code allocates itself when it dials (the `ClientConn` and its
//! wrappers) is. [`call_sites`] therefore ranks the service's functions by
//! what was allocated under them, the innermost frame of its own code on each
//! stack. Which code is its own: by default, every function outside the Go
//! runtime and standard library, gRPC, `golang.org/x/net` and protobuf
//! ([`OwnCode::default`]); or the packages named with `--own-code`.
//!
//! Pure: profiles in, tables out.

use std::collections::BTreeMap;

use anyhow::bail;

use super::own::{Attributed, attribute};
use super::pprof::{Frame, Profile};

/// The growth of each stack from a base profile to a later one.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    /// The sample types' names, in the profiles' order.
    pub sample_types: Vec<String>,
    /// Each stack (innermost frame first) and its values' growth, one per sample type; stacks that did not
    /// change are left out.
    pub stacks: Vec<(Vec<Frame>, Vec<i64>)>,
    /// Every stack of either profile, changed or not: who calls whom in the process.
    pub shapes: Vec<Vec<Frame>>,
}

/// `now - base`, stack by stack, as `pprof -base base now` computes it.
pub fn diff(base: &Profile, now: &Profile) -> anyhow::Result<Diff> {
    let names = |profile: &Profile| profile.sample_types.iter().map(|(kind, _)| kind.clone()).collect::<Vec<_>>();
    let sample_types = names(now);
    if names(base) != sample_types {
        bail!("the two profiles are of different kinds: {:?} and {:?}", names(base), sample_types);
    }
    // One stack per call path and labels (a Go heap sample's object size), as pprof merges samples.
    let mut stacks: BTreeMap<(&[Frame], &[String]), Vec<i64>> = BTreeMap::new();
    for (profile, sign) in [(now, 1), (base, -1)] {
        for sample in &profile.samples {
            let key = (sample.frames.as_slice(), sample.labels.as_slice());
            let values = stacks.entry(key).or_insert_with(|| vec![0; sample_types.len()]);
            for (total, value) in values.iter_mut().zip(&sample.values) {
                *total += sign * value;
            }
        }
    }
    let shapes: std::collections::BTreeSet<&[Frame]> = stacks.keys().map(|(frames, _)| *frames).collect();
    let shapes = shapes.into_iter().map(<[Frame]>::to_vec).collect();
    let stacks = stacks
        .into_iter()
        .filter(|(_, values)| values.iter().any(|v| *v != 0))
        .map(|((frames, _), values)| (frames.to_vec(), values))
        .collect();
    Ok(Diff { sample_types, stacks, shapes })
}

/// One row of `pprof -top`: a function's growth where it is the innermost frame (`flat`) and anywhere on
/// the stack (`cum`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopRow {
    pub function: String,
    pub flat: i64,
    pub cum: i64,
}

impl Diff {
    /// The index of the sample type named `name` (`inuse_space`, `inuse_objects`, `goroutine`…).
    pub fn index(&self, name: &str) -> Option<usize> {
        self.sample_types.iter().position(|kind| kind == name)
    }

    /// The net growth of sample type `index`, over every stack.
    pub fn net(&self, index: usize) -> i64 {
        self.stacks.iter().map(|(_, values)| values[index]).sum()
    }

    /// `pprof -top`'s "total", what its percentages are of: the sum of each stack's change, up or down.
    pub fn total(&self, index: usize) -> i64 {
        self.stacks.iter().map(|(_, values)| values[index].abs()).sum()
    }

    /// `pprof -top -sample_index=…`: every function, largest flat growth first (then largest cum, then name).
    pub fn top(&self, index: usize) -> Vec<TopRow> {
        let mut rows: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (frames, values) in &self.stacks {
            let value = values[index];
            if let Some(leaf) = frames.first() {
                rows.entry(&leaf.function).or_default().0 += value;
            }
            let mut seen: Vec<&str> = Vec::new();
            for frame in frames {
                if !seen.contains(&frame.function.as_str()) {
                    seen.push(&frame.function);
                    rows.entry(&frame.function).or_default().1 += value;
                }
            }
        }
        let mut rows: Vec<TopRow> = rows
            .into_iter()
            .map(|(function, (flat, cum))| TopRow { function: function.to_owned(), flat, cum })
            .collect();
        rows.sort_by(|a, b| b.flat.cmp(&a.flat).then(b.cum.cmp(&a.cum)).then(a.function.cmp(&b.function)));
        rows
    }
}

pub use super::own::OwnCode;

/// One of the service's functions and what was allocated under it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CallSite {
    pub function: String,
    /// Where in it most of that was allocated from: the file and line of the call.
    pub file: String,
    pub line: i64,
    /// Bytes grown under it; 0 where the runtime counts no bytes per site (grpc-java's orphan reports).
    pub inuse_bytes_growth: i64,
    /// Objects grown under it, or channels for grpc-java's orphan reports; 0 where the profile counts no
    /// objects (a jemalloc heap profile has bytes alone).
    pub inuse_objects_growth: i64,
    /// Its bytes' share of all bytes grown (most growth is in buffers no own frame is on), or of all
    /// channels reported where there are no bytes.
    pub share: f64,
    /// The shared helper its callers went through (`newClient`), named once here rather than as the site:
    /// every caller shares the helper's frame, leaking or not (see `heap::own::attribute`).
    #[serde(default)]
    pub through: Option<String>,
}

impl CallSite {
    /// Its file without the directories (`app_payments.go`).
    pub fn file_name(&self) -> String {
        std::path::Path::new(&self.file).file_name().map_or(self.file.clone(), |f| f.to_string_lossy().into_owned())
    }
}

/// The service's call sites, and the small growth under its other functions.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSites {
    /// Each holding at least [`MIN_SITE_SHARE`] of what grew under the service's functions, most bytes first.
    pub sites: Vec<CallSite>,
    /// The other functions with some growth under them: how many, and their bytes together.
    pub smaller: usize,
    pub smaller_bytes: i64,
}

/// The share of the growth under the service's own functions a call site must hold to be listed. Requests
/// in flight when a profile is taken hold objects too, under every handler: a few percent, at most.
pub const MIN_SITE_SHARE: f64 = 0.05;

/// Heap samples' worth of growth a call site must hold to be listed at all: what requests in flight hold
/// is bounded by how many there are, a leak grows with every one.
pub const MIN_SITE_SAMPLES: i64 = 32;

/// The bytes a sample stands for at the least, for that floor: a profile that traces every allocation
/// (tracemalloc, period 1) would otherwise list what a few requests in flight hold.
const MIN_SAMPLE_BYTES: i64 = 1024;

/// The service's functions that what grew was allocated under (see [`CallSites`]), each holding at least
/// [`MIN_SITE_SAMPLES`] samples of `period` bytes. `None` when the profiles are not heap profiles.
pub fn call_sites(diff: &Diff, own: &OwnCode, period: i64) -> Option<CallSites> {
    let bytes = diff.index("inuse_space")?;
    // A jemalloc heap profile (`jemalloc_pprof`) has bytes alone.
    let objects = diff.index("inuse_objects");
    let total = diff.total(bytes);
    let grown: Vec<Vec<&Frame>> = diff.stacks.iter().map(|(frames, _)| own_frames(own, frames)).collect();
    let shapes: Vec<Vec<&Frame>> = diff.shapes.iter().map(|frames| own_frames(own, frames)).collect();
    // By function and file, then by line: a function's growth, the line most of it came through, and the
    // helper.
    /// Bytes and objects grown under one line of a function.
    type ByLine = BTreeMap<i64, (i64, i64)>;
    /// Bytes grown through each helper.
    type ByHelper<'a> = BTreeMap<&'a str, i64>;
    let mut sites: BTreeMap<(&str, &str), (ByLine, ByHelper)> = BTreeMap::new();
    for (attributed, (_, values)) in attribute(&shapes, &grown).into_iter().zip(&diff.stacks) {
        let Some(Attributed { site: frame, through }) = attributed else { continue };
        let (lines, helpers) = sites.entry((&frame.function, &frame.file)).or_default();
        let line = lines.entry(frame.line).or_default();
        line.0 += values[bytes];
        line.1 += objects.map_or(0, |objects| values[objects]);
        if let Some(helper) = through {
            *helpers.entry(helper).or_default() += values[bytes];
        }
    }
    let mut sites: Vec<CallSite> = sites
        .into_iter()
        .map(|((function, file), (lines, helpers))| {
            let (bytes, objects) = lines.values().fold((0, 0), |(b, o), (lb, lo)| (b + lb, o + lo));
            let line = lines.iter().max_by_key(|(_, (b, _))| *b).map_or(0, |(line, _)| *line);
            let through = helpers.into_iter().max_by_key(|(_, bytes)| *bytes).map(|(helper, _)| helper.to_owned());
            CallSite {
                function: function.to_owned(),
                file: file.to_owned(),
                line,
                inuse_bytes_growth: bytes,
                inuse_objects_growth: objects,
                share: if total > 0 { bytes as f64 / total as f64 } else { 0.0 },
                through,
            }
        })
        .filter(|site| site.inuse_bytes_growth > 0)
        .collect();
    sites.sort_by(|a, b| b.inuse_bytes_growth.cmp(&a.inuse_bytes_growth).then(a.function.cmp(&b.function)));
    let own_growth: i64 = sites.iter().map(|site| site.inuse_bytes_growth).sum();
    let floor = MIN_SITE_SAMPLES * period.max(MIN_SAMPLE_BYTES);
    let listed = sites
        .iter()
        .take_while(|s| {
            s.inuse_bytes_growth >= floor && s.inuse_bytes_growth as f64 >= MIN_SITE_SHARE * own_growth as f64
        })
        .count();
    let rest = sites.split_off(listed);
    Some(CallSites { sites, smaller: rest.len(), smaller_bytes: rest.iter().map(|s| s.inuse_bytes_growth).sum() })
}

/// A stack's own frames, innermost first; an own function inlined into another own one is a line of that
/// one, not a call site of its own.
fn own_frames<'f>(own: &OwnCode, frames: &'f [Frame]) -> Vec<&'f Frame> {
    let physical: Vec<&Frame> = frames.iter().filter(|f| own.owns(f) && !f.inlined).collect();
    match physical.is_empty() {
        true => frames.iter().find(|f| own.owns(f)).into_iter().collect(),
        false => physical,
    }
}

/// Goroutines grown by where they are parked: the innermost frame outside the Go runtime, the standard
/// library and `golang.org/x/net` (`transport.(*http2Client).reader`, `grpc.(*ccBalancerWrapper).watcher`…),
/// most first. `None` when the profiles are not goroutine profiles.
pub fn goroutines(diff: &Diff) -> Option<Vec<(String, i64)>> {
    let index = diff.index("goroutine")?;
    let mut parked: BTreeMap<&str, i64> = BTreeMap::new();
    let library = OwnCode::default();
    for (frames, values) in &diff.stacks {
        let frame = frames
            .iter()
            .find(|f| library.owns(f) || f.function.starts_with("google.golang.org/grpc"))
            .or(frames.last());
        if let Some(frame) = frame {
            *parked.entry(&frame.function).or_default() += values[index];
        }
    }
    let mut parked: Vec<(String, i64)> =
        parked.into_iter().filter(|(_, n)| *n > 0).map(|(function, n)| (function.to_owned(), n)).collect();
    parked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Some(parked)
}

/// What a gRPC library's allocation site or class is, in its words: the incident's heap profile named
/// a connection's buffers; the other runtimes' profiles name their channels and transports.
pub fn known_allocation(function: &str) -> Option<&'static str> {
    match function {
        "google.golang.org/grpc/internal/transport.newBufWriter" => Some("the connection's write buffer"),
        "bufio.NewReaderSize" => Some("the connection's read buffer"),
        // grpc-js (V8's frames: the function that allocated).
        "ChannelImplementation" => Some("grpc-js's channel"),
        "Http2SubchannelConnector" => Some("grpc-js's subchannel connector"),
        "Subchannel" => Some("grpc-js's subchannel"),
        "InternalChannel" => Some("grpc-js's channel"),
        // grpcio (the Python frames tracemalloc records).
        "Channel.__init__" => Some("grpcio's channel"),
        // grpc-java (the class histogram's classes).
        "io.grpc.internal.ManagedChannelImpl" => Some("grpc-java's channel"),
        "io.grpc.internal.ManagedChannelOrphanWrapper" => Some("the orphan check's wrapper of a channel"),
        "io.grpc.netty.NettyClientTransport" => Some("a Netty transport: one connection"),
        "io.netty.channel.socket.nio.NioSocketChannel" => Some("a Netty socket"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go-app");

    /// Profiles of `go-echo-client -mode app -mem-profile-rate 1024`, 240 requests at 200/s: `heap?gc=1` and
    /// `goroutine` at 0.6 s and at 2.5 s.
    fn fixture(name: &str) -> Profile {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}.pb.gz")).unwrap();
        Profile::decode(&bytes).unwrap()
    }

    fn heap_diff() -> Diff {
        diff(&fixture("heap-warmup"), &fixture("heap-end")).unwrap()
    }

    #[test]
    fn go_heap_and_goroutine_profiles_decode() {
        let heap = fixture("heap-end");
        let kinds: Vec<&str> = heap.sample_types.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
        assert_eq!((heap.period, heap.period_type.as_ref().map(|(_, unit)| unit.as_str())), (1024, Some("bytes")));
        let dial = heap.samples.iter().flat_map(|s| &s.frames).find(|f| f.function == "main.chargePayment").unwrap();
        assert!(dial.file.ends_with("peers/go/app_payments.go"), "{dial:?}");
        let goroutines = fixture("goroutine-end");
        assert_eq!(goroutines.sample_types, [("goroutine".to_owned(), "count".to_owned())]);
        assert!(Profile::decode(b"<html>").is_err() && Profile::decode(&[0x1f, 0x8b, 0, 1]).is_err());
    }

    /// `go tool pprof -top -sample_index=inuse_objects -base heap-warmup.pb.gz heap-end.pb.gz` (Go 1.19):
    ///
    /// ```text
    /// Showing nodes accounting for 24995, 97.53% of 25627 total
    ///       flat  flat%   sum%        cum   cum%
    ///       2143  8.36%  8.36%       6998 27.31%  google.golang.org/grpc/internal/transport.newHTTP2Client
    ///       1677  6.54% 14.91%       1677  6.54%  google.golang.org/grpc/internal/grpcsync.NewEvent (inline)
    ///       1628  6.35% 21.26%       2378  9.28%  context.WithCancel
    ///       1182  4.61% 25.87%       9794 38.22%  google.golang.org/grpc.(*addrConn).createTransport
    ///       1134  4.43% 30.30%       1134  4.43%  golang.org/x/net/http2/hpack.(*headerFieldTable).addEntry (inline)
    ///       1098  4.28% 34.58%       2475  9.66%  google.golang.org/grpc.(*ClientConn).newAddrConn
    ///       ...
    ///        471  1.84% 66.39%        471  1.84%  bufio.NewReaderSize (inline)
    ///        416  1.62% 71.56%        416  1.62%  google.golang.org/grpc/internal/transport.newBufWriter (inline)
    ///          0     0% 97.53%       8203 32.01%  main.appRequest
    ///          0     0% 97.53%       4439 17.32%  main.chargePayment
    ///          0     0% 97.53%       1278  4.99%  main.quoteShipping
    ///          0     0% 97.53%       2363  9.22%  main.reserveStock
    /// ```
    #[test]
    fn the_diff_is_what_pprof_base_shows() {
        let diff = heap_diff();
        let objects = diff.index("inuse_objects").unwrap();
        assert_eq!(diff.total(objects), 25627);
        let top = diff.top(objects);
        let row = |function: &str| top.iter().find(|r| r.function == function).map(|r| (r.flat, r.cum)).unwrap();
        let first: Vec<(&str, i64, i64)> = top.iter().take(4).map(|r| (r.function.as_str(), r.flat, r.cum)).collect();
        assert_eq!(
            first,
            [
                ("google.golang.org/grpc/internal/transport.newHTTP2Client", 2143, 6998),
                ("google.golang.org/grpc/internal/grpcsync.NewEvent", 1677, 1677),
                ("context.WithCancel", 1628, 2378),
                ("google.golang.org/grpc.(*addrConn).createTransport", 1182, 9794),
            ]
        );
        assert_eq!(row("bufio.NewReaderSize"), (471, 471));
        assert_eq!(row("google.golang.org/grpc/internal/transport.newBufWriter"), (416, 416));
        assert_eq!(row("main.appRequest"), (0, 8203));
        assert_eq!(row("main.chargePayment"), (0, 4439));
        assert_eq!(row("main.reserveStock"), (0, 2363));
        assert_eq!(row("main.quoteShipping"), (0, 1278));
        // In bytes the incident's picture: the write buffer 59%, the read buffer 30% (pprof: 59.23%, 29.69%).
        let bytes = diff.index("inuse_space").unwrap();
        let share = |function: &str| {
            diff.top(bytes).iter().find(|r| r.function == function).unwrap().flat as f64 / diff.total(bytes) as f64
        };
        assert!((share("google.golang.org/grpc/internal/transport.newBufWriter") - 0.5923).abs() < 0.0001);
        assert!((share("bufio.NewReaderSize") - 0.2969).abs() < 0.0001);
    }

    #[test]
    fn the_leaking_handlers_are_the_call_sites_and_the_others_are_not() {
        let found = call_sites(&heap_diff(), &OwnCode::default(), 1024).unwrap();
        let sites = &found.sites;
        let names: Vec<&str> = sites.iter().map(|s| s.function.as_str()).collect();
        assert_eq!(names, ["main.chargePayment", "main.reserveStock", "main.quoteShipping"], "{sites:#?}");
        // The shared client's caller (requests in flight) and the closing one: left out, counted.
        assert_eq!((found.smaller, found.smaller_bytes), (3, 8396 + 4164 + 1056));
        // The line of the dial in each: app_payments.go's `grpc.Dial`.
        assert_eq!(sites[0].line, 14);
        assert!(sites.iter().all(|s| s.file.ends_with(".go") && s.line > 0));
        assert!(sites[0].file.ends_with("app_payments.go"), "{:?}", sites[0]);
        // Objects in about the ratio of their leaks, 4 : 2 : 1 (the inlined invokeEcho counted in its caller).
        let objects: Vec<f64> = sites.iter().map(|s| s.inuse_objects_growth as f64).collect();
        assert!(
            (objects[0] / objects[2] - 4.0).abs() < 1.0 && (objects[1] / objects[2] - 2.0).abs() < 0.5,
            "{objects:?}"
        );

        // Named packages only: with the handlers' package, the same; with one that allocated nothing, none.
        let named = call_sites(&heap_diff(), &OwnCode::prefixes(vec!["main.".to_owned()]), 1024).unwrap();
        assert_eq!(named.sites.iter().map(|s| &s.function).collect::<Vec<_>>(), names);
        let other = call_sites(&heap_diff(), &OwnCode::prefixes(vec!["example.com/shop".to_owned()]), 1024).unwrap();
        assert!(other.sites.is_empty() && other.smaller == 0, "{other:?}");
    }

    #[test]
    fn a_helper_that_several_handlers_call_to_dial_gives_way_to_the_handlers() {
        let frame = |function: &str, line| Frame {
            function: function.into(),
            file: "app.go".into(),
            line,
            inlined: false,
            address: line as u64,
        };
        let stack = |handler: &str, line, objects: i64| {
            let frames = vec![
                frame("google.golang.org/grpc.Dial", 1),
                frame("main.newClient", 30),
                frame(handler, line),
                frame("main.serve", 90),
            ];
            (frames, vec![objects, objects * 1024])
        };
        let diff = Diff {
            sample_types: vec!["inuse_objects".into(), "inuse_space".into()],
            stacks: vec![stack("main.placeOrder", 12, 300), stack("main.chargePayment", 40, 100)],
            shapes: Vec::new(),
        };
        let found = call_sites(&diff, &OwnCode::default(), 1).unwrap();
        let named: Vec<(&str, i64)> = found.sites.iter().map(|s| (s.function.as_str(), s.line)).collect();
        assert_eq!(named, [("main.placeOrder", 12), ("main.chargePayment", 40)], "{found:#?}");
        assert!(found.sites.iter().all(|s| s.through.as_deref() == Some("main.newClient")), "{found:#?}");
        // --own-code that names the handlers and not the helper: the handlers are the innermost own frames.
        let named = OwnCode::prefixes(vec!["main.placeOrder".into(), "main.chargePayment".into()]);
        let found = call_sites(&diff, &named, 1).unwrap();
        let named: Vec<(&str, Option<&str>)> =
            found.sites.iter().map(|s| (s.function.as_str(), s.through.as_deref())).collect();
        assert_eq!(named, [("main.placeOrder", None), ("main.chargePayment", None)]);
        // With one caller that grew, the function that dials is the site, unless the profiles show the
        // helper's other callers (one closing its clients, say, whose stacks did not grow).
        let single = Diff { stacks: vec![stack("main.placeOrder", 12, 300)], ..diff.clone() };
        assert_eq!(call_sites(&single, &OwnCode::default(), 1).unwrap().sites[0].function, "main.newClient");
        let shapes = vec![stack("main.sendNotification", 50, 0).0];
        let seen = Diff { stacks: vec![stack("main.placeOrder", 12, 300)], shapes, ..diff };
        assert_eq!(call_sites(&seen, &OwnCode::default(), 1).unwrap().sites[0].function, "main.placeOrder");
    }

    #[test]
    fn goroutines_grow_where_a_leaked_connection_parks_them() {
        let diff = diff(&fixture("goroutine-warmup"), &fixture("goroutine-end")).unwrap();
        let parked = goroutines(&diff).unwrap();
        let count = |function: &str| parked.iter().find(|(f, _)| f == function).map_or(0, |(_, n)| *n);
        let reader = count("google.golang.org/grpc/internal/transport.(*http2Client).reader");
        assert!(reader > 100, "{parked:?}");
        assert_eq!(count("google.golang.org/grpc.(*ccBalancerWrapper).watcher"), reader, "{parked:?}");
        assert!(call_sites(&diff, &OwnCode::default(), 1024).is_none(), "a goroutine profile has no bytes");
    }

    #[test]
    fn profiles_of_different_kinds_do_not_diff() {
        let diff = diff(&fixture("heap-end"), &fixture("goroutine-end"));
        assert!(diff.unwrap_err().to_string().contains("different kinds"));
    }
}
