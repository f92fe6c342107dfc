//! What a run shows while it runs: the progress line or the dashboard on
//! stderr ([`progress`], [`dashboard`]), and the latest sample served as
//! Prometheus metrics ([`metrics`]). Each is an observer the engine is given;
//! the engine knows none of them.

pub(crate) mod dashboard;
pub(crate) mod metrics;
pub(crate) mod progress;

use leaklab_engine::sample::Observer;

use metrics::LiveBoard;
use progress::{Progress, View};

/// The observer of one run of `scenario`: its progress view, and the live board when there is one.
pub(crate) fn observer(view: View, live: Option<&LiveBoard>, scenario: &str) -> Option<Observer> {
    let mut progress = Progress::stderr(view);
    let Some(board) = live.cloned() else { return progress.map(Progress::into_observer) };
    let scenario = scenario.to_owned();
    Some(Box::new(move |sample| {
        board.post(&scenario, sample);
        if let Some(progress) = progress.as_mut() {
            progress.observe(sample);
        }
    }))
}
