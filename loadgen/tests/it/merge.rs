//! `loadgen merge`: one scenario split over two load generators against one
//! toy server read through its metrics endpoint, merged into one run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::{LOADGEN, ToyServer, schema_errors, summary, text};

const NAME: &str = "e2e-split";

fn scenario(dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{NAME}.toml"));
    let text = "description = \"split\"\n[client]\npolicy = \"leak\"\n\
                [load]\nconcurrency = 2\nrequests = 1400\nwarmup_requests = 200\nrounds = 6\nrate = 400\n\
                [sampling]\ninterval = \"50ms\"\ncooldown = \"200ms\"\n\
                [expect]\nclient = \"leak\"\nserver = \"leak\"\n";
    std::fs::write(&path, text).unwrap();
    path
}

fn merge(dirs: &[&Path], reports: &Path) -> std::process::Output {
    Command::new(LOADGEN).arg("merge").args(dirs).arg("--reports-dir").arg(reports).output().unwrap()
}

fn slope(verdict: &serde_json::Value) -> f64 {
    verdict["slope_bytes_per_request"].as_f64().unwrap_or_else(|| panic!("no slope: {verdict}"))
}

#[test]
fn two_segments_merge_into_one_run_whose_server_is_judged_against_every_request() {
    let server = ToyServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path());
    // Both start together, as an indexed Job's pods would with a common --start-at.
    let start_at = humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(2)).to_string();
    let segments: Vec<_> = (1..=2)
        .map(|index| {
            Command::new(LOADGEN)
                .args(["run", path.to_str().unwrap(), "--quiet", "--target", &server.address])
                .args(["--server-metrics", &server.metrics_url, "--server-metric", "leaklab_server_requests_total"])
                .args(["--segment", &format!("{index}/2"), "--start-at", &start_at, "--reports-dir"])
                .arg(dir.path().join(format!("host-{index}")))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut segment in segments {
        assert!(segment.wait().unwrap().success(), "a segment failed");
    }
    drop(server);
    let host = |index: u32| dir.path().join(format!("host-{index}")).join(NAME).join("latest");
    let merged_reports = dir.path().join("merged");
    let output = merge(&[&host(1), &host(2)], &merged_reports);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("  segment 2/2: 700 requests"), "{}", text(&output));

    let s = summary(&merged_reports, NAME);
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
    let requests = s["requests"]["ok"].as_u64().unwrap() + s["requests"]["failed"].as_u64().unwrap();
    assert_eq!(requests, 1400);
    assert_eq!(
        s["server_metrics"]["leaklab_server_requests_total"]["end"].as_f64(),
        Some(1400.0),
        "what the server counted"
    );
    assert_eq!(s["latency_us"]["count"].as_u64(), s["requests"]["ok"].as_u64(), "every latency, merged from both logs");
    // Every leaked connection seen open at once; the last sample's scrape may come an instant before the
    // other segment's last connection or two (CI saw 1,399 once).
    assert_eq!(s["server"]["connections"]["peak"].as_u64(), Some(1400), "{}", s["server"]);
    let end = s["server"]["connections"]["end"].as_u64().unwrap();
    assert!((1397..=1400).contains(&end), "{}", s["server"]);
    assert!(s["plan"]["segment"].is_null(), "the merged run is the whole scenario");

    let each: Vec<serde_json::Value> = (1..=2).map(|index| summary(&host(index).join("../.."), NAME)).collect();
    let segments = s["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2);
    for (segment, own) in segments.iter().zip(&each) {
        assert_eq!(segment["requests"]["ok"], own["requests"]["ok"]);
        assert_eq!(segment["client_verdict"], own["verdict"]["client"], "each client keeps its own verdict");
    }
    assert_eq!(s["verdict"]["client"]["kind"], "leak");
    assert_eq!(s["verdict"]["server"]["kind"], "leak");
    // The clients summed over the requests summed: about what each client grew per request of its own.
    let client = slope(&s["verdict"]["client"]);
    let own_client = (slope(&each[0]["verdict"]["client"]) + slope(&each[1]["verdict"]["client"])) / 2.0;
    assert!((client / own_client - 1.0).abs() < 0.1, "merged client {client} vs each {own_client}");
    // Each segment saw the server grow with both segments' requests but counted only its own: about
    // twice what the merged run measures against all of them.
    let server = slope(&s["verdict"]["server"]);
    let own_server = (slope(&each[0]["verdict"]["server"]) + slope(&each[1]["verdict"]["server"])) / 2.0;
    assert!((own_server / server - 2.0).abs() < 0.3, "merged server {server} vs each {own_server}");

    let merged_dir = merged_reports.join(NAME).join("latest");
    let samples = std::fs::read_to_string(merged_dir.join("samples.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(samples.lines().last().unwrap()).unwrap();
    let open = |client: &serde_json::Value| client["connections"]["open"].as_u64().unwrap();
    let parts = ["1/2", "2/2"].map(|segment| open(&last["segments"][segment]["client"]));
    assert_eq!(open(&last["client"]), parts[0] + parts[1], "{last}");
    let svg = std::fs::read_to_string(merged_dir.join("memory.svg")).unwrap();
    assert!(svg.contains("client connections, segment 2/2") && svg.contains("client connections, sum of 2"));

    // Not one split: a segment twice, a segment missing, a directory that is not a run's.
    let output = merge(&[&host(1), &host(1)], &merged_reports);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("segment 1/2 again (also "), "{}", text(&output));
    let output = merge(&[&host(2)], &merged_reports);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("segment 1/2 of e2e-split missing"), "{}", text(&output));
    let output = merge(&[&host(1), &merged_dir], &merged_reports);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("not a run directory (no run.json)"), "{}", text(&output));
}
