//! `deploy/kubernetes/`: valid YAML, an indexed Job with what it needs, and loadgen command lines
//! this loadgen accepts. Nothing here runs a cluster.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::{LOADGEN, python_json, root};
use serde_json::Value as Yaml;

/// Every document of every manifest, as PyYAML reads it (from `make ci-tools`), with its file's name.
fn documents() -> Vec<(String, Yaml)> {
    const SCRIPT: &str = r#"
import json, sys, yaml
print(json.dumps([[name, document] for name in sys.argv[1:] for document in yaml.safe_load_all(open(name))]))
"#;
    let dir = root().join("deploy/kubernetes");
    let mut manifests: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    manifests.sort();
    let manifests: Vec<&std::path::Path> = manifests.iter().map(|path| path.as_path()).collect();
    let read = python_json(SCRIPT, &manifests, "");
    let documents: Vec<(String, Yaml)> = read
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let name = std::path::Path::new(pair[0].as_str().unwrap()).file_name().unwrap();
            (name.to_string_lossy().into_owned(), pair[1].clone())
        })
        .collect();
    assert!(documents.len() >= 5, "{documents:?}");
    documents
}

fn find<'a>(documents: &'a [(String, Yaml)], kind: &str, name: &str) -> &'a Yaml {
    let found = documents
        .iter()
        .find(|(_, d)| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name));
    &found.unwrap_or_else(|| panic!("no {kind} {name}")).1
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

/// The value after `flag` in `args`.
fn value<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|arg| arg == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[at + 1]
}

/// The long flags `loadgen COMMAND --help` lists.
fn flags_of(command: &str) -> BTreeSet<String> {
    let help = Command::new(LOADGEN).args([command, "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    help.split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.trim_end_matches(',').to_owned())
        .collect()
}

fn claim(pod: &Yaml) -> &str {
    pod["volumes"][0]["persistentVolumeClaim"]["claimName"].as_str().expect("a volume from a claim")
}

#[test]
fn every_manifest_is_a_kubernetes_object() {
    for (file, document) in documents() {
        for key in ["apiVersion", "kind"] {
            assert!(document[key].as_str().is_some(), "{file}: no {key}");
        }
        assert!(document["metadata"]["name"].as_str().is_some(), "{file}: no metadata.name");
        let expected = match document["kind"].as_str().unwrap() {
            "Job" => "batch/v1",
            "Deployment" => "apps/v1",
            "Service" | "PersistentVolumeClaim" => "v1",
            other => panic!("{file}: an unexpected kind {other}"),
        };
        assert_eq!(document["apiVersion"].as_str(), Some(expected), "{file}");
    }
}

#[test]
fn the_segments_run_as_an_indexed_job_whose_pods_each_run_one_segment() {
    let documents = documents();
    let job = find(&documents, "Job", "leaklab-segments");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().expect("completions, a number");
    assert_eq!(spec["parallelism"].as_i64(), Some(completions), "every segment runs at once");
    assert_eq!(spec["backoffLimit"].as_i64(), Some(0), "a segment retried would send its share twice");
    let pod = &spec["template"]["spec"];
    assert!(matches!(pod["restartPolicy"].as_str(), Some("Never" | "OnFailure")), "a Job's pods do not restart Always");
    let container = &pod["containers"][0];
    assert_eq!(strings(&container["command"]), ["loadgen"]);
    let args = strings(&container["args"]);
    assert_eq!(args[0], "run");
    assert_eq!(value(&args, "--segments"), completions.to_string(), "one segment per completion index");
    let known = flags_of("run");
    for flag in args.iter().filter(|arg| arg.starts_with("--")) {
        assert!(known.contains(flag), "loadgen run has no {flag}");
    }
    // Every $(VAR) the arguments use is declared, for Kubernetes to expand.
    let declared: BTreeSet<&str> =
        container["env"].as_array().unwrap().iter().map(|env| env["name"].as_str().unwrap()).collect();
    for arg in &args {
        for (at, _) in arg.match_indices("$(") {
            let name = &arg[at + 2..at + arg[at..].find(')').unwrap()];
            assert!(declared.contains(name), "{arg}: ${name} is not in the container's env");
        }
    }
    let index = container["env"].as_array().unwrap().iter().find(|env| env["name"].as_str() == Some("SEGMENT_INDEX"));
    assert_eq!(
        index.unwrap()["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
    );
    // Run directories go to the shared volume, one per segment.
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert!(value(&args, "--reports-dir").starts_with(&format!("{mount}/")), "{args:?}");
    assert!(value(&args, "--reports-dir").contains("$(SEGMENT_INDEX)"), "{args:?}");
    let claim_name = claim(pod);
    let pvc = find(&documents, "PersistentVolumeClaim", claim_name);
    assert!(
        strings(&pvc["spec"]["accessModes"]).contains(&"ReadWriteMany".to_owned()),
        "pods on several nodes write it"
    );
}

#[test]
fn the_merge_step_reads_every_segment_from_the_same_volume() {
    let documents = documents();
    let segments = &find(&documents, "Job", "leaklab-segments")["spec"]["template"]["spec"];
    let merge = &find(&documents, "Job", "leaklab-merge")["spec"]["template"]["spec"];
    assert_eq!(claim(merge), claim(segments));
    let segment_args = strings(&segments["containers"][0]["args"]);
    let scenario = &segment_args[1];
    let script = strings(&merge["containers"][0]["args"]).join(" ");
    // The segments' run directories: each --reports-dir, then <scenario>/latest.
    let each = value(&segment_args, "--reports-dir").replace("$(SEGMENT_INDEX)", "*");
    assert!(script.contains(&format!("loadgen merge {each}/{scenario}/latest ")), "{script}");
    let known = flags_of("merge");
    for flag in script.split_whitespace().filter(|word| word.starts_with("--")) {
        assert!(known.contains(flag), "loadgen merge has no {flag}");
    }
}

#[test]
fn the_segments_load_the_toy_server_service_and_scrape_its_metrics_port() {
    let documents = documents();
    let args =
        strings(&find(&documents, "Job", "leaklab-segments")["spec"]["template"]["spec"]["containers"][0]["args"]);
    let service = find(&documents, "Service", "leaklab-server");
    let port = |name: &str| {
        let ports = service["spec"]["ports"].as_array().unwrap();
        ports.iter().find(|p| p["name"].as_str() == Some(name)).unwrap()["port"].as_i64().unwrap()
    };
    assert_eq!(value(&args, "--target"), format!("leaklab-server:{}", port("grpc")));
    assert_eq!(value(&args, "--server-metrics"), format!("http://leaklab-server:{}/metrics", port("metrics")));
    let server = &find(&documents, "Deployment", "leaklab-server")["spec"]["template"]["spec"]["containers"][0];
    let server_args = strings(&server["args"]).join(" ");
    assert!(server_args.contains(&format!("--listen 0.0.0.0:{}", port("grpc"))), "{server_args}");
    assert!(server_args.contains(&format!("--metrics-listen 0.0.0.0:{}", port("metrics"))), "{server_args}");
    assert!(server_args.contains("--allow-remote"), "the toy server serves loopback only without it");
}
