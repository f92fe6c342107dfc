//! `make bench`: what the load generator can do and what it costs, measured
//! on this machine with client and server sharing its cores over loopback.
//!
//! 1. Throughput of the `reused` policy on each transport (tonic's `Channel`
//!    and `h2`), with sampling every 100 ms and with sampling off, alternating
//!    A/B/A/B so that machine drift cancels out; the medians give the cost of
//!    sampling.
//!    1b. Any method: `reused` through the dynamic path (`[call]` with the Echo's
//!    `.proto` and JSON data) beside the compiled `Echo`, plaintext and over TLS
//!    (a throwaway CA), alternating; `LEAKLAB_BENCH_ONLY=dynamic` runs only this.
//!    1c. The server's limits: `reused` against the toy server with its default
//!    limits and with every limit off, alternating; `LEAKLAB_BENCH_ONLY=limits`
//!    runs only this.
//! 2. The load generator's own RSS over 1,000,000 requests, compared with its
//!    value right after warm-up, measured on the `loadgen` binary itself.
//! 3. Open-loop accuracy: at a target rate well below capacity, the rate achieved.
//! 0. First, when h2load is installed: the load generator on both transports,
//!    h2load and, when built, the grpc-go peer side by side on the same server
//!    ([`versus`]), written to `BENCHMARKS.md` too.
//! 4. Coordinated omission: the `stall` scenario's latency measured from each
//!    request's send and from its intended send time, side by side.
//! 5. The sampler at scale: a leak up to 18,000 open connections at 1,500
//!    requests/s, with the largest gap between two samples of the load and
//!    the sampler's busy share of the cores (socket counts included).
//!
//! Not a test: the numbers depend on the machine and on whatever else runs on
//! it, so nothing here passes or fails. `LEAKLAB_BENCH_SCALE=0.1` runs a
//! tenth of the requests for a quick look.

mod versus;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leaklab_engine::run::{self, RunOptions, RunOutcome, TargetChoice};
use leaklab_engine::run_dir::RunDir;
use leaklab_engine::sample::{Phase, Sample};
use leaklab_engine::scenario::{self, Overrides, Plan, RunPlan, Transport};
use leaklab_probe::procfs::machine_description;
use tokio::sync::watch;
use versus::Tool;

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONCURRENCY: u64 = 64;
const ROUND_REQUESTS: u64 = 200_000;
const ROUNDS: usize = 5;
const LONG_REQUESTS: u64 = 1_000_000;

