//! Garbage-collected runtimes judged on the heap they keep alive: the Java
//! and Node peers, watched with no flag but the command, against the toy
//! server. Each peer also measures itself (`--report-live-heap`: its heap
//! after its own full collection, as the counter `live_heap_bytes`), and leaklab's
//! per-request figure, read from outside, must agree with it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{LOADGEN, ToyServer, peer, schema_errors, summary, text};

/// Whether `program` runs here; a test that needs it says it skipped.
fn runs(program: &str, test: &str) -> bool {
    let runs = Command::new(program).arg("-version").output().is_ok()
        || Command::new(program).arg("--version").output().is_ok();
    if !runs {
        eprintln!("skipped {test}: `{program}` is not installed (make peers installs it)");
    }
    runs
}

/// Watches `command` (with `{addr}` filled in) and returns its summary.
fn watch(dir: &Path, name: &str, command: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let server = ToyServer::start();
    let argv: Vec<String> = command.iter().map(|arg| arg.replace("{addr}", &server.address)).collect();
    let output = Command::new(LOADGEN)
        .args(["watch", "--duration", "60s", "--warmup", "1s", "--reports-dir"])
        .arg(dir)
        .arg("--")
        .args(&argv)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir, name);
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
    s
}

/// The verdict is on the live heap, of `kind`, and its slope within 20% (or 512 B, for a flat heap) of
/// the one the process measured of itself.
fn judged_as_it_measures_itself(s: &serde_json::Value, kind: &str) {
    let verdict = &s["verdict"]["client"];
    assert_eq!(verdict["quantity"], "live_heap_bytes", "{verdict}");
    assert_eq!(verdict["kind"], kind, "{verdict}");
    assert_eq!(s["requests"]["failed"], 0, "{}", s["requests"]);
    let outside = verdict["slope_bytes_per_request"].as_f64().unwrap();
    let inside = s["client"]["counters"]["live_heap_bytes"]["per_request"].as_f64().unwrap();
    let allowed = (0.2 * inside.abs()).max(512.0);
    assert!((outside - inside).abs() <= allowed, "leaklab {outside} B/request, the process {inside}: {verdict}");
    assert!(s["client"]["runtime_heap"]["readings"].as_u64().unwrap() >= 10, "{}", s["client"]["runtime_heap"]);
}

/// The memory outside the heap is judged on its own, and of `kind`; for a leak, within 20% of what the
/// process measured of itself, and it decides the process's verdict.
fn outside_the_heap_judged(s: &serde_json::Value, kind: &str) {
    let native = &s["verdict"]["client_native"];
    assert_eq!((&native["quantity"], &native["kind"]), (&"native_bytes".into(), &kind.into()), "{native}");
    if kind == "leak" {
        let outside = native["slope_bytes_per_request"].as_f64().unwrap();
        let inside = s["client"]["counters"]["native_bytes"]["per_request"].as_f64().unwrap();
        assert!((outside - inside).abs() <= 0.2 * inside, "leaklab {outside} B/request, the process {inside}");
        let client = &s["verdict"]["client"];
        assert_eq!((&client["kind"], &client["reasons"][0]["reason"]), (&"leak".into(), &"native_decided".into()));
    }
}

/// A client that keeps 64 KiB per request outside its runtime's heap, a small object in it: a LEAK that
/// only the memory outside the heap shows.
fn buffer_leak(s: &serde_json::Value) {
    assert_eq!(s["verdict"]["client"]["quantity"], "live_heap_bytes", "{}", s["verdict"]["client"]);
    assert_eq!(s["requests"]["failed"], 0, "{}", s["requests"]);
    outside_the_heap_judged(s, "leak");
    let heap = s["verdict"]["client"]["slope_bytes_per_request"].as_f64().unwrap();
    assert!(heap < 2048.0, "the heap holds a small object per buffer, not {heap} B");
}

#[test]
fn a_grpc_java_client_is_judged_on_what_its_jvm_keeps_alive() {
    if !runs("java", "a_grpc_java_client_is_judged_on_what_its_jvm_keeps_alive") {
        return;
    }
    let client = peer("target/peers/java/echo-client");
    let client = client.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (mode, kind) in [("leak", "leak"), ("reused", "no-leak"), ("buffer-leak", "leak")] {
        let command = [client, "--addr", "{addr}", "--mode", mode, "--requests", "3000", "--rate", "400"];
        let s = watch(dir.path(), "watch-echo-client", &[&command[..], &["--report-live-heap"]].concat(), &[]);
        assert_eq!(s["client"]["runtime_heap"]["runtime"], "jvm", "{}", s["client"]);
        let report = std::fs::read_to_string(dir.path().join("watch-echo-client/latest/report.md")).unwrap();
        assert!(report.contains("Judged on the live heap the runtime reported"), "{report}");
        if mode == "buffer-leak" {
            buffer_leak(&s);
            assert!(report.contains("| client, outside the heap | **LEAK** | Native Memory Tracking"), "{report}");
            continue;
        }
        judged_as_it_measures_itself(&s, kind);
        // A correct client's memory outside the heap is flat: the JIT's and class loading's are not counted.
        if mode == "reused" {
            outside_the_heap_judged(&s, "no-leak");
        }
    }
}

