//! Whole runs, as a user makes them: the `loadgen` binary (each run its own
//! process, so its memory is its own), the real server binary started as a
//! child on a free loopback port, sampled over its side channel, stopped at
//! the end; the report files checked as a user would read them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{LOADGEN, ToyServer, gone, loadgen, schema_errors, server_bin, summary, text};
use leaklab_engine::sample::{Phase, Sample};

/// A scenario file of `requests` through `policy`, two workers, sampled every 20 ms.
fn plan(dir: &Path, policy: &str, requests: u64) -> PathBuf {
    let path = dir.join(format!("e2e-{policy}.toml"));
    let text = format!(
        "description = \"end-to-end {policy}\"\n[client]\npolicy = \"{policy}\"\n\
         [load]\nconcurrency = 2\nrequests = {requests}\nwarmup_requests = 50\n\
         [sampling]\ninterval = \"20ms\"\ncooldown = \"200ms\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `scenario` to its end; returns its run directory and summary.
fn run(reports: &Path, scenario: &Path, extra: &[&str]) -> (PathBuf, serde_json::Value) {
    let args: Vec<&str> = ["run", scenario.to_str().unwrap()].into_iter().chain(extra.iter().copied()).collect();
    let output = loadgen(&args, reports, &[]);
    assert!(matches!(output.status.code(), Some(0 | 3)), "{}", text(&output));
    let name = scenario.file_stem().unwrap().to_str().unwrap();
    (std::fs::canonicalize(reports.join(name).join("latest")).unwrap(), summary(reports, name))
}

fn samples(dir: &Path) -> Vec<Sample> {
    let lines = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    lines.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn a_spawned_run_writes_its_report_and_stops_its_server() {
    let reports = tempfile::tempdir().unwrap();
    let (dir, s) = run(reports.path(), &plan(reports.path(), "reused", 400), &[]);

    // The report is where the README says, with every file.
    assert_eq!(dir.parent().unwrap(), std::fs::canonicalize(reports.path().join("e2e-reused")).unwrap());
    for file in ["summary.json", "samples.jsonl", "memory.svg", "memory.png", "report.md", "server.log", "run.json"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // The samples file holds what the summary was computed from, one line each, every phase there.
    let written = samples(&dir);
    assert_eq!(written.len() as u64, s["samples"]["count"].as_u64().unwrap());
    let phases: Vec<Phase> = written.iter().map(|s| s.phase).collect();
    for phase in [Phase::Baseline, Phase::Warmup, Phase::Load, Phase::Cooldown] {
        assert!(phases.contains(&phase), "no {phase:?} sample in {phases:?}");
    }
    // The load generator's count equals the server's own.
    assert_eq!(s["requests"]["ok"], 400);
    let last_server = written.iter().rev().find_map(|s| s.server).expect("server figures were sampled");
    assert_eq!(last_server.requests_served, Some(400));
    // Both processes were measured, and the reused channel is one connection.
    assert_eq!(
        (s["client"]["connections"]["peak"].as_u64(), s["server"]["connections"]["peak"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (s["client"]["connections_opened"].as_u64(), s["server"]["connections_opened"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(s["server"]["rss_bytes"]["peak"].as_u64().unwrap() > 1 << 20, "{}", s["server"]);
    assert!(s["client"]["allocated_bytes"].is_object() && s["server"]["allocated_bytes"].is_object());
    assert_eq!((s["kind"].as_str(), s["target"]["kind"].as_str()), (Some("builtin"), Some("spawned")));
    let pid = s["target"]["server_pid"].as_u64().unwrap() as u32;
    assert!(gone(pid), "server {pid} outlived its run");
}

#[test]
fn a_leak_grows_by_a_connection_and_tens_of_kilobytes_per_request() {
    let reports = tempfile::tempdir().unwrap();
    let (_, s) = run(reports.path(), &plan(reports.path(), "leak", 350), &[]);
    let growth = &s["growth"];
    // The warm-up ends with nothing in flight, so the window holds exactly the rest.
    assert_eq!(growth["loaded_requests"], 300);
    for side in ["client", "server"] {
        let per_request = growth[format!("{side}_connections_per_request")].as_f64().unwrap();
        assert!((0.97..=1.03).contains(&per_request), "{side}: {per_request} connections/request");
    }
    let client = growth["client_allocated_bytes_per_request"].as_f64().unwrap();
    assert!((20_000.0..200_000.0).contains(&client), "client allocated {client} B/request");
    assert!(growth["server_allocated_bytes_per_request"].as_f64().unwrap() > 5_000.0, "{growth}");
    assert!(s["notes"].as_array().unwrap().iter().any(|note| note["note"] == "leak_model"), "{}", s["notes"]);
    assert_eq!(
        (s["client"]["connections_opened"].as_u64(), s["server"]["connections_opened"].as_u64()),
        (Some(350), Some(350))
    );
    // Both verdicts find it, from a checkpoint after warm-up and one after each round.
    for side in ["client", "server"] {
        let verdict = &s["verdict"][side];
        assert_eq!(verdict["kind"], "leak", "{side}: {}", verdict["reasons"]);
        assert!(verdict["ci_low"].as_f64().unwrap() > verdict["tolerance"].as_f64().unwrap());
        assert_eq!((verdict["rounds"].as_u64(), verdict["points"].as_array().unwrap().len()), (Some(8), 10));
        assert_eq!(verdict["cooldown"]["returned_to_baseline"], false, "leaked connections are never given back");
    }
}

#[test]
fn a_reused_channel_is_never_called_a_leak() {
    let reports = tempfile::tempdir().unwrap();
    let (_, s) = run(reports.path(), &plan(reports.path(), "reused", 1200), &[]);
    for side in ["client", "server"] {
        let verdict = &s["verdict"][side];
        // A short run on a shared machine may be undecided, but never a false alarm.
        assert_ne!(verdict["kind"], "leak", "{side}: {}", verdict["reasons"]);
        assert!(verdict["connections"]["p_value"].as_f64().unwrap() >= 0.05, "{side}: {}", verdict["connections"]);
        assert_eq!(verdict["cooldown"]["returned_to_baseline"], true, "{side}: {}", verdict["cooldown"]);
    }
}

/// The toy server started by hand with `--metrics-listen`, as a user would start their own:
/// loadgen reads it only through that endpoint, and judges it on the same allocated bytes its
/// side channel would give.
#[test]
fn a_toy_server_read_through_its_metrics_endpoint_is_judged_on_its_allocator() {
    let server = ToyServer::start();
    let (address, url) = (&server.address, &server.metrics_url);
    let reports = tempfile::tempdir().unwrap();
    let path = plan(reports.path(), "leak", 700);
    let output = std::process::Command::new(LOADGEN)
        .args(["run", path.to_str().unwrap(), "--quiet", "--target", address, "--server-metrics", url])
        .args(["--server-metric", "leaklab_server_connections_open", "--reports-dir"])
        .arg(reports.path())
        .output()
        .unwrap();
    drop(server);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(reports.path(), "e2e-leak");
    assert_eq!(s["target"]["server_measured_by"], "metrics");
    assert_eq!(s["samples"]["server_misses"], 0, "every scrape answered");
    let verdict = &s["verdict"]["server"];
    assert_eq!((&verdict["kind"], &verdict["quantity"]), (&"leak".into(), &"allocated_bytes".into()), "{verdict}");
    // A leaked connection holds tens of KB in the toy server (38 KB when this test was written).
    let slope = verdict["slope_bytes_per_request"].as_f64().unwrap();
    assert!((10_000.0..100_000.0).contains(&slope), "{slope}");
    // Every request left a connection open, and the endpoint counted each one.
    let open = &s["server_metrics"]["leaklab_server_connections_open"];
    assert_eq!(open["end"].as_f64(), Some(700.0), "{open}");
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_target_is_loaded_but_not_measured() {
    let server =
        leaklab_server::Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), Default::default()).await.unwrap();
    let reports = tempfile::tempdir().unwrap();
    let path = plan(reports.path(), "reused", 200);
    let (address, dir) = (server.addr.to_string(), reports.path().to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(LOADGEN)
            .args(["run", path.to_str().unwrap(), "--quiet", "--target", &address, "--reports-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("server: not measured (--target without --server-pid or --server-metrics)"),
        "{}",
        text(&output)
    );
    let s = summary(reports.path(), "e2e-reused");
    assert_eq!(s["target"]["kind"], "external");
    assert!(s["server"].is_null() && s["verdict"]["server"].is_null());
    assert_eq!(s["samples"]["server_misses"], 0, "an external server is not expected to answer");
    assert!(s["growth"]["server_allocated_bytes_per_request"].is_null());
    assert!(s["notes"].as_array().unwrap().iter().any(|note| note["note"] == "server_not_measured"), "{}", s["notes"]);
    assert_eq!(server.metrics.requests_served(), 200);
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn an_attack_runs_beside_the_load_in_a_process_of_its_own_and_is_reported() {
    let reports = tempfile::tempdir().unwrap();
    let tables = "[attack]\nkind = \"slow-streams\"\nconnections = 4\nstreams_per_second = 200\n\
                  [expect]\nfailed_requests = 0\n";
    let scenario = crate::common::small_scenario(reports.path(), "e2e-attack", "reused", 700, tables);
    let (dir, s) = run(reports.path(), &scenario, &[]);
    let attack = &s["attack"];
    assert_eq!(attack["kind"], "slow-streams", "{attack}");
    assert!(attack["streams_opened"].as_u64().unwrap() > 0, "{attack}");
    assert_eq!(s["requests"]["failed"], 0);
    assert_eq!(s["plan"]["max_failed_requests"], 0);
    assert_eq!(s["expectation_met"], true, "failed requests within the expectation");
    // Not the client's: the attack's connections are another process's.
    assert!(s["client"]["connections"]["peak"].as_u64().unwrap() <= 2, "{}", s["client"]["connections"]);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Attack slow-streams: ") && report.contains(" connections dialled"), "{report}");
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
}

#[test]
fn every_kind_of_run_writes_a_summary_of_the_one_schema() {
    let reports = tempfile::tempdir().unwrap();
    let (_, builtin) = run(reports.path(), &plan(reports.path(), "leak", 350), &[]);
    let external = reports.path().join("counting.toml");
    let counting = "for n in 10 20 30 40 50 60 70 80 90 100 110 120 130 140 150; do \
                    echo leaklab-progress ok=$n failed=0; sleep 0.1; done";
    std::fs::write(
        &external,
        format!(
            "description = \"a client that counts\"\n[external]\ncommand = [\"sh\", \"-c\", \"{counting}\", \"{{addr}}\"]\n\
             warmup = \"200ms\"\n[sampling]\ninterval = \"50ms\"\n"
        ),
    )
    .unwrap();
    let (_, external) = run(reports.path(), &external, &[]);
    let output = std::process::Command::new(LOADGEN)
        .args(["watch", "--reports-dir", reports.path().to_str().unwrap(), "--", "sleep", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let watch = summary(reports.path(), "watch-sleep");
    for (kind, s) in [("builtin", &builtin), ("external", &external), ("watch", &watch)] {
        assert_eq!(s["kind"], kind);
        let errors = schema_errors(s);
        assert!(errors.is_empty(), "{kind}: summary.json does not fit the schema: {errors:#?}");
        // The documented keys read the same way whatever the kind.
        assert!(s["verdict"]["client"]["kind"].is_string(), "{kind}");
        for end in ["start", "end", "peak"] {
            assert!(s["client"]["rss_bytes"][end].is_u64() && s["client"]["fds"][end].is_u64(), "{kind}");
        }
    }
    // What a kind of run does not have is null, never 0.
    assert!(external["latency_us"].is_null() && external["client"]["allocated_bytes"].is_null());
    assert_eq!(external["requests"]["ok"], 150);
    assert_eq!(external["verdict"]["client"]["axis"], "request");
    assert!(watch["requests"].is_null() && watch["server"].is_null() && watch["throughput_rps"].is_null());
    assert_eq!(watch["verdict"]["client"]["axis"], "second");
    assert!(watch["verdict"]["client"]["slope_bytes_per_request"].is_null(), "a watch's slope is per second");
    assert!(watch["verdict"]["client"]["trend"]["slope"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gives_its_memory_back_after_a_mass_disconnect() {
    use leaklab_engine::load::{Channels, Method};
    use leaklab_engine::scenario::ChannelPolicy;
    use leaklab_engine::target::{ServerControl, ServerProcess};

    let dir = tempfile::tempdir().unwrap();
    let (server, mut control) = ServerProcess::spawn(&server_bin(), &[], &dir.path().join("server.log")).unwrap();
    let authority = server.addr.to_string();
    let allocated = |control: &mut ServerControl| {
        control.purge().unwrap();
        let stats = control.stats().expect("the server answers");
        (
            stats.process.jemalloc.expect("the server runs on jemalloc").allocated_bytes,
            stats.process.open_connections().expect("the toy server counts its connections"),
        )
    };
    // One call first, so buffers that live as long as the server are in the baseline.
    let warm = Channels::connect(ChannelPolicy::Reused, &authority).await.unwrap();
    let mut clients = warm.worker_clients();
    warm.call(&mut clients, 0, &Method::default()).await.unwrap();
    drop((clients, warm));
    // Closing is asynchronous: wait for the server to see it (the bound only guards against a hang).
    let settle = |control: &mut ServerControl| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while control.stats().is_some_and(|s| s.process.open_connections() > Some(0)) {
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
        leak.call(&mut clients, index, &Method::default()).await.unwrap();
    }
    let (during, open) = allocated(&mut control);
    assert_eq!(open, CONNECTIONS);
    assert!(during > before + CONNECTIONS * 20_000, "{CONNECTIONS} connections held only {} bytes", during - before);

    drop((clients, leak));
    settle(&mut control);
    let (after, open) = allocated(&mut control);
    assert_eq!(open, 0);
    // At least 98% of what the connections held comes back. About 0.7 MB stays: caches the
    // runtime and jemalloc's thread caches keep, whatever the number of connections was.
    assert!(
        after.saturating_sub(before) < (during - before) / 50,
        "server allocated {before} before, {during} with {CONNECTIONS} connections, {after} after they closed"
    );
    drop(control);
    server.stop(Duration::from_secs(5)).unwrap();
}