fn main() {
    let scale: f64 = std::env::var("LEAKLAB_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let scaled = |n: u64| ((n as f64 * scale) as u64).max(10_000);
    // The runtime `loadgen run` drives its load on, so the in-process rounds measure what the binary does.
    let runtime = run::runtime().expect("a tokio runtime");
    let reports = tempfile::tempdir().expect("a temporary reports directory");
    let server_bin = server_bin();

    println!("leaklab bench: {}", machine_description());
    // LEAKLAB_BENCH_ONLY=dynamic runs only the dynamic path's comparison (section 1b).
    if std::env::var("LEAKLAB_BENCH_ONLY").is_ok_and(|only| only == "dynamic") {
        dynamic_path(&runtime, &server_bin, reports.path(), scaled(ROUND_REQUESTS));
        return;
    }
    if std::env::var("LEAKLAB_BENCH_ONLY").is_ok_and(|only| only == "limits") {
        server_limits(&runtime, &server_bin, reports.path(), scaled(ROUND_REQUESTS));
        return;
    }
    println!(
        "policy reused, {CONCURRENCY} workers, closed loop, 64-byte unary echo, client and server on the same {} cores\n",
        cores()
    );

    // 0. Side by side with h2load, alternating.
    if versus::h2load_available() {
        compare_with_h2load(&server_bin, reports.path(), scaled(ROUND_REQUESTS));
    } else {
        println!("h2load is not installed (apt-get install nghttp2-client): the side-by-side table is skipped\n");
    }

    // The first run after a build is consistently slower (cold binary, caches):
    // run one and throw it away so it does not land in either column.
    runtime.block_on(execute(&plan(scaled(ROUND_REQUESTS), true, Transport::Channel), &server_bin, reports.path()));

    // 1. Throughput and the cost of sampling, alternating, on each transport.
    let channel_unsampled = throughput(&runtime, &server_bin, reports.path(), scaled(ROUND_REQUESTS));

    // 1b. Any method: the dynamic path (descriptors from a .proto, JSON data) beside the compiled Echo,
    // plaintext and over TLS, alternating.
    dynamic_path(&runtime, &server_bin, reports.path(), scaled(ROUND_REQUESTS));

    // 1c. What the server's default limits cost `reused`, alternating with every limit off.
    server_limits(&runtime, &server_bin, reports.path(), scaled(ROUND_REQUESTS));

    // 2. The load generator's own memory over a long run, on the `loadgen` binary.
    loadgen_memory(&server_bin, reports.path(), scaled(LONG_REQUESTS));

    // 3. Open-loop accuracy, at a quarter of the closed-loop throughput measured above.
    open_loop(&runtime, &server_bin, reports.path(), channel_unsampled);

    // 4. Coordinated omission, on the shipped `stall` scenario.
    coordinated_omission(&runtime, &server_bin, reports.path());

    // 5. The sampler at scale, on the `loadgen` binary: the run samples itself, and its own process
    // must hold 18,000 connections without anything else in it.
    sampler_at_scale(&server_bin, reports.path());
}

/// Section 1: `reused` on each transport, sampled every 100 ms and not, in alternating rounds; the
/// medians give what sampling costs. Returns the `Channel` transport's median req/s without sampling.
fn throughput(runtime: &tokio::runtime::Runtime, server_bin: &Path, reports: &Path, requests: u64) -> f64 {
    println!("| round | transport | sampling | requests | req/s | p50 µs | p99 µs |");
    println!("|---:|---|---|---:|---:|---:|---:|");
    let transports = [Transport::Channel, Transport::H2];
    // Per transport: throughput sampling, throughput not sampling, the sampler's busy share.
    let mut measured: [(Vec<f64>, Vec<f64>, Vec<f64>); 2] = Default::default();
    for round in 1..=ROUNDS {
        for (transport, (with_sampling, without, busy_share)) in transports.iter().zip(&mut measured) {
            for sampled in [true, false] {
                let plan = plan(requests, sampled, *transport);
                let outcome = runtime.block_on(execute(&plan, server_bin, reports));
                let (answered, rps, latency) = figures(&outcome);
                println!(
                    "| {round} | {} | {} | {} | {rps:.0} | {} | {} |",
                    transport.name(),
                    if sampled { "100 ms" } else { "off" },
                    answered,
                    latency.p50,
                    latency.p99
                );
                if sampled {
                    with_sampling.push(rps);
                    let s = &outcome.summary;
                    busy_share.push(s.samples.busy_s / (s.load_duration_s * cores() as f64));
                } else {
                    without.push(rps);
                }
            }
        }
    }
    println!();
    let mut channel_unsampled = 0.0;
    for (transport, (with_sampling, without, busy_share)) in transports.iter().zip(&mut measured) {
        let (on, off) = (median(with_sampling), median(without));
        if *transport == Transport::Channel {
            channel_unsampled = off;
        }
        println!(
            "transport {}: median {on:.0} req/s sampling every 100 ms, {off:.0} req/s without; sampling costs \
             {:+.1}% of throughput (A/B noise on a shared machine is a few %); the sampler was busy {:.3}% of the \
             {} cores' time (median, both processes' work included: an upper bound on its CPU cost)",
            transport.name(),
            (off - on) / off * 100.0,
            median(busy_share) * 100.0,
            cores(),
        );
    }
    println!();
    channel_unsampled
}

/// Section 2: the load generator's own memory over a long run. This runs the real `loadgen` binary: in
/// this process, allocator pages freed by the rounds before would be returned during the run and read
/// as the load generator shrinking.
fn loadgen_memory(server_bin: &Path, reports: &Path, requests: u64) {
    let scenario = reports.join("long.toml");
    std::fs::write(&scenario, plan_text(requests, Transport::Channel)).expect("writing the long scenario");
    let status = std::process::Command::new(server_bin.with_file_name("loadgen"))
        .args(["run", "--quiet", "--reports-dir"])
        .arg(reports)
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running target/release/loadgen");
    assert!(status.success(), "loadgen run failed: {status}");
    let (summary, samples) = RunDir::at(reports.join("long/latest")).read_finished().expect("the long run's results");
    let after_warmup = samples.iter().find(|s| s.phase == Phase::Load).expect("a load sample").client.rss_bytes;
    let loaded: Vec<u64> = samples.iter().filter(|s| s.phase == Phase::Load).map(|s| s.client.rss_bytes).collect();
    let at_end = samples.iter().find(|s| s.phase == Phase::Cooldown).expect("a load-end sample").client.rss_bytes;
    let highest = loaded.iter().copied().chain([at_end]).max().unwrap_or(at_end);
    let lowest = loaded.iter().copied().chain([at_end]).min().unwrap_or(at_end);
    let delta = |bytes: u64| mib(bytes) - mib(after_warmup);
    println!(
        "`loadgen run`, {} requests in {:.1} s ({:.0} req/s), sampling every 100 ms: loadgen RSS after warm-up {:.1} MiB; \
         during the load between {:.1} ({:+.2}) and {:.1} MiB ({:+.2}); at load end {:.1} MiB ({:+.2})",
        summary.requests.as_ref().map_or(0, |requests| requests.ok),
        summary.load_duration_s,
        summary.throughput_rps.unwrap_or(0.0),
        mib(after_warmup),
        mib(lowest),
        delta(lowest),
        mib(highest),
        delta(highest),
        mib(at_end),
        delta(at_end),
    );
    println!(
        "loadgen allocated (jemalloc) per request after warm-up: {:+.3} B\n",
        summary.growth.client_allocated_bytes_per_request.unwrap_or(f64::NAN)
    );
}

/// Section 3: open-loop accuracy, at a quarter of `closed_loop_rps`: the rate achieved against the target.
fn open_loop(runtime: &tokio::runtime::Runtime, server_bin: &Path, reports: &Path, closed_loop_rps: f64) {
    let target = (closed_loop_rps / 4.0 / 1000.0).round().max(1.0) * 1000.0;
    let mut open = plan((target * 5.0) as u64, true, Transport::Channel);
    open.load.rate_per_s = Some(target);
    open.load.concurrency = std::num::NonZeroUsize::new(16).expect("16 > 0");
    let outcome = runtime.block_on(execute(&open, server_bin, reports));
    // Between periodic samples inside a round (checkpoint pauses and each round's start-up left out).
    let (mut requests, mut seconds) = (0.0, 0.0);
    for pair in outcome.samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.phase == Phase::Load && b.phase == Phase::Load && !a.settled && !b.settled {
            requests += (b.requests() - a.requests()) as f64;
            seconds += b.elapsed_s - a.elapsed_s;
        }
    }
    let steady = requests / seconds;
    let overall = outcome.summary.throughput_rps.unwrap_or(0.0);
    println!(
        "open loop, 16 workers: target {target:.0} req/s; achieved {steady:.0} req/s between samples inside rounds \
         ({:+.2}% of the target), {overall:.0} req/s over the whole load ({:+.2}%, each round's start and end included)\n",
        (steady - target) / target * 100.0,
        (overall - target) / target * 100.0
    );
}

