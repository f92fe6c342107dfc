//! The sampling thread. It runs outside the tokio runtime so that a busy
//! load cannot delay samples, and samples cannot steal the load's workers.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Measure, Phase, Sample};
use crate::load::{LoadCounters, PhaseListener};

enum Command {
    /// A phase begins; the sender, if any, is told once its first sample is taken.
    Mark(Phase, Option<mpsc::Sender<()>>),
    Finish,
}

/// Called with every sample as it is taken (the live progress line).
pub type Observer = Box<dyn FnMut(&Sample) + Send>;

/// What the sampling thread produced.
#[derive(Debug)]
pub struct Recording {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// The first error writing the samples file, if any; sampling went on in memory.
    pub write_error: Option<io::Error>,
    /// Samples whose client figures could not be read (they were skipped).
    pub client_errors: u64,
    /// Wall time spent taking samples, the server's side-channel answer
    /// included: an upper bound on the CPU time sampling cost both processes.
    pub busy: Duration,
}

/// Handle on the sampling thread.
#[derive(Debug)]
pub struct Recorder {
    commands: mpsc::Sender<Command>,
    thread: JoinHandle<Recording>,
}

/// Tells the sampling thread that a phase begins; it samples at once.
#[derive(Debug, Clone)]
pub struct Marker {
    commands: mpsc::Sender<Command>,
}

impl Marker {
    /// Starts `phase`; its first sample is taken as soon as the sampling thread gets to it.
    pub fn mark(&self, phase: Phase) {
        // The thread only stops after `finish`, so a send cannot fail before it.
        let _ = self.commands.send(Command::Mark(phase, None));
    }

    /// Starts `phase` and returns once its first sample is taken.
    pub fn mark_and_wait(&self, phase: Phase) {
        let (taken, done) = mpsc::channel();
        if self.commands.send(Command::Mark(phase, Some(taken))).is_ok() {
            let _ = done.recv();
        }
    }
}

impl PhaseListener for Marker {
    fn warmup_done(&self) {
        self.mark(Phase::Load);
    }

    fn load_done(&self) {
        self.mark_and_wait(Phase::Cooldown);
    }
}

