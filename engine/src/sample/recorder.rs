//! The sampling thread. It runs outside the tokio runtime so that a busy
//! load cannot delay samples, and samples cannot steal the load's workers.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Measure, Phase, Sample};
use crate::halt::{Halt, HaltReason};
use crate::load::{Boundary, BoxFuture, LoadCounters, PhaseListener};
use crate::scenario::CapsPlan;

/// Told once the sample a command asked for is taken.
type Reply = Box<dyn FnOnce() + Send>;

enum Command {
    /// A phase begins and its first sample is taken, settled first when
    /// `settle` (a checkpoint); then `reply`, if any, is called.
    Mark { phase: Phase, settle: bool, reply: Option<Reply> },
    /// A last sample (settled, if the measure can), unless `last_sample` is false; then the thread ends.
    Finish { last_sample: bool },
}

/// Caps checked on every sample, and the halt they trigger.
#[derive(Debug, Clone)]
pub struct Guard {
    pub caps: CapsPlan,
    pub halt: Arc<Halt>,
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
    /// Samples whose client figures could not be read (they were skipped); a process that had exited is not one.
    pub client_errors: u64,
    /// Wall time spent taking samples, the server's side-channel answer and
    /// the socket counts taken beside the sampler included: an upper bound on
    /// the CPU time sampling cost both processes. Settling before checkpoints
    /// is not included: the load is paused then.
    pub busy: Duration,
    /// Checkpoints that could not fully settle, and the first reason.
    pub settle_errors: (u64, Option<String>),
    /// Profiles the checkpoints could not take.
    pub profile_failures: Vec<super::ProfileFailure>,
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
        let _ = self.commands.send(Command::Mark { phase, settle: false, reply: None });
    }

    /// Starts `phase` with a checkpoint, and returns once it is taken (outside any async runtime).
    fn checkpoint_blocking(&self, phase: Phase) {
        let (taken, done) = mpsc::channel();
        let reply: Reply = Box::new(move || {
            let _ = taken.send(());
        });
        if self.commands.send(Command::Mark { phase, settle: true, reply: Some(reply) }).is_ok() {
            let _ = done.recv();
        }
    }

    /// Starts `phase` with a checkpoint; the returned future resolves once it is taken.
    pub fn checkpoint_at(&self, phase: Phase) -> impl Future<Output = ()> + Send + 'static {
        let (taken, done) = tokio::sync::oneshot::channel();
        let reply: Reply = Box::new(move || {
            let _ = taken.send(());
        });
        let sent = self.commands.send(Command::Mark { phase, settle: true, reply: Some(reply) }).is_ok();
        async move {
            if sent {
                let _ = done.await;
            }
        }
    }
}

impl PhaseListener for Marker {
    fn checkpoint(&self, boundary: Boundary) -> BoxFuture {
        let phase = match boundary {
            Boundary::WarmupDone | Boundary::RoundDone(_) => Phase::Load,
            Boundary::LoadDone => Phase::Cooldown,
        };
        Box::pin(self.checkpoint_at(phase))
    }
}

/// What the sampling thread works with besides the measure.
pub struct RecorderSetup {
    /// The built-in load's request counts, or a foreign client's reported ones.
    pub counters: Arc<LoadCounters>,
    /// When the run started: every sample's `elapsed_s` counts from here.
    pub run_started: Instant,
    /// Time between two periodic samples; `None`: only at phase changes and at the end.
    pub interval: Option<Duration>,
    /// Where each sample is written as one JSON line, and flushed (`samples.jsonl`).
    pub sink: Box<dyn Write + Send>,
    /// Sees each sample after it is written.
    pub observer: Option<Observer>,
    /// Caps each sample is checked against.
    pub guard: Option<Guard>,
}

impl std::fmt::Debug for RecorderSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderSetup")
            .field("interval", &self.interval)
            .field("observer", &self.observer.is_some())
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// The sampling thread's state: the measure, what it writes to, and what it recorded so far.
struct Sampler {
    measure: Box<dyn Measure>,
    setup: RecorderSetup,
    recording: Recording,
}

