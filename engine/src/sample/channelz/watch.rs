//! The thread that reads a process's channelz service now and then, paced, and keeps the latest reading.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leaklab_probe::procfs::Proc;

use super::{ChannelzReading, ChannelzSource, ChannelzSummary, Known, Sweep};
use crate::sample::side::SideThread;

/// Full sweeps list at most this many channels a second, on average: a leak that piles up channels would
/// otherwise be measured under a growing load of leaklab's own. In a Go process that garbage inflates the
/// heap the garbage collector lets grow (`GOGC`): full sweeps of `go-leak`'s `ClientConn`s every second
/// added about 40 KB to its 90 KB per `ClientConn`. With 4 channels every reading is a full sweep; with
/// 2,000, one in 10 s is.
const FULL_SWEEP_CHANNELS_PER_SECOND: f64 = 200.0;
/// And a full sweep waits at least this many times as long as the last one took. Some runtimes answer
/// slowly: grpcio's `grpcio-channelz` turns C-core's JSON into messages in Python, about 0.7 ms a
/// channel, so listing `python-leak`'s 1,000 channels took 0.7 s; paced by channels alone, its readings
/// kept the process answering a quarter of the time.
const FULL_SWEEP_PACE: u32 = 50;
/// After a failed reading, how long the process has to exit for the failure to be its end.
const EXIT_GRACE: Duration = Duration::from_millis(300);

/// The thread that keeps the latest [`ChannelzReading`]. Dropping it stops the thread.
#[derive(Debug)]
pub struct ChannelzWatch {
    /// What the readings came to so far, kept as they are taken.
    shared: Arc<Mutex<ChannelzSummary>>,
    _thread: SideThread,
}

impl ChannelzWatch {
    /// Reads the channelz service of process `pid` at `address` now and then once every `period` after
    /// the last reading ended, until dropped or the process is gone. The process may not be listening
    /// yet: a failed reading is counted and the next one tried a period later; one that failed because
    /// the process had exited is not a failure, and ends the readings.
    pub fn start(address: &str, pid: u32, period: Duration) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // The lazy channel's worker task is spawned on the thread's own runtime.
        let source = {
            let _inside = runtime.enter();
            ChannelzSource::new(address).map_err(std::io::Error::other)?
        };
        let shared = Arc::new(Mutex::new(ChannelzSummary {
            address: address.to_owned(),
            readings: 0,
            reading_s: 0.0,
            failed_readings: 0,
            first_error: None,
            last: None,
        }));
        let thread = {
            let shared = Arc::clone(&shared);
            SideThread::spawn("channelz-watch", move |pause| {
                let mut known = Known::default();
                let mut full_due = Instant::now();
                loop {
                    let started = Instant::now();
                    let sweep = if started >= full_due { Sweep::Full } else { Sweep::New };
                    let reading = runtime.block_on(source.read(&mut known, sweep));
                    let took = started.elapsed();
                    if let (Sweep::Full, Ok(reading)) = (sweep, &reading) {
                        let rest = reading.channels as f64 / FULL_SWEEP_CHANNELS_PER_SECOND;
                        full_due = Instant::now() + Duration::from_secs_f64(rest).max(took * FULL_SWEEP_PACE);
                    }
                    // A process on its way out closes its channelz server first: a failure followed by its
                    // exit is its end, not a failure.
                    if reading.is_err() && (!pause.wait(EXIT_GRACE) || !Proc::Pid(pid).is_running()) {
                        return;
                    }
                    if let Ok(mut shared) = shared.lock() {
                        shared.reading_s += took.as_secs_f64();
                        match reading {
                            Ok(reading) => {
                                shared.readings += 1;
                                shared.last = Some(reading);
                            }
                            Err(error) => {
                                // Before its first answer, the process may not be listening yet.
                                if shared.readings > 0 {
                                    shared.failed_readings += 1;
                                }
                                shared.first_error.get_or_insert(error.to_string());
                            }
                        }
                    }
                    if !pause.wait(period) {
                        return;
                    }
                }
            })?
        };
        Ok(Self { shared, _thread: thread })
    }

    /// The latest complete reading's counters; empty before the first one.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.locked().last.as_ref().map(ChannelzReading::counters).unwrap_or_default()
    }

    /// Wall time the thread spent reading so far.
    pub fn busy(&self) -> Duration {
        Duration::from_secs_f64(self.locked().reading_s)
    }

    /// What the readings came to so far.
    pub fn summary(&self) -> ChannelzSummary {
        self.locked().clone()
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ChannelzSummary> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
