//! What a process looks like now.
//!
//! Both leaklab processes measure themselves with this crate: the load
//! generator directly, the server when the load generator asks it over the
//! [`control`] side channel. Keeping one reader for both means a client and a
//! server figure are always measured the same way.
//!
//! - [`procfs`]: resident set size, open file descriptors and threads, from `/proc`;
//! - [`jemalloc`]: the allocator's own byte counts (allocated, active, resident, mapped, retained);
//! - [`connections`]: exact counts of open TCP connections, kept by wrapping each socket,
//!   so counting stays O(1) at 20,000 connections, and of open gRPC streams;
//! - [`snapshot`]: the serde type that carries all of it;
//! - [`sockdiag`]: TCP sockets by state from the kernel's sock_diag netlink interface (TIME_WAIT,
//!   a foreign process's connections), at a cost that follows the sockets asked for;
//! - [`control`]: the line protocol between the load generator and the server it started;
//! - [`heap`]: jemalloc's sampling heap profiler, dumped and symbolized in-process;
//! - [`exposition`]: the Prometheus text format, read from a server's metrics endpoint and written by
//!   the toy server's.

pub mod connections;
pub mod control;
pub mod exposition;
pub mod heap;
pub mod jemalloc;
pub mod procfs;
pub mod snapshot;
pub mod sockdiag;

pub use connections::{ConnectionCounter, ConnectionCounts, Counted, OpenStream, StreamCounter};
pub use jemalloc::{JemallocReader, JemallocStats};
pub use snapshot::{Connections, GcRuntime, ProcessSnapshot, RuntimeHeap, SnapshotReader};

/// A C string pointer that may live in a `static`: the `malloc_conf` both
/// binaries export for jemalloc to read at start.
#[repr(transparent)]
#[derive(Debug)]
pub struct MallocConf(pub *const u8);

// SAFETY: it points at a `'static` NUL-terminated byte string that nothing writes.
unsafe impl Sync for MallocConf {}

/// Tests that measure this process's memory while allocating take turns:
/// in one test process, another test's large free would hide their growth.
#[cfg(test)]
pub(crate) static MEMORY_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
