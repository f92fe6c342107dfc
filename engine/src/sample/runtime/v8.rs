//! Node's V8 heap, through the inspector protocol (what Chrome DevTools
//! speaks): `HeapProfiler.collectGarbage` for a full collection, then
//! `Runtime.getHeapUsage` for the heap used and committed, and
//! `process.memoryUsage().external` for what it holds outside the heap. A command leaklab
//! starts gets `--inspect=127.0.0.1:PORT` through `NODE_OPTIONS`; a running
//! process (`--pid`) opens its inspector on Node's default 127.0.0.1:9229
//! when it receives SIGUSR1. Either way leaklab asks the process for its pid
//! first, so it never reads another process's inspector.
//!
//! A connection is made for each reading and closed after it: Node waits at
//! exit for a connected debugger to leave, so leaklab never stays connected.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use leaklab_probe::{GcRuntime, RuntimeHeap};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::HeapReader;
use crate::http::HttpUrl;

/// Where Node opens its inspector on SIGUSR1 unless told otherwise (`--inspect-port`).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9229";
/// What V8 holds outside its heap for JavaScript objects (Buffers, ArrayBuffers, native objects), as
/// Node tells it: `external`, which includes `arrayBuffers`.
const EXTERNAL: &str = "process.memoryUsage().external";
/// How long one reading may take: a full collection of a large heap included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One Node process's inspector.
#[derive(Debug)]
pub struct V8Inspector {
    pid: u32,
    /// `HOST:PORT` of its inspector's HTTP and WebSocket server.
    address: String,
    /// Whether it must first be sent SIGUSR1 to open its inspector (a process leaklab did not start).
    signal: bool,
}

impl V8Inspector {
    /// A process leaklab started with `--inspect=ADDRESS` in its `NODE_OPTIONS`.
    pub fn started(pid: u32, address: String) -> V8Inspector {
        V8Inspector { pid, address, signal: false }
    }

    /// A running process: SIGUSR1 opens its inspector at Node's default address.
    pub fn running(pid: u32) -> V8Inspector {
        V8Inspector { pid, address: DEFAULT_ADDRESS.to_owned(), signal: true }
    }

    /// Connects to the process's inspector, after checking that it is the process's.
    fn connect(&mut self) -> Result<Session, String> {
        if std::mem::take(&mut self.signal) {
            // SAFETY: kill(2) on a pid; no memory is involved.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGUSR1);
            }
        }
        let list = HttpUrl::parse(&format!("http://{}/json/list", self.address), "/", "")
            .and_then(|url| url.get("", "application/json", CALL_TIMEOUT))
            .map_err(|error| format!("no inspector answers at {}: {error}", self.address))?;
        let targets: Value = serde_json::from_slice(&list)
            .map_err(|error| format!("http://{}/json/list is not JSON: {error}", self.address))?;
        let url = targets
            .as_array()
            .and_then(|targets| targets.iter().find_map(|target| target["webSocketDebuggerUrl"].as_str()))
            .ok_or_else(|| format!("http://{}/json/list lists no debugger URL", self.address))?;
        let mut session = Session::open(url, &self.address)?;
        let pid = session.call("Runtime.evaluate", json!({"expression": "process.pid", "returnByValue": true}))?;
        match pid["result"]["value"].as_u64() {
            Some(pid) if pid == u64::from(self.pid) => Ok(session),
            other => Err(format!("the inspector at {} is process {other:?}'s, not {}'s", self.address, self.pid)),
        }
    }
}

impl HeapReader for V8Inspector {
    fn runtime(&self) -> GcRuntime {
        GcRuntime::V8
    }

    fn collect_and_read(&mut self) -> Result<RuntimeHeap, String> {
        let mut session = self.connect()?;
        session.call("HeapProfiler.collectGarbage", json!({}))?;
        let usage = session.call("Runtime.getHeapUsage", json!({}))?;
        // A failed evaluation leaves this reading without it; the heap's reading stands.
        let external = session.call("Runtime.evaluate", json!({"expression": EXTERNAL, "returnByValue": true}));
        session.close();
        let size = |key: &str| {
            usage[key].as_f64().map(|bytes| bytes as u64).ok_or_else(|| format!("Runtime.getHeapUsage has no {key}"))
        };
        let native_bytes = external.ok().and_then(|external| external["result"]["value"].as_f64()).map(|b| b as u64);
        Ok(RuntimeHeap {
            runtime: GcRuntime::V8,
            live_bytes: size("usedSize")?,
            committed_bytes: size("totalSize")?,
            native_bytes,
        })
    }
}