/// Section 4: coordinated omission, on the shipped `stall` scenario: its latency measured from each
/// request's send and from its intended send time, side by side.
fn coordinated_omission(runtime: &tokio::runtime::Runtime, server_bin: &Path, reports: &Path) {
    let stall =
        scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/stall.toml"), &Overrides::default())
            .ok()
            .and_then(RunPlan::builtin)
            .expect("scenarios/stall.toml is a valid built-in scenario");
    let outcome = runtime.block_on(execute(&stall, server_bin, reports));
    let s = &outcome.summary;
    println!("`stall` ({}): latency in µs", s.description);
    println!("| measured from | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, l: &leaklab_engine::latency::Latency| {
        println!("| {name} | {} | {} | {} | {} | {} |", l.p50, l.p90, l.p99, l.p999, l.max)
    };
    if let Some(sent) = &s.latency_us {
        row("the send", sent);
    }
    if let Some(intended) = &s.latency_from_intended_us {
        row("the intended send time", intended);
    }
    println!();
}

/// `loadgen run leak --no-caps --requests 18000 --rate 1500`: the largest gap between two samples of
/// the load (warm-up and rounds), and the sampler's busy share of the cores over the run.
fn sampler_at_scale(server_bin: &Path, reports: &Path) {
    const REQUESTS: u64 = 18_000;
    let status = std::process::Command::new(server_bin.with_file_name("loadgen"))
        .args(["run", "leak", "--no-caps", "--requests", &REQUESTS.to_string(), "--rate", "1500", "--quiet"])
        .arg("--reports-dir")
        .arg(reports)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running target/release/loadgen");
    assert!(status.code().is_some_and(|code| code == 0 || code == 3), "loadgen run leak failed: {status}");
    let (summary, samples) = RunDir::at(reports.join("leak/latest")).read_finished().expect("the leak run's results");
    let loaded = |s: &Sample| matches!(s.phase, Phase::Warmup | Phase::Load);
    let (gap, at, connections) = samples
        .windows(2)
        .filter(|pair| loaded(&pair[0]) && loaded(&pair[1]))
        .map(|pair| {
            (pair[1].elapsed_s - pair[0].elapsed_s, pair[0].elapsed_s, pair[1].client.open_connections().unwrap_or(0))
        })
        .fold((0.0, 0.0, 0), |largest, gap| if gap.0 > largest.0 { gap } else { largest });
    let interval_s = summary.plan.as_ref().and_then(|plan| plan.sample_interval_ms).unwrap_or(100) as f64 / 1000.0;
    let run_s = samples.last().map_or(1.0, |s| s.elapsed_s);
    let busy_s = summary.samples.busy_s;
    println!(
        "sampler at scale: `loadgen run leak --no-caps --requests {REQUESTS} --rate 1500`, {} samples, peak {} client \
         connections: largest gap between two samples of the load {gap:.3} s ({:.1}× the {:.0} ms interval) at {at:.1} s \
         with {connections} connections; the sampler and the socket counts beside it were busy {busy_s:.2} s of the \
         {run_s:.1} s run, {:.2}% of the {} cores",
        samples.len(),
        summary.client.connections.as_ref().map_or(0, |connections| connections.peak),
        gap / interval_s,
        interval_s * 1000.0,
        busy_s / (run_s * cores() as f64) * 100.0,
        cores()
    );
}

