//! One reading of a process: memory, descriptors, threads, connections.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connections::{ConnectionCounter, ConnectionCounts, StreamCounter};
use crate::jemalloc::{JemallocReader, JemallocStats};
use crate::procfs::{self, Proc, ProcError, ProcFiles, RssParts};

/// What a process looks like at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessSnapshot {
    /// Process id of the measured process; `null` for a server read from its metrics endpoint,
    /// which may run on another machine.
    pub pid: Option<u32>,
    /// Resident set size, from `/proc/<pid>/statm` (or the endpoint's `process_resident_memory_bytes`).
    pub rss_bytes: u64,
    /// The RSS's anonymous, file-backed and shared parts, from `/proc/<pid>/status`; `null` for a server
    /// read from its metrics endpoint.
    #[serde(default)]
    pub rss_parts: Option<RssParts>,
    /// Open file descriptors, from `/proc/<pid>/fd` (or the endpoint's `process_open_fds`); `null` when
    /// the endpoint does not say.
    pub fds: Option<u64>,
    /// Threads, from `/proc/<pid>/stat` (or the endpoint's `process_threads` or `go_threads`); `null`
    /// when the endpoint does not say.
    pub threads: Option<u64>,
    /// jemalloc's byte counts; absent when the allocator could not be read.
    pub jemalloc: Option<JemallocStats>,
    /// The process's TCP connections; `null` for a server read from a metrics endpoint other than the toy
    /// server's (no standard metric counts them).
    pub connections: Option<Connections>,
    /// gRPC streams open now: for the load generator, the server streams it holds unfinished; for the
    /// toy server, its RPCs in flight. `null` for a process that does not count them for leaklab.
    #[serde(default)]
    pub streams: Option<u64>,
    /// A garbage-collected runtime's own account of its heap (the JVM, V8), read right after leaklab asked
    /// it to collect; absent in every sample but those that took a fresh reading, and for other processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_heap: Option<RuntimeHeap>,
}

/// A garbage-collected runtime, as leaklab reads its heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GcRuntime {
    /// HotSpot (OpenJDK): read through its attach interface, as `jcmd` reads it.
    Jvm,
    /// Node's V8: read through its inspector protocol.
    V8,
}

impl GcRuntime {
    pub fn name(self) -> &'static str {
        match self {
            GcRuntime::Jvm => "jvm",
            GcRuntime::V8 => "v8",
        }
    }
}

/// What a garbage-collected runtime says of its heap just after a full collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuntimeHeap {
    pub runtime: GcRuntime,
    /// Bytes of the heap still used after the collection: what the program keeps alive.
    pub live_bytes: u64,
    /// Bytes the runtime holds for its heap (committed), used or not.
    pub committed_bytes: u64,
    /// Bytes the runtime accounts for outside its collected heap, where a leak the heap does not show
    /// lives: V8's `external` (the memory of Buffers, ArrayBuffers and native objects that JavaScript
    /// objects hold); HotSpot's Native Memory Tracking `Thread`, `Other` and `Internal` categories (thread
    /// stacks, direct buffers such as netty's, JNI and VM internals), committed. `null` when the runtime
    /// does not track it (a JVM started without `-XX:NativeMemoryTracking=summary`).
    #[serde(default)]
    pub native_bytes: Option<u64>,
}

impl ProcessSnapshot {
    /// Open TCP connections, when they were counted.
    pub fn open_connections(&self) -> Option<u64> {
        self.connections.map(|c| c.open)
    }

    /// Several processes (the load generators of several hosts) as one: each figure summed, and absent
    /// when one of them lacks it; no pid. `None` for no process.
    pub fn total(processes: &[ProcessSnapshot]) -> Option<ProcessSnapshot> {
        processes.first()?;
        let sum = |figure: fn(&ProcessSnapshot) -> Option<u64>| processes.iter().map(figure).sum::<Option<u64>>();
        Some(ProcessSnapshot {
            pid: None,
            rss_bytes: processes.iter().map(|p| p.rss_bytes).sum(),
            rss_parts: (|| {
                Some(RssParts {
                    anon_bytes: sum(|p| Some(p.rss_parts?.anon_bytes))?,
                    file_bytes: sum(|p| Some(p.rss_parts?.file_bytes))?,
                    shmem_bytes: sum(|p| Some(p.rss_parts?.shmem_bytes))?,
                })
            })(),
            fds: sum(|p| p.fds),
            threads: sum(|p| p.threads),
            jemalloc: (|| {
                Some(JemallocStats {
                    allocated_bytes: sum(|p| Some(p.jemalloc?.allocated_bytes))?,
                    active_bytes: sum(|p| Some(p.jemalloc?.active_bytes))?,
                    resident_bytes: sum(|p| Some(p.jemalloc?.resident_bytes))?,
                    mapped_bytes: sum(|p| Some(p.jemalloc?.mapped_bytes))?,
                    retained_bytes: sum(|p| Some(p.jemalloc?.retained_bytes))?,
                })
            })(),
            connections: sum(|p| p.open_connections()).map(|open| Connections {
                open,
                opened: sum(|p| p.connections?.opened),
                closed: sum(|p| p.connections?.closed),
            }),
            streams: sum(|p| p.streams),
            // Each process's runtime reads its heap at its own moments: there is no sum of one instant.
            runtime_heap: None,
        })
    }
}

