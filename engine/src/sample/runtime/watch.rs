//! The thread that reads a runtime's heap, paced: each reading makes the
//! process collect all its garbage, which costs it a pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use leaklab_probe::procfs::Proc;
use leaklab_probe::{GcRuntime, RuntimeHeap};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HeapReader;

/// How often the thread looks whether it should stop, while it waits.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Reads a process's heap every period on its own thread; a sample takes the reading once, when it is fresh.
#[derive(Debug)]
pub struct HeapWatch {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct State {
    fresh: Option<RuntimeHeap>,
    runtime: Option<GcRuntime>,
    readings: u64,
    failures: u64,
    /// Why the last attempt failed.
    error: Option<String>,
    /// Time the readings took: the process's collections, mostly.
    busy: Duration,
    native_untracked: Option<String>,
}

/// What a run's heap readings came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeapWatchSummary {
    /// The runtime read (`jvm`, `v8`); `null` when the process was never recognised as one.
    pub runtime: Option<GcRuntime>,
    /// Readings taken, each after a full collection the process was asked for.
    pub readings: u64,
    /// Attempts that failed after the first reading (before it, the runtime may still be starting), while
    /// the process went on running (one that failed as it exited is not counted).
    pub failures: u64,
    /// Why the last failed attempt failed; `null` when none did.
    pub error: Option<String>,
    /// Seconds the process spent answering: its collections and the reads.
    pub busy_s: f64,
    /// Why the readings carry no native memory (a JVM without Native Memory Tracking); `null` when they do.
    #[serde(default)]
    pub native_untracked: Option<String>,
}

impl HeapWatch {
    /// Reads `pid` every `period`, with the reader `open` gives once it recognises the process (it is asked
    /// again each period until it does).
    pub fn start(
        pid: u32,
        period: Duration,
        mut open: impl FnMut() -> Option<Box<dyn HeapReader>> + Send + 'static,
    ) -> std::io::Result<HeapWatch> {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::Builder::new().name("heap-watch".to_owned()).spawn(move || {
            let mut reader: Option<Box<dyn HeapReader>> = None;
            // A failed reading counts once the process is seen running after it: one that failed because
            // the process was exiting is not a failure of the reading.
            let mut unconfirmed = false;
            while pause(period, &stopped) && Proc::Pid(pid).is_running() {
                if std::mem::take(&mut unconfirmed) {
                    shared.lock().unwrap().failures += 1;
                }
                if reader.is_none() {
                    reader = open();
                    shared.lock().unwrap().runtime = reader.as_ref().map(|reader| reader.runtime());
                }
                let Some(reader) = reader.as_mut() else { continue };
                let started = Instant::now();
                let result = reader.collect_and_read();
                let mut state = shared.lock().unwrap();
                state.busy += started.elapsed();
                state.native_untracked = reader.native_untracked().map(str::to_owned);
                match result {
                    Ok(heap) => {
                        state.fresh = Some(heap);
                        state.readings += 1;
                    }
                    Err(error) => {
                        unconfirmed = state.readings > 0;
                        state.error = Some(error);
                    }
                }
            }
            if unconfirmed && Proc::Pid(pid).is_running() {
                shared.lock().unwrap().failures += 1;
            }
        })?;
        Ok(HeapWatch { state, stop, thread: Mutex::new(Some(thread)) })
    }

    /// The reading taken since the last call, if there is one.
    pub fn take_fresh(&self) -> Option<RuntimeHeap> {
        self.state.lock().unwrap().fresh.take()
    }

    /// Stops the thread; what the readings came to.
    pub fn summary(&self) -> HeapWatchSummary {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
        let state = self.state.lock().unwrap();
        HeapWatchSummary {
            runtime: state.runtime,
            readings: state.readings,
            failures: state.failures,
            error: state.error.clone(),
            busy_s: state.busy.as_secs_f64(),
            native_untracked: state.native_untracked.clone(),
        }
    }
}