const VERSUS_ROUNDS: usize = 5;

fn compare_with_h2load(server_bin: &Path, dir: &Path, requests: u64) {
    let streams = CONCURRENCY;
    let go_client = versus::go_client(server_bin);
    let mut tools = vec![Tool::Loadgen(Transport::H2), Tool::Loadgen(Transport::Channel), Tool::H2load];
    tools.extend(go_client.clone().map(Tool::GrpcGo));
    let mut runs: Vec<Vec<versus::ToolRun>> = vec![Vec::new(); tools.len()];
    // Every run is printed, so an outlier behind a median can be seen.
    println!("| round | tool | requests/s | CPU s per 100k requests |\n|---:|---|---:|---:|");
    for round in 1..=VERSUS_ROUNDS {
        for (tool, runs) in tools.iter().zip(&mut runs) {
            let run = tool.run(server_bin, dir, requests, streams);
            let cpu = run.cpu_s / run.requests.max(1) as f64 * 100_000.0;
            println!("| {round} | {} | {:.0} | {cpu:.2} |", tool.name(), run.requests_per_s);
            runs.push(run);
        }
    }
    println!();
    let median_of = |runs: &[versus::ToolRun], value: &dyn Fn(&versus::ToolRun) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(value).collect();
        median(&mut values)
    };
    let rps_of =
        |wanted: fn(&Tool) -> bool| tools.iter().position(wanted).map(|i| median_of(&runs[i], &|r| r.requests_per_s));
    let h2load_rps = rps_of(|tool| matches!(tool, Tool::H2load)).expect("h2load ran");
    let grpc_go_rps = rps_of(|tool| matches!(tool, Tool::GrpcGo(_)));
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{requests} unary echo requests (64-byte payload) per run, 1 connection × {streams} concurrent streams, \
         {VERSUS_ROUNDS} runs per tool alternating, each against a fresh leaklab-server; medians.\n"
    );
    let _ = writeln!(
        table,
        "| tool | requests/s | p50 µs | p99 µs | CPU s per 100k requests | peak RSS | × h2load | × grpc-go |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (tool, tool_runs) in tools.iter().zip(&runs) {
        let name = tool.name();
        let rps = median_of(tool_runs, &|r| r.requests_per_s);
        let _ = writeln!(
            table,
            "| {name} | {rps:.0} | {:.0} | {:.0} | {:.2} | {:.1} MiB | {:.2} | {} |",
            median_of(tool_runs, &|r| r.latency_us.0),
            median_of(tool_runs, &|r| r.latency_us.1),
            median_of(tool_runs, &|r| r.cpu_s / r.requests.max(1) as f64 * 100_000.0),
            median_of(tool_runs, &|r| mib(r.max_rss_bytes)),
            rps / h2load_rps,
            grpc_go_rps.map_or_else(|| "n/a".to_owned(), |go| format!("{:.2}", rps / go)),
        );
    }
    let _ = writeln!(
        table,
        "\nh2load reports no percentiles: its p50 and p99 columns are its mean and max. Its requests/s counts HTTP \
         2xx answers, the loadgen's counts gRPC OK. CPU and peak RSS are each tool's own process (wait4's rusage); \
         the loadgen's run includes its warm-up (5,000 requests) and its sampler. The loadgen's two rows differ only \
         in what carries the calls: the `h2` transport (`client.transport = \"h2\"`) puts tonic's generated client \
         straight on one h2 connection; a tonic `Channel` adds tower's buffer, hyper's dispatch and a task per \
         request body, which is what the leak scenarios model. The grpc-go client (grpc-go 1.33 from Debian, \
         `peers/go` with `-rate 0`) is a plain one: 64 goroutines over one ClientConn, each call with a 10 s deadline, messages marshalled by \
         grpc-go's default protobuf codec (its `-codec raw`, pre-encoded bytes, was within a few percent); its \
         requests/s counts its whole run, connecting included."
    );
    if go_client.is_none() {
        let _ = writeln!(table, "\nThe grpc-go client is not built (`make peers` builds it): its row is missing.");
    }
    println!("{table}");
    let generated = format!(
        "Measured by `make bench` (engine/benches/loadgen.rs) on {}; the cores are shared by the client and the \
         server, over loopback.\n\n## The load generator beside h2load and grpc-go\n\n{table}",
        machine_description(),
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if let Err(error) = std::fs::write(&path, with_generated_part(&old, &generated)) {
        println!("could not write {}: {error}", path.display());
    }
}

