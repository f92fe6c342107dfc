//! `loadgen watch` on processes the harness did not write: a command it
//! starts, a pid it attaches to, and one that exits under it. Each ends on
//! the event it waits for; the summary says which one.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{LOADGEN, gone, schema_errors, summary, text};

fn watch(args: &[&str], reports: &Path) -> Output {
    Command::new(LOADGEN).arg("watch").arg("--reports-dir").arg(reports).args(args).output().unwrap()
}

#[test]
fn a_started_command_gets_a_complete_flat_report() {
    let dir = tempfile::tempdir().unwrap();
    let output = watch(&["--", "sleep", "3"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sleep");
    assert_eq!(s["stopped_by"], "process_exited");
    assert_eq!(s["command"]["exit_code"], 0);
    assert_eq!(s["command"]["argv"], serde_json::json!(["sleep", "3"]));
    assert_eq!(s["verdict"]["client"]["kind"], "no-leak", "{s}");
    assert!(s["samples"]["count"].as_u64().unwrap() >= 20, "{s}");
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
    let run = dir.path().join("watch-sleep").join("latest");
    for file in ["samples.jsonl", "memory.png", "memory.svg", "report.md", "command.log", "run.json"] {
        assert!(run.join(file).is_file(), "{file} is missing");
    }
    let lines = std::fs::read_to_string(run.join("samples.jsonl")).unwrap();
    assert_eq!(lines.lines().count() as u64, s["samples"]["count"].as_u64().unwrap(), "one line per sample");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("| client | **NO LEAK** | anonymous RSS, per s |"), "{report}");
    assert!(text(&output).contains("verdict client: NO LEAK — anonymous RSS"), "{}", text(&output));
}

#[test]
fn a_pid_that_exits_mid_watch_ends_it_with_what_was_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleeper = Command::new("sleep").arg("1.5").spawn().unwrap();
    // Waiting 30 s would end it by duration; the process's exit ends it first.
    let output = watch(&["--pid", &sleeper.id().to_string(), "--duration", "30s"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    sleeper.wait().unwrap();
    let s = summary(dir.path(), "watch-sleep");
    assert_eq!(s["stopped_by"], "process_exited");
    assert!(s["command"]["argv"].is_null(), "a --pid is not a command the watch started");
    assert!(s["command"]["exit_code"].is_null(), "only its parent learns a --pid's exit code");
    assert!(s["samples"]["count"].as_u64().unwrap() >= 5, "{s}");
}

#[test]
fn a_command_still_running_at_the_end_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let output = watch(&["--duration", "1500ms", "--", "sleep", "60"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sleep");
    assert_eq!(s["stopped_by"], "duration");
    let pid = s["command"]["pid"].as_u64().unwrap() as u32;
    assert!(gone(pid), "the started command was left running");
}

#[test]
fn bad_targets_are_usage_errors_that_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = watch(&["--pid", "4000000"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("--pid 4000000: no such process"), "{}", text(&output));
    let output = watch(&["--", "/nonexistent/program"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("cannot start \"/nonexistent/program\""), "{}", text(&output));
    let output = watch(&["--interval", "1ms", "--", "true"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("--interval"), "{}", text(&output));
    let output = watch(&["--channelz", "localhost", "--", "true"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("--channelz") && text(&output).contains("is not HOST:PORT"), "{}", text(&output));
    let me = std::process::id().to_string();
    let output = watch(&["--pid", &me, "--channelz", "{channelz_addr}"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("--channelz: {channelz_addr} is a port for a command"), "{}", text(&output));
}

#[test]
fn a_command_gone_before_its_first_sample_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // `exit 3` usually ends before the first sample; when the sampler wins the race, the run is judged.
    let output = watch(&["--", "sh", "-c", "echo said; exit 3"], dir.path());
    let said = text(&output);
    assert!(!said.contains("panicked"), "{said}");
    match output.status.code() {
        Some(2) => {
            assert!(said.contains("exited with code 3 before its first sample"), "{said}");
            let log = dir.path().join("watch-sh").join("latest").join("command.log");
            assert_eq!(std::fs::read_to_string(&log).unwrap(), "said\n", "its output is kept");
        }
        Some(0) => assert_eq!(summary(dir.path(), "watch-sh")["command"]["exit_code"], 3),
        code => panic!("exit code {code:?}: {said}"),
    }
}

#[test]
fn progress_lines_turn_the_verdict_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for n in 10 20 30 40 50 60 70 80 90 100 110 120 130 140 150; do \
                  echo leaklab-progress ok=$n failed=1; sleep 0.1; done; sleep 0.5";
    let output = watch(&["--interval", "50ms", "--warmup", "200ms", "--", "sh", "-c", script], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sh");
    assert_eq!(s["requests"]["ok"], 150, "{s}");
    assert_eq!(s["requests"]["failed"], 1);
    assert_eq!(s["verdict"]["client"]["axis"], "request", "{s}");
    assert!(s["verdict"]["client"]["slope_bytes_per_request"].is_number(), "{s}");
    let log = std::fs::read_to_string(dir.path().join("watch-sh/latest/command.log")).unwrap();
    assert!(log.contains("leaklab-progress ok=150 failed=1"), "the command's output is kept");
}

#[test]
fn counters_on_progress_lines_are_kept_and_a_malformed_line_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    // Goroutines 4 per request on top of 5; two malformed lines among them, which must not stop the watch.
    let script = "for n in 10 20 30 40 50 60 70 80 90 100 110 120; do \
                  echo leaklab-progress ok=$n failed=0 goroutines=$((5 + 4 * n)); \
                  [ $n = 40 ] && echo leaklab-progress ok=$n goroutines=many; \
                  [ $n = 80 ] && echo leaklab-progress ok=$n Goroutines=1; \
                  sleep 0.1; done; sleep 0.5";
    let output = watch(&["--interval", "50ms", "--warmup", "200ms", "--", "sh", "-c", script], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sh");
    assert_eq!(s["requests"]["ok"], 120, "the watch went on to the end: {s}");
    let goroutines = &s["client"]["counters"]["goroutines"];
    // From its first line on: samples before it have no counter.
    assert_eq!((&goroutines["start"], &goroutines["peak"], &goroutines["end"]), (&45.into(), &485.into(), &485.into()));
    let per_request = goroutines["per_request"].as_f64().unwrap();
    assert!((per_request - 4.0).abs() < 0.01, "{goroutines}");
    let malformed: Vec<&serde_json::Value> =
        s["notes"].as_array().unwrap().iter().filter(|n| n["note"] == "malformed_progress").collect();
    assert_eq!(malformed.len(), 1, "reported once: {malformed:?}");
    assert_eq!(malformed[0]["lines"], 2);
    assert_eq!(malformed[0]["line"], "leaklab-progress ok=40 goroutines=many");
    assert_eq!(malformed[0]["reason"], "goroutines=many: not a whole number");
    let samples = std::fs::read_to_string(dir.path().join("watch-sh/latest/samples.jsonl")).unwrap();
    assert!(
        samples.lines().any(|line| line.contains("\"counters\":{\"goroutines\":")),
        "in every sample after the first line"
    );
    let report = std::fs::read_to_string(dir.path().join("watch-sh/latest/report.md")).unwrap();
    assert!(report.contains("| `goroutines` | 45 | 485 | 485 | +4.00 |"), "{report}");
    assert!(text(&output).contains("client counter goroutines: 45 → 485 (peak 485), +4.00 per request"));
    // Judged with the memory: a count that only ever rose, whatever the memory says.
    let judged = &s["verdict"]["client"]["counters"]["goroutines"];
    assert!(judged["increases"].as_u64().unwrap() >= 5 && judged["decreases"] == 0, "{judged}");
    assert!(judged["p_value"].as_f64().unwrap() < 0.05, "{judged}");
    let reasons = s["verdict"]["client"]["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r["reason"] == "counter_rose" && r["name"] == "goroutines"), "{reasons:?}");
    assert!(report.contains("Goroutines rose in"), "{report}");
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
}

#[test]
fn a_warmup_in_requests_lasts_until_the_client_reported_them() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for n in 10 20 30 40 50 60 70 80 90 100 110 120 130 140 150 160 170 180; do \
                  echo leaklab-progress ok=$n; sleep 0.1; done; sleep 0.3";
    let flags = ["--interval", "50ms", "--warmup", "100ms", "--warmup-requests", "100", "--", "sh", "-c", script];
    let output = watch(&flags, dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sh");
    assert_eq!(s["command"]["warmup_requests"], 100);
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("watch-sh/latest/samples.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let requests = |phase: &str| -> Vec<u64> {
        samples.iter().filter(|x| x["phase"] == phase).map(|x| x["requests_ok"].as_u64().unwrap()).collect()
    };
    let (warmup, load) = (requests("warmup"), requests("load"));
    assert!(!load.is_empty() && load.iter().all(|&ok| ok >= 100), "judged only from the 100th request: {load:?}");
    assert!(warmup.iter().any(|&ok| ok >= 50), "the warm-up outlasted its 100 ms: {warmup:?}");
    assert!(s["verdict"]["client"]["points"][0]["at"].as_f64().unwrap() >= 100.0, "{}", s["verdict"]["client"]);
}

#[test]
fn a_profile_url_that_does_not_answer_is_a_note_and_the_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/debug/pprof");
    let output = watch(&["--duration", "2s", "--warmup", "500ms", "--pprof", &url, "--", "sleep", "5"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sleep");
    assert!(s["profiles"].is_null(), "nothing to compare");
    let failed: Vec<&serde_json::Value> =
        s["notes"].as_array().unwrap().iter().filter(|n| n["note"] == "profile_fetch_failed").collect();
    // Both profiles of the warm-up, each with the URL it asked and why it failed; without a base, the end's
    // are not asked for.
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|note| note["label"] == "warmup"), "{failed:?}");
    assert!(failed[0]["error"].as_str().unwrap().starts_with(&format!("{url}/goroutine: ")), "{failed:?}");
    let report = std::fs::read_to_string(dir.path().join("watch-sleep").join("latest").join("report.md")).unwrap();
    assert!(report.contains("The client's warmup profile could not be fetched"), "{report}");
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));

    let output = watch(&["--pprof", "localhost:6060", "--", "true"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("'localhost:6060' for '--pprof <URL>': expected http://HOST:PORT/debug/pprof"), "{said}");
}
