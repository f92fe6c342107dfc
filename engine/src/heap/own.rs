//! Which frames of a profile are the service's own code, in each runtime, and
//! which of them is a call site: the frame that tells the leaking callers
//! apart, seen through the helpers they share.
//!
//! Pure: frames in, frames out.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pprof::Frame;

/// The runtime a profile is of: each names its frames its own way, and has its own libraries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CodeRuntime {
    /// grpc-go: Go symbols, `path/to/pkg.Type.Method`.
    #[default]
    Go,
    /// grpc-js: JavaScript functions and their script URLs.
    V8,
    /// grpcio: Python functions and their source files.
    Cpython,
    /// grpc-java: `package.Class.method`.
    Jvm,
    /// tonic and friends: Rust paths, `krate::module::function`.
    Rust,
}

impl CodeRuntime {
    /// The word the summary and the report use.
    pub fn name(self) -> &'static str {
        match self {
            CodeRuntime::Go => "go",
            CodeRuntime::V8 => "v8",
            CodeRuntime::Cpython => "cpython",
            CodeRuntime::Jvm => "jvm",
            CodeRuntime::Rust => "rust",
        }
    }
}

/// Which frames are the service's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCode {
    runtime: CodeRuntime,
    /// `--own-code`: function name prefixes (`main.`, `com.shop.`) or parts of file paths (`app/`); empty
    /// for the runtime's default rule.
    prefixes: Vec<String>,
}

/// Go libraries a service calls whose frames are never its call sites.
const GO_LIBRARIES: [&str; 5] = [
    "google.golang.org/grpc",
    "golang.org/x/net",
    "google.golang.org/protobuf",
    "github.com/golang/protobuf",
    "google.golang.org/genproto",
];

/// Java packages whose frames are never the service's own: the JDK, gRPC and what it is built on.
const JAVA_LIBRARIES: [&str; 10] =
    ["java.", "javax.", "jdk.", "sun.", "com.sun.", "io.grpc.", "io.netty.", "com.google.", "io.perfmark.", "kotlin."];

/// Rust crates a tonic service is built on, and the allocator's frames.
const RUST_LIBRARIES: [&str; 30] = [
    "std",
    "core",
    "alloc",
    "tokio",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tower_layer",
    "tower_service",
    "prost",
    "bytes",
    "http",
    "http_body",
    "http_body_util",
    "futures_util",
    "futures_core",
    "tracing",
    "mio",
    "hashbrown",
    "parking_lot",
    "tikv_jemallocator",
    "tikv_jemalloc_ctl",
    "_rjem_je_prof_backtrace",
    "libc",
    "backtrace",
    "jemalloc_pprof",
    "rustls",
    "pin_project_lite",
];

/// Code protoc generates beside a service's own (stubs and messages): it builds what the service asks
/// for, for every caller alike, so it is no call site.
const GENERATED: [&str; 4] = ["_pb2.py", "_pb2_grpc.py", "_pb.js", "_grpc_pb.js"];

/// leaklab's in-process profilers, which are no one's call sites.
const AGENTS: [&str; 2] = ["leaklab-profile.js", "leaklab_profile/sitecustomize.py"];

impl OwnCode {
    /// The rule for `runtime`'s frames: `prefixes` when given, else the runtime's default.
    pub fn new(runtime: CodeRuntime, prefixes: Vec<String>) -> Self {
        Self { runtime, prefixes }
    }

    /// A Go process's own packages (`--own-code` with `--pprof`), or the Go default.
    pub fn prefixes(prefixes: Vec<String>) -> Self {
        Self::new(CodeRuntime::Go, prefixes)
    }

    pub fn runtime(&self) -> CodeRuntime {
        self.runtime
    }

