//! The summary of a scripted leak: its documented keys, its growth, its notes,
//! and the committed schema against the type.

use super::*;
use crate::fixtures::scripted_report;

/// The keys the README and CI scripts rely on, by dotted path.
const REQUIRED_KEYS: &[&str] = &[
    "scenario",
    "requests.ok",
    "requests.failed",
    "requests.errors",
    "throughput_rps",
    "latency_us.p50",
    "latency_us.p99",
    "latency_us.max",
    "growth.client_allocated_bytes_per_request",
    "growth.server_allocated_bytes_per_request",
];
const PROCESS_KEYS: &[&str] = &["rss_bytes", "allocated_bytes", "connections", "fds"];

fn lookup<'a>(value: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(value, |value, key| value.get(key))
}

#[test]
fn summary_has_every_documented_key() {
    let (summary, _) = scripted_report();
    let value = serde_json::to_value(&summary).unwrap();
    for key in REQUIRED_KEYS {
        assert!(lookup(&value, key).is_some(), "summary.json lacks {key}");
    }
    for process in ["client", "server"] {
        for key in PROCESS_KEYS {
            for end in ["start", "end", "peak"] {
                let dotted = format!("{process}.{key}.{end}");
                assert!(lookup(&value, &dotted).is_some_and(|v| v.is_u64()), "summary.json lacks {dotted}");
            }
        }
    }
}

#[test]
fn scripted_leak_growth_is_recovered() {
    let (summary, _) = scripted_report();
    let client = summary.growth.client_allocated_bytes_per_request.unwrap();
    let server = summary.growth.server_allocated_bytes_per_request.unwrap();
    assert!((client - 60_000.0).abs() < 1.0, "{client}");
    assert!((server - 20_000.0).abs() < 1.0, "{server}");
    assert_eq!(summary.growth.client_connections_per_request, Some(1.0));
    assert_eq!(summary.growth.loaded_requests, Some(1_000));
    assert!(summary.notes.contains(&Note::LeakModel), "leak note missing: {:?}", summary.notes);
}

#[test]
fn samples_a_spawned_server_did_not_answer_are_counted_and_noted() {
    let (complete, _) = scripted_report();
    assert_eq!(complete.samples.server_misses, 0);
    let (summary, _) = crate::fixtures::scripted_report_with(|samples| {
        samples[4].server = None;
        samples[6].server = None;
    });
    assert_eq!(summary.samples.server_misses, 2);
    assert!(summary.notes.contains(&Note::ServerMisses { samples: 2 }), "{:?}", summary.notes);
}

#[test]
fn committed_schema_matches_the_summary_type() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/summary.schema.json"))
        .expect("schema/summary.schema.json is committed");
    assert!(
        committed == json_schema(),
        "schema/summary.schema.json is out of date: run `make schema` and commit the result"
    );
}

#[test]
fn schema_requires_what_the_summary_always_has() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    let required = schema["required"].as_array().unwrap();
    for key in ["scenario", "requests", "throughput_rps", "latency_us", "client", "server", "growth"] {
        assert!(required.iter().any(|v| v == key), "schema does not require {key}");
    }
}