impl Recorder {
    /// Starts sampling: one `Baseline` sample before returning, then one every `interval`
    /// (`None`: only at phase changes and at the end). Each sample is written
    /// to `sink` as one JSON line and flushed.
    pub fn start(
        mut measure: Box<dyn Measure>,
        counters: Arc<LoadCounters>,
        run_started: Instant,
        interval: Option<Duration>,
        mut sink: Box<dyn Write + Send>,
        mut observer: Option<Observer>,
    ) -> io::Result<Self> {
        let (commands, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new().name("sampler".into()).spawn(move || {
            let mut recording =
                Recording { samples: Vec::new(), write_error: None, client_errors: 0, busy: Duration::ZERO };
            let mut phase = Phase::Baseline;
            // The first sample comes from the `Baseline` mark that `start` sends.
            let mut take = |phase: Phase, recording: &mut Recording| {
                let started = Instant::now();
                let client = match measure.client() {
                    Ok(client) => client,
                    Err(_) => {
                        recording.client_errors += 1;
                        return;
                    }
                };
                let server = measure.server();
                recording.busy += started.elapsed();
                let sample = Sample {
                    elapsed_s: run_started.elapsed().as_secs_f64(),
                    phase,
                    requests_ok: counters.ok(),
                    requests_failed: counters.failed(),
                    client,
                    server,
                };
                if recording.write_error.is_none()
                    && let Err(error) = write_line(&mut sink, &sample)
                {
                    recording.write_error = Some(error);
                }
                if let Some(observer) = observer.as_mut() {
                    observer(&sample);
                }
                recording.samples.push(sample);
            };
            let mut next_due = interval.map(|interval| Instant::now() + interval);
            loop {
                let command = match next_due {
                    Some(due) => inbox.recv_timeout(due.saturating_duration_since(Instant::now())),
                    None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match command {
                    Ok(Command::Mark(next, taken)) => {
                        phase = next;
                        take(phase, &mut recording);
                        if let Some(taken) = taken {
                            let _ = taken.send(());
                        }
                    }
                    Ok(Command::Finish) | Err(RecvTimeoutError::Disconnected) => {
                        take(phase, &mut recording);
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        take(phase, &mut recording);
                        if let (Some(due), Some(interval)) = (next_due.as_mut(), interval) {
                            // Keep the grid; if a sample ran late, skip missed slots instead of bursting.
                            *due += interval;
                            let now = Instant::now();
                            if *due < now {
                                *due = now + interval;
                            }
                        }
                    }
                }
            }
            recording
        })?;
        let recorder = Self { commands, thread };
        // The baseline must be taken before the caller starts any load.
        recorder.marker().mark_and_wait(Phase::Baseline);
        Ok(recorder)
    }

    pub fn marker(&self) -> Marker {
        Marker { commands: self.commands.clone() }
    }

    /// Takes a last sample and returns everything recorded.
    pub fn finish(self) -> Recording {
        let _ = self.commands.send(Command::Finish);
        self.thread.join().expect("the sampling thread does not panic")
    }
}

fn write_line(sink: &mut Box<dyn Write + Send>, sample: &Sample) -> io::Result<()> {
    serde_json::to_writer(&mut *sink, sample)?;
    sink.write_all(b"\n")?;
    sink.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::ScriptedMeasure;
    use leaklab_probe::{ConnectionCounts, ProcessSnapshot};
    use std::sync::Mutex;

    fn snapshot(rss_bytes: u64) -> ProcessSnapshot {
        ProcessSnapshot {
            pid: 1,
            rss_bytes,
            fds: 3,
            threads: 1,
            jemalloc: None,
            connections: ConnectionCounts::default(),
        }
    }

    /// A sink tests can read back while the recorder owns it.
    #[derive(Clone, Default)]
    struct SharedSink(Arc<Mutex<Vec<u8>>>);
    impl Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn marks_sample_at_once_and_every_sample_reaches_the_sink() {
        let measure = ScriptedMeasure::new((1..=10).map(snapshot).collect(), vec![None]);
        let sink = SharedSink::default();
        // No periodic samples: only baseline, marks and the final one, so the count is exact.
        let recorder =
            Recorder::start(Box::new(measure), Arc::default(), Instant::now(), None, Box::new(sink.clone()), None)
                .unwrap();
        let marker = recorder.marker();
        marker.mark(Phase::Warmup);
        marker.warmup_done();
        marker.load_done();
        let recording = recorder.finish();

        let phases: Vec<Phase> = recording.samples.iter().map(|s| s.phase).collect();
        assert_eq!(phases, [Phase::Baseline, Phase::Warmup, Phase::Load, Phase::Cooldown, Phase::Cooldown]);
        let rss: Vec<u64> = recording.samples.iter().map(|s| s.client.rss_bytes).collect();
        assert_eq!(rss, [1, 2, 3, 4, 5]);
        assert!(recording.samples.iter().all(|s| s.server.is_none()), "the script had no server figures");

        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<Sample> = written.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(parsed, recording.samples);
    }

    #[test]
    fn periodic_samples_arrive_between_marks() {
        let measure = ScriptedMeasure::new(vec![snapshot(1)], vec![None]);
        let recorder = Recorder::start(
            Box::new(measure),
            Arc::default(),
            Instant::now(),
            Some(Duration::from_millis(10)),
            Box::new(io::sink()),
            None,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let recording = recorder.finish();
        // 200 ms at 10 ms would be 20; a loaded machine may manage far fewer, but more than the two fixed ones.
        assert!(recording.samples.len() > 2, "{} samples", recording.samples.len());
        assert!(recording.samples.windows(2).all(|w| w[0].elapsed_s <= w[1].elapsed_s));
    }
}
