//! The `loadgen` binary as CI and `git bisect run` use it: exit codes that
//! tell a met expectation from a contradicted one, and `compare` writing its
//! side-by-side report. Small runs against the real server binary on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{LOADGEN, gone, loadgen, scenario, server_bin, text};

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
    // 600 measured requests move by a few hundred bytes per request from run to run on a busy
    // machine; a wide tolerance keeps this test about saving and comparing, not about noise.
    let text_with_tolerance = std::fs::read_to_string(&path).unwrap() + "[verdict]\ntolerance = 4096\n";
    std::fs::write(&path, text_with_tolerance).unwrap();
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

/// Starts `loadgen run` on a 400 requests/s leak in the background and waits
/// until it has sampled for a while; returns the child and its run directory.
fn start_leak(reports: &Path) -> (std::process::Child, PathBuf) {
    let server_bin = server_bin();
    let path = scenario(reports, "victim", "leak", "leak");
    let child = Command::new(LOADGEN)
        .args(["run", path.to_str().unwrap(), "--requests", "4000", "--rate", "400", "--quiet", "--reports-dir"])
        .arg(reports)
        .arg("--server-bin")
        .arg(server_bin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = reports.join("victim/latest");
    // Wait for the load to be well under way: more than a dozen samples on disk (the bound guards against a hang).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(latest.join("samples.jsonl")).map_or(0, |t| t.lines().count());
        if lines > 12 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not start sampling");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, std::fs::canonicalize(latest).unwrap())
}

fn server_pid(run: &Path) -> u32 {
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    record["target"]["server_pid"].as_u64().unwrap() as u32
}

#[test]
fn sigint_mid_run_writes_the_partial_report_and_takes_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, run) = start_leak(dir.path());
    let server = server_pid(&run);
    // SAFETY: kill sends a signal to a child we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stopped_by"], "interrupted");
    let done = summary["requests"]["ok"].as_u64().unwrap();
    assert!(done > 0 && done < 4000, "{done} requests");
    assert!(run.join("memory.png").is_file() && run.join("report.md").is_file());
    assert!(gone(server), "server {server} outlived an interrupted run");
}

#[test]
fn after_kill_9_the_samples_are_readable_and_report_rebuilds_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, run) = start_leak(dir.path());
    let server = server_pid(&run);
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is flushed at exit.
    child.wait().unwrap();
    assert!(gone(server), "server {server} outlived its killed load generator");
    assert!(!run.join("summary.json").exists(), "a killed run writes no summary");

    // Every line written before the kill parses.
    let written = std::fs::read_to_string(run.join("samples.jsonl")).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert!(lines.len() > 12);
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    let output = Command::new(LOADGEN).arg("report").arg(&run).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    for file in ["summary.json", "memory.png", "memory.svg", "report.md"] {
        assert!(run.join(file).is_file(), "{file} not rebuilt");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stopped_by"], "unfinished");
    assert_eq!(summary["samples"]["count"].as_u64().unwrap() as usize, lines.len());
    assert!(summary["requests"]["ok"].as_u64().unwrap() > 0);
    assert!(summary["notes"].as_array().unwrap().iter().any(|note| note["note"] == "rebuilt"), "{}", summary["notes"]);
}