/// A process's TCP connections at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Connections {
    /// Open now: counted exactly by a leaklab process itself, or a foreign
    /// process's ESTABLISHED TCP sockets as the kernel lists them.
    pub open: u64,
    /// Opened since the process's counter was created; `null` for a process
    /// leaklab did not write (the kernel keeps no such count).
    pub opened: Option<u64>,
    /// Closed since the counter was created; `null` as for `opened`.
    pub closed: Option<u64>,
}

impl From<ConnectionCounts> for Connections {
    fn from(counts: ConnectionCounts) -> Self {
        Connections { open: counts.open, opened: Some(counts.opened), closed: Some(counts.closed) }
    }
}

impl Connections {
    /// Open connections of a process whose sockets are read from the kernel, which counts no history.
    pub fn open_only(open: u64) -> Self {
        Connections { open, opened: None, closed: None }
    }
}

/// Reads [`ProcessSnapshot`]s of the calling process.
#[derive(Debug)]
pub struct SnapshotReader {
    jemalloc: Option<JemallocReader>,
    connections: ConnectionCounter,
    streams: Option<StreamCounter>,
    /// Kept open so that measuring needs no new descriptor (`None` if they could not be opened).
    files: Option<ProcFiles>,
}

impl SnapshotReader {
    /// `connections` is the counter that the process's transport wraps its sockets with.
    /// jemalloc figures are read only if jemalloc is the global allocator.
    pub fn new(connections: ConnectionCounter) -> Self {
        // Asked once per process: the answer cannot change, and the probe allocates 4 MiB. Asked per
        // reader, two readers made at once (two scrapes of a metrics endpoint) could each see the
        // other's block freed mid-probe and wrongly conclude jemalloc is not the allocator.
        static GLOBAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let jemalloc = JemallocReader::new().ok().filter(|reader| {
            // Another thread freeing megabytes during the probe hides its block: a few tries.
            *GLOBAL.get_or_init(|| (0..20).any(|_| reader.is_global_allocator()))
        });
        Self { jemalloc, connections, streams: None, files: ProcFiles::open(Proc::Myself).ok() }
    }

    /// Reports `streams` as the process's open streams too.
    pub fn with_streams(mut self, streams: StreamCounter) -> Self {
        self.streams = Some(streams);
        self
    }

    /// The counter this reader reports.
    pub fn connections(&self) -> &ConnectionCounter {
        &self.connections
    }

    /// Whether allocator figures are read (jemalloc is the global allocator).
    pub fn reads_jemalloc(&self) -> bool {
        self.jemalloc.is_some()
    }

    pub fn read(&self) -> Result<ProcessSnapshot, ProcError> {
        Ok(ProcessSnapshot {
            pid: Some(std::process::id()),
            rss_bytes: match &self.files {
                Some(files) => files.rss_bytes()?,
                None => procfs::rss_bytes(Proc::Myself)?,
            },
            rss_parts: self.files.as_ref().and_then(|files| files.rss_parts().ok()),
            fds: Some(procfs::open_fds(Proc::Myself)?),
            threads: Some(match &self.files {
                Some(files) => files.threads()?,
                None => procfs::threads(Proc::Myself)?,
            }),
            jemalloc: self.jemalloc.as_ref().and_then(|reader| reader.read().ok()),
            connections: Some(self.connections.counts().into()),
            streams: self.streams.as_ref().map(StreamCounter::open_now),
            runtime_heap: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_of_this_process_is_sane() {
        let counter = ConnectionCounter::new();
        let _open = counter.track(());
        let snapshot = SnapshotReader::new(counter).read().unwrap();
        assert_eq!(snapshot.pid, Some(std::process::id()));
        assert!(snapshot.rss_bytes > 0, "{snapshot:?}");
        assert!(snapshot.fds.is_some_and(|fds| fds >= 3) && snapshot.threads.is_some_and(|t| t >= 1), "{snapshot:?}");
        assert_eq!(snapshot.connections, Some(Connections { open: 1, opened: Some(1), closed: Some(0) }));
        // This test binary's global allocator is jemalloc (see jemalloc.rs), so its figures are present.
        assert!(snapshot.jemalloc.is_some_and(|j| j.allocated_bytes > 0));
    }

    #[test]
    fn a_total_sums_each_figure_and_lacks_what_one_process_lacks() {
        let process = |rss_bytes, fds, allocated_bytes, open| ProcessSnapshot {
            pid: Some(7),
            rss_bytes,
            rss_parts: None,
            fds,
            threads: Some(2),
            jemalloc: Some(JemallocStats { allocated_bytes, ..Default::default() }),
            connections: Some(Connections { open, opened: Some(open + 1), closed: Some(1) }),
            streams: None,
            runtime_heap: None,
        };
        let total = ProcessSnapshot::total(&[process(100, Some(3), 10, 2), process(50, None, 5, 4)]).unwrap();
        assert_eq!((total.pid, total.rss_bytes, total.fds, total.threads), (None, 150, None, Some(4)));
        assert_eq!(total.jemalloc.map(|j| j.allocated_bytes), Some(15));
        assert_eq!(total.connections, Some(Connections { open: 6, opened: Some(8), closed: Some(2) }));
        assert_eq!(total.rss_parts, None);
        assert_eq!(ProcessSnapshot::total(&[]), None);
    }

    #[test]
    fn readers_made_at_once_while_memory_churns_all_read_the_allocator() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(std::hint::black_box(vec![1u8; 4 << 20]));
                }
            })
        };
        let readers: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| SnapshotReader::new(ConnectionCounter::new()).reads_jemalloc()))
            .collect();
        let read: Vec<bool> = readers.into_iter().map(|reader| reader.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        assert!(read.iter().all(|&reads| reads), "{read:?}");
    }
}