    /// Whether `frame` is the service's own: with `--own-code`, a function name that starts with one of
    /// its prefixes, or a file path that holds one with a `/` in it (`app/`); otherwise, by the runtime's
    /// rule, anything that is not the runtime, its standard library, gRPC, or an installed package.
    pub fn owns(&self, frame: &Frame) -> bool {
        let file = frame.file.strip_prefix("file://").unwrap_or(&frame.file);
        if AGENTS.iter().any(|agent| file.ends_with(agent)) {
            return false;
        }
        if !self.prefixes.is_empty() {
            return self.prefixes.iter().any(|prefix| {
                let in_path = prefix.contains('/') && !file.is_empty() && file.contains(prefix.as_str());
                frame.function.starts_with(prefix.as_str()) || in_path
            });
        }
        let function = frame.function.as_str();
        match self.runtime {
            CodeRuntime::Go => {
                // A standard-library package's path has no dot in its first element; `main` is the program.
                let first = match function.find('/') {
                    Some(at) => &function[..at],
                    None => function.split('.').next().unwrap_or(function),
                };
                let standard = !first.contains('.') && first != "main";
                !standard && !GO_LIBRARIES.iter().any(|library| function.starts_with(library))
            }
            // Scripts of the program: not Node's own (`node:…`, `internal/…`, no URL) nor installed packages.
            CodeRuntime::V8 => {
                !file.is_empty()
                    && !frame.file.starts_with("node:")
                    && !file.starts_with("internal/")
                    && !file.contains("/node_modules/")
                    && !GENERATED.iter().any(|suffix| file.ends_with(suffix))
            }
            // Source files of the program: not the standard library, installed packages or frozen modules.
            CodeRuntime::Cpython => {
                !file.is_empty()
                    && !file.starts_with('<')
                    && !file.contains("/site-packages/")
                    && !file.contains("/dist-packages/")
                    && !GENERATED.iter().any(|suffix| file.ends_with(suffix))
                    && !is_python_standard_library(file)
            }
            CodeRuntime::Jvm => !function.is_empty() && !JAVA_LIBRARIES.iter().any(|l| function.starts_with(l)),
            CodeRuntime::Rust => {
                let path = function.trim_start_matches('<');
                let krate = path.split("::").next().unwrap_or(path);
                !function.is_empty()
                    && path.contains("::")
                    && !RUST_LIBRARIES.contains(&krate)
                    && !krate.starts_with("_rjem")
                    && !krate.starts_with("futures")
            }
        }
    }
}

