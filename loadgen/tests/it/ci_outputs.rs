//! What CI systems read, read by the tools they read it with: JUnit XML by
//! junitparser (PyPI), the benchmark trackers' JSON against their published
//! formats, the live metrics endpoint by Prometheus's own text parser
//! (prometheus_client), and `samples.csv` beside `samples.jsonl`. The
//! consumers come from `make ci-tools`, built here if missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{LOADGEN, python_json, root, scenario, schema_errors_against, server_bin, small_scenario, text};
use leaklab_engine::http::HttpUrl;
use leaklab_engine::latency::histogram_log;
use serde_json::Value;

/// Every test case of a JUnit file as junitparser reads it, with the counts its suites declare.
fn junit(path: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys
from junitparser import JUnitXml
xml = JUnitXml.fromfile(sys.argv[1])
suites, cases = [], []
for suite in xml:
    suites.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures, "errors": suite.errors, "skipped": suite.skipped})
    for case in suite:
        results = [{"kind": type(r).__name__, "message": r.message} for r in case.result]
        cases.append({"classname": case.classname, "name": case.name, "results": results, "system_out": case.system_out})
print(json.dumps({"suites": suites, "cases": cases}))
"#;
    python_json(SCRIPT, &[path], "")
}

/// The cases of `junit` whose only result is of `kind` (`Failure`, `Error`, `Skipped`).
fn with_result<'a>(junit: &'a Value, kind: &str) -> Vec<&'a Value> {
    let cases = junit["cases"].as_array().unwrap();
    cases.iter().filter(|case| case["results"].as_array().unwrap().iter().any(|r| r["kind"] == kind)).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn compare_quick_writes_junit_and_tracker_files_their_consumers_read() {
    let dir = tempfile::tempdir().unwrap();
    let (junit_path, bmf_path, gab_path) =
        (dir.path().join("out.xml"), dir.path().join("bmf.json"), dir.path().join("gab.json"));
    let output = Command::new(LOADGEN)
        .args(["compare", "--quick", "--quiet", "--scenarios-dir"])
        .arg(root().join("scenarios"))
        .arg("--reports-dir")
        .arg(dir.path().join("reports"))
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--junit")
        .arg(&junit_path)
        .arg("--bmf")
        .arg(&bmf_path)
        .arg("--gab")
        .arg(&gab_path)
        .args(["reused", "leak"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let junit = junit(&junit_path);
    let cases = junit["cases"].as_array().unwrap();
    let names: Vec<String> =
        cases.iter().map(|c| format!("{}/{}", c["classname"].as_str().unwrap(), c["name"].as_str().unwrap())).collect();
    assert_eq!(
        names,
        ["reused/client memory", "reused/server memory", "leak/client memory", "leak/server memory"],
        "{junit}"
    );
    assert!(cases.iter().all(|case| case["results"].as_array().unwrap().is_empty()), "every case passed: {junit}");
    let suite = &junit["suites"][0];
    assert_eq!(
        (suite["name"].as_str(), suite["tests"].as_u64(), suite["failures"].as_u64()),
        (Some("leaklab compare"), Some(4), Some(0))
    );
    assert!(cases[2]["system_out"].as_str().unwrap().contains("run directory: "), "{junit}");

    let bmf = read_json(&bmf_path);
    assert_eq!(schema_errors_against("bmf.schema.json", &bmf), Vec::<String>::new(), "{bmf}");
    for scenario in ["reused", "leak"] {
        for measure in ["client-bytes-per-request", "server-bytes-per-request"] {
            let metric = &bmf[scenario][measure];
            let (low, value, high) =
                (metric["lower_value"].as_f64(), metric["value"].as_f64(), metric["upper_value"].as_f64());
            assert!(low.is_some() && high.is_some(), "{scenario} {measure} has its interval: {bmf}");
            assert!(low <= value && value <= high, "{scenario} {measure}: {metric}");
        }
        assert!(bmf[scenario]["throughput"]["value"].as_f64().is_some_and(|rps| rps > 0.0), "{bmf}");
    }
    // The leak keeps tens of KB per request, the reused channel almost nothing.
    assert!(bmf["leak"]["client-bytes-per-request"]["lower_value"].as_f64().unwrap() > 10_000.0, "{bmf}");

    let gab = read_json(&gab_path);
    assert_eq!(schema_errors_against("github-action-benchmark.schema.json", &gab), Vec::<String>::new(), "{gab}");
    let per_request: Vec<&Value> = gab.as_array().unwrap().iter().filter(|b| b["unit"] == "bytes/request").collect();
    assert_eq!(per_request.len(), 4, "{gab}");
    assert!(per_request.iter().all(|b| b["range"].as_str().is_some_and(|r| r.starts_with("± "))), "{gab}");
}

#[test]
fn a_flipped_expectation_is_one_failure_and_an_unbuilt_peer_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).unwrap();
    scenario(&scenarios, "leak", "leak", "leak");
    scenario(&scenarios, "flipped", "leak", "no-leak");
    let unbuilt =
        "description = \"d\"\n[external]\ncommand = [\"target/peers/not-built\"]\n[expect]\nclient = \"leak\"\n";
    std::fs::write(scenarios.join("unbuilt.toml"), unbuilt).unwrap();
    let junit_path = dir.path().join("junit.xml");
    let output = Command::new(LOADGEN)
        .args(["compare", "--quiet", "--scenarios-dir"])
        .arg(&scenarios)
        .arg("--reports-dir")
        .arg(dir.path().join("reports"))
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--junit")
        .arg(&junit_path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));

    let junit = junit(&junit_path);
    let failures = with_result(&junit, "Failure");
    assert_eq!(failures.len(), 1, "{junit}");
    assert_eq!(
        (failures[0]["classname"].as_str(), failures[0]["name"].as_str()),
        (Some("flipped"), Some("client memory"))
    );
    let message = failures[0]["results"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("flipped: client memory: expected no-leak, got LEAK, allocated +"), "{message}");
    let skipped: Vec<&str> = with_result(&junit, "Skipped").iter().map(|c| c["classname"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["unbuilt", "unbuilt"], "{junit}");
    assert!(with_result(&junit, "Error").is_empty(), "{junit}");
    assert_eq!(junit["suites"][0]["failures"].as_u64(), Some(1), "{junit}");
}

