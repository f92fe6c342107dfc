//! What the integration tests share: the `loadgen` binary, the server binary
//! (found next to it, or built in the same profile when it is missing), small
//! scenario files, and reading a run's summary.
//!
//! Every run that measures memory runs as its own `loadgen` process: the test
//! harness runs tests as threads of one process, and a run measured inside it
//! would count its neighbours' allocations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

pub const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// The source tree's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<path>` of a peer in `peers/`, made by the Makefile's rule for it if missing or out of date.
pub fn peer(path: &str) -> PathBuf {
    // One build at a time across test processes too (nextest runs each test in its own): two `pip install`s
    // into one venv break it.
    std::fs::create_dir_all(root().join("target")).expect("creating target/");
    let lock = std::fs::File::create(root().join("target/peers.lock")).expect("creating target/peers.lock");
    // SAFETY: flock(2) on a file this function owns; the lock goes with the file when it is dropped.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "locking target/peers.lock: {}", std::io::Error::last_os_error());
    let built = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(root())
        .arg(path)
        .status()
        .unwrap_or_else(|error| panic!("running make {path} (make peers): {error}"));
    let file = root().join(path);
    assert!(built.success() && file.is_file(), "building {path} failed: {built}");
    file
}

/// `target/<profile>/leaklab-server`, built by the same cargo in the same profile if it is not there yet.
pub fn server_bin() -> PathBuf {
    static BUILT: Mutex<()> = Mutex::new(());
    let bin = Path::new(LOADGEN).with_file_name("leaklab-server");
    let _one_build_at_a_time = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !bin.is_file() {
        let profile_dir = bin.parent().expect("target/<profile>");
        let profile = profile_dir.file_name().and_then(|name| name.to_str()).expect("a profile directory");
        let target_dir = profile_dir.parent().expect("target");
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "leaklab-server", "--bin", "leaklab-server", "--target-dir"]).arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("running cargo to build the server");
        assert!(status.success(), "building leaklab-server failed: {status}");
    }
    assert!(bin.is_file(), "{} is missing after building it", bin.display());
    bin
}

/// A small scenario file: `policy` with the client expected to be `expect`.
pub fn scenario(dir: &Path, name: &str, policy: &str, expect: &str) -> PathBuf {
    small_scenario(dir, name, policy, 700, &format!("[expect]\nclient = \"{expect}\"\n"))
}

/// `dir/name.toml`: `policy` for `requests` (a seventh of them warm-up, 6 rounds, 2 workers), sampled
/// every 50 ms, then `tables` (more TOML tables, as written).
pub fn small_scenario(dir: &Path, name: &str, policy: &str, requests: u64, tables: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "description = \"{name}\"\n[client]\npolicy = \"{policy}\"\n\
         [load]\nconcurrency = 2\nrequests = {requests}\nwarmup_requests = {}\nrounds = 6\n\
         [sampling]\ninterval = \"50ms\"\ncooldown = \"100ms\"\n{tables}",
        requests / 7
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `loadgen ARGS --reports-dir REPORTS --server-bin … --quiet`, with `env` set.
pub fn loadgen(args: &[&str], reports: &Path, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(LOADGEN);
    command.args(args).arg("--reports-dir").arg(reports).arg("--server-bin").arg(server_bin()).arg("--quiet");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The `summary.json` of the latest run of `name` under `reports`.
pub fn summary(reports: &Path, name: &str) -> serde_json::Value {
    let path = reports.join(name).join("latest").join("summary.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        let runs: Vec<String> = std::fs::read_dir(reports)
            .map(|dir| dir.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        panic!("{}: {e}; {} holds {runs:?}", path.display(), reports.display())
    });
    serde_json::from_str(&text).unwrap()
}

/// The ci-tools venv's python (junitparser, prometheus_client, jsonschema), built by `make ci-tools` if missing.
pub fn python() -> PathBuf {
    peer("target/ci-tools/python.stamp");
    root().join("target/ci-tools/python/bin/python")
}

/// Runs `script` in the ci-tools venv with `args` and `stdin`; its stdout as JSON.
pub fn python_json(script: &str, args: &[&Path], stdin: &str) -> serde_json::Value {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `value` checked against the committed `schema/<file>` by python-jsonschema, the reference
/// implementation of JSON Schema; the errors, each `message at /json/pointer`.
pub fn schema_errors_against(file: &str, value: &serde_json::Value) -> Vec<String> {
    const SCRIPT: &str = r#"
import json, sys
from jsonschema.validators import validator_for
schema = json.load(open(sys.argv[1]))
validator = validator_for(schema)(schema)
validator.check_schema(schema)
errors = validator.iter_errors(json.load(sys.stdin))
print(json.dumps([e.message + " at /" + "/".join(str(p) for p in e.absolute_path) for e in errors]))
"#;
    let schema = root().join("schema").join(file);
    let errors = python_json(SCRIPT, &[&schema], &value.to_string());
    errors.as_array().unwrap().iter().map(|error| error.as_str().unwrap().to_owned()).collect()
}

/// `value` checked against the committed `schema/summary.schema.json`; the errors, if any.
pub fn schema_errors(value: &serde_json::Value) -> Vec<String> {
    schema_errors_against("summary.schema.json", value)
}

/// A process that is gone (or a zombie no one waits for: it holds nothing). Waits for it; the bound only
/// guards against a hang.
pub fn gone(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        if state.as_deref().is_none_or(|stat| stat.split_whitespace().nth(2) == Some("Z")) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The toy server started by hand with `--metrics-listen`, as a user starts their own; killed when dropped.
pub struct ToyServer {
    child: std::process::Child,
    /// Kept open until the server is stopped: a server writing to a closed stderr would fail.
    _stderr: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    pub address: String,
    pub metrics_url: String,
}

impl ToyServer {
    pub fn start() -> ToyServer {
        use std::io::BufRead;
        let mut child = Command::new(server_bin())
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let address = first.trim().strip_prefix(r#"{"listening":""#).and_then(|rest| rest.strip_suffix(r#""}"#));
        let address = address.unwrap_or_else(|| panic!("the server did not start: {first:?}")).to_owned();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let metrics_url = stderr
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("leaklab-server: serving metrics on ").map(str::to_owned))
            .expect("the server announces its metrics endpoint");
        ToyServer { child, _stderr: stderr, address, metrics_url }
    }
}

impl Drop for ToyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
