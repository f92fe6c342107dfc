//! The CI files rendered from the scripted report: their counts, their escaping, their figures.

use super::*;
use crate::report::to_string;
use leaklab_engine::fixtures::scripted_report;
use leaklab_verdict::VerdictKind;

fn results<'a>(summary: &'a Summary, dir: &'a Path) -> Results<'a> {
    Results {
        command: "compare",
        started_at: "2026-12-03T17:00:00Z",
        entries: vec![
            Entry::Ran { summary, dir, baseline: None },
            Entry::Failed { scenario: "broken", error: "the server did not start: \x1b[1mport <in use>\x1b[0m" },
            Entry::Skipped { scenario: "go-leak", reason: "target/peers/go-echo-client is not built" },
        ],
    }
}

#[test]
fn junit_counts_each_case_once_and_escapes_what_it_quotes() {
    let (summary, _) = scripted_report();
    let dir = Path::new("reports/x/1");
    let xml = to_string(&Junit, &results(&summary, dir)).unwrap();
    let judged = 1 + usize::from(summary.verdict.server.is_some());
    let tests = judged + 4;
    assert!(xml.contains(&format!("<testsuite name=\"leaklab compare\" tests=\"{tests}\"")), "{xml}");
    assert!(xml.contains("errors=\"2\" skipped=\"2\""), "{xml}");
    assert!(xml.contains("timestamp=\"2026-12-03T17:00:00\""), "{xml}");
    assert!(xml.contains("port &lt;in use&gt;") && !xml.contains('\x1b'), "{xml}");
    assert!(xml.contains("<system-out>run directory: reports/x/1&#10;"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), tests);
    assert_eq!(xml.matches("</testcase>").count(), tests);
}

#[test]
fn a_contradicted_expectation_is_one_failure_naming_the_scenario_and_process() {
    let (mut summary, _) = scripted_report();
    let client = &mut summary.verdict.client;
    client.kind = VerdictKind::Leak;
    client.expected = Some(leaklab_engine::scenario::Expectation::NoLeak);
    client.expectation_met = Some(false);
    let xml = to_string(
        &Junit,
        &Results {
            command: "run",
            started_at: "t",
            entries: vec![Entry::Ran { summary: &summary, dir: Path::new("d"), baseline: None }],
        },
    )
    .unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    let message = format!("message=\"{}: client memory: expected no-leak, got LEAK", summary.scenario);
    assert!(xml.contains(&message), "{xml}");
}

#[test]
fn the_trackers_get_the_slope_with_its_interval() {
    let (summary, _) = scripted_report();
    let results = Results {
        command: "run",
        started_at: "t",
        entries: vec![Entry::Ran { summary: &summary, dir: Path::new("d"), baseline: None }],
    };
    let bmf: serde_json::Value = serde_json::from_str(&to_string(&Bmf, &results).unwrap()).unwrap();
    let client = &bmf[&summary.scenario]["client-bytes-per-request"];
    let trend = summary.verdict.client.trend.unwrap();
    assert_eq!(client["value"].as_f64(), Some(trend.slope), "{bmf}");
    assert_eq!(
        (client["lower_value"].as_f64(), client["upper_value"].as_f64()),
        (Some(trend.ci_low), Some(trend.ci_high))
    );
    let gab: serde_json::Value = serde_json::from_str(&to_string(&Gab, &results).unwrap()).unwrap();
    let first = &gab[0];
    assert_eq!(first["name"], format!("{}: client-bytes-per-request", summary.scenario));
    assert!(first["range"].as_str().unwrap().starts_with("± "), "{gab}");
    assert!(gab.as_array().unwrap().iter().all(|bench| !bench["name"].as_str().unwrap().contains("throughput")));
}
