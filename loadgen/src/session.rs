//! What every command that runs something sets up before it runs: the
//! runtime, the stop flag that Ctrl-C and SIGTERM raise, and the live board
//! `--metrics-listen` serves.

use leaklab_engine::run;
use tokio::sync::watch;

use crate::exit;
use crate::live::metrics::LiveBoard;

/// The runtime a command runs on, and the flag a run watches to stop.
#[derive(Debug)]
pub(crate) struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub stop: watch::Receiver<bool>,
    /// Where every sample is posted, with `--metrics-listen`.
    pub live: Option<LiveBoard>,
}

impl Session {
    /// The session of a command that runs scenarios: the run's one-thread runtime, and the live board
    /// served at `metrics_listen` (`--metrics-listen`) when there is one.
    pub(crate) fn serving(metrics_listen: Option<std::net::SocketAddr>) -> Result<Session, exit::Failure> {
        let live = metrics_listen.map(LiveBoard::serve).transpose().map_err(exit::usage)?;
        Session::start(live).map_err(exit::failed)
    }

    /// The run's one-thread runtime (see [`run::runtime`]), stopped by signals, with `live`.
    pub(crate) fn start(live: Option<LiveBoard>) -> std::io::Result<Session> {
        Self::on(run::runtime()?, live)
    }

    /// `runtime`, with a flag that Ctrl-C and SIGTERM turn true.
    pub(crate) fn on(runtime: tokio::runtime::Runtime, live: Option<LiveBoard>) -> std::io::Result<Session> {
        let (stop_tx, stop) = watch::channel(false);
        runtime.spawn(stop_on_signals(stop_tx));
        Ok(Session { runtime, stop, live })
    }
}

/// First SIGINT or SIGTERM: stop the load, cool down no further, write the
/// report. A second one: quit at once (the server still dies with us).
async fn stop_on_signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    for round in 0.. {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        if round > 0 {
            // The dashboard hides the cursor; exiting here skips the drop that shows it again.
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprint!("\x1b[?25h");
            }
            eprintln!("\nloadgen: stopping now, without a report");
            std::process::exit(exit::INTERRUPTED.into());
        }
        eprintln!("\nloadgen: stopping the load and writing the report (interrupt again to quit at once)");
        let _ = stop.send(true);
    }
}
