//! `loadgen`: parse → plan → run → report → exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use leaklab_loadgen::report::summary::ProcessSummary;
use leaklab_loadgen::report::units::{bytes_per_request, mib};
use leaklab_loadgen::run::{self, RunOptions, RunOutcome};
use leaklab_loadgen::scenario::{self, Catalog};
use leaklab_loadgen::{load::StopReason, report::summary::json_schema};
use tokio::sync::watch;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit codes, also listed in the README.
mod exit {
    /// The run completed and its report was written.
    pub(crate) const OK: u8 = 0;
    /// The run failed (server did not start, I/O error…).
    pub(crate) const FAILED: u8 = 1;
    /// Bad command line or scenario file; nothing ran.
    pub(crate) const USAGE: u8 = 2;
    /// Interrupted (Ctrl-C, SIGTERM); the report covers the run up to then.
    pub(crate) const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::List(args) => list(&Catalog::locate(args.scenarios_dir)),
        cli::Command::Schema => {
            print!("{}", json_schema());
            ExitCode::from(exit::OK)
        }
        cli::Command::Run(args) => run_scenario(*args).unwrap_or_else(|(code, error)| {
            eprintln!("Error: {error:#}");
            ExitCode::from(code)
        }),
    }
}

/// parse → plan → run → report → exit code.
fn run_scenario(args: cli::RunArgs) -> Result<ExitCode, (u8, anyhow::Error)> {
    let usage = |error: anyhow::Error| (exit::USAGE, error);
    let failed = |error: anyhow::Error| (exit::FAILED, error);

    let path = Catalog::locate(args.scenarios_dir.clone()).resolve(&args.scenario).map_err(|e| usage(e.into()))?;
    let plan = scenario::load(&path, &args.overrides()).map_err(|e| usage(e.into()))?;
    let target = args.target().map_err(usage)?;

    let runtime = tokio::runtime::Runtime::new().map_err(|e| failed(e.into()))?;
    let (stop_tx, stop) = watch::channel(false);
    runtime.spawn(stop_on_signals(stop_tx));
    let options = RunOptions { target, reports_dir: args.reports_dir, quiet: args.quiet, stop };
    let outcome = runtime.block_on(run::execute(&plan, options)).map_err(failed)?;

    print_summary(&outcome);
    Ok(exit_code(&outcome))
}

fn list(catalog: &Catalog) -> ExitCode {
    let entries = catalog.entries();
    if entries.is_empty() {
        eprintln!("Error: no scenario files (*.toml) in {}", catalog.dir.display());
        return ExitCode::from(exit::USAGE);
    }
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for entry in entries {
        match entry.description {
            Ok(description) => println!("{:width$}  {description}", entry.name),
            Err(error) => println!("{:width$}  (invalid: {error})", entry.name),
        }
    }
    ExitCode::from(exit::OK)
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
            eprintln!("\nloadgen: stopping now, without a report");
            std::process::exit(exit::INTERRUPTED.into());
        }
        eprintln!("\nloadgen: stopping the load and writing the report (interrupt again to quit at once)");
        let _ = stop.send(true);
    }
}

fn print_summary(outcome: &RunOutcome) {
    let s = &outcome.summary;
    println!(
        "{}: {} requests ({} failed) in {:.1} s, {:.0} req/s; latency p50 {} µs, p99 {} µs, max {} µs",
        s.scenario,
        s.requests.ok + s.requests.failed,
        s.requests.failed,
        s.load_duration_s,
        s.throughput_rps,
        s.latency_us.p50,
        s.latency_us.p99,
        s.latency_us.max
    );
    let g = &s.growth;
    print_process("client", Some(&s.client), g.client_allocated_bytes_per_request, g.client_connections_per_request);
    print_process("server", s.server.as_ref(), g.server_allocated_bytes_per_request, g.server_connections_per_request);
    for (kind, count) in &s.requests.errors {
        println!("  errors: {kind} × {count}");
    }
    println!("report: {}", outcome.dir.display());
    for error in &outcome.export_errors {
        eprintln!("Error: {error:#}");
    }
}

fn print_process(name: &str, process: Option<&ProcessSummary>, allocated: Option<f64>, connections: Option<f64>) {
    let Some(process) = process else {
        println!("  {name}: not measured (--target)");
        return;
    };
    let connections = connections.map_or_else(|| "n/a".to_owned(), |c| format!("{c:+.3}/request"));
    let rss = &process.rss_bytes;
    println!(
        "  {name}: allocated {}, connections {connections}, RSS {:.1} → {:.1} MiB (peak {:.1})",
        bytes_per_request(allocated),
        mib(rss.start),
        mib(rss.end),
        mib(rss.peak)
    );
}

fn exit_code(outcome: &RunOutcome) -> ExitCode {
    if !outcome.export_errors.is_empty() {
        ExitCode::from(exit::FAILED)
    } else if outcome.summary.stopped_by == StopReason::Interrupted {
        ExitCode::from(exit::INTERRUPTED)
    } else {
        ExitCode::from(exit::OK)
    }
}
