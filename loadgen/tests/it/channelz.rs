//! Channelz, end to end: the Go and Python peers serve their runtime's
//! channelz service on a side port, and a run reads their channels,
//! subchannels and sockets beside its samples (the peers are built by `make`
//! if missing).

use std::path::Path;

use crate::common::{LOADGEN, schema_errors, server_bin, summary, text};

/// Runs an external scenario whose client is `command` (a JSON array) with `channelz = "{channelz_addr}"`.
fn run_with_channelz(dir: &Path, name: &str, command: &str) -> serde_json::Value {
    let scenario = dir.join(format!("{name}.toml"));
    let text_of = format!(
        "description = \"d\"\n[external]\ncommand = {command}\nchannelz = \"{{channelz_addr}}\"\n\
         duration = \"30s\"\nwarmup = \"1s\"\n[sampling]\ninterval = \"100ms\"\n[verdict]\ntolerance = 2048\n"
    );
    std::fs::write(&scenario, text_of).unwrap();
    let output = std::process::Command::new(LOADGEN)
        .args(["run", scenario.to_str().unwrap(), "--reports-dir"])
        .arg(dir)
        .arg("--server-bin")
        .arg(server_bin())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let s = summary(dir, name);
    assert!(schema_errors(&s).is_empty(), "{:?}", schema_errors(&s));
    assert!(text(&output).contains("client channelz: "), "{}", text(&output));
    s
}

fn requests(s: &serde_json::Value) -> u64 {
    s["requests"]["ok"].as_u64().unwrap() + s["requests"]["failed"].as_u64().unwrap()
}

#[test]
fn grpc_go_counts_one_channel_subchannel_and_socket_per_leaked_client_conn() {
    let peer = crate::common::peer("target/peers/go-echo-client-channelz");
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "[\"{}\", \"-addr\", \"{{addr}}\", \"-mode\", \"leak\", \"-requests\", \"300\", \"-rate\", \"200\", \
         \"-channelz-listen\", \"{{channelz_addr}}\"]",
        peer.display()
    );
    let s = run_with_channelz(dir.path(), "go-leak-small", &command);
    let made = requests(&s);
    assert_eq!(made, 300, "{}", s["requests"]);
    let channelz = &s["client"]["channelz"];
    let last = &channelz["last"];
    // Each ClientConn: a channel, its subchannel and its connection, all left open.
    assert_eq!(
        (last["channels"].as_u64(), last["subchannels"].as_u64(), last["sockets"].as_u64()),
        (Some(made), Some(made), Some(made)),
        "{channelz}"
    );
    let server = s["target"]["address"].as_str().unwrap();
    assert_eq!(last["targets"][0]["target"], server, "{channelz}");
    assert_eq!(last["targets"][0]["states"]["ready"].as_u64(), Some(made), "{channelz}");
    assert_eq!(s["client"]["counters"]["channelz_channels"]["end"].as_u64(), Some(made));
    // The peer's own connections, without leaklab's to its channelz server.
    assert_eq!(s["client"]["connections"]["end"].as_u64(), Some(made), "{}", s["client"]["connections"]);
    assert_eq!(channelz["failed_readings"], 0, "{channelz}");
}

#[test]
fn grpcio_shares_one_subchannel_and_socket_among_its_leaked_channels() {
    crate::common::peer("target/peers/python/echo_client.py");
    let python = crate::common::root().join("target/peers/python-venv/bin/python");
    let script = crate::common::root().join("target/peers/python/echo_client.py");
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "[\"{}\", \"{}\", \"--addr\", \"{{addr}}\", \"--mode\", \"leak\", \"--requests\", \"200\", \"--rate\", \"100\", \
         \"--channelz-listen\", \"{{channelz_addr}}\"]",
        python.display(),
        script.display()
    );
    let s = run_with_channelz(dir.path(), "python-leak-small", &command);
    let made = requests(&s);
    assert_eq!(made, 200, "{}", s["requests"]);
    let last = &s["client"]["channelz"]["last"];
    // C-core's subchannel pool: one subchannel and one connection for every channel to the same target.
    assert_eq!(
        (last["channels"].as_u64(), last["subchannels"].as_u64(), last["sockets"].as_u64()),
        (Some(made), Some(1), Some(1)),
        "{last}"
    );
    assert!(
        last["targets"][0]["target"].as_str().unwrap().ends_with(s["target"]["address"].as_str().unwrap()),
        "{last}"
    );
    assert_eq!(s["client"]["connections"]["end"].as_u64(), Some(1), "{}", s["client"]["connections"]);
}
