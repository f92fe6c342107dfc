//! The profiles leaklab's in-process agents answer with (`engine/agents/`), converted to pprof's form so
//! that every runtime's growth is diffed and grouped the one way Go's is ([`super::sites`]).
//!
//! - Node (`leaklab-profile.js`): V8's sampling heap profiler, as `HeapProfiler.getSamplingProfile`
//!   returns it after a collection: a tree of call frames, each node with the bytes its sampled
//!   allocations still alive stand for (`selfSize`), and the samples themselves (one per sampled object).
//!   Chrome DevTools opens the same document saved as `.heapprofile`.
//! - CPython (`sitecustomize.py`): a `tracemalloc` snapshot's statistics by traceback (every allocation
//!   traced, not sampled), each traceback's function names found by the agent from the source.
//!
//! Pure: bytes in, profiles out.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::own::CodeRuntime;
use super::pprof::{Frame, Profile, ProfileSample};

/// The reply to `profile\n`.
#[derive(Debug, Deserialize)]
struct Reply {
    runtime: Option<String>,
    error: Option<String>,
    /// V8: the sampling interval, bytes.
    sampling_interval: Option<i64>,
    /// V8: `getSamplingProfile`'s `profile`.
    profile: Option<V8Profile>,
    /// CPython: `snapshot.statistics('traceback')`.
    stats: Option<Vec<TracemallocStat>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V8Profile {
    head: V8Node,
    #[serde(default)]
    samples: Vec<V8Sample>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V8Node {
    call_frame: V8CallFrame,
    self_size: f64,
    id: u64,
    #[serde(default)]
    children: Vec<V8Node>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V8CallFrame {
    function_name: String,
    url: String,
    /// 0-based.
    line_number: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct V8Sample {
    node_id: u64,
}

#[derive(Debug, Deserialize)]
struct TracemallocStat {
    size: i64,
    count: i64,
    /// Innermost frame first.
    traceback: Vec<TracemallocFrame>,
}

#[derive(Debug, Deserialize)]
struct TracemallocFrame {
    file: String,
    line: i64,
    #[serde(default)]
    function: String,
}

/// JSON as deep as a profile's call tree nests (a node per frame of the deepest stack).
fn deep<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    json.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut json))?;
    json.end()?;
    Ok(value)
}

/// The sample types every converted profile has, as Go's heap profile names them.
fn heap_sample_types() -> Vec<(String, String)> {
    vec![("inuse_objects".into(), "count".into()), ("inuse_space".into(), "bytes".into())]
}

/// An agent's reply, converted: the runtime it came from and its profile; an error says what was wrong
/// with the reply, or what the agent said.
pub fn convert(reply: &[u8]) -> Result<(CodeRuntime, Profile), String> {
    let reply: Reply = deep(reply).map_err(|error| format!("not a profile agent's reply: {error}"))?;
    if let Some(error) = reply.error {
        return Err(format!("the agent could not take a profile: {error}"));
    }
    match (reply.runtime.as_deref(), reply.profile, reply.stats) {
        (Some("v8"), Some(profile), _) => Ok((CodeRuntime::V8, v8(&profile, reply.sampling_interval.unwrap_or(0)))),
        (Some("cpython"), _, Some(stats)) => Ok((CodeRuntime::Cpython, tracemalloc(&stats))),
        (runtime, _, _) => Err(format!("a reply of runtime {runtime:?} without its profile")),
    }
}

/// The reply as the runtime's own tools read it: V8's profile alone (Chrome DevTools opens it as a
/// `.heapprofile`), tracemalloc's statistics as the agent wrote them.
pub fn raw_profile(reply: &[u8], runtime: CodeRuntime) -> Vec<u8> {
    let profile = (runtime == CodeRuntime::V8)
        .then(|| deep::<serde_json::Value>(reply).ok())
        .flatten()
        .and_then(|mut value| Some(value.get_mut("profile")?.take()));
    match profile {
        Some(profile) => serde_json::to_vec(&profile).unwrap_or_else(|_| reply.to_vec()),
        None => reply.to_vec(),
    }
}

/// V8's sampling profile: a sample per node that holds bytes, its stack from that node to the root.
fn v8(profile: &V8Profile, interval: i64) -> Profile {
    let mut objects: BTreeMap<u64, i64> = BTreeMap::new();
    for sample in &profile.samples {
        *objects.entry(sample.node_id).or_default() += 1;
    }
    let mut samples = Vec::new();
    // Depth first, with the path from the root: innermost first once reversed.
    let mut pending: Vec<(&V8Node, Vec<Frame>)> =
        profile.head.children.iter().map(|child| (child, Vec::new())).collect();
    while let Some((node, mut outer)) = pending.pop() {
        let frame = &node.call_frame;
        // Anonymous functions of one file are told apart by where they begin.
        let function = match frame.function_name.as_str() {
            "" => format!("(anonymous at line {})", frame.line_number + 1),
            named => named.to_owned(),
        };
        outer.push(Frame {
            function,
            file: frame.url.clone(),
            line: frame.line_number + 1,
            inlined: false,
            address: 0,
        });
        if node.self_size > 0.0 {
            let frames = outer.iter().rev().cloned().collect();
            let values = vec![objects.get(&node.id).copied().unwrap_or(0), node.self_size.round() as i64];
            samples.push(ProfileSample { values, frames, labels: Vec::new() });
        }
        pending.extend(node.children.iter().map(|child| (child, outer.clone())));
    }
    Profile {
        sample_types: heap_sample_types(),
        period: interval,
        period_type: Some(("space".into(), "bytes".into())),
        samples,
    }
}

/// tracemalloc's statistics: every allocation traced, so each is counted as it is.
fn tracemalloc(stats: &[TracemallocStat]) -> Profile {
    let samples = stats
        .iter()
        .map(|stat| ProfileSample {
            values: vec![stat.count, stat.size],
            frames: stat
                .traceback
                .iter()
                .map(|frame| Frame {
                    function: frame.function.clone(),
                    file: frame.file.clone(),
                    line: frame.line,
                    inlined: false,
                    address: 0,
                })
                .collect(),
            labels: Vec::new(),
        })
        .collect();
    Profile {
        sample_types: heap_sample_types(),
        period: 1,
        period_type: Some(("space".into(), "bytes".into())),
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_v8_profile_becomes_stacks_innermost_first() {
        let reply = br#"{"runtime":"v8","pid":7,"sampling_interval":8192,"profile":{
            "head":{"callFrame":{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},
              "selfSize":0,"id":1,"children":[
                {"callFrame":{"functionName":"chargePayment","scriptId":"5","url":"file:///srv/payments.js","lineNumber":11,"columnNumber":2},
                 "selfSize":100,"id":2,"children":[
                   {"callFrame":{"functionName":"","scriptId":"6","url":"file:///srv/clients.js","lineNumber":3,"columnNumber":0},
                    "selfSize":16384,"id":3,"children":[]}]}]},
            "samples":[{"size":8000,"nodeId":3,"ordinal":1},{"size":8000,"nodeId":3,"ordinal":2},{"size":100,"nodeId":2,"ordinal":3}]}}"#;
        let (runtime, profile) = convert(reply).unwrap();
        assert_eq!((runtime, profile.period), (CodeRuntime::V8, 8192));
        type Stack<'a> = (Vec<(&'a str, i64)>, &'a [i64]);
        let stacks: Vec<Stack> = profile
            .samples
            .iter()
            .map(|s| (s.frames.iter().map(|f| (f.function.as_str(), f.line)).collect(), s.values.as_slice()))
            .collect();
        assert!(
            stacks.contains(&(vec![("(anonymous at line 4)", 4), ("chargePayment", 12)], &[2, 16384][..])),
            "{stacks:?}"
        );
        assert!(stacks.contains(&(vec![("chargePayment", 12)], &[1, 100][..])), "{stacks:?}");
        assert_eq!(stacks.len(), 2, "the root holds nothing");
    }

    #[test]
    fn a_call_tree_thousands_of_frames_deep_converts() {
        let depth = 5_000;
        let node = |i: usize| {
            format!(
                r#"{{"callFrame":{{"functionName":"f{i}","scriptId":"1","url":"/srv/r.js","lineNumber":{i},"columnNumber":0}},"selfSize":{},"id":{},"children":["#,
                if i + 1 == depth { 64 } else { 0 },
                i + 2
            )
        };
        let tree: String = (0..depth).map(node).collect::<String>() + &"]}".repeat(depth);
        let reply = format!(
            r#"{{"runtime":"v8","sampling_interval":8192,"profile":{{"head":{{"callFrame":{{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1}},"selfSize":0,"id":1,"children":[{tree}]}},"samples":[]}}}}"#
        );
        let (_, profile) = convert(reply.as_bytes()).unwrap();
        assert_eq!(profile.samples.len(), 1);
        assert_eq!(profile.samples[0].frames.len(), depth);
        assert_eq!(profile.samples[0].frames[0].function, format!("f{}", depth - 1), "innermost first");
        assert!(!raw_profile(reply.as_bytes(), CodeRuntime::V8).is_empty());
    }

    #[test]
    fn a_reply_that_is_no_profile_is_said_so() {
        assert!(convert(b"<html>").unwrap_err().contains("not a profile agent's reply"));
        assert!(convert(br#"{"error":"inspector is busy"}"#).unwrap_err().contains("inspector is busy"));
        assert!(convert(br#"{"runtime":"v8"}"#).unwrap_err().contains("without its profile"));
    }

    /// A listed call site: function, line, objects, bytes, through.
    type Site = (String, i64, i64, i64, Option<String>);

    /// A peer's app mode profiled by its agent after about 40 requests and after its last (see the fixtures'
    /// directories): each listed call site.
    fn sites_of_fixtures(app: &str) -> Vec<Site> {
        let fixture = |moment: &str| {
            let path = format!("{}/tests/fixtures/{app}/profile-{moment}.json", env!("CARGO_MANIFEST_DIR"));
            convert(&std::fs::read(path).unwrap()).unwrap()
        };
        let ((runtime, before), (_, after)) = (fixture("warmup"), fixture("end"));
        let diff = super::super::sites::diff(&before, &after).unwrap();
        let own = super::super::own::OwnCode::new(runtime, Vec::new());
        let found = super::super::sites::call_sites(&diff, &own, before.period).unwrap();
        found
            .sites
            .into_iter()
            .map(|s| (s.function, s.line, s.inuse_objects_growth, s.inuse_bytes_growth, s.through))
            .collect()
    }

    /// The three leaking handlers and nothing else, through the helper, in the ratio of their leaks (every
    /// request, every 2nd, every 4th: 4 : 2 : 1) within 25%, by `count`.
    fn the_three_leaking_callers(sites: &[Site], names: [&str; 3], helper: &str, count: fn(&Site) -> i64) {
        let listed: Vec<&str> = sites.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(listed, names, "{sites:?}");
        assert!(sites.iter().all(|s| s.4.as_deref() == Some(helper)), "{sites:?}");
        let (every, half, quarter) = (count(&sites[0]) as f64, count(&sites[1]) as f64, count(&sites[2]) as f64);
        assert!((every / quarter / 4.0 - 1.0).abs() < 0.25 && (half / quarter / 2.0 - 1.0).abs() < 0.25, "{sites:?}");
    }

    #[test]
    fn a_node_services_sampling_profiles_name_its_three_leaking_callers() {
        // peers/node/app, 400 requests at 100/s, LEAKLAB_PROFILE_INTERVAL=16384. V8 gives each frame its
        // function's first line (the call's line is found in the source when the run has it).
        let sites = sites_of_fixtures("node-app");
        the_three_leaking_callers(&sites, ["chargePayment", "reserveStock", "quoteShipping"], "newClient", |s| s.3);
        assert_eq!(sites.iter().map(|s| s.1).collect::<Vec<_>>(), [11, 9, 9]);
    }

    #[test]
    fn a_python_services_tracemalloc_snapshots_name_its_three_leaking_callers_at_their_lines() {
        // peers/python/app, 240 requests at 40/s; generated stubs (echo_pb2_grpc.py) are not its own code.
        let sites = sites_of_fixtures("python-app");
        the_three_leaking_callers(&sites, ["charge_payment", "reserve_stock", "quote_shipping"], "new_stub", |s| s.2);
        assert_eq!(sites.iter().map(|s| s.1).collect::<Vec<_>>(), [18, 14, 14], "the lines that call new_stub()");
    }
}