#[test]
fn a_jvm_that_refuses_to_attach_is_judged_on_its_rss_and_the_report_says_why() {
    if !runs("java", "a_jvm_that_refuses_to_attach_is_judged_on_its_rss_and_the_report_says_why") {
        return;
    }
    let client = peer("target/peers/java/echo-client");
    let dir = tempfile::tempdir().unwrap();
    let command =
        [client.to_str().unwrap(), "--addr", "{addr}", "--mode", "reused", "--requests", "1000", "--rate", "400"];
    let s = watch(dir.path(), "watch-echo-client", &command, &[("JDK_JAVA_OPTIONS", "-XX:+DisableAttachMechanism")]);
    assert_eq!(s["verdict"]["client"]["quantity"], "rss_anon_bytes", "{}", s["verdict"]["client"]);
    let note = s["notes"].as_array().unwrap().iter().find(|note| note["note"] == "runtime_heap_unread");
    let note = note.unwrap_or_else(|| panic!("no runtime_heap_unread note: {}", s["notes"]));
    assert_eq!(note["runtime"], "jvm");
    assert!(note["error"].as_str().unwrap().contains("DisableAttachMechanism"), "{note}");
    let report = std::fs::read_to_string(dir.path().join("watch-echo-client/latest/report.md")).unwrap();
    assert!(report.contains("its heap could not be read"), "{report}");
    assert!(s["verdict"]["client_native"].is_null(), "{}", s["verdict"]);
    // The trigger file leaklab made in the JVM's directory is gone, though the JVM exited first.
    let left: Vec<_> = std::fs::read_dir(crate::common::root()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|name| name.to_string_lossy().starts_with(".attach_pid")), "{left:?}");
}

#[test]
fn a_grpc_js_client_is_judged_on_what_v8_keeps_alive_without_expose_gc_or_warm_up() {
    if !runs("node", "a_grpc_js_client_is_judged_on_what_v8_keeps_alive_without_expose_gc_or_warm_up") {
        return;
    }
    let script = peer("target/peers/node/echo_client.js");
    let script = script.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (mode, kind) in [("leak", "leak"), ("reused", "no-leak"), ("buffer-leak", "leak")] {
        // --expose-gc only for the peer's own measurement, which collects before each line.
        let command =
            ["node", "--expose-gc", script, "--addr", "{addr}", "--mode", mode, "--requests", "4000", "--rate", "400"];
        let s = watch(dir.path(), "watch-node", &[&command[..], &["--report-live-heap"]].concat(), &[]);
        assert_eq!(s["client"]["runtime_heap"]["runtime"], "v8", "{}", s["client"]);
        if mode == "buffer-leak" {
            buffer_leak(&s);
            continue;
        }
        judged_as_it_measures_itself(&s, kind);
        if mode == "reused" {
            outside_the_heap_judged(&s, "no-leak");
        }
    }
}

#[test]
fn a_running_jvm_without_native_memory_tracking_is_judged_on_its_heap_and_the_note_says_what_was_not() {
    if !runs(
        "java",
        "a_running_jvm_without_native_memory_tracking_is_judged_on_its_heap_and_the_note_says_what_was_not",
    ) {
        return;
    }
    let client = peer("target/peers/java/echo-client");
    let server = ToyServer::start();
    let args = ["--addr", &server.address, "--mode", "reused", "--requests", "2000", "--rate", "400", "--hold", "0"];
    // Started by the test, not by leaklab: no JDK_JAVA_OPTIONS of leaklab's, so no tracking.
    let mut jvm = Command::new(&client).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(LOADGEN)
        .args(["watch", "--pid", &jvm.id().to_string(), "--duration", "60s", "--warmup", "1s", "--reports-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    jvm.wait().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let name = std::fs::read_dir(dir.path()).unwrap().flatten().next().unwrap().file_name();
    let s = summary(dir.path(), name.to_str().unwrap());
    assert_eq!(s["verdict"]["client"]["quantity"], "live_heap_bytes", "{}", s["verdict"]["client"]);
    assert!(s["verdict"]["client_native"].is_null(), "{}", s["verdict"]);
    let note = s["notes"].as_array().unwrap().iter().find(|note| note["note"] == "native_untracked");
    let note = note.unwrap_or_else(|| panic!("no native_untracked note: {}", s["notes"]));
    assert_eq!(note["runtime"], "jvm");
    assert!(note["reason"].as_str().unwrap().contains("-XX:NativeMemoryTracking=summary"), "{note}");
}
