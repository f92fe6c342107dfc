//! A process leaklab did not write, measured from outside: its RSS and
//! threads from `/proc` files opened once, its fds from `/proc/<pid>/fd`, its
//! connections from the kernel's socket table (beside the sampler), and the
//! toy server over its side channel when the run started one; with a channelz
//! service, its channels as its gRPC runtime counts them; for a garbage-
//! collected runtime, its live heap as the runtime reads it after a full
//! collection ([`HeapWatch`], beside the sampler). It has no
//! allocator leaklab can read and cannot be brought to rest, so its samples
//! are never checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use leaklab_probe::control::ServerStats;
use leaklab_probe::procfs::{self, Proc, ProcError, ProcFiles};
use leaklab_probe::{Connections, ProcessSnapshot};

use super::runtime::HeapWatch;
use super::{ChannelzWatch, Measure, NetworkSample, SocketWatch};
use crate::target::ServerControl;

/// Measures process `pid` from outside.
#[derive(Debug)]
pub struct ForeignMeasure {
    pid: u32,
    files: ProcFiles,
    sockets: Arc<SocketWatch>,
    server: Option<ServerControl>,
    channelz: Option<Arc<ChannelzWatch>>,
    heap: Option<Arc<HeapWatch>>,
}

impl ForeignMeasure {
    /// `sockets` counts `pid`'s connections (and TIME_WAIT towards the toy server's port, when there is one);
    /// the run keeps a handle too, for the process's sockets by state at the end. `channelz` reads its
    /// channelz service, whose counts every sample carries as counters. `heap` reads its runtime's heap:
    /// a sample carries a reading when it is fresh.
    pub fn new(
        pid: u32,
        sockets: Arc<SocketWatch>,
        server: Option<ServerControl>,
        channelz: Option<Arc<ChannelzWatch>>,
        heap: Option<Arc<HeapWatch>>,
    ) -> Result<Self, ProcError> {
        Ok(Self { pid, files: ProcFiles::open(Proc::Pid(pid))?, sockets, server, channelz, heap })
    }
}

impl Measure for ForeignMeasure {
    fn client(&mut self) -> Result<ProcessSnapshot, ProcError> {
        let snapshot = ProcessSnapshot {
            pid: Some(self.pid),
            rss_bytes: self.files.rss_bytes()?,
            rss_parts: self.files.rss_parts().ok(),
            fds: Some(procfs::open_fds(Proc::Pid(self.pid))?),
            threads: Some(self.files.threads()?),
            jemalloc: None,
            connections: Some(Connections::open_only(self.sockets.latest().established().unwrap_or(0))),
            streams: None,
            runtime_heap: self.heap.as_ref().and_then(|heap| heap.take_fresh()),
        };
        // Read as it exits, its figures are zeros (the kernel frees its memory before it turns zombie):
        // that is its end, not its memory. A live process always has pages resident.
        if snapshot.rss_bytes == 0 || !Proc::Pid(self.pid).is_running() {
            return Err(ProcError::Exited { pid: self.pid });
        }
        Ok(snapshot)
    }

    fn server(&mut self) -> Option<ServerStats> {
        self.server.as_mut().and_then(ServerControl::stats)
    }

    fn takes_checkpoints(&self) -> bool {
        false
    }

    fn settle(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn network(&mut self) -> NetworkSample {
        NetworkSample { time_wait: self.sockets.latest().time_wait, reconnects: None, goaways_received: None }
    }

    fn counters(&mut self) -> BTreeMap<String, u64> {
        self.channelz.as_ref().map(|channelz| channelz.counters()).unwrap_or_default()
    }

    fn side_busy(&self) -> Duration {
        self.sockets.busy() + self.channelz.as_ref().map_or(Duration::ZERO, |channelz| channelz.busy())
    }
}