/// One WebSocket connection to an inspector, its calls numbered.
struct Session {
    socket: WebSocket<TcpStream>,
    next_id: u64,
}

impl Session {
    fn open(url: &str, address: &str) -> Result<Session, String> {
        let fail = |error: &dyn std::fmt::Display| format!("inspector {url}: {error}");
        let addr: SocketAddr = address.parse().map_err(|error| fail(&error))?;
        let stream = TcpStream::connect_timeout(&addr, CALL_TIMEOUT).map_err(|error| fail(&error))?;
        stream.set_read_timeout(Some(CALL_TIMEOUT)).map_err(|error| fail(&error))?;
        stream.set_write_timeout(Some(CALL_TIMEOUT)).map_err(|error| fail(&error))?;
        let (socket, _) = tungstenite::client(url, stream).map_err(|error| fail(&error))?;
        Ok(Session { socket, next_id: 1 })
    }

    /// Calls `method` and waits for its answer, skipping the events sent meanwhile; its `result`.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let fail = |error: &dyn std::fmt::Display| format!("{method}: {error}");
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(request)).map_err(|error| fail(&error))?;
        let started = Instant::now();
        while started.elapsed() < CALL_TIMEOUT {
            let Message::Text(text) = self.socket.read().map_err(|error| fail(&error))? else { continue };
            let mut answer: Value = serde_json::from_str(text.as_str()).map_err(|error| fail(&error))?;
            if answer["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(fail(&error));
            }
            return Ok(answer["result"].take());
        }
        Err(fail(&"no answer"))
    }

    fn close(mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A Node process holding `retained` strings of 1 KB alive and `buffers` Buffers of 64 KiB, with its
    /// inspector at `address`.
    fn node(address: &str, retained: usize, buffers: usize) -> Option<std::process::Child> {
        // Flat one-byte strings of 1,024 distinct characters: V8 keeps each whole (no shared or cons parts).
        let script = format!(
            "const {{ randomBytes }} = require('node:crypto'); \
             globalThis.kept = Array.from({{length: {retained}}}, () => randomBytes(512).toString('hex')); \
             globalThis.buffers = Array.from({{length: {buffers}}}, () => Buffer.alloc(65536, 1)); \
             setInterval(() => {{}}, 1000);"
        );
        let spawned = Command::new("node")
            .arg(format!("--inspect={address}"))
            .args(["-e", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => Some(child),
            Err(error) => {
                eprintln!("skipped: node cannot be started ({error})");
                None
            }
        }
    }

    /// Reads until the inspector answers (Node opens it as it starts).
    fn read(inspector: &mut V8Inspector) -> RuntimeHeap {
        let started = Instant::now();
        loop {
            match inspector.collect_and_read() {
                Ok(heap) => return heap,
                Err(error) if started.elapsed() > Duration::from_secs(30) => panic!("{error}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    #[test]
    fn a_node_process_says_what_it_keeps_alive_after_a_collection() {
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let Some(mut small) = node(&address, 0, 0) else { return };
        let empty = read(&mut V8Inspector::started(small.id(), address.clone()));
        small.kill().unwrap();
        small.wait().unwrap();
        let Some(mut large) = node(&address, 20_000, 200) else { return };
        let full = read(&mut V8Inspector::started(large.id(), address.clone()));
        // Another process's inspector is refused: the pid is asked first.
        let error = V8Inspector::started(std::process::id(), address).collect_and_read().unwrap_err();
        large.kill().unwrap();
        large.wait().unwrap();
        assert!(empty.committed_bytes >= empty.live_bytes && empty.live_bytes > 0, "{empty:?}");
        // 20,000 strings of 1 KB (one byte per character) and their array: about 20 MB kept alive.
        let grown = full.live_bytes as f64 - empty.live_bytes as f64;
        assert!((18e6..26e6).contains(&grown), "{grown} bytes more: {empty:?} → {full:?}");
        // 200 Buffers of 64 KiB live outside the heap: about 13 MB of external memory.
        let outside = full.native_bytes.unwrap() as f64 - empty.native_bytes.unwrap() as f64;
        assert!((12.5e6..14.5e6).contains(&outside), "{outside} bytes more outside the heap: {empty:?} → {full:?}");
        assert!(error.contains("not"), "{error}");
    }
}
