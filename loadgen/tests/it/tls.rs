//! TLS and mutual TLS between the load generator and the toy server, with
//! certificates made by the test or by the run itself: what succeeds, and
//! how each handshake failure is counted under load.

use std::path::Path;

use crate::common::{loadgen, summary, text};
use leaklab_engine::tls::Pki;

/// A small leak scenario (every request dials, so every request handshakes) with `extra` tables.
fn scenario(dir: &Path, name: &str, extra: &str) -> std::path::PathBuf {
    crate::common::small_scenario(dir, name, "leak", 120, extra)
}

fn errors(summary: &serde_json::Value) -> Vec<(String, u64)> {
    let errors = summary["requests"]["errors"].as_object().cloned().unwrap_or_default();
    errors.into_iter().map(|(kind, count)| (kind, count.as_u64().unwrap())).collect()
}

#[test]
fn a_generated_ca_serves_tls_and_mutual_tls_and_every_call_succeeds() {
    let reports = tempfile::tempdir().unwrap();
    for (name, tls) in
        [("tls", "[server.tls]\ngenerate = true\n"), ("mtls", "[server.tls]\ngenerate = true\nclient_auth = true\n")]
    {
        let path = scenario(reports.path(), name, tls);
        let output = loadgen(&["run", path.to_str().unwrap()], reports.path(), &[]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", text(&output));
        let summary = summary(reports.path(), name);
        assert_eq!(summary["requests"]["ok"], 120, "{name}: {}", summary["requests"]);
        let dir = reports.path().join(name).join("latest");
        assert!(dir.join("tls-ca.pem").is_file() && dir.join("tls-server.key").is_file(), "{name}: the CA's files");
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
        assert!(!log.contains("TLS handshake"), "{name}: no failed handshake at the server: {log}");
    }
}

#[test]
fn a_wrong_ca_a_wrong_name_and_a_missing_client_certificate_are_failure_kinds_under_load() {
    let reports = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let stranger = Pki::generate(false).unwrap().write(other.path()).unwrap();
    let tls = "[server.tls]\ngenerate = true\n";

    let path =
        scenario(reports.path(), "wrong-ca", &format!("{tls}[client.tls]\ncacert = \"{}\"\n", stranger.ca.display()));
    let output = loadgen(&["run", path.to_str().unwrap()], reports.path(), &[]);
    assert!(output.status.code().is_some_and(|code| code != 2 && code != 4), "{}", text(&output));
    assert_eq!(errors(&summary(reports.path(), "wrong-ca")), [("tls_unknown_issuer".to_owned(), 120)]);

    let path = scenario(reports.path(), "wrong-name", tls);
    let output = loadgen(&["run", path.to_str().unwrap(), "--cname", "orders.example.com"], reports.path(), &[]);
    assert!(output.status.code().is_some_and(|code| code != 2 && code != 4), "{}", text(&output));
    assert_eq!(errors(&summary(reports.path(), "wrong-name")), [("tls_name_mismatch".to_owned(), 120)]);

    // The server requires a client certificate (its CA's files, made by the test) and the client has none.
    let ours = tempfile::tempdir().unwrap();
    let files = Pki::generate(false).unwrap().write(ours.path()).unwrap();
    let (ca, cert, key) = (files.ca.display(), files.server_cert.display(), files.server_key.display());
    let mutual = format!(
        "[server.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\n[client.tls]\ncacert = \"{ca}\"\n"
    );
    let path = scenario(reports.path(), "no-client-cert", &mutual);
    let output = loadgen(&["run", path.to_str().unwrap()], reports.path(), &[]);
    assert!(output.status.code().is_some_and(|code| code != 2 && code != 4), "{}", text(&output));
    // TLS 1.3 refuses a missing client certificate after the client's side of the handshake is done:
    // the client hears of it by the alert when it reads, or by a broken pipe when it writes first.
    let failed = errors(&summary(reports.path(), "no-client-cert"));
    assert_eq!(failed.iter().map(|(_, count)| count).sum::<u64>(), 120, "{failed:?}");
    let log = std::fs::read_to_string(reports.path().join("no-client-cert/latest/server.log")).unwrap();
    let refused = log.lines().filter(|line| line.contains("TLS handshake with") && line.contains("failed")).count();
    // A refused channel may dial again before it is dropped, so the server sees at least one per call.
    assert!(refused >= 120, "the server refused every handshake ({refused}): {log}");
}

#[test]
fn a_certificate_without_its_key_or_a_missing_file_is_a_usage_error() {
    let reports = tempfile::tempdir().unwrap();
    let path = scenario(reports.path(), "plain", "");
    let output = loadgen(&["run", path.to_str().unwrap(), "--cert", "client.pem"], reports.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("client.tls.key: missing: --cert needs its key (--key)"), "{}", text(&output));

    let output = loadgen(&["run", path.to_str().unwrap(), "--cacert", "/nonexistent/ca.pem"], reports.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--cacert: /nonexistent/ca.pem: No such file"), "{}", text(&output));

    let not_pem = reports.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let output = loadgen(&["run", path.to_str().unwrap(), "--cacert", not_pem.to_str().unwrap()], reports.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("--cacert: {}: no PEM certificate", not_pem.display())),
        "{}",
        text(&output)
    );
    assert!(!reports.path().join("plain").exists(), "nothing ran");
}
