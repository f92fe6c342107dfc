//! `leaklab-server`: bind, announce the address, serve until told to stop.

mod cli;

use std::io::{BufRead, Write};

use anyhow::Context;
use clap::Parser;
use leaklab_probe::SnapshotReader;
use leaklab_probe::control::{HEAP_DUMP_REQUEST, PURGE_REQUEST, STATS_REQUEST, ServerLine};
use leaklab_probe::jemalloc::purge_all_arenas;
use leaklab_server::{ServerMetrics, serve};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start: heap profiling enabled, sampling off until
/// `--heap-profile` switches it on (see `leaklab_probe::heap`).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: leaklab_probe::MallocConf = leaklab_probe::MallocConf(leaklab_probe::heap::MALLOC_CONF.as_ptr());

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    if let Err(reason) = cli.check_listen() {
        eprintln!("Error: {reason}");
        std::process::exit(2);
    }
    let config = match cli.server_config() {
        Ok(config) => config,
        Err(reason) => {
            eprintln!("Error: {reason}");
            std::process::exit(2);
        }
    };
    if cli.heap_profile {
        leaklab_probe::heap::activate().context("--heap-profile")?;
        eprintln!("leaklab-server: heap profiling on (one sample per {} bytes)", leaklab_probe::heap::SAMPLE_BYTES);
    }
    // A leak should meet the machine's real ceiling, not a shell's default.
    match leaklab_probe::procfs::raise_fd_limit() {
        Ok(limits) => eprintln!("leaklab-server: fd limit {} (hard {})", limits.soft, limits.hard),
        Err(error) => eprintln!("leaklab-server: cannot raise the fd limit: {error}"),
    }
    // Installed before the address is announced, so a signal sent as soon as
    // the address appears is already handled.
    let interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    let listener =
        TcpListener::bind(cli.listen).await.with_context(|| format!("--listen {}: cannot bind", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    announce(&ServerLine::Listening(addr))?;
    eprintln!("leaklab-server: serving leaklab.v1.Echo and grpc.health.v1.Health on {addr}");

    let metrics = ServerMetrics::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(stop_on_signals(interrupt, terminate, stop_tx.clone()));
    if cli.control_stdin {
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("control-stdin".into())
            .spawn(move || answer_stats_on_stdin(metrics, stop_tx))
            .context("starting the control thread")?;
    }

    if let Some(listen) = cli.metrics_listen {
        let endpoint =
            TcpListener::bind(listen).await.with_context(|| format!("--metrics-listen {listen}: cannot bind"))?;
        let addr = endpoint.local_addr().context("reading the metrics endpoint's address")?;
        eprintln!("leaklab-server: serving metrics on http://{addr}/metrics");
        tokio::spawn(leaklab_server::metrics_endpoint::serve(endpoint, metrics.clone()));
    }
    let server = serve(listener, &config, metrics.clone(), stop_requested(stop_rx.clone()));
    tokio::pin!(server);
    // Serve until stopped; then give open connections `shutdown_grace` to finish.
    tokio::select! {
        () = &mut server => (),
        () = stop_requested(stop_rx) => if tokio::time::timeout(cli.shutdown_grace, &mut server).await.is_err() {
            let open = metrics.connections.counts().open;
            eprintln!("leaklab-server: {open} connections still open after {:?}; closing them", cli.shutdown_grace);
        },
    };
    let connections = metrics.connections.counts();
    eprintln!(
        "leaklab-server: stopped; requests served {}, failed {}; connections opened {}, closed {}",
        metrics.requests_served(),
        metrics.requests_failed(),
        connections.opened,
        connections.closed
    );
    Ok(())
}

async fn stop_requested(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn announce(line: &ServerLine) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", line.to_line()).and_then(|()| stdout.flush()).context("writing to stdout")
}

async fn stop_on_signals(mut interrupt: Signal, mut terminate: Signal, stop: watch::Sender<bool>) {
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    eprintln!("leaklab-server: {name}: shutting down");
    let _ = stop.send(true);
}

/// Runs on its own thread: a blocking stdin read inside tokio would hold up
/// the runtime's shutdown until the next line arrives.
fn answer_stats_on_stdin(metrics: ServerMetrics, stop: watch::Sender<bool>) {
    let reader = SnapshotReader::new(metrics.connections.clone()).with_streams(metrics.streams.clone());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.trim() {
            STATS_REQUEST => match metrics.stats(&reader) {
                Ok(stats) => ServerLine::Stats(Box::new(stats)),
                Err(error) => {
                    eprintln!("leaklab-server: cannot measure myself: {error}");
                    continue;
                }
            },
            PURGE_REQUEST => match purge_all_arenas() {
                Ok(()) => ServerLine::Purged,
                Err(error) => ServerLine::PurgeFailed(error.to_string()),
            },
            request if request.starts_with(HEAP_DUMP_REQUEST) => {
                let path = std::path::Path::new(request[HEAP_DUMP_REQUEST.len()..].trim());
                match leaklab_probe::heap::dump(path) {
                    Ok(_) => ServerLine::HeapDumped,
                    Err(error) => ServerLine::HeapDumpFailed(error.to_string()),
                }
            }
            _ => {
                eprintln!("leaklab-server: ignoring unknown control line {line:?}");
                continue;
            }
        };
        if announce(&answer).is_err() {
            break;
        }
    }
    eprintln!("leaklab-server: control stdin closed: shutting down");
    let _ = stop.send(true);
}