/// Every sample of a Prometheus text page, as prometheus_client's parser reads it.
fn prometheus(page: &str) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = [{"name": s.name, "labels": s.labels, "value": s.value}
           for family in text_string_to_metric_families(sys.stdin.read()) for s in family.samples]
print(json.dumps(samples))
"#;
    python_json(SCRIPT, &[], page).as_array().unwrap().clone()
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

/// A `loadgen` child with `--metrics-listen 127.0.0.1:0`, and the URL it says it serves.
fn serving(args: &[&str]) -> (std::process::Child, Scraper) {
    let mut child = Command::new(LOADGEN)
        .args(args)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("loadgen said where it serves its metrics").unwrap();
        if let Some(url) = line.strip_prefix("metrics: ") {
            break url.to_owned();
        }
    };
    // The rest of stderr is drained so that the child never blocks writing it.
    std::thread::spawn(move || lines.for_each(drop));
    let url = HttpUrl::parse(&url, "/metrics", "http://127.0.0.1:9464/metrics").unwrap();
    (child, Scraper { url })
}

struct Scraper {
    url: HttpUrl,
}

impl Scraper {
    /// One scrape, parsed.
    fn scrape(&self) -> Vec<Value> {
        let body = self.url.get("", "text/plain", Duration::from_secs(5)).unwrap_or_else(|error| panic!("{error}"));
        prometheus(&String::from_utf8(body).unwrap())
    }

