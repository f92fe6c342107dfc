//! The `loadgen` binary as CI and `git bisect run` use it: exit codes that
//! tell a met expectation from a contradicted one, and `compare` writing its
//! side-by-side report. Small runs against the real server binary on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn server_bin() -> PathBuf {
    let bin = Path::new(LOADGEN).with_file_name("leaklab-server");
    assert!(bin.is_file(), "{} is missing: run `make test`, which builds it first", bin.display());
    bin
}

/// A small scenario file: `policy` with the client expected to be `expect`.
fn scenario(dir: &Path, name: &str, policy: &str, expect: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "description = \"{name}\"\n[client]\npolicy = \"{policy}\"\n\
         [load]\nconcurrency = 2\nrequests = 700\nwarmup_requests = 100\nrounds = 6\n\
         [sampling]\ninterval = \"50ms\"\ncooldown = \"100ms\"\n[expect]\nclient = \"{expect}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn loadgen(args: &[&str], reports: &Path, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(LOADGEN);
    command.args(args).arg("--reports-dir").arg(reports).arg("--server-bin").arg(server_bin()).arg("--quiet");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn a_met_expectation_exits_0_and_a_contradicted_one_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let met = scenario(dir.path(), "leak-expected", "leak", "leak");
    let output = loadgen(&["run", met.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains("verdict client: LEAK"), "{}", text(&output));

    let flipped = scenario(dir.path(), "leak-flipped", "leak", "no-leak");
    let output = loadgen(&["run", flipped.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("expected no-leak ✖"), "{}", text(&output));
}

#[test]
fn a_missing_baseline_is_a_usage_error_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "s", "reused", "no-leak");
    let output = loadgen(&["run", path.to_str().unwrap(), "--baseline", "nope"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("no baseline \"nope\" for scenario \"s\""), "{}", text(&output));
    assert!(!dir.path().join("s").exists(), "nothing ran");
}

#[test]
fn compare_writes_its_report_and_fails_on_a_contradiction() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).unwrap();
    let leak = scenario(&scenarios, "leak", "leak", "leak");
    let flipped = scenario(&scenarios, "flipped", "leak", "no-leak");
    let step_summary = dir.path().join("step-summary.md");
    let reports = dir.path().join("reports");
    let output = loadgen(
        &["compare", leak.to_str().unwrap(), flipped.to_str().unwrap()],
        &reports,
        &[("GITHUB_STEP_SUMMARY", &step_summary)],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));

    let compare = std::fs::canonicalize(reports.join("compare/latest")).unwrap();
    for file in ["compare.md", "compare.json", "compare.png", "compare.svg"] {
        assert!(compare.join(file).is_file(), "{file} missing");
    }
    let markdown = std::fs::read_to_string(compare.join("compare.md")).unwrap();
    assert!(markdown.contains("an expectation is contradicted ✖"), "{markdown}");
    assert!(markdown.contains("| leak | 700 |") && markdown.contains("| flipped | 700 |"), "{markdown}");
    assert_eq!(std::fs::read_to_string(&step_summary).unwrap().trim(), markdown.trim());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(compare.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["outcome"], "contradicted");
    assert_eq!(json["rows"][0]["client"]["kind"], "leak");
    assert_eq!(json["rows"][0]["outcome"], "met");
    assert_eq!(json["rows"][1]["outcome"], "contradicted");
    // Each scenario ran in its own process and left its own report.
    assert!(
        reports.join("leak/latest/summary.json").is_file() && reports.join("flipped/latest/summary.json").is_file()
    );
}

#[test]
fn a_baseline_is_saved_and_a_later_run_compared_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "base", "reused", "no-leak");
    let output = loadgen(&["run", path.to_str().unwrap(), "--save-baseline", "main"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(dir.path().join("baselines/main/base.json").is_file());
    let output = loadgen(&["run", path.to_str().unwrap(), "--baseline", "main"], dir.path(), &[]);
    assert!(matches!(output.status.code(), Some(0 | 3)), "{}", text(&output));
    assert!(text(&output).contains("baseline \"main\": ✔ held"), "{}", text(&output));
    assert!(text(&output).contains("throughput:"), "{}", text(&output));
}

#[test]
fn a_cap_stops_the_load_with_its_own_exit_code_and_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "capped", "leak", "leak");
    // Every leaked request holds a descriptor: 300 are reached long before the 700 planned requests.
    // Caps are checked at every sample (50 ms here), so the rate keeps the overshoot small.
    let output = loadgen(&["run", path.to_str().unwrap(), "--cap-fds", "300", "--rate", "1000"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    assert!(text(&output).contains("Stopped at cap: client_fds, at 3"), "{}", text(&output));
    let run = dir.path().join("capped/latest");
    for file in ["summary.json", "samples.jsonl", "memory.png", "memory.svg", "report.md"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stopped_by"], "cap");
    assert_eq!(summary["stopped_at"]["which"], "client_fds");
    assert!(summary["requests"]["ok"].as_u64().unwrap() < 700);
    assert!(summary["samples"]["count"].as_u64().unwrap() > 3, "the cool-down was sampled");
}