/// The bench's part of `BENCHMARKS.md`, between these markers; the
/// hand-written sections around it are kept.
const BEGIN: &str = "<!-- make bench writes from here -->";
const END: &str = "<!-- to here -->";

fn with_generated_part(document: &str, generated: &str) -> String {
    match (document.find(BEGIN), document.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{BEGIN}\n{generated}\n{}", &document[..begin], &document[end..])
        }
        _ => format!("# Benchmarks\n\n{BEGIN}\n{generated}\n{END}\n"),
    }
}

/// The bench's scenario: `reused` on `transport`, closed loop, a 5,000-request warm-up, no cool-down.
pub(crate) fn plan_text(requests: u64, transport: Transport) -> String {
    format!(
        "description = \"bench\"\n[client]\npolicy = \"reused\"\ntransport = \"{}\"\n[load]\n\
         concurrency = {CONCURRENCY}\nrequests = {requests}\nwarmup_requests = 5000\nduration = \"600s\"\n\
         [sampling]\ncooldown = \"0s\"\n",
        transport.name()
    )
}

/// How the bench's calls are made: the compiled `Echo` or the dynamic path, plaintext or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallPath {
    dynamic: bool,
    tls: bool,
}

impl CallPath {
    fn name(self) -> &'static str {
        match (self.dynamic, self.tls) {
            (false, false) => "compiled Echo",
            (true, false) => "dynamic, --proto",
            (false, true) => "compiled Echo, TLS",
            (true, true) => "dynamic, --proto, TLS",
        }
    }

    /// `plan_text` on a `Channel`, with a `[call]` of the same Echo request (64 bytes of `x`) and TLS as asked.
    fn scenario(self, requests: u64) -> String {
        let mut text = plan_text(requests, Transport::Channel);
        if self.dynamic {
            use base64::Engine;
            let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/leaklab/v1/echo.proto");
            let payload = base64::engine::general_purpose::STANDARD.encode([b'x'; 64]);
            text += &format!(
                "[call]\nmethod = \"leaklab.v1.Echo/Unary\"\nproto = [\"{}\"]\ndata = '{{\"payload\": \"{payload}\"}}'\n",
                proto.display()
            );
        }
        if self.tls {
            text += "[server.tls]\ngenerate = true\n";
        }
        text
    }
}