#[test]
fn a_heap_profiled_leak_names_its_growing_stacks_and_writes_pprof() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "profiled", "leak", "leak");
    let output = loadgen(&["run", path.to_str().unwrap(), "--heap-profile"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let run = dir.path().join("profiled/latest");
    for file in ["heap-warmup.client.heap", "heap-end.server.heap", "flamegraph.client.svg", "flamegraph.server.svg"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let samples = leaklab_engine::heap::pprof::read(&run.join("heap.pb.gz")).unwrap();
    assert!(!samples.is_empty(), "the pprof profile has samples");
    assert!(samples.iter().any(|(bytes, frames)| *bytes > 0 && !frames.is_empty()));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for process in ["client", "server"] {
        let top = summary["heap_profile"][process]["top"].as_array().unwrap();
        assert!(!top.is_empty(), "{process}: no growing stack");
        // A leaked connection's buffers are allocated by the HTTP/2 stack.
        let named = top.iter().any(|stack| {
            let stack = stack["stack"].as_str().unwrap();
            stack.contains("h2::") || stack.contains("hyper::") || stack.contains("tokio::")
        });
        assert!(named, "{process}: no h2, hyper or tokio frame in {top:?}");
        // The same call-site table as a Go process's: most of it under the process's own code.
        let sites = summary["heap_profile"][process]["call_sites"].as_array().unwrap();
        let crate_of = if process == "client" { "leaklab_engine::" } else { "leaklab_server::" };
        assert!(sites[0]["function"].as_str().unwrap().starts_with(crate_of), "{process}: {sites:?}");
        assert!(sites[0]["share"].as_f64().unwrap() > 0.5, "{process}: {sites:?}");
    }
    // The leak policy dials in one place: that is where the client's growth was allocated.
    let client_sites = &summary["heap_profile"]["client"]["call_sites"];
    assert_eq!(client_sites[0]["function"], "leaklab_engine::load::channels::Channels::call", "{client_sites}");
    assert!(std::fs::read_to_string(run.join("report.md")).unwrap().contains("## Where the memory is"));
}

#[test]
fn an_external_client_gets_the_server_address_and_its_expectation_judged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sleeper.toml");
    // A client that only sleeps: flat, so expecting a leak is contradicted (exit 1).
    let scenario_text = "description = \"d\"\n[external]\ncommand = [\"sh\", \"-c\", \"echo talking to {addr}; sleep 2\"]\n\
                duration = \"10s\"\nwarmup = \"100ms\"\n[expect]\nclient = \"leak\"\nserver = \"no-leak\"\n";
    std::fs::write(&path, scenario_text).unwrap();
    let output = loadgen(&["run", path.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    // Judged on its anonymous memory; its RSS is quoted beside it.
    assert!(text(&output).contains("verdict client: NO LEAK — anonymous RSS"), "{}", text(&output));
    assert!(text(&output).contains("client: RSS "), "{}", text(&output));
    let run = dir.path().join("sleeper/latest");
    let log = std::fs::read_to_string(run.join("command.log")).unwrap();
    assert!(log.starts_with("talking to 127.0.0.1:"), "{{addr}} was not replaced: {log}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["expectation_met"], false);
    assert_eq!(summary["verdict"]["client"]["quantity"], "rss_anon_bytes");
    let client = &summary["client"];
    let (anon, file, rss) =
        (&client["rss_anon_bytes"]["end"], &client["rss_file_bytes"]["end"], &client["rss_bytes"]["end"]);
    assert!(anon.as_u64().unwrap() > 0 && file.as_u64().unwrap() > 0, "{client}");
    assert!(anon.as_u64().unwrap() + file.as_u64().unwrap() <= rss.as_u64().unwrap() + (1 << 20), "{client}");
    assert_eq!(summary["verdict"]["server"]["kind"], "no-leak", "the server was started and watched too");
    assert_eq!((summary["kind"].as_str(), summary["outcome"].as_str()), (Some("external"), Some("contradicted")));
    assert!(run.join("server.log").is_file());
}

#[test]
fn compare_sets_an_external_client_beside_the_others_and_skips_an_unbuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).unwrap();
    scenario(&scenarios, "reused", "reused", "no-leak");
    let external = |name: &str, program: &str| {
        let text = format!(
            "description = \"d\"\n[external]\ncommand = [\"{program}\", \"-c\", \"echo leaklab-progress ok=10; sleep 1.5\"]\n\
             warmup = \"100ms\"\n[expect]\nclient = \"no-leak\"\nserver = \"no-leak\"\n"
        );
        std::fs::write(scenarios.join(format!("{name}.toml")), text).unwrap();
    };
    external("shell", "sh");
    external("unbuilt", "target/peers/not-built");
    let reports = dir.path().join("reports");
    let output = Command::new(LOADGEN)
        .args(["compare", "--quiet", "--scenarios-dir"])
        .arg(&scenarios)
        .arg("--reports-dir")
        .arg(&reports)
        .arg("--server-bin")
        .arg(server_bin())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let compare = std::fs::canonicalize(reports.join("compare/latest")).unwrap();
    let markdown = std::fs::read_to_string(compare.join("compare.md")).unwrap();
    assert!(markdown.contains("| shell † |"), "{markdown}");
    assert!(markdown.contains("| unbuilt | skipped: target/peers/not-built is not built"), "{markdown}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(compare.join("compare.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[1]["kind"], "external");
    assert!(rows[1]["latency_p99_us"].is_null(), "an external client's latency is not measured: {json}");
    assert_eq!(rows[1]["client"]["kind"], "no-leak", "{json}");
    assert_eq!(json["skipped"][0]["scenario"], "unbuilt");
}

/// A story of two small chapters (one heap-profiled) and one whose external client is not built.
fn small_story(dir: &Path) -> PathBuf {
    let scenarios = dir.join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    scenario(&scenarios, "reused", "reused", "no-leak");
    scenario(&scenarios, "leak", "leak", "leak");
    std::fs::write(
        scenarios.join("go-leak.toml"),
        "description = \"unbuilt peer\"\n[external]\ncommand = [\"/nonexistent/peer\", \"{addr}\"]\nduration = \"5s\"\n",
    )
    .unwrap();
    let chapter = |name: &str, extra: &str| {
        format!(
            "[[chapter]]\nscenario = \"{name}\"\ntitle = \"Chapter <{name}>\"\nlesson = \"lesson of {name}\"\n\
             explain = \"See https://example.com/{name} for more.\"\nrust = \"let url = \\\"http://echo:50051\\\";\"\n{extra}"
        )
    };
    let text = format!(
        "title = \"A small story\"\nintro = \"An intro.\"\n{}{}{}\
         [[rule]]\nrule = \"Reuse it.\"\nwhy = \"Because.\"\nproven_by = [\"reused\", \"leak\"]\n",
        chapter("reused", "fast = { requests = 500 }\n"),
        chapter("leak", "heap_profile = true\nfast = { requests = 500 }\n"),
        chapter("go-leak", "go = \"conn, _ := grpc.Dial(addr)\"\n"),
    );
    let path = dir.join("story.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The tags of `html` (what lies between `<` and `>`), outside `<style>`, with the style sheet apart.
fn tags_and_style(html: &str) -> (Vec<&str>, &str) {
    let style_start = html.find("<style>").expect("a <style> element") + "<style>".len();
    let style_end = html.find("</style>").expect("</style>");
    let mut tags = Vec::new();
    for part in [&html[..style_start], &html[style_end..]] {
        let mut rest = part;
        while let Some(open) = rest.find('<') {
            let close = open + rest[open..].find('>').expect("every tag closes");
            tags.push(&rest[open..=close]);
            rest = &rest[close + 1..];
        }
    }
    (tags, &html[style_start..style_end])
}

#[test]
fn demo_writes_one_self_contained_page_with_a_section_per_chapter_that_ran() {
    let dir = tempfile::tempdir().unwrap();
    let story = small_story(dir.path());
    let scenarios = dir.path().join("scenarios");
    let output = loadgen(
        &["demo", "--fast", "--story", story.to_str().unwrap(), "--scenarios-dir", scenarios.to_str().unwrap()],
        dir.path(),
        &[],
    );
    let out = text(&output);
    // 3: the small reused chapter may be inconclusive on a busy machine; the page is what is tested here.
    assert!(matches!(output.status.code(), Some(0 | 3)), "{out}");
    assert!(out.contains("go-leak: skipped: /nonexistent/peer is not built"), "{out}");
    let demo = std::fs::read_link(dir.path().join("demo/latest")).unwrap();
    let demo = dir.path().join("demo").join(demo);
    let html = std::fs::read_to_string(demo.join("index.html")).unwrap();

    // Self-contained: nothing is fetched. URLs may appear only as text (the story's words and code).
    let (tags, style) = tags_and_style(&html);
    assert!(html.contains("https://example.com/reused") && html.contains("http://echo:50051"), "text keeps its URLs");
    for tag in &tags {
        assert!(!tag.contains("http:") && !tag.contains("https:") && !tag.contains("//"), "a tag refers out: {tag}");
        assert!(!tag.contains(" src="), "nothing is loaded: {tag}");
        if let Some(at) = tag.find(" href=\"") {
            assert!(tag[at + 7..].starts_with('#'), "links stay on the page: {tag}");
        }
        for element in ["<img", "<script", "<link", "<iframe", "<object", "<embed"] {
            assert!(!tag.starts_with(element), "{tag}");
        }
    }
    assert!(!style.contains("url(") && !style.contains("@import"), "the style sheet loads nothing");
    assert!(style.contains("@media print"), "printable");

    // One section per chapter that ran, in order; the skipped one has none but is named.
    let sections: Vec<&str> =
        tags.iter().filter(|tag| tag.starts_with("<section class=\"chapter\"")).copied().collect();
    assert_eq!(sections.len(), 2, "{sections:?}");
    assert!(sections[0].contains("data-scenario=\"reused\"") && sections[1].contains("data-scenario=\"leak\""));
    assert!(html.contains("Not run: go-leak: /nonexistent/peer is not built"));
    assert!(html.contains("Chapter &lt;leak&gt;"), "text is escaped");

    // Every plot is an inline SVG with its drawing, one per chapter.
    let figures: Vec<&str> = html.split("<figure class=\"plot\">").skip(1).collect();
    assert_eq!(figures.len(), 2);
    for figure in figures {
        let figure = &figure[..figure.find("</figure>").unwrap()];
        assert!(figure.trim_start().starts_with("<svg viewBox="), "{}", &figure[..80.min(figure.len())]);
        assert!(figure.contains("<polyline") || figure.contains("<path"), "the SVG holds its lines");
    }
    // The leak's chapter has the heap table; the rule cites both chapters' measurements.
    let leak = &html[html.find("data-scenario=\"leak\"").unwrap()..];
    assert!(leak.contains("Where the memory is") && leak.contains("FramedWrite"), "heap table in the leak chapter");
    assert!(html.contains("<a href=\"#chapter-1\">chapter 1 (reused)</a>: client "), "rule proof");
    assert!(html.contains("<a href=\"#chapter-2\">chapter 2 (leak)</a>: client LEAK ✔ +"), "rule proof");

    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("demo.json")).unwrap()).unwrap();
    assert_eq!(record["chapters"].as_array().unwrap().len(), 2);
    assert_eq!(record["chapters"][1]["summary"]["verdict"]["client"]["kind"], "leak");
    assert_eq!(record["skipped"][0]["scenario"], "go-leak");
    let markdown = std::fs::read_to_string(demo.join("demo.md")).unwrap();
    assert!(markdown.contains("## 1. Chapter <reused>") && markdown.contains("## 2. Chapter <leak>"), "{markdown}");
    assert!(markdown.contains("1. **Reuse it.**"), "{markdown}");
}

#[test]
fn a_bad_story_is_a_usage_error_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let story = small_story(dir.path());
    let story_text = std::fs::read_to_string(&story)
        .unwrap()
        .replace("proven_by = [\"reused\", \"leak\"]", "proven_by = [\"nope\"]");
    std::fs::write(&story, story_text).unwrap();
    let scenarios = dir.path().join("scenarios");
    let output = loadgen(
        &["demo", "--story", story.to_str().unwrap(), "--scenarios-dir", scenarios.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("story.toml:"), "{}", text(&output));
    assert!(text(&output).contains("rule[0].proven_by: \"nope\" is not a chapter's scenario"), "{}", text(&output));
    assert!(!dir.path().join("demo").exists(), "nothing ran");
}

#[test]
fn a_segment_of_an_indexed_job_runs_its_share_and_says_which_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "split", "reused", "no-leak");
    // Kubernetes numbers an indexed Job's pods from 0: the second pod is segment 2 of 2.
    let env = [("JOB_COMPLETION_INDEX", Path::new("1"))];
    let output = loadgen(&["run", path.to_str().unwrap(), "--segments", "2"], dir.path(), &env);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = crate::common::summary(dir.path(), "split");
    let plan = &summary["plan"];
    assert_eq!((plan["segment"].as_str(), plan["max_requests"].as_u64()), (Some("2/2"), Some(350)), "{plan}");
    assert_eq!((plan["concurrency"].as_u64(), plan["warmup_requests"].as_u64()), (Some(1), Some(50)), "{plan}");
    assert_eq!(summary["requests"]["ok"].as_u64(), Some(350));
    let output = loadgen(&["run", path.to_str().unwrap(), "--segments", "2"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--segments 2: JOB_COMPLETION_INDEX is not set"), "{}", text(&output));
}
