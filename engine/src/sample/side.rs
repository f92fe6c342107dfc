//! A thread beside the sampler, for readings that must never hold a sample
//! up (socket states, a client's channelz): it runs until its handle is
//! dropped, and the drop wakes it at once and waits for it to end.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the thread waits on between readings: it ends when the handle is dropped.
#[derive(Debug)]
pub(crate) struct Pause(mpsc::Receiver<()>);

impl Pause {
    /// Waits `period`; `false` once the handle is dropped (at once, not at the end of the period).
    pub(crate) fn wait(&self, period: Duration) -> bool {
        matches!(self.0.recv_timeout(period), Err(RecvTimeoutError::Timeout))
    }
}

/// The handle; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct SideThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SideThread {
    /// Runs `work` on a thread named `name`, handing it the [`Pause`] to wait on between readings.
    pub(crate) fn spawn(name: &str, work: impl FnOnce(Pause) + Send + 'static) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || work(Pause(stopped)))?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for SideThread {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
