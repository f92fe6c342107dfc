//! From the symptom to the lines of code in Node, Python and Java: each runtime's app-shaped peer
//! (three handlers that build a client per call through a shared helper, one sharing, one closing its
//! own) drives its own load and exits two seconds later, watched with `--call-sites`. Its profiles,
//! kept at checkpoints or left at exit, still name the three callers; and a runtime that leaklab cannot
//! profile gets a note saying why, and its report.

use std::path::Path;
use std::process::Command;

use crate::common::{LOADGEN, ToyServer, peer, schema_errors, summary, text};

/// Watches `command` (with `{addr}` filled in) with `--call-sites` and returns its summary.
fn watch(dir: &Path, name: &str, command: &[&str]) -> serde_json::Value {
    let server = ToyServer::start();
    let argv: Vec<String> = command.iter().map(|arg| arg.replace("{addr}", &server.address)).collect();
    let output = Command::new(LOADGEN)
        .args(["watch", "--call-sites", "--duration", "90s", "--warmup", "1s", "--reports-dir"])
        .arg(dir)
        .arg("--")
        .args(&argv)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir, name);
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
    s
}

/// The process ended its own load and exited; its profiles name the three leaking callers through the
/// helper, ranked, each count in the ratio of its leak (every request, 2nd, 4th: 4 : 2 : 1) within 25%.
fn the_three_leaking_callers(s: &serde_json::Value, runtime: &str, names: [&str; 3], helper: &str) {
    assert_eq!(s["stopped_by"], "process_exited", "{}", s["command"]);
    let notes = s["notes"].to_string();
    assert!(!notes.contains("profile_fetch_failed") && !notes.contains("call_sites_unavailable"), "{notes}");
    let profiles = &s["profiles"];
    assert_eq!(profiles["runtime"], runtime, "{profiles}");
    let sites = profiles["call_sites"].as_array().unwrap_or_else(|| panic!("no call sites: {profiles}"));
    let listed: Vec<&str> = sites.iter().map(|site| site["function"].as_str().unwrap()).collect();
    assert_eq!(listed, names, "{profiles}");
    assert!(sites.iter().all(|site| site["through"] == helper && site["line"].as_i64() > Some(0)), "{profiles}");
    let count = |i: usize| sites[i]["inuse_objects_growth"].as_f64().unwrap();
    let (every, half, quarter) = (count(0), count(1), count(2));
    assert!((every / quarter / 4.0 - 1.0).abs() < 0.25 && (half / quarter / 2.0 - 1.0).abs() < 0.25, "{profiles}");
}

#[test]
fn a_node_service_that_exits_after_its_load_still_names_its_leaking_callers() {
    let script = peer("target/peers/node/app/app.js");
    let script = script.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let command =
        ["node", script, "--addr", "{addr}", "--mode", "app", "--requests", "800", "--rate", "200", "--hold", "2"];
    let s = watch(dir.path(), "watch-node", &command);
    the_three_leaking_callers(&s, "v8", ["chargePayment", "reserveStock", "quoteShipping"], "newClient");
    // The line of the helper's call, found in the source: V8 gives each frame its function's first line.
    assert_eq!(s["profiles"]["call_sites"][0]["line"], 15, "{}", s["profiles"]);
    let run = dir.path().join("watch-node").join("latest");
    assert!(run.join("profile-client-end.heapprofile").is_file(), "the profile Chrome DevTools opens");
}

#[test]
fn a_python_service_that_exits_after_its_load_leaves_its_last_snapshot_for_its_callers() {
    let python = peer("target/peers/python/app/app.py");
    let venv = crate::common::root().join("target/peers/python-venv/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let command = [
        venv.to_str().unwrap(),
        python.to_str().unwrap(),
        "--addr",
        "{addr}",
        "--mode",
        "app",
        "--requests",
        "320",
        "--rate",
        "80",
        "--hold",
        "2",
    ];
    let s = watch(dir.path(), "watch-python", &command);
    the_three_leaking_callers(&s, "cpython", ["charge_payment", "reserve_stock", "quote_shipping"], "new_stub");
    let run = dir.path().join("watch-python").join("latest");
    assert!(run.join("profile-client-exit.json").is_file(), "the agent's snapshot at exit");
}

#[test]
fn a_java_service_that_exits_after_its_load_still_names_its_leaking_callers() {
    let launcher = peer("target/peers/java/shop-app");
    let dir = tempfile::tempdir().unwrap();
    let command = [
        launcher.to_str().unwrap(),
        "--addr",
        "{addr}",
        "--mode",
        "app",
        "--requests",
        "1500",
        "--rate",
        "300",
        "--hold",
        "2",
    ];
    let s = watch(dir.path(), "watch-shop-app", &command);
    the_three_leaking_callers(
        &s,
        "jvm",
        ["shop.Payments.charge", "shop.Inventory.reserve", "shop.Shipping.quote"],
        "shop.Clients.newChannel",
    );
    let growth = s["profiles"]["growth"].to_string();
    assert!(growth.contains("io.grpc.internal.ManagedChannelImpl"), "the class histograms' growth: {growth}");
}

#[test]
fn a_process_leaklab_cannot_profile_gets_a_note_and_its_report() {
    let dir = tempfile::tempdir().unwrap();
    // Isolated mode (-I) ignores PYTHONPATH: the agent is never loaded, so nothing answers.
    let script = "import time\nfor i in range(40):\n    print(f'leaklab-progress ok={i * 10} failed=0', flush=True)\n    time.sleep(0.1)\n";
    let s = watch(dir.path(), "watch-python3", &["python3", "-I", "-c", script]);
    let notes = s["notes"].as_array().unwrap();
    let failed = notes.iter().find(|n| n["note"] == "profile_fetch_failed").unwrap_or_else(|| panic!("{notes:?}"));
    assert!(failed["error"].as_str().unwrap().contains("did not answer"), "{failed}");
    assert!(s["profiles"].is_null());
    let report = std::fs::read_to_string(dir.path().join("watch-python3/latest/report.md")).unwrap();
    assert!(report.contains("profile agent"), "{report}");

    // A running process that is no JVM: its agent would have to be loaded at its start.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let output = Command::new(LOADGEN)
        .args(["watch", "--call-sites", "--duration", "2s", "--warmup", "1s", "--reports-dir"])
        .arg(dir.path())
        .args(["--pid", &sleeper.id().to_string()])
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sleep");
    let note = s["notes"].as_array().unwrap().iter().find(|n| n["note"] == "call_sites_unavailable").cloned();
    assert!(note.is_some_and(|n| n["reason"].as_str().unwrap().contains("--pid")), "{}", s["notes"]);
}
