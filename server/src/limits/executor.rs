//! The tasks hyper spawns for a connection's streams, each with a switch that ends it.

use std::sync::Arc;

use tokio::sync::Notify;

use super::ledger::{Ledger, Offender};
use super::service::Limited;

/// A switch that ends one stream's task.
#[derive(Debug, Default)]
pub(super) struct AbortSwitch(pub(super) Notify);

impl AbortSwitch {
    pub(super) fn pull(&self) {
        // A stored permit: the task ends even if it is not waiting on the switch right now.
        self.0.notify_one();
    }
}

tokio::task_local! {
    pub(super) static STREAM_SWITCH: Arc<AbortSwitch>;
}

/// hyper's executor for one connection's stream tasks: tokio's, with an abort switch per task,
/// and a stream refused before it is spawned when the server-wide stream bound says so.
#[derive(Debug, Clone)]
pub(crate) struct StreamExecutor {
    ledger: Arc<Ledger>,
    connection: Arc<Offender>,
}

impl StreamExecutor {
    pub(crate) fn new<S>(service: &Limited<S>) -> Self {
        Self { ledger: Arc::clone(&service.ledger), connection: Arc::clone(&service.connection) }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        // Dropping the task unspawned resets the stream (RST_STREAM CANCEL).
        let Some(slot) = self.ledger.admit(&self.connection) else { return };
        let switch = Arc::new(AbortSwitch::default());
        let pulled = Arc::clone(&switch);
        tokio::spawn(STREAM_SWITCH.scope(switch, async move {
            let _slot = slot;
            tokio::select! {
                biased;
                () = pulled.0.notified() => {}
                _ = stream => {}
            }
        }));
    }
}