impl Drop for HeapWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits `period`; false when asked to stop.
fn pause(period: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + period;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(STOP_POLL.min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A runtime that answers from a script: an error first, then growing heaps; each reading is reported.
    struct Scripted {
        calls: u64,
        told: mpsc::Sender<u64>,
    }

    impl HeapReader for Scripted {
        fn runtime(&self) -> GcRuntime {
            GcRuntime::V8
        }

        fn collect_and_read(&mut self) -> Result<RuntimeHeap, String> {
            self.calls += 1;
            let _ = self.told.send(self.calls);
            match self.calls {
                1 => Err("inspector not open yet".to_owned()),
                3 => Err("collection refused".to_owned()),
                n => Ok(RuntimeHeap {
                    runtime: GcRuntime::V8,
                    live_bytes: n * 1000,
                    committed_bytes: 1 << 20,
                    native_bytes: None,
                }),
            }
        }

        fn native_untracked(&self) -> Option<&str> {
            (self.calls >= 2).then_some("tracking is off")
        }
    }

    #[test]
    fn a_reading_is_taken_once_and_failures_count_only_after_the_first_reading() {
        let (told, calls) = mpsc::channel();
        let mut reader = Some(Box::new(Scripted { calls: 0, told }) as Box<dyn HeapReader>);
        let watch = HeapWatch::start(std::process::id(), Duration::from_millis(1), move || reader.take()).unwrap();
        let guard = Duration::from_secs(30);
        while calls.recv_timeout(guard).expect("the watch reads") < 2 {}
        // The second call's reading is fresh until taken (the fourth may have replaced it meanwhile).
        let first = loop {
            if let Some(heap) = watch.take_fresh() {
                break heap;
            }
        };
        assert!(first.live_bytes == 2000 || first.live_bytes >= 4000, "{first:?}");
        while calls.recv_timeout(guard).expect("the watch reads") < 5 {}
        let summary = watch.summary();
        assert_eq!(summary.runtime, Some(GcRuntime::V8));
        assert!(summary.readings >= 3, "{summary:?}");
        assert_eq!(summary.failures, 1, "the error before the first reading is not a failure: {summary:?}");
        assert_eq!(summary.error.as_deref(), Some("collection refused"));
        assert_eq!(summary.native_untracked.as_deref(), Some("tracking is off"));
    }

    /// A runtime whose process ends while it is being read: the reading fails, as a JVM's attach socket
    /// closes without an answer at exit.
    struct Exiting {
        process: std::process::Child,
        calls: u64,
    }

    impl HeapReader for Exiting {
        fn runtime(&self) -> GcRuntime {
            GcRuntime::Jvm
        }

        fn collect_and_read(&mut self) -> Result<RuntimeHeap, String> {
            self.calls += 1;
            if self.calls == 1 {
                return Ok(RuntimeHeap {
                    runtime: GcRuntime::Jvm,
                    live_bytes: 1,
                    committed_bytes: 2,
                    native_bytes: None,
                });
            }
            // Gone, as a JVM that closed its attach socket at exit is by the time the watch looks again.
            self.process.kill().unwrap();
            self.process.wait().unwrap();
            Err("jcmd GC.run: the JVM answered \"\"".to_owned())
        }
    }

    #[test]
    fn a_reading_that_fails_as_the_process_exits_is_not_a_failure() {
        let process = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = process.id();
        let mut reader = Some(Box::new(Exiting { process, calls: 0 }) as Box<dyn HeapReader>);
        let watch = HeapWatch::start(pid, Duration::from_millis(1), move || reader.take()).unwrap();
        // The thread ends by itself once the process has: the summary waits for it.
        let guard = Instant::now();
        while Proc::Pid(pid).is_running() && guard.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let summary = watch.summary();
        assert_eq!((summary.readings, summary.failures), (1, 0), "{summary:?}");
        assert!(summary.error.unwrap().contains("answered"));
    }
}