/// `/usr/lib/python3.11/json/decoder.py`: a file of the interpreter's own library (not its site-packages).
fn is_python_standard_library(file: &str) -> bool {
    let Some(at) = file.find("/lib/python3") else { return false };
    // `/lib/python3.11/` directly, not a project directory that happens to be called that further down.
    let rest = &file[at + "/lib/python3".len()..];
    rest.split('/').next().is_some_and(|version| version.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Where one stack's growth belongs: its call site and the helper it went through to get there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attributed<'f> {
    pub site: &'f Frame,
    /// The shared helper between the site and the allocation (`newClient`), if any.
    pub through: Option<&'f str>,
}

/// A function of a profile: its name and file (`(anonymous)` functions of different files are different).
type Function<'f> = (&'f str, &'f str);

fn function(frame: &Frame) -> Function<'_> {
    (&frame.function, &frame.file)
}

/// The call site of each of `stacks`, given each as its own frames, innermost first (inlined frames left
/// out); `shapes` are all the stacks of the profiles, growing or not, in the same form, from which who
/// calls whom is learned (a helper's other callers may not have grown).
///
/// A stack's site is its innermost own frame, unless the stack goes through a helper: a function that
/// several own functions call and that calls at most one own function itself (a funnel, like
/// `newClient()` or `GetAaaRPCClient()`). Every caller of a helper shares its frame, leaking or not, so
/// the site is then the first frame outside the helpers, and the helper is named as what it went
/// through. A dispatcher that calls many own functions (`handleRequest`) is not a helper, however many
/// call it, and helpers are looked for only inward of the first dispatcher: one further out (a loop that
/// workers and a warm-up both run) is no part of how a client is built. Where every own frame outward
/// of a helper is one too, the outermost is the site.
pub fn attribute<'f>(shapes: &[Vec<&Frame>], stacks: &[Vec<&'f Frame>]) -> Vec<Option<Attributed<'f>>> {
    let mut callers: BTreeMap<Function, BTreeSet<Function>> = BTreeMap::new();
    let mut callees: BTreeMap<Function, BTreeSet<Function>> = BTreeMap::new();
    for frames in shapes.iter().chain(stacks) {
        for pair in frames.windows(2) {
            callers.entry(function(pair[0])).or_default().insert(function(pair[1]));
            callees.entry(function(pair[1])).or_default().insert(function(pair[0]));
        }
    }
    let count = |map: &BTreeMap<Function, BTreeSet<Function>>, frame: &Frame| {
        map.get(&function(frame)).map_or(0, BTreeSet::len)
    };
    let helper = |frame: &Frame| count(&callers, frame) > 1 && count(&callees, frame) <= 1;
    stacks
        .iter()
        .map(|frames| {
            let first = *frames.first()?;
            let dispatcher = frames.iter().position(|frame| count(&callees, frame) > 1).unwrap_or(frames.len());
            let Some(innermost_helper) = frames[..dispatcher].iter().position(|frame| helper(frame)) else {
                return Some(Attributed { site: first, through: None });
            };
            let outside = frames[innermost_helper..].iter().position(|frame| !helper(frame));
            Some(match outside {
                Some(offset) => {
                    let at = innermost_helper + offset;
                    Attributed { site: frames[at], through: Some(frames[at - 1].function.as_str()) }
                }
                None => Attributed { site: frames[frames.len() - 1], through: None },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str) -> Frame {
        Frame { function: function.into(), file: file.into(), line: 1, inlined: false, address: 0 }
    }

    #[test]
    fn own_code_is_what_is_not_the_runtime_grpc_or_an_installed_package() {
        let cases: [(CodeRuntime, &str, &str, bool); 18] = [
            (CodeRuntime::Cpython, "EchoStub.__init__", "/srv/shop/echo_pb2_grpc.py", false),
            (CodeRuntime::V8, "EchoClient", "/srv/shop/echo_grpc_pb.js", false),
            (CodeRuntime::Go, "main.chargePayment", "", true),
            (CodeRuntime::Go, "github.com/acme/svc.Get", "", true),
            (CodeRuntime::Go, "google.golang.org/grpc.DialContext", "", false),
            (CodeRuntime::Go, "bufio.NewReaderSize", "", false),
            (CodeRuntime::V8, "chargePayment", "file:///srv/shop/payments.js", true),
            (CodeRuntime::V8, "", "/srv/shop/app.js", true),
            (
                CodeRuntime::V8,
                "ChannelImplementation",
                "/srv/shop/node_modules/@grpc/grpc-js/build/src/channel.js",
                false,
            ),
            (CodeRuntime::V8, "Module._compile", "node:internal/modules/cjs/loader", false),
            (CodeRuntime::V8, "(root)", "", false),
            (CodeRuntime::Cpython, "charge_payment", "/srv/shop/payments.py", true),
            (CodeRuntime::Cpython, "Channel.__init__", "/venv/lib/python3.11/site-packages/grpc/_channel.py", false),
            (CodeRuntime::Cpython, "JSONDecoder.decode", "/usr/lib/python3.11/json/decoder.py", false),
            (CodeRuntime::Jvm, "com.shop.Payments.charge", "Payments.java", true),
            (CodeRuntime::Jvm, "io.grpc.internal.ManagedChannelImplBuilder.build", "", false),
            (CodeRuntime::Rust, "shop::payments::charge::{{closure}}", "", true),
            (CodeRuntime::Rust, "<tonic::transport::channel::Channel as core::clone::Clone>::clone", "", false),
        ];
        for (runtime, function, file, own) in cases {
            assert_eq!(OwnCode::new(runtime, Vec::new()).owns(&frame(function, file)), own, "{runtime:?} {function}");
        }
        assert!(!OwnCode::default().owns(&frame("x", "/tmp/run/leaklab_profile/sitecustomize.py")), "the agent");
        // --own-code: a function prefix, or a part of the file's path, in any runtime.
        let named = OwnCode::new(CodeRuntime::V8, vec!["shop/".into(), "com.shop.".into()]);
        assert!(named.owns(&frame("charge", "file:///srv/shop/payments.js")));
        assert!(named.owns(&frame("com.shop.Payments.charge", "Payments.java")));
        assert!(!named.owns(&frame("main", "/srv/other/main.js")));
    }

    #[test]
    fn a_shared_helper_gives_way_to_its_callers_and_a_dispatcher_does_not() {
        let (make, new_client, get_client) =
            (frame("makeChannel", "c.js"), frame("newClient", "c.js"), frame("getClient", "c.js"));
        let (charge, reserve, quote) = (frame("charge", "p.js"), frame("reserve", "i.js"), frame("quote", "s.js"));
        let (dispatch, worker, retry) = (frame("dispatch", "a.js"), frame("worker", "a.js"), frame("retry", "a.js"));
        let stacks = vec![
            // charge and reserve call newClient, which calls makeChannel: newClient is the helper.
            vec![&make, &new_client, &charge, &dispatch, &worker],
            vec![&make, &new_client, &reserve, &dispatch, &retry],
            // quote goes through getClient, another funnel over newClient.
            vec![&make, &new_client, &get_client, &quote, &dispatch, &worker],
            vec![&make, &new_client, &get_client, &charge, &dispatch, &worker],
        ];
        let found: Vec<(&str, Option<&str>)> = attribute(&[], &stacks)
            .into_iter()
            .map(|a| a.map(|a| (a.site.function.as_str(), a.through)).unwrap())
            .collect();
        assert_eq!(
            found,
            [
                ("charge", Some("newClient")),
                ("reserve", Some("newClient")),
                ("quote", Some("getClient")),
                ("charge", Some("getClient")),
            ],
            "dispatch, called from worker and retry, calls several own functions: it is no helper"
        );
        // One caller grew: its stacks alone say nothing of a helper, the innermost own frame is the site...
        let single = vec![vec![&make, &new_client, &charge, &dispatch]];
        assert_eq!(attribute(&[], &single)[0].unwrap().site.function, "makeChannel");
        // ...but the profiles' other stacks, which did not grow, show newClient's other callers.
        let closing = vec![vec![&make, &new_client, &reserve, &dispatch]];
        let seen = attribute(&closing, &single)[0].unwrap();
        assert_eq!((seen.site.function.as_str(), seen.through), ("charge", Some("newClient")));
        assert_eq!(attribute(&[], &[vec![]]), [None]);
        // A funnel outward of a dispatcher (a loop both workers and a warm-up run) is not how a client is built.
        let (serve_one, warmup) = (frame("serveOne", "a.js"), frame("warmup", "a.js"));
        let stacks =
            vec![vec![&charge, &dispatch, &serve_one, &worker], vec![&reserve, &dispatch, &serve_one, &warmup]];
        let sites: Vec<&str> = attribute(&[], &stacks).into_iter().map(|a| a.unwrap().site.function.as_str()).collect();
        assert_eq!(sites, ["charge", "reserve"]);
        // Two anonymous functions of different files are two callers, each its own site.
        let (a, b) = (frame("(anonymous)", "p.js"), frame("(anonymous)", "i.js"));
        let stacks = vec![vec![&make, &a], vec![&make, &b]];
        let files: Vec<&str> = attribute(&[], &stacks).into_iter().map(|a| a.unwrap().site.file.as_str()).collect();
        assert_eq!(files, ["p.js", "i.js"]);
    }
}
