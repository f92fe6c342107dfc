//! Whole runs, as `loadgen run` does them: the real server binary started as
//! a child on a free loopback port, sampled over its side channel, stopped at
//! the end; the report files checked as a user would read them.
//!
//! `make test` builds `leaklab-server` first; these tests find it next to
//! the test binary's own target directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leaklab_loadgen::report::progress::View;
use leaklab_loadgen::report::summary::TargetKind;
use leaklab_loadgen::run::{self, RunOptions, RunOutcome, TargetChoice};
use leaklab_loadgen::sample::{Phase, Sample};
use leaklab_loadgen::scenario::{self, Overrides, Plan};
use leaklab_loadgen::verdict::VerdictKind;
use tokio::sync::watch;

// The load generator measures its own allocator, as the `loadgen` binary does.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn server_bin() -> PathBuf {
    // target/<profile>/deps/end_to_end-<hash> → target/<profile>/leaklab-server
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("leaklab-server");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p leaklab-server` (same profile) first, or `make test`",
        bin.display()
    );
    bin
}

fn plan(policy: &str, requests: u64) -> Plan {
    let text = format!(
        "description = \"end-to-end {policy}\"\n[client]\npolicy = \"{policy}\"\n\
         [load]\nconcurrency = 2\nrequests = {requests}\nwarmup_requests = 50\n\
         [sampling]\ninterval = \"20ms\"\ncooldown = \"200ms\"\n"
    );
    scenario::parse(Path::new(&format!("e2e-{policy}.toml")), &text, &Overrides::default()).unwrap()
}

async fn execute(plan: &Plan, target: TargetChoice, reports: &Path, stop: bool) -> RunOutcome {
    let (_stop_tx, stop) = watch::channel(stop);
    let options = RunOptions { target, reports_dir: reports.to_owned(), view: View::Quiet, stop };
    run::execute(plan, options).await.unwrap()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_run_writes_its_report_and_stops_its_server() {
    let reports = tempfile::tempdir().unwrap();
    let outcome =
        execute(&plan("reused", 400), TargetChoice::Spawn { server_bin: server_bin() }, reports.path(), false).await;
    let summary = &outcome.summary;

    // The report is where the README says, with every file.
    assert_eq!(outcome.dir.parent().unwrap(), reports.path().join("e2e-reused"));
    assert_eq!(
        std::fs::canonicalize(reports.path().join("e2e-reused/latest")).unwrap(),
        std::fs::canonicalize(&outcome.dir).unwrap()
    );
    for file in ["summary.json", "samples.jsonl", "memory.svg", "memory.png", "report.md", "server.log"] {
        assert!(outcome.dir.join(file).is_file(), "{file} missing");
    }
    assert!(outcome.export_errors.is_empty(), "{:?}", outcome.export_errors);

    // The samples file holds what the summary was computed from, line by line.
    let lines = std::fs::read_to_string(outcome.dir.join("samples.jsonl")).unwrap();
    let written: Vec<Sample> = lines.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(written, outcome.samples);
    let phases: Vec<Phase> = written.iter().map(|s| s.phase).collect();
    for phase in [Phase::Baseline, Phase::Warmup, Phase::Load, Phase::Cooldown] {
        assert!(phases.contains(&phase), "no {phase:?} sample in {phases:?}");
    }

    // The load generator's count equals the server's own.
    assert_eq!(summary.requests.ok, 400);
    let last_server = written.iter().rev().find_map(|s| s.server).expect("server figures were sampled");
    assert_eq!(last_server.requests_served, summary.requests.ok);

    // Both processes were measured, and the reused channel is one connection.
    let server = summary.server.as_ref().expect("a spawned server is measured");
    assert_eq!(summary.client.connections.peak, 1);
    assert_eq!(server.connections.peak, 1);
    assert_eq!((summary.client.connections_opened, server.connections_opened), (1, 1));
    assert!(server.rss_bytes.peak > 1 << 20, "server RSS {:?}", server.rss_bytes);
    assert!(summary.client.allocated_bytes.is_some() && server.allocated_bytes.is_some());
    assert_eq!(summary.target.kind, TargetKind::Spawned);

    // summary.json on disk is the summary, and the server is gone.
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outcome.dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["requests"]["ok"], 400);
    let pid = summary.target.server_pid.unwrap();
    assert!(!process_exists(pid), "server {pid} outlived its run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_grows_by_a_connection_and_tens_of_kilobytes_per_request() {
    let reports = tempfile::tempdir().unwrap();
    let outcome =
        execute(&plan("leak", 350), TargetChoice::Spawn { server_bin: server_bin() }, reports.path(), false).await;
    let growth = &outcome.summary.growth;
    // The warm-up ends with nothing in flight, so the window holds exactly the rest.
    assert_eq!(growth.loaded_requests, 300);
    for per_request in [growth.client_connections_per_request, growth.server_connections_per_request] {
        let per_request = per_request.unwrap();
        assert!((0.97..=1.03).contains(&per_request), "{per_request} connections/request");
    }
    let client = growth.client_allocated_bytes_per_request.unwrap();
    assert!((20_000.0..200_000.0).contains(&client), "client allocated {client} B/request");
    let server = growth.server_allocated_bytes_per_request.unwrap();
    assert!(server > 5_000.0, "server allocated {server} B/request");
    assert!(outcome.summary.notes.iter().any(|note| note.contains("never evicted")));
    let server_opened = outcome.summary.server.as_ref().unwrap().connections_opened;
    assert_eq!((outcome.summary.client.connections_opened, server_opened), (350, 350));

    // Both verdicts find it, from a checkpoint after warm-up and one after each round.
    let verdict = &outcome.summary.verdict;
    for process in [&verdict.client, verdict.server.as_ref().unwrap()] {
        assert_eq!(process.kind, VerdictKind::Leak, "{:?}", process.reasons);
        assert!(process.ci_low.unwrap() > process.tolerance);
        assert_eq!(process.rounds, 8);
        assert_eq!(process.checkpoints.len(), 10, "after warm-up, 8 rounds, end of cool-down");
        let cooldown = process.cooldown.unwrap();
        assert!(!cooldown.returned_to_baseline, "leaked connections are never given back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_channel_is_never_called_a_leak() {
    let reports = tempfile::tempdir().unwrap();
    let outcome =
        execute(&plan("reused", 1200), TargetChoice::Spawn { server_bin: server_bin() }, reports.path(), false).await;
    let verdict = &outcome.summary.verdict;
    for process in [&verdict.client, verdict.server.as_ref().unwrap()] {
        // A short run on a shared machine may be undecided, but never a false alarm.
        assert_ne!(process.kind, VerdictKind::Leak, "{:?}", process.reasons);
        assert!(!process.connections.grows());
        assert!(process.cooldown.unwrap().returned_to_baseline, "{:?}", process.cooldown);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_target_is_loaded_but_not_measured() {
    let server =
        leaklab_server::Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), Default::default()).await.unwrap();
    let reports = tempfile::tempdir().unwrap();
    let target = TargetChoice::External { authority: server.addr.to_string() };
    let outcome = execute(&plan("reused", 200), target, reports.path(), false).await;
    assert_eq!(outcome.summary.target.kind, TargetKind::External);
    assert!(outcome.summary.server.is_none());
    assert_eq!(outcome.summary.samples.server_misses, 0, "an external server is not expected to answer");
    assert_eq!(outcome.summary.growth.server_allocated_bytes_per_request, None);
    assert!(outcome.summary.notes.iter().any(|note| note.contains("--target")), "{:?}", outcome.summary.notes);
    assert_eq!(server.metrics.requests_served(), 200);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_still_writes_its_report() {
    let reports = tempfile::tempdir().unwrap();
    let outcome =
        execute(&plan("leak", 1000), TargetChoice::Spawn { server_bin: server_bin() }, reports.path(), true).await;
    assert_eq!(outcome.summary.stopped_by, leaklab_loadgen::load::StopReason::Interrupted);
    assert!(outcome.dir.join("summary.json").is_file());
    assert!(outcome.summary.notes.iter().any(|note| note.contains("Interrupted")), "{:?}", outcome.summary.notes);
    // Stopped before any round, it cannot judge, and says so.
    let client = &outcome.summary.verdict.client;
    assert_eq!(client.kind, VerdictKind::Inconclusive);
    assert!(client.reasons[0].starts_with("Only 0 rounds completed"), "{:?}", client.reasons);
    assert!(outcome.summary.verdict.server.is_some(), "the server was measured, if briefly");
    assert!(!process_exists(outcome.summary.target.server_pid.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gives_its_memory_back_after_a_mass_disconnect() {
    use leaklab_loadgen::load::Channels;
    use leaklab_loadgen::scenario::ChannelPolicy;
    use leaklab_loadgen::target::ServerProcess;

    let dir = tempfile::tempdir().unwrap();
    let (server, mut control) = ServerProcess::spawn(&server_bin(), &[], &dir.path().join("server.log")).unwrap();
    let authority = server.addr.to_string();
    let allocated = |control: &mut leaklab_loadgen::target::ServerControl| {
        control.purge().unwrap();
        let stats = control.stats().expect("the server answers");
        (stats.process.jemalloc.expect("the server runs on jemalloc").allocated_bytes, stats.process.connections.open)
    };
    // One call first, so buffers that live as long as the server are in the baseline.
    let warm = Channels::connect(ChannelPolicy::Reused, &authority).await.unwrap();
    let mut clients = warm.worker_clients();
    warm.call(&mut clients, 0, Default::default()).await.unwrap();
    drop((clients, warm));
    let settle = |control: &mut leaklab_loadgen::target::ServerControl| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while control.stats().is_some_and(|s| s.process.connections.open > 0) {
            assert!(std::time::Instant::now() < deadline, "connections never closed at the server");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settle(&mut control);
    let (before, _) = allocated(&mut control);

    const CONNECTIONS: u64 = 3000;
    let leak = Channels::connect(ChannelPolicy::Leak, &authority).await.unwrap();
    let mut clients = leak.worker_clients();
    for index in 0..CONNECTIONS {
        leak.call(&mut clients, index, Default::default()).await.unwrap();
    }
    let (during, open) = allocated(&mut control);
    assert_eq!(open, CONNECTIONS);
    assert!(during > before + CONNECTIONS * 20_000, "{CONNECTIONS} connections held only {} bytes", during - before);

    drop((clients, leak));
    settle(&mut control);
    let (after, open) = allocated(&mut control);
    assert_eq!(open, 0);
    eprintln!("server allocated: {before} before, {during} with {CONNECTIONS} connections, {after} after they closed");
    // At least 98% of what the connections held comes back. About 0.7 MB stays: caches the
    // runtime and jemalloc's thread caches keep, whatever the number of connections was.
    assert!(
        after.saturating_sub(before) < (during - before) / 50,
        "server allocated {before} before, {during} with {CONNECTIONS} connections, {after} after they closed"
    );
    drop(control);
    server.stop(Duration::from_secs(5)).unwrap();
}