    /// Scrapes until `done` holds for a scrape; the bound only guards against a hang.
    fn until(&self, what: &str, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let samples = self.scrape();
            if done(&samples) {
                return samples;
            }
            assert!(Instant::now() < deadline, "waited a minute for {what}: {samples:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Stops `child` as Ctrl-C would and waits for it.
fn interrupt(mut child: std::process::Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

#[test]
fn a_long_run_s_metrics_follow_its_client_between_two_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().to_str().unwrap();
    let server = server_bin();
    // 60 s of load at 100 requests per second, a channel leaked by each: the client's RSS climbs.
    let (child, metrics) = serving(&[
        "run",
        "leak",
        "--duration",
        "60s",
        "--requests",
        "6000",
        "--rate",
        "100",
        "--quiet",
        "--reports-dir",
        reports,
        "--server-bin",
        server.to_str().unwrap(),
    ]);
    let client_rss = |samples: &[Value]| {
        sample(samples, "process_resident_memory_bytes", &[("process", "client"), ("scenario", "leak")])
    };
    let first = metrics.until("a first sample", |samples| client_rss(samples).is_some());
    let second = metrics.until("the client's RSS to change", |samples| client_rss(samples) != client_rss(&first));
    assert!(client_rss(&second).unwrap() > 0.0);
    assert!(sample(&second, "process_resident_memory_bytes", &[("process", "server")]).is_some(), "{second:?}");
    assert!(sample(&second, "leaklab_requests_total", &[("outcome", "ok")]).is_some(), "{second:?}");
    assert_eq!(interrupt(child).code(), Some(130));
}

#[test]
fn compare_serves_each_scenario_s_samples_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    small_scenario(dir.path(), "first", "reused", 700, "");
    small_scenario(dir.path(), "second", "reused", 7000, "");
    let (reports, server) = (dir.path().join("reports"), server_bin());
    let (child, metrics) = serving(&[
        "compare",
        "--quiet",
        "--scenarios-dir",
        dir.path().to_str().unwrap(),
        "--reports-dir",
        reports.to_str().unwrap(),
        "--server-bin",
        server.to_str().unwrap(),
        "first",
        "second",
    ]);
    let running = |name: &'static str| {
        move |samples: &[Value]| sample(samples, "leaklab_run_info", &[("scenario", name)]).is_some()
    };
    metrics.until("the first scenario's samples", running("first"));
    let second = metrics.until("the second scenario's samples", running("second"));
    assert!(
        sample(&second, "jemalloc_allocated_bytes", &[("process", "client"), ("scenario", "second")]).is_some(),
        "{second:?}"
    );
    assert!(interrupt(child).code().is_some());
}

/// A small run of `policy` under `reports`: its run directory and the lines of its `samples.jsonl`.
fn small_run(reports: &Path, name: &str, policy: &str, expect: &str) -> (PathBuf, Vec<Value>) {
    let path = scenario(reports, name, policy, expect);
    let output = crate::common::loadgen(&["run", path.to_str().unwrap()], reports, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let run = reports.join(name).join("latest");
    let lines = std::fs::read_to_string(run.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (run, lines)
}

#[test]
fn samples_csv_has_one_row_per_line_of_samples_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let (run, lines) = small_run(dir.path(), "csv", "leak", "leak");
    let mut reader = csv::Reader::from_path(run.join("samples.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let column =
        |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (elapsed, phase, rss, allocated) = (
        column("elapsed (s)"),
        column("phase"),
        column("client.rss (bytes)"),
        column("server.process.jemalloc.allocated (bytes)"),
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), lines.len());
    assert!(lines.len() > 10, "{} samples", lines.len());
    let unix_time = column("unix_time (s)");
    for (row, line) in rows.iter().zip(&lines) {
        assert_eq!(row[elapsed].parse::<f64>().unwrap(), line["elapsed_s"].as_f64().unwrap());
        assert_eq!(row[unix_time].parse::<f64>().unwrap(), line["unix_time_s"].as_f64().unwrap());
        assert_eq!(row[phase], *line["phase"].as_str().unwrap());
        assert_eq!(row[rss].parse::<u64>().unwrap(), line["client"]["rss_bytes"].as_u64().unwrap());
        let server = &line["server"]["process"]["jemalloc"]["allocated_bytes"];
        assert_eq!(row[allocated].parse::<u64>().ok(), server.as_u64(), "{line}");
    }
}

#[test]
fn a_run_keeps_its_wall_clock_and_its_latency_histogram_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let (run, lines) = small_run(dir.path(), "hlog", "reused", "no-leak");
    let times: Vec<f64> = lines.iter().map(|line| line["unix_time_s"].as_f64().expect("a wall-clock time")).collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    let summary = crate::common::summary(dir.path(), "hlog");
    let histograms = histogram_log::decode(&std::fs::read(run.join("latency.hlog")).unwrap()).unwrap();
    assert_eq!(histograms.len(), 1, "a closed loop has no intended-time latencies");
    let (tag, sent) = &histograms[0];
    assert_eq!(tag, "sent");
    let latency = &summary["latency_us"];
    assert_eq!(Some(sent.len()), latency["count"].as_u64(), "{latency}");
    assert_eq!(Some(sent.value_at_quantile(0.99)), latency["p99"].as_u64(), "{latency}");
    assert_eq!(Some(sent.max()), latency["max"].as_u64(), "{latency}");
}
