//! The load generator, on a tonic `Channel` and on the `h2` transport, against
//! h2load and a grpc-go client on the same server, alternating runs so machine
//! drift cancels out. Each runs as a child process against a fresh
//! `leaklab-server`, with one connection and 64 concurrent streams, so each
//! tool's CPU time and peak RSS are its own (from `wait4`'s rusage).
//!
//! h2load (Debian's `nghttp2-client`) sends gRPC-framed POSTs with
//! `content-type: application/grpc` and `te: trailers`; it reports min,
//! mean and max latency but no percentiles, so its p50/p99 columns show
//! its mean and max. The grpc-go client is `peers/go` in closed loop
//! (`-rate 0`) with grpc-go's protobuf codec (`-codec proto`), when
//! `make peers` has built it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use leaklab_engine::scenario::Transport;
use leaklab_engine::target::ServerProcess;

/// One run of one tool.
#[derive(Debug, Clone)]
pub(crate) struct ToolRun {
    pub(crate) requests_per_s: f64,
    /// p50 and p99 in µs (h2load: mean and max).
    pub(crate) latency_us: (f64, f64),
    pub(crate) cpu_s: f64,
    pub(crate) max_rss_bytes: u64,
    pub(crate) requests: u64,
}

/// A load generator of the side-by-side table.
pub(crate) enum Tool {
    Loadgen(Transport),
    H2load,
    /// The grpc-go peer's binary.
    GrpcGo(PathBuf),
}

impl Tool {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Tool::Loadgen(Transport::H2) => "loadgen (reused, h2 transport)",
            Tool::Loadgen(Transport::Channel) => "loadgen (reused, tonic Channel)",
            Tool::H2load => "h2load",
            Tool::GrpcGo(_) => "grpc-go (peers/go)",
        }
    }

    /// One run of `requests` requests over one connection with `streams` concurrent streams.
    pub(crate) fn run(&self, server_bin: &Path, dir: &Path, requests: u64, streams: u64) -> ToolRun {
        match self {
            Tool::Loadgen(transport) => loadgen(server_bin, dir, requests, *transport),
            Tool::H2load => h2load(server_bin, dir, requests, streams),
            Tool::GrpcGo(client) => grpc_go(client, server_bin, dir, requests, streams),
        }
    }
}

pub(crate) fn h2load_available() -> bool {
    Command::new("h2load").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs `command` to completion and returns its exit code with its own CPU time and peak RSS.
fn run_measured(command: &mut Command) -> (i32, f64, u64) {
    let child = command.spawn().expect("spawning a bench tool");
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in for the child we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waits for our own child; the std handle is dropped without waiting again.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed");
    std::mem::forget(child);
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, seconds(usage.ru_utime) + seconds(usage.ru_stime), usage.ru_maxrss as u64 * 1024)
}

/// A fresh server for one run; returns it with its address.
fn server(server_bin: &Path, dir: &Path) -> (ServerProcess, leaklab_engine::target::ServerControl, String) {
    let (process, control) = ServerProcess::spawn(server_bin, &[], &dir.join("server.log")).expect("a server");
    let address = process.addr.to_string();
    (process, control, address)
}

fn loadgen(server_bin: &Path, dir: &Path, requests: u64, transport: Transport) -> ToolRun {
    let (process, control, address) = server(server_bin, dir);
    let scenario = dir.join("versus.toml");
    std::fs::write(&scenario, crate::plan_text(requests, transport)).expect("writing the scenario");
    let (code, cpu_s, max_rss_bytes) = run_measured(
        Command::new(server_bin.with_file_name("loadgen"))
            .args(["run", "--quiet", "--target", &address, "--reports-dir"])
            .arg(dir)
            .arg(&scenario)
            .stdout(std::process::Stdio::null()),
    );
    assert_eq!(code, 0, "loadgen run failed");
    drop(control);
    let _ = process.stop(Duration::from_secs(5));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("versus/latest/summary.json")).expect("the run's summary.json"),
    )
    .expect("JSON");
    let latency = &summary["latency_us"];
    ToolRun {
        requests_per_s: summary["throughput_rps"].as_f64().unwrap_or(0.0),
        latency_us: (latency["p50"].as_f64().unwrap_or(0.0), latency["p99"].as_f64().unwrap_or(0.0)),
        cpu_s,
        max_rss_bytes,
        requests: summary["requests"]["ok"].as_u64().unwrap_or(0),
    }
}

