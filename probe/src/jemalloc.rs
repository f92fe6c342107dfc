//! jemalloc's own byte counts, read through `mallctl`.
//!
//! The statistics are cached by jemalloc and refreshed only when the epoch
//! advances, so every [`JemallocReader::read`] advances it first. The numbers
//! describe the jemalloc linked into this binary: they mean something only in
//! a process whose global allocator is `tikv_jemallocator::Jemalloc`, as both
//! leaklab binaries are.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tikv_jemalloc_ctl::{epoch, epoch_mib, stats};

/// jemalloc byte counts at one instant. See jemalloc's `stats.*` for exact meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct JemallocStats {
    /// Bytes the application holds (`stats.allocated`): what a leak grows.
    pub allocated_bytes: u64,
    /// Bytes in active pages (`stats.active`), a page-rounded `allocated`.
    pub active_bytes: u64,
    /// Bytes in physically resident pages jemalloc maps, including its metadata (`stats.resident`).
    pub resident_bytes: u64,
    /// Bytes in active extents mapped by jemalloc (`stats.mapped`).
    pub mapped_bytes: u64,
    /// Bytes in virtual memory jemalloc kept instead of returning it to the OS (`stats.retained`).
    pub retained_bytes: u64,
}

/// Cached `mallctl` handles, so a read costs no name lookups.
pub struct JemallocReader {
    epoch: epoch_mib,
    allocated: stats::allocated_mib,
    active: stats::active_mib,
    resident: stats::resident_mib,
    mapped: stats::mapped_mib,
    retained: stats::retained_mib,
}

impl std::fmt::Debug for JemallocReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JemallocReader")
    }
}

/// jemalloc refused a `mallctl` call.
#[derive(Debug, thiserror::Error)]
#[error("jemalloc mallctl {what}: {reason}")]
pub struct JemallocError {
    what: &'static str,
    reason: String,
}

fn ctl<T>(what: &'static str, result: tikv_jemalloc_ctl::Result<T>) -> Result<T, JemallocError> {
    result.map_err(|error| JemallocError { what, reason: error.to_string() })
}

impl JemallocReader {
    pub fn new() -> Result<Self, JemallocError> {
        Ok(Self {
            epoch: ctl("epoch", epoch::mib())?,
            allocated: ctl("stats.allocated", stats::allocated::mib())?,
            active: ctl("stats.active", stats::active::mib())?,
            resident: ctl("stats.resident", stats::resident::mib())?,
            mapped: ctl("stats.mapped", stats::mapped::mib())?,
            retained: ctl("stats.retained", stats::retained::mib())?,
        })
    }

    /// Whether jemalloc is this process's global allocator: a 4 MiB
    /// allocation must show up in `stats.allocated`. When it is not, its
    /// statistics describe an allocator nobody uses and must not be reported.
    pub fn is_global_allocator(&self) -> bool {
        const PROBE_BYTES: usize = 4 << 20;
        let Ok(before) = self.read() else { return false };
        let block = std::hint::black_box(vec![1u8; PROBE_BYTES]);
        let during = self.read();
        drop(block);
        during.is_ok_and(|during| during.allocated_bytes >= before.allocated_bytes + PROBE_BYTES as u64 / 2)
    }

    /// Advances the epoch and reads fresh statistics.
    pub fn read(&self) -> Result<JemallocStats, JemallocError> {
        ctl("epoch", self.epoch.advance())?;
        Ok(JemallocStats {
            allocated_bytes: ctl("stats.allocated", self.allocated.read())? as u64,
            active_bytes: ctl("stats.active", self.active.read())? as u64,
            resident_bytes: ctl("stats.resident", self.resident.read())? as u64,
            mapped_bytes: ctl("stats.mapped", self.mapped.read())? as u64,
            retained_bytes: ctl("stats.retained", self.retained.read())? as u64,
        })
    }
}

/// `MALLCTL_ARENAS_ALL` from jemalloc's headers: the arena index meaning "every arena".
const MALLCTL_ARENAS_ALL: u32 = 4096;

/// Returns the dirty and muzzy pages of every arena to the OS
/// (`arena.<MALLCTL_ARENAS_ALL>.purge`), so that memory figures taken next
/// are not inflated by pages jemalloc keeps for reuse. `stats.allocated` does
/// not change; RSS, `active` and `resident` may fall.
///
/// Called through `mallctl` with null pointers: the control takes no value,
/// and tikv-jemalloc-ctl's `raw::write` with `()` fails with EPERM.
pub fn purge_all_arenas() -> Result<(), JemallocError> {
    let name = format!("arena.{MALLCTL_ARENAS_ALL}.purge\0");
    // SAFETY: `name` is NUL-terminated and outlives the call; jemalloc reads no
    // value and writes no value when every pointer is null and `newlen` is 0.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    match code {
        0 => Ok(()),
        errno => Err(JemallocError {
            what: "arena.<MALLCTL_ARENAS_ALL>.purge",
            reason: std::io::Error::from_raw_os_error(errno).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    #[test]
    fn allocated_follows_a_large_allocation() {
        let _turn = crate::MEMORY_TESTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let reader = JemallocReader::new().unwrap();
        let before = reader.read().unwrap();
        let block = vec![1u8; 64 << 20];
        let during = reader.read().unwrap();
        std::hint::black_box(&block);
        drop(block);
        let after = reader.read().unwrap();

        // Other tests run in parallel threads, so allow 16 MiB of their noise.
        let grew = during.allocated_bytes as i64 - before.allocated_bytes as i64;
        assert!(grew > 48 << 20, "allocating 64 MiB moved allocated by {grew}");
        let shrank = during.allocated_bytes as i64 - after.allocated_bytes as i64;
        assert!(shrank > 48 << 20, "freeing 64 MiB moved allocated by {shrank}");
    }

    #[test]
    fn jemalloc_knows_it_is_the_global_allocator() {
        assert!(JemallocReader::new().unwrap().is_global_allocator());
    }

    #[test]
    fn purge_returns_freed_pages_without_changing_what_is_allocated() {
        let reader = JemallocReader::new().unwrap();
        // Small objects freed into their slabs leave dirty pages behind.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|_| vec![1u8; 4096]).collect();
        drop(std::hint::black_box(blocks));
        purge_all_arenas().unwrap();
        let after = reader.read().unwrap();
        assert!(after.resident_bytes >= after.active_bytes, "{after:?}");
        // A second purge has nothing left to fail on.
        purge_all_arenas().unwrap();
    }

    #[test]
    fn byte_counts_are_ordered_as_jemalloc_documents() {
        let stats = JemallocReader::new().unwrap().read().unwrap();
        assert!(stats.allocated_bytes > 0);
        assert!(stats.active_bytes >= stats.allocated_bytes, "{stats:?}");
        assert!(stats.mapped_bytes >= stats.active_bytes, "{stats:?}");
        assert!(stats.resident_bytes >= stats.active_bytes, "{stats:?}");
    }
}
