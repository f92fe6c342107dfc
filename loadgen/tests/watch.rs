//! `loadgen watch` on processes the harness did not write: a command it
//! starts, a pid it attaches to, and one that exits under it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn watch(args: &[&str], reports: &Path) -> Output {
    Command::new(LOADGEN).arg("watch").arg("--reports-dir").arg(reports).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn summary(reports: &Path, name: &str) -> serde_json::Value {
    let path = reports.join(name).join("latest").join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn a_started_command_gets_a_complete_flat_report() {
    let dir = tempfile::tempdir().unwrap();
    let output = watch(&["--", "sleep", "2"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sleep");
    assert_eq!(s["ended_by"], "process_exited");
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["verdict"]["kind"], "no-leak", "{s}");
    assert!(s["samples"].as_u64().unwrap() >= 15, "{s}");
    let run = dir.path().join("watch-sleep").join("latest");
    for file in ["samples.jsonl", "memory.png", "memory.svg", "report.md", "command.log"] {
        assert!(run.join(file).is_file(), "{file} is missing");
    }
    let lines = std::fs::read_to_string(run.join("samples.jsonl")).unwrap();
    assert_eq!(lines.lines().count() as u64, s["samples"].as_u64().unwrap(), "one line per sample");
    assert!(std::fs::read_to_string(run.join("report.md")).unwrap().contains("## Verdict: NO LEAK"));
}

#[test]
fn a_pid_that_exits_mid_watch_ends_it_with_what_was_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleeper = Command::new("sleep").arg("1.5").spawn().unwrap();
    let started = Instant::now();
    let output = watch(&["--pid", &sleeper.id().to_string(), "--duration", "30s"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(started.elapsed() < Duration::from_secs(10), "the watch did not notice the exit");
    sleeper.wait().unwrap();
    let s = summary(dir.path(), "watch-sleep");
    assert_eq!(s["ended_by"], "process_exited");
    assert!(s["command"].is_null(), "a --pid is not a command the watch started");
    assert!(s["samples"].as_u64().unwrap() >= 5, "{s}");
}

#[test]
fn a_command_still_running_at_the_end_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = watch(&["--duration", "1s", "--", "sleep", "60"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = summary(dir.path(), "watch-sleep");
    assert_eq!(s["ended_by"], "duration");
    let pid = s["pid"].as_u64().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the started command was left running");
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
}

#[test]
fn progress_lines_turn_the_verdict_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for n in 10 20 30 40 50 60 70 80 90 100 110 120 130 140 150; do \
                  echo leaklab-progress ok=$n failed=1; sleep 0.1; done; sleep 0.5";
    let output = watch(&["--interval", "50ms", "--", "sh", "-c", script], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "watch-sh");
    assert_eq!(s["requests"]["ok"], 150, "{s}");
    assert_eq!(s["requests"]["failed"], 1);
    assert_eq!(s["verdict"]["per"], "request", "{s}");
    let log = std::fs::read_to_string(dir.path().join("watch-sh/latest/command.log")).unwrap();
    assert!(log.contains("leaklab-progress ok=150 failed=1"), "the command's output is kept");
}