impl Sampler {
    /// Takes one sample in `phase`, at rest first when `settle` and the measure can be settled.
    fn take(&mut self, phase: Phase, settle: bool) {
        let settle = settle && self.measure.takes_checkpoints();
        if settle && let Err(error) = self.measure.settle() {
            self.recording.settle_errors.0 += 1;
            self.recording.settle_errors.1.get_or_insert(error);
        }
        let started = Instant::now();
        let client = match self.measure.client() {
            Ok(client) => client,
            // A process that has exited has no more samples, and that is no failure to read it.
            Err(leaklab_probe::procfs::ProcError::Exited { .. }) => return,
            Err(_) => {
                self.recording.client_errors += 1;
                return;
            }
        };
        let server = self.measure.server();
        let server_metrics = self.measure.server_metrics();
        let network = self.measure.network();
        let counters = &self.setup.counters;
        let mut reported = counters.reported();
        reported.extend(self.measure.counters());
        self.recording.busy += started.elapsed();
        let sample = Sample {
            elapsed_s: self.setup.run_started.elapsed().as_secs_f64(),
            unix_time_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|since| since.as_secs_f64()),
            phase,
            requests_ok: counters.ok(),
            requests_failed: counters.failed(),
            client,
            server,
            settled: settle,
            network,
            server_metrics,
            counters: reported,
            segments: Default::default(),
        };
        self.record(sample);
        if settle {
            self.recording.profile_failures.extend(self.measure.checkpoint_taken(phase));
        }
    }

    /// Writes `sample`, shows it to the observer, checks it against the caps and keeps it.
    fn record(&mut self, sample: Sample) {
        if self.recording.write_error.is_none()
            && let Err(error) = write_line(&mut self.setup.sink, &sample)
        {
            self.recording.write_error = Some(error);
        }
        if let Some(observer) = self.setup.observer.as_mut() {
            observer(&sample);
        }
        if let Some(guard) = &self.setup.guard
            && let Some(hit) = sample.over_cap(&guard.caps)
        {
            guard.halt.trigger(HaltReason::Cap(hit));
        }
        self.recording.samples.push(sample);
    }

    /// Samples on every mark and on the interval's grid until told to finish, or until every marker is gone.
    fn run(mut self, inbox: mpsc::Receiver<Command>) -> Recording {
        let mut phase = Phase::Baseline;
        let interval = self.setup.interval;
        let mut next_due = interval.map(|interval| Instant::now() + interval);
        loop {
            let command = match next_due {
                Some(due) => inbox.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match command {
                Ok(Command::Mark { phase: next, settle, reply }) => {
                    phase = next;
                    self.take(phase, settle);
                    if let Some(reply) = reply {
                        reply();
                    }
                }
                Ok(Command::Finish { last_sample }) => {
                    if last_sample {
                        self.take(phase, true);
                    }
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.take(phase, true);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.take(phase, false);
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
        self.recording.busy += self.measure.side_busy();
        self.recording
    }
}

impl Recorder {
    /// Starts sampling `measure` on its own thread: one `Baseline` sample, at rest, before returning,
    /// then as `setup` says.
    pub fn start(measure: Box<dyn Measure>, setup: RecorderSetup) -> io::Result<Self> {
        let (commands, inbox) = mpsc::channel();
        let recording = Recording {
            samples: Vec::new(),
            write_error: None,
            client_errors: 0,
            busy: Duration::ZERO,
            settle_errors: (0, None),
            profile_failures: Vec::new(),
        };
        let sampler = Sampler { measure, setup, recording };
        let thread = std::thread::Builder::new().name("sampler".into()).spawn(move || sampler.run(inbox))?;
        let recorder = Self { commands, thread };
        // The baseline must be taken before the caller starts any load, and at rest: a
        // process that ran an earlier scenario (`loadgen compare`) starts from its purged state.
        recorder.marker().checkpoint_blocking(Phase::Baseline);
        Ok(recorder)
    }

    pub fn marker(&self) -> Marker {
        Marker { commands: self.commands.clone() }
    }

    /// Takes a last sample, settled if the measure can be, and returns everything recorded.
    pub fn finish(self) -> Recording {
        self.finish_with(true)
    }

    /// Returns everything recorded, without a last sample: the process it
    /// measured has exited, and its last periodic sample is its last word.
    pub fn finish_without_last_sample(self) -> Recording {
        self.finish_with(false)
    }

    fn finish_with(self, last_sample: bool) -> Recording {
        let _ = self.commands.send(Command::Finish { last_sample });
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
    use crate::halt::Limit;
    use crate::sample::ScriptedMeasure;
    use leaklab_probe::ProcessSnapshot;
    use std::sync::Mutex;

    fn snapshot(rss_bytes: u64) -> ProcessSnapshot {
        crate::sample::window::tests::sample(0.0, Phase::Load, 0, rss_bytes).client
    }

    /// No caps, no observer, fresh counters.
    fn setup(interval: Option<Duration>, sink: Box<dyn Write + Send>) -> RecorderSetup {
        RecorderSetup {
            counters: Arc::default(),
            run_started: Instant::now(),
            interval,
            sink,
            observer: None,
            guard: None,
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
        let recorder = Recorder::start(Box::new(measure), setup(None, Box::new(sink.clone()))).unwrap();
        let marker = recorder.marker();
        marker.mark(Phase::Warmup);
        block_on(marker.checkpoint(Boundary::WarmupDone));
        block_on(marker.checkpoint(Boundary::LoadDone));
        let recording = recorder.finish();

        let phases: Vec<Phase> = recording.samples.iter().map(|s| s.phase).collect();
        assert_eq!(phases, [Phase::Baseline, Phase::Warmup, Phase::Load, Phase::Cooldown, Phase::Cooldown]);
        let settled: Vec<bool> = recording.samples.iter().map(|s| s.settled).collect();
        assert_eq!(settled, [true, false, true, true, true], "baseline, checkpoints and the final sample are settled");
        let rss: Vec<u64> = recording.samples.iter().map(|s| s.client.rss_bytes).collect();
        assert_eq!(rss, [1, 2, 3, 4, 5]);
        assert!(recording.samples.iter().all(|s| s.server.is_none()), "the script had no server figures");

        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<Sample> = written.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(parsed, recording.samples);
    }

    fn block_on(future: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future);
    }

    #[test]
    fn a_sample_over_a_cap_halts_the_run() {
        let measure =
            ScriptedMeasure::new(vec![snapshot(100 << 20), snapshot(200 << 20), snapshot(400 << 20)], vec![None]);
        let halt = Arc::new(Halt::default());
        let caps = CapsPlan { client_rss_bytes: Some(300 << 20), server_rss_bytes: None, fds: None };
        let guard = Guard { caps, halt: Arc::clone(&halt) };
        let recorder = Recorder::start(
            Box::new(measure),
            RecorderSetup { guard: Some(guard), ..setup(None, Box::new(io::sink())) },
        )
        .unwrap();
        recorder.marker().mark(Phase::Load);
        assert!(halt.reason().is_none(), "200 MiB is under the 300 MiB cap");
        recorder.marker().mark(Phase::Load);
        let _ = recorder.finish();
        let Some(HaltReason::Cap(hit)) = halt.reason() else { panic!("no cap hit: {:?}", halt.reason()) };
        assert_eq!((hit.which, hit.value, hit.limit), (Limit::ClientRss, 400 << 20, Some(300 << 20)));
    }

    #[test]
    fn periodic_samples_arrive_between_marks() {
        let measure = ScriptedMeasure::new(vec![snapshot(1)], vec![None]);
        let (seen, arrivals) = mpsc::channel();
        let observer: Observer = Box::new(move |sample: &Sample| {
            let _ = seen.send(sample.settled);
        });
        let setup = setup(Some(Duration::from_millis(10)), Box::new(io::sink()));
        let recorder = Recorder::start(Box::new(measure), RecorderSetup { observer: Some(observer), ..setup }).unwrap();
        assert_eq!(arrivals.recv(), Ok(true), "the baseline checkpoint comes first");
        // Three periodic samples with no mark in between; the bound only guards against a hang.
        for _ in 0..3 {
            assert_eq!(arrivals.recv_timeout(Duration::from_secs(30)), Ok(false));
        }
        let recording = recorder.finish();
        assert!(recording.samples.len() >= 5, "{} samples", recording.samples.len());
        assert!(recording.samples.windows(2).all(|w| w[0].elapsed_s <= w[1].elapsed_s));
    }

    /// A measure of a process that cannot be brought to rest, as a foreign one.
    struct Unsettled(ScriptedMeasure);
    impl Measure for Unsettled {
        fn client(&mut self) -> Result<ProcessSnapshot, leaklab_probe::procfs::ProcError> {
            self.0.client()
        }
        fn server(&mut self) -> Option<leaklab_probe::control::ServerStats> {
            None
        }
        fn takes_checkpoints(&self) -> bool {
            false
        }
        fn settle(&mut self) -> Result<(), String> {
            panic!("a foreign process is never settled")
        }
    }

    #[test]
    fn a_measure_without_checkpoints_is_never_settled_and_can_end_without_a_last_sample() {
        let measure = Unsettled(ScriptedMeasure::new(vec![snapshot(1), snapshot(2)], vec![]));
        let recorder = Recorder::start(Box::new(measure), setup(None, Box::new(io::sink()))).unwrap();
        recorder.marker().mark(Phase::Load);
        let recording = recorder.finish_without_last_sample();
        let phases: Vec<(Phase, bool)> = recording.samples.iter().map(|s| (s.phase, s.settled)).collect();
        assert_eq!(phases, [(Phase::Baseline, false), (Phase::Load, false)]);
    }
}
