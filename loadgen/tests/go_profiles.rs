//! The incident's second step, end to end: the Go peer's app mode watched
//! with its pprof endpoint, its profiles fetched and compared down to the
//! three handlers that leak (the Go peer is built by `make` if missing).

mod common;

use common::{LOADGEN, schema_errors, server_bin, summary, text};

#[test]
fn the_go_services_profiles_name_its_three_leaking_call_sites_in_the_ratio_of_their_leaks() {
    let peer = common::peer("target/peers/go-echo-client");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("go-app-small.toml");
    let command = format!(
        "[\"{}\", \"-addr\", \"{{addr}}\", \"-mode\", \"app\", \"-requests\", \"480\", \"-rate\", \"200\", \"-hold\", \"30s\", \
         \"-pprof-listen\", \"{{pprof_addr}}\", \"-mem-profile-rate\", \"1024\"]",
        peer.display()
    );
    let text_of = format!(
        "description = \"d\"\n[external]\ncommand = {command}\npprof = \"http://{{pprof_addr}}/debug/pprof\"\n\
         duration = \"4s\"\nwarmup = \"1s\"\n[sampling]\ninterval = \"100ms\"\n[verdict]\ntolerance = 2048\n"
    );
    std::fs::write(&scenario, text_of).unwrap();
    let output = std::process::Command::new(LOADGEN)
        .args(["run", scenario.to_str().unwrap(), "--quiet", "--reports-dir"])
        .arg(dir.path())
        .arg("--server-bin")
        .arg(server_bin())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir.path(), "go-app-small");
    let profiles = &s["profiles"];
    let sites: Vec<(&str, f64)> = profiles["call_sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|site| (site["function"].as_str().unwrap(), site["inuse_objects_growth"].as_f64().unwrap()))
        .collect();
    let names: Vec<&str> = sites.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["main.chargePayment", "main.reserveStock", "main.quoteShipping"], "{profiles}");
    // Every request, every 2nd, every 4th: 4 : 2 : 1, within 25%.
    let (every, half, quarter) = (sites[0].1, sites[1].1, sites[2].1);
    assert!((every / quarter / 4.0 - 1.0).abs() < 0.25 && (half / quarter / 2.0 - 1.0).abs() < 0.25, "{sites:?}");
    assert_eq!(profiles["growth"][0]["known_as"], "the connection's write buffer", "{profiles}");
    assert!(profiles["call_sites"][0]["file"].as_str().unwrap().ends_with("app_payments.go"));
    // Four goroutines per leaked connection: reader, writer, balancer watcher, transport monitor.
    let goroutines = profiles["goroutines_per_connection"].as_f64().unwrap();
    assert!((goroutines - 4.0).abs() < 0.4, "{goroutines}");
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
    let run = dir.path().join("go-app-small").join("latest");
    for file in ["pprof-warmup.heap.pb.gz", "pprof-end.heap.pb.gz", "pprof-end.goroutine.pb.gz"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
}
