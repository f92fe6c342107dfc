//! leaklab aimed at a server it did not write: the grpcio server of
//! `peers/python/shop_server.py`, with its own proto (an import, nested,
//! repeated, enum and map fields), which checks every request it receives and
//! counts the calls. The peer is built by `make peers`; these tests build it
//! themselves when it is missing, as the other tests build the server binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use crate::common::{LOADGEN, root, summary, text};

/// `target/peers/python/shop_server.py` and the venv's python, made by the Makefile's rule if missing.
fn shop_server() -> (PathBuf, PathBuf) {
    let script = crate::common::peer("target/peers/python/shop_server.py");
    let python = root().join("target/peers/python-venv/bin/python");
    assert!(python.is_file(), "{} is missing after building the grpcio peer", python.display());
    (python, script)
}

const ORDER: &str = r#"{"customer": "ada", "lines": [{"sku": "A-1", "quantity": 2, "size": "LARGE"}, {"sku": "B-7", "size": "SMALL"}], "total": {"currency": "EUR", "units": "12", "nanos": 500}, "labels": {"channel": "web"}, "gift": true}"#;
const METADATA: &str = r#"{"x-team": "checkout", "authorization": "Bearer t0ken"}"#;

/// The shop server on a free loopback port; SIGTERM makes it print its counts and exit.
struct Shop {
    child: Child,
    pid: u32,
    stdout: BufReader<ChildStdout>,
    port: u16,
    /// With `--metrics-port`: where its Prometheus metrics are.
    metrics_port: Option<u16>,
}

impl Shop {
    fn start(extra: &[&str]) -> Shop {
        let (python, script) = shop_server();
        let mut child = Command::new(python)
            .arg(script)
            .args(["--listen", "127.0.0.1:0", "--expect-order", ORDER, "--expect-metadata", METADATA])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the shop server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // The server prints this line once it serves; a server that dies first ends stdout.
        stdout.read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening on ").and_then(|port| port.parse().ok());
        let port = port.unwrap_or_else(|| panic!("the shop server did not start: {line:?}"));
        let pid = child.id();
        let metrics_port = extra.contains(&"--metrics-port").then(|| {
            line.clear();
            stdout.read_line(&mut line).unwrap();
            let port = line.trim().strip_prefix("metrics on ").and_then(|port| port.parse().ok());
            port.unwrap_or_else(|| panic!("the shop server serves no metrics: {line:?}"))
        });
        Shop { child, pid, stdout, port, metrics_port }
    }

    fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port.expect("started with --metrics-port"))
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server and returns its counts.
    fn counts(mut self) -> serde_json::Value {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        self.child.wait().unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the shop server's counts {line:?}: {e}"))
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// A small scenario of `policy` with `call` as its `[call]` table. It expects nothing of memory: these
/// tests are about what reaches the server, and a run this small may judge memory inconclusive.
fn scenario(dir: &Path, name: &str, policy: &str, call: &str) -> PathBuf {
    crate::common::small_scenario(dir, name, policy, 360, call)
}

fn run(scenario: &Path, target: &str, args: &[&str], reports: &Path) -> Output {
    Command::new(LOADGEN)
        .arg("run")
        .arg(scenario)
        .args(["--target", target, "--quiet", "--reports-dir"])
        .arg(reports)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_policy_reaches_a_grpcio_server_with_exactly_the_fields_and_metadata_sent() {
    let reports = tempfile::tempdir().unwrap();
    let protos = root().join("peers/python/protos");
    let orders = protos.join("shop/v1/orders.proto");
    for policy in ["leak", "reused", "per-request-close"] {
        let shop = Shop::start(&[]);
        let path = scenario(reports.path(), policy, policy, "");
        let flags = [
            "--call",
            "shop.v1.Orders/Place",
            "--proto",
            orders.to_str().unwrap(),
            "--import-paths",
            protos.to_str().unwrap(),
            "-d",
            ORDER,
            "-m",
            METADATA,
        ];
        let output = run(&path, &shop.target(), &flags, reports.path());
        assert_eq!(output.status.code(), Some(0), "{policy}: {}", text(&output));
        let summary = summary(reports.path(), policy);
        let counts = shop.counts();
        assert_eq!(counts["mismatches"], 0, "{policy}: {counts}");
        assert_eq!(summary["requests"]["failed"], 0, "{policy}: {}", summary["requests"]);
        assert_eq!(summary["requests"]["ok"], counts["calls"], "{policy}: every call the server counted, and no other");
        assert_eq!(summary["requests"]["ok"], 360);
    }
}

#[test]
fn without_a_proto_the_servers_reflection_describes_the_method_and_a_stream_is_read_as_asked() {
    let reports = tempfile::tempdir().unwrap();
    let shop = Shop::start(&["--reflection"]);
    let call = "[call]\nmethod = \"shop.v1.Orders.Track\"\ndata = '{\"id\": \"r-1\", \"updates\": 5}'\nstream_messages = 2\n\
                [call.metadata]\nx-team = \"checkout\"\nauthorization = \"Bearer t0ken\"\n";
    let path = scenario(reports.path(), "track", "reused", call);
    let output = run(&path, &shop.target(), &[], reports.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = summary(reports.path(), "track");
    let counts = shop.counts();
    assert_eq!(counts["mismatches"], 0, "{counts}");
    assert_eq!(summary["requests"]["ok"], counts["calls"]);
    assert_eq!(summary["requests"]["ok"], 360);

    // The same unary call as with --proto, described by reflection alone.
    let shop = Shop::start(&["--reflection"]);
    let path = scenario(reports.path(), "place", "leak", "");
    let output =
        run(&path, &shop.target(), &["--call", "shop.v1.Orders/Place", "-d", ORDER, "-m", METADATA], reports.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let counts = shop.counts();
    assert_eq!(counts["mismatches"], 0, "{counts}");
    assert_eq!(summary_ok(reports.path(), "place"), counts["calls"]);
}

fn summary_ok(reports: &Path, name: &str) -> serde_json::Value {
    summary(reports, name)["requests"]["ok"].clone()
}

#[test]
fn a_server_without_reflection_or_an_unknown_service_is_a_usage_error_and_nothing_runs() {
    let reports = tempfile::tempdir().unwrap();
    let path = scenario(reports.path(), "place", "reused", "");
    let shop = Shop::start(&[]);
    let output = run(&path, &shop.target(), &["--call", "shop.v1.Orders/Place"], reports.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--call: the server has no reflection service"), "{}", text(&output));
    drop(shop);

    let shop = Shop::start(&["--reflection"]);
    let output = run(&path, &shop.target(), &["--call", "shop.v1.Refunds/Issue"], reports.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("--call: the server has no service shop.v1.Refunds; its reflection lists "), "{said}");
    assert!(said.contains("shop.v1.Orders"), "{said}");
    assert_eq!(shop.counts()["calls"], 0);
    assert!(!reports.path().join("place").exists(), "no run directory for a run that did not start");
}

#[test]
fn over_tls_with_a_ca_made_by_the_test_every_policy_still_reaches_the_grpcio_server() {
    let reports = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let files = leaklab_engine::tls::Pki::generate(false).unwrap().write(certs.path()).unwrap();
    let (cert, key, ca) = (
        files.server_cert.display().to_string(),
        files.server_key.display().to_string(),
        files.ca.display().to_string(),
    );
    for policy in ["leak", "reused", "per-request-close"] {
        let shop = Shop::start(&["--reflection", "--tls-cert", &cert, "--tls-key", &key]);
        let path = scenario(reports.path(), policy, policy, "");
        // The server's certificate is for localhost and 127.0.0.1; reflection is asked over TLS too.
        let flags =
            ["--cacert", &ca, "--cname", "localhost", "--call", "shop.v1.Orders/Place", "-d", ORDER, "-m", METADATA];
        let output = run(&path, &shop.target(), &flags, reports.path());
        assert_eq!(output.status.code(), Some(0), "{policy}: {}", text(&output));
        let counts = shop.counts();
        assert_eq!(counts["mismatches"], 0, "{policy}: {counts}");
        assert_eq!(summary_ok(reports.path(), policy), counts["calls"], "{policy}");
        assert_eq!(counts["calls"], 360, "{policy}");
    }
}

#[test]
fn a_server_process_leaklab_did_not_start_is_judged_on_its_rss_per_request() {
    const KEPT: f64 = 65_536.0;
    let reports = tempfile::tempdir().unwrap();
    for (keep, expected) in [(KEPT, "leak"), (0.0, "no-leak")] {
        let shop = Shop::start(&["--reflection", "--keep-bytes", &keep.to_string()]);
        let name = format!("keeps-{keep}");
        let path =
            crate::common::small_scenario(reports.path(), &name, "reused", 2400, "[verdict]\ntolerance = 2048\n");
        let pid = shop.pid.to_string();
        let flags = ["--server-pid", &pid, "--call", "shop.v1.Orders/Place", "-d", r#"{"customer": "ada"}"#];
        let output = run(&path, &shop.target(), &flags, reports.path());
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let summary = summary(reports.path(), &name);
        assert_eq!(summary["target"]["server_measured_by"], "process");
        assert_eq!(summary["target"]["server_pid"], shop.pid);
        let server = &summary["verdict"]["server"];
        assert_eq!(server["kind"], expected, "{server}");
        let slope = server["slope_bytes_per_request"].as_f64().unwrap();
        if keep > 0.0 {
            assert!((slope - keep).abs() <= 0.2 * keep, "kept {keep} B per call, judged {slope}");
        }
        assert!(summary["server"]["rss_bytes"]["end"].as_u64().unwrap() > 0);
        assert!(summary["server"]["allocated_bytes"].is_null(), "no allocator leaklab can read");
        assert!(crate::common::schema_errors(&summary).is_empty(), "{:?}", crate::common::schema_errors(&summary));
    }
}

#[test]
fn a_server_on_its_metrics_endpoint_alone_is_judged_on_its_rss_per_request() {
    const KEPT: f64 = 65_536.0;
    let reports = tempfile::tempdir().unwrap();
    for (keep, expected) in [(KEPT, "leak"), (0.0, "no-leak")] {
        let shop = Shop::start(&["--reflection", "--keep-bytes", &keep.to_string(), "--metrics-port", "0"]);
        let name = format!("scraped-{keep}");
        let path =
            crate::common::small_scenario(reports.path(), &name, "reused", 2400, "[verdict]\ntolerance = 2048\n");
        let url = shop.metrics_url();
        let flags = [
            "--server-metrics",
            &url,
            "--server-metric",
            "shop_calls_total",
            "--call",
            "shop.v1.Orders/Place",
            "-d",
            r#"{"customer": "ada"}"#,
        ];
        let output = run(&path, &shop.target(), &flags, reports.path());
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let summary = summary(reports.path(), &name);
        assert_eq!(summary["target"]["server_measured_by"], "metrics");
        assert_eq!(summary["target"]["server_metrics_url"], url.as_str());
        assert!(summary["target"]["server_pid"].is_null() && summary["server"]["pid"].is_null());
        let server = &summary["verdict"]["server"];
        assert_eq!((&server["kind"], &server["quantity"]), (&expected.into(), &"rss_bytes".into()), "{server}");
        let slope = server["slope_bytes_per_request"].as_f64().unwrap();
        if keep > 0.0 {
            assert!((slope - keep).abs() <= 0.2 * keep, "kept {keep} B per call, judged {slope}");
        }
        assert!(summary["server"]["connections"].is_null(), "no standard metric counts connections");
        assert!(summary["server"]["fds"]["end"].as_u64().unwrap() > 0, "process_open_fds is read");
        // The service's own counter, recorded at every sample, ends where the server's count does.
        let calls = summary["server_metrics"]["shop_calls_total"]["end"].as_f64().unwrap();
        assert_eq!(calls as u64, shop.counts()["calls"].as_u64().unwrap());
        assert!(crate::common::schema_errors(&summary).is_empty(), "{:?}", crate::common::schema_errors(&summary));
    }
}

#[test]
fn a_metrics_endpoint_that_cannot_measure_the_server_is_a_usage_error_naming_it() {
    let reports = tempfile::tempdir().unwrap();
    let path = scenario(reports.path(), "place", "reused", "");
    let shop = Shop::start(&["--metrics-port", "0"]);
    let url = shop.metrics_url();
    let output =
        run(&path, &shop.target(), &["--server-metrics", &url, "--server-metric", "shop_refunds"], reports.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("--server-metric shop_refunds: {url} has no metric shop_refunds (it has "))
    );

    // The gRPC port answers, but not in the text format: HTTP/2 only, to an HTTP/1.1 scrape.
    let grpc = format!("http://{}/metrics", shop.target());
    let output = run(&path, &shop.target(), &["--server-metrics", &grpc], reports.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains(&format!("--server-metrics {grpc}: ")), "{}", text(&output));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = run(&path, &shop.target(), &["--server-metrics", &format!("http://{closed}/metrics")], reports.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains(&format!("--server-metrics http://{closed}/metrics: ")), "{}", text(&output));
    assert_eq!(shop.counts()["calls"], 0);
    assert!(!reports.path().join("place").exists(), "no run directory for a run that did not start");
}

#[test]
fn a_server_pid_that_is_no_process_is_a_usage_error() {
    let reports = tempfile::tempdir().unwrap();
    let path = scenario(reports.path(), "place", "reused", "");
    let output = run(&path, "127.0.0.1:9", &["--server-pid", "4000000"], reports.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--server-pid 4000000: no such process"), "{}", text(&output));
}

#[test]
fn a_bad_proto_json_or_metadata_is_a_usage_error_naming_it_and_nothing_runs() {
    let reports = tempfile::tempdir().unwrap();
    let path = scenario(reports.path(), "place", "reused", "");
    let protos = root().join("peers/python/protos");
    let broken = reports.path().join("broken.proto");
    std::fs::write(&broken, "syntax = \"proto3\";\nmessage Order { string customer = 1 }\n").unwrap();
    let orders = protos.join("shop/v1/orders.proto");
    let (orders, protos) = (orders.to_str().unwrap(), protos.to_str().unwrap());
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--call", "shop.v1.Orders/Place", "--proto", broken.to_str().unwrap()], "--proto: broken.proto:2:"),
        (
            vec![
                "--call",
                "shop.v1.Orders/Place",
                "--proto",
                orders,
                "--import-paths",
                protos,
                "-d",
                r#"{"gift": "yes"}"#,
            ],
            "--data: not a shop.v1.Order: field `gift`: ",
        ),
        (
            vec!["--call", "shop.v1.Orders/Place", "--proto", orders, "--import-paths", protos, "-m", r#"["x"]"#],
            "--metadata",
        ),
        (
            vec!["--call", "shop.v1.Orders/Import", "--proto", orders, "--import-paths", protos],
            "--call: shop.v1.Orders/Import is client-streaming",
        ),
    ];
    for (flags, said) in cases {
        let mut args = vec!["run", path.to_str().unwrap()];
        args.extend(flags);
        let output = crate::common::loadgen(&args, reports.path(), &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(text(&output).contains(said), "{args:?}: {}", text(&output));
    }
    assert!(!reports.path().join("place").exists(), "nothing ran");
}
