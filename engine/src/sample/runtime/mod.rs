//! What a garbage-collected runtime keeps alive, in its own words, read from
//! outside: leaklab asks the process for a full collection, then reads how
//! much of its heap is still used. That is what people who hunt leaks in
//! these runtimes look at (the old generation after a full GC on the JVM, the
//! used heap after `gc()` in V8), and what such a process's verdict judges:
//! its RSS grows in steps as the runtime sizes its heap, whether it leaks or
//! not, and then stays up once the load ends.
//!
//! - the JVM through HotSpot's attach interface ([`jvm`]), as `jcmd` uses it:
//!   `GC.run`, then `GC.heap_info`;
//! - V8 through the inspector protocol ([`v8`]): `HeapProfiler.collectGarbage`,
//!   then `Runtime.getHeapUsage`.
//!
//! Each reading also says what the runtime holds outside its heap, where a
//! leak the heap does not show lives (Buffers in V8, direct buffers and thread
//! stacks in the JVM), judged as a quantity of its own: see
//! [`RuntimeHeap::native_bytes`].
//!
//! Readings are taken on a thread of their own, paced ([`HeapWatch`]), never on
//! the sampler's path; a sample carries a reading only when it is fresh.

pub use crate::scenario::RuntimeChoice;
use leaklab_probe::{GcRuntime, RuntimeHeap};

pub mod jvm;
pub mod v8;
mod watch;

pub use watch::{HeapWatch, HeapWatchSummary};

/// Asks a process for a full collection and reads its heap.
pub trait HeapReader: Send {
    fn runtime(&self) -> GcRuntime;

    /// Collects, then reads; an error says what failed, in the runtime's own terms.
    fn collect_and_read(&mut self) -> Result<RuntimeHeap, String>;

    /// Why the readings carry no native memory, once the runtime has said so.
    fn native_untracked(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_recognised_by_program_name_and_a_choice_overrides() {
        assert_eq!(RuntimeChoice::Auto.of_program("/usr/lib/jvm/java-17/bin/java"), Some(GcRuntime::Jvm));
        assert_eq!(RuntimeChoice::Auto.of_program("node"), Some(GcRuntime::V8));
        assert_eq!(RuntimeChoice::Auto.of_program("target/peers/java/echo-client"), None);
        assert_eq!(RuntimeChoice::Jvm.of_program("echo-client"), Some(GcRuntime::Jvm));
        assert_eq!(RuntimeChoice::None.of_program("java"), None);
        // This test runs in a Rust binary: no runtime of ours.
        assert_eq!(RuntimeChoice::Auto.of_process(std::process::id()), None);
        assert_eq!(RuntimeChoice::V8.of_process(std::process::id()), Some(GcRuntime::V8));
    }
}