/// `reused` through each [`CallPath`], alternating rounds; the dynamic path's throughput as a share of the
/// compiled one's, plaintext and over TLS.
fn dynamic_path(runtime: &tokio::runtime::Runtime, server_bin: &Path, reports: &Path, requests: u64) {
    const PATH_ROUNDS: usize = 3;
    let paths = [false, true].map(|tls| [false, true].map(|dynamic| CallPath { dynamic, tls }));
    let paths: Vec<CallPath> = paths.into_iter().flatten().collect();
    println!("| round | calls | requests | req/s | p50 µs | p99 µs |");
    println!("|---:|---|---:|---:|---:|---:|");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 1..=PATH_ROUNDS {
        for (path, rates) in paths.iter().zip(&mut rates) {
            let plan = scenario::parse(Path::new("bench.toml"), &path.scenario(requests), &Overrides::default())
                .ok()
                .and_then(RunPlan::builtin)
                .expect("the bench plan is valid");
            let outcome = runtime.block_on(execute(&plan, server_bin, reports));
            let s = &outcome.summary;
            let counted = s.requests.as_ref().expect("a built-in run counts its requests");
            assert_eq!(counted.failed, 0, "bench requests failed: {:?}", counted.errors);
            let (rps, latency) =
                (s.throughput_rps.unwrap_or(0.0), s.latency_us.expect("a built-in run times its calls"));
            println!("| {round} | {} | {} | {rps:.0} | {} | {} |", path.name(), counted.ok, latency.p50, latency.p99);
            rates.push(rps);
        }
    }
    println!();
    let medians: Vec<f64> = rates.iter_mut().map(|rates| median(rates)).collect();
    for (path, rate) in paths.iter().zip(&medians) {
        println!("{}: median {rate:.0} req/s", path.name());
    }
    println!(
        "the dynamic path reaches {:.2}× the compiled Echo's requests/s in plaintext and {:.2}× over TLS \
         (medians of {PATH_ROUNDS} alternating rounds)\n",
        medians[1] / medians[0],
        medians[3] / medians[2]
    );
}

fn plan(requests: u64, sampled: bool, transport: Transport) -> Plan {
    let text = plan_text(requests, transport);
    let mut plan = scenario::parse(Path::new("bench.toml"), &text, &Overrides::default())
        .ok()
        .and_then(RunPlan::builtin)
        .expect("the bench plan is valid");
    if !sampled {
        plan.sampling.interval = None;
    }
    plan
}

async fn execute(plan: &Plan, server_bin: &Path, reports: &Path) -> RunOutcome {
    let (_stop_tx, stop) = watch::channel(false);
    let options = RunOptions {
        target: Some(TargetChoice::Spawn { server_bin: server_bin.to_owned() }),
        reports_dir: reports.to_owned(),
        observer: None,
        stop,
        start_at: None,
    };
    let outcome =
        run::execute(&RunPlan::Builtin(Box::new(plan.clone())), options).await.expect("a bench run completes");
    // Let the server's exit and socket teardown settle before the next round.
    tokio::time::sleep(Duration::from_millis(300)).await;
    outcome
}

/// A bench run's requests answered, req/s and latency; a failed request fails the bench.
fn figures(outcome: &RunOutcome) -> (u64, f64, leaklab_engine::latency::Latency) {
    let s = &outcome.summary;
    let requests = s.requests.as_ref().expect("a built-in run counts its requests");
    assert_eq!(requests.failed, 0, "bench requests failed: {:?}", requests.errors);
    (requests.ok, s.throughput_rps.unwrap_or(0.0), s.latency_us.expect("a built-in run times its calls"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `reused` on a `Channel`, unsampled, against the toy server with its default limits and with every
/// limit off, alternating; the medians give what the limits cost.
fn server_limits(runtime: &tokio::runtime::Runtime, server_bin: &Path, reports: &Path, requests: u64) {
    // A first run after a build is slower: thrown away, as in section 1.
    runtime.block_on(execute(&plan(requests, false, Transport::Channel), server_bin, reports));
    println!("| round | server limits | requests | req/s | p50 µs | p99 µs |");
    println!("|---:|---|---:|---:|---:|---:|");
    let (mut limited, mut unlimited) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        for defaults in [true, false] {
            let mut plan = plan(requests, false, Transport::Channel);
            if !defaults {
                plan.server.settings.limits = leaklab_wire::Limits::unlimited();
            }
            let outcome = runtime.block_on(execute(&plan, server_bin, reports));
            let (requests, rps, latency) = figures(&outcome);
            println!(
                "| {round} | {} | {} | {rps:.0} | {} | {} |",
                if defaults { "defaults" } else { "all off" },
                requests,
                latency.p50,
                latency.p99
            );
            if defaults { limited.push(rps) } else { unlimited.push(rps) }
        }
    }
    let (on, off) = (median(&mut limited), median(&mut unlimited));
    println!(
        "\nserver limits: median {on:.0} req/s with the defaults, {off:.0} req/s with every limit off: the defaults \
         cost {:+.1}% of throughput (A/B noise on a shared machine is a few %)\n",
        (off - on) / off * 100.0
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").join("leaklab-server");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p leaklab-server` first (make bench does)",
        bin.display()
    );
    bin
}