/// A gRPC-framed `EchoRequest` with a 64-byte payload, as h2load's request body.
fn grpc_body(dir: &Path) -> std::path::PathBuf {
    let mut message = vec![0x0a, 64];
    message.extend_from_slice(&[b'x'; 64]);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let path = dir.join("echo-request.bin");
    std::fs::write(&path, frame).expect("writing the request body");
    path
}

fn h2load(server_bin: &Path, dir: &Path, requests: u64, streams: u64) -> ToolRun {
    let (process, control, address) = server(server_bin, dir);
    let body = grpc_body(dir);
    let output = dir.join("h2load.txt");
    let (code, cpu_s, max_rss_bytes) = run_measured(
        Command::new("h2load")
            .args(["-n", &requests.to_string(), "-c", "1", "-m", &streams.to_string(), "-t", "1", "-d"])
            .arg(&body)
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg(format!("http://{address}/leaklab.v1.Echo/Unary"))
            .stdout(std::fs::File::create(&output).expect("h2load's output file")),
    );
    assert_eq!(code, 0, "h2load failed");
    drop(control);
    let _ = process.stop(Duration::from_secs(5));
    let text = std::fs::read_to_string(&output).expect("h2load's output");
    // "finished in 1.46s, 136602.13 req/s, 13.29MB/s"
    let requests_per_s = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|rate| rate.trim_end_matches(" req/s").parse().ok())
        .expect("h2load's 'finished in' line");
    // "time for request:       29us      3.20ms       449us       157us    68.87%" (min max mean sd)
    let micros = |value: &str| -> f64 {
        let (number, factor) = if let Some(n) = value.strip_suffix("us") {
            (n, 1.0)
        } else if let Some(n) = value.strip_suffix("ms") {
            (n, 1e3)
        } else {
            (value.trim_end_matches('s'), 1e6)
        };
        number.parse::<f64>().unwrap_or(f64::NAN) * factor
    };
    let times: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("time for request:"))
        .map(|rest| rest.split_whitespace().take(3).map(micros).collect())
        .unwrap_or_default();
    let succeeded = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|rest| rest.split(", ").find_map(|part| part.strip_suffix(" succeeded")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ToolRun {
        requests_per_s,
        latency_us: (times.get(2).copied().unwrap_or(f64::NAN), times.get(1).copied().unwrap_or(f64::NAN)),
        cpu_s,
        max_rss_bytes,
        requests: succeeded,
    }
}

/// The grpc-go client `make peers` builds, if it did: `target/peers/go-echo-client`.
pub(crate) fn go_client(server_bin: &Path) -> Option<PathBuf> {
    let target = server_bin.parent()?.parent()?;
    Some(target.join("peers/go-echo-client")).filter(|path| path.is_file())
}

fn grpc_go(client: &Path, server_bin: &Path, dir: &Path, requests: u64, streams: u64) -> ToolRun {
    let (process, control, address) = server(server_bin, dir);
    let output = dir.join("grpc-go.txt");
    let (code, cpu_s, max_rss_bytes) = run_measured(
        Command::new(client)
            .args(["-addr", &address, "-mode", "reused", "-codec", "proto", "-rate", "0"])
            .args(["-concurrency", &streams.to_string(), "-requests", &requests.to_string()])
            .stdout(std::fs::File::create(&output).expect("the grpc-go client's output file")),
    );
    assert_eq!(code, 0, "the grpc-go client failed");
    drop(control);
    let _ = process.stop(Duration::from_secs(5));
    let text = std::fs::read_to_string(&output).expect("the grpc-go client's output");
    // "leaklab-bench ok=200000 failed=0 seconds=3.100 p50_us=812 p99_us=2950"
    let line = text.lines().find_map(|l| l.strip_prefix("leaklab-bench ")).expect("the grpc-go client's bench line");
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let ok = field("ok");
    ToolRun {
        requests_per_s: ok / field("seconds"),
        latency_us: (field("p50_us"), field("p99_us")),
        cpu_s,
        max_rss_bytes,
        requests: ok as u64,
    }
}
