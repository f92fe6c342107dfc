//! `loadgen`: parse → plan → run → verdict and report → exit code.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use leaklab_loadgen::compare::{self, CompareOptions};
use leaklab_loadgen::demo::{self, DemoOptions};
use leaklab_loadgen::load::StopReason;
use leaklab_loadgen::report::progress::View;
use leaklab_loadgen::report::summary::{ProcessSummary, json_schema};
use leaklab_loadgen::report::units::{bytes_per_request, expectation_mark, latencies, mib, slope_with_interval};
use leaklab_loadgen::report::units::{format_mib, human_bytes};
use leaklab_loadgen::report::{self, Report, rebuild};
use leaklab_loadgen::run::{self, RunOptions, RunOutcome};
use leaklab_loadgen::scenario::{self, Catalog, ExternalPlan, Overrides, Scenario};
use leaklab_loadgen::verdict::baseline::{self, BaselineComparison};
use leaklab_loadgen::verdict::{Outcome, ProcessVerdict, VerdictKind};
use leaklab_loadgen::watch::{self as process_watch, ServerLaunch, WatchEnd, WatchOptions, WatchOutcome, WatchTarget};
use tokio::sync::watch;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start: heap profiling enabled, sampling off until
/// `--heap-profile` switches it on (see `leaklab_probe::heap`).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: leaklab_probe::MallocConf = leaklab_probe::MallocConf(leaklab_probe::heap::MALLOC_CONF.as_ptr());

/// Exit codes, also listed in the README. Distinct so that CI and
/// `git bisect run` can tell the outcomes apart.
mod exit {
    /// Every verdict meets its expectation (or the scenario sets none).
    pub(crate) const OK: u8 = 0;
    /// A verdict contradicts its expectation, or bytes per request grew beyond a baseline's tolerance.
    pub(crate) const CONTRADICTED: u8 = 1;
    /// Bad command line, scenario file or baseline name; nothing ran.
    pub(crate) const USAGE: u8 = 2;
    /// No contradiction, but a verdict with an expectation is inconclusive.
    pub(crate) const INCONCLUSIVE: u8 = 3;
    /// The run failed (server did not start, a report could not be written…).
    pub(crate) const FAILED: u8 = 4;
    /// The load stopped at a cap or a limit of the machine; the report, verdict included, is complete.
    pub(crate) const STOPPED_AT_LIMIT: u8 = 5;
    /// `--bisect`: inconclusive, or the run failed; `git bisect run`'s "skip"
    /// (neither good nor bad).
    pub(crate) const BISECT_SKIP: u8 = 125;
    /// Interrupted (Ctrl-C, SIGTERM); the report covers the run up to then.
    pub(crate) const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A leak should meet the machine's real ceiling, not a shell's default; the summary reports both limits.
    if let Err(error) = leaklab_probe::procfs::raise_fd_limit() {
        eprintln!("loadgen: cannot raise the fd limit: {error}");
    }
    let result = match cli.command {
        cli::Command::List(args) => return list(&Catalog::locate(args.scenarios_dir)),
        cli::Command::Schema => {
            print!("{}", json_schema());
            return ExitCode::from(exit::OK);
        }
        cli::Command::Run(args) => run_scenario(*args),
        cli::Command::Compare(args) => compare_scenarios(*args),
        cli::Command::Demo(args) => tell_demo(*args),
        cli::Command::Report(args) => report_again(&args.dir),
        cli::Command::Watch(args) => watch_process(args),
    };
    result.unwrap_or_else(|(code, error)| {
        eprintln!("Error: {error:#}");
        ExitCode::from(code)
    })
}

/// An error that ends the program, with the exit code it ends with.
type ExitFailure = (u8, anyhow::Error);

fn usage(error: impl Into<anyhow::Error>) -> ExitFailure {
    (exit::USAGE, error.into())
}

fn failed(error: impl Into<anyhow::Error>) -> ExitFailure {
    (exit::FAILED, error.into())
}

/// parse → plan → run → verdict and report → exit code.
fn run_scenario(args: cli::RunArgs) -> Result<ExitCode, ExitFailure> {
    let path = Catalog::locate(args.common.scenarios_dir.clone()).resolve(&args.scenario).map_err(usage)?;
    let plan = match scenario::load_any(&path, &args.overrides()).map_err(usage)? {
        Scenario::Builtin(plan) => plan,
        Scenario::External(plan) => return run_external(&plan, &args),
    };
    let target = args.common.target().map_err(usage)?;
    let reports_dir = args.common.reports_dir.clone();
    let baseline = match &args.verdict.baseline {
        Some(name) => Some((name, baseline::load(&reports_dir, name, &plan.name).map_err(usage)?)),
        None => None,
    };
    if let Some(name) = &args.verdict.save_baseline {
        baseline::check_name(name).map_err(usage)?;
    }

    let (runtime, stop) = runtime_with_stop()?;
    let options = RunOptions { target, reports_dir: reports_dir.clone(), view: args.common.view(), stop };
    let bisect = args.verdict.bisect;
    let mut outcome = runtime
        .block_on(run::execute(&plan, options))
        .map_err(|error| (if bisect { exit::BISECT_SKIP } else { exit::FAILED }, error))?;

    let comparison = baseline.map(|(name, baseline)| baseline::compare(name, &baseline, &outcome.summary));
    if let Some(name) = &args.verdict.save_baseline {
        match baseline::save(&reports_dir, name, &outcome.summary) {
            Ok(path) => println!("baseline {name:?} saved: {}", path.display()),
            Err(error) => outcome.export_errors.push(error.into()),
        }
    }
    print_summary(&outcome, comparison.as_ref());
    let verdict = outcome.summary.verdict.outcome_with_baseline(&plan.verdict, comparison.as_ref());
    let interrupted = outcome.summary.stopped_by == StopReason::Interrupted;
    let at_limit = matches!(outcome.summary.stopped_by, StopReason::Cap | StopReason::MachineLimit);
    Ok(exit_code(!outcome.export_errors.is_empty(), interrupted, verdict, at_limit, bisect))
}

/// target → samples → time-based verdict and report → exit code.
fn watch_process(args: cli::WatchArgs) -> Result<ExitCode, ExitFailure> {
    let target = match args.pid {
        Some(pid) => WatchTarget::Pid(pid),
        None => WatchTarget::Command(args.command),
    };
    let (runtime, stop) = runtime_with_stop()?;
    let mut options = WatchOptions::of(target, args.reports_dir, stop);
    options.duration = args.duration;
    options.interval = args.interval;
    options.tolerance_bytes_per_s = args.tolerance as f64;
    options.tolerance_bytes_per_request = args.tolerance_per_request as f64;
    options.view = if args.dashboard { View::Dashboard } else { View::Quiet };
    let outcome = runtime.block_on(process_watch::execute(options)).map_err(usage)?;
    Ok(finish_watch(&outcome))
}

/// An external client's scenario: start the server, then the command, and watch both.
fn run_external(plan: &ExternalPlan, args: &cli::RunArgs) -> Result<ExitCode, ExitFailure> {
    let server_bin = match args.common.target().map_err(usage)? {
        run::TargetChoice::Spawn { server_bin } => server_bin,
        run::TargetChoice::External { .. } => {
            return Err(usage(anyhow::anyhow!(
                "--target: {} runs an external client against a server it starts and measures",
                plan.name
            )));
        }
    };
    let (runtime, stop) = runtime_with_stop()?;
    let mut options =
        WatchOptions::of(WatchTarget::Command(plan.command.clone()), args.common.reports_dir.clone(), stop);
    options.name = Some(plan.name.clone());
    options.server = Some(ServerLaunch { bin: server_bin, args: plan.server.args() });
    options.duration = plan.duration;
    options.interval = plan.interval;
    options.warmup = plan.warmup;
    options.tolerance_bytes_per_request = plan.verdict.tolerance_bytes_per_request;
    options.expect_client = plan.verdict.expect_client;
    options.expect_server = plan.verdict.expect_server;
    options.caps = Some(plan.caps);
    options.view = args.common.view();
    let outcome = runtime.block_on(process_watch::execute(options)).map_err(failed)?;
    Ok(finish_watch(&outcome))
}

/// Prints a watch's outcome and picks its exit code, as `run` does.
fn finish_watch(outcome: &WatchOutcome) -> ExitCode {
    let s = &outcome.summary;
    let rss = s.rss_bytes.map_or_else(
        || "no samples".to_owned(),
        |rss| format!("RSS {} → {} (peak {})", format_mib(rss.start), format_mib(rss.end), format_mib(rss.peak)),
    );
    let requests = s.requests.map(|r| format!(", {} requests reported ({} failed)", r.ok + r.failed, r.failed));
    println!(
        "{}: pid {}, {:.1} s, {} samples{}; {rss}",
        s.name,
        s.pid,
        s.watched_s,
        s.samples,
        requests.unwrap_or_default()
    );
    let verdicts = [("verdict", Some(&s.verdict)), ("server verdict", s.server_verdict.as_ref())];
    for (label, verdict) in verdicts {
        let Some(verdict) = verdict else { continue };
        println!("  {label}: {}", process_watch::verdict_line(verdict));
        for reason in &verdict.reasons {
            println!("    {reason}");
        }
    }
    println!("report: {}", outcome.dir.display());
    for error in &outcome.export_errors {
        eprintln!("Error: {error:#}");
    }
    // The same precedence as `run`: a contradiction outranks a cap, which outranks an inconclusive verdict.
    let expected: Vec<_> =
        [Some(&s.verdict), s.server_verdict.as_ref()].into_iter().flatten().filter(|v| v.expected.is_some()).collect();
    let inconclusive = expected.iter().any(|v| v.kind == VerdictKind::Inconclusive);
    let contradicted = expected.iter().any(|v| v.kind != VerdictKind::Inconclusive && v.expectation_met == Some(false));
    ExitCode::from(match (outcome.export_errors.is_empty(), s.ended_by) {
        (false, _) => exit::FAILED,
        (true, WatchEnd::Interrupted) => exit::INTERRUPTED,
        _ if contradicted => exit::CONTRADICTED,
        (true, WatchEnd::Cap) => exit::STOPPED_AT_LIMIT,
        _ if inconclusive => exit::INCONCLUSIVE,
        _ => exit::OK,
    })
}

/// parse every scenario → plans → run each → comparison → exit code.
fn compare_scenarios(args: cli::CompareArgs) -> Result<ExitCode, ExitFailure> {
    let catalog = Catalog::locate(args.common.scenarios_dir.clone());
    let names: Vec<String> = if args.scenarios.is_empty() {
        catalog.entries().into_iter().map(|entry| entry.name).collect()
    } else {
        args.scenarios.clone()
    };
    if names.is_empty() {
        return Err(usage(anyhow::anyhow!("no scenario files (*.toml) in {}", catalog.dir.display())));
    }
    let scenarios = names
        .iter()
        .map(|name| catalog.resolve(name).and_then(|path| scenario::load_any(&path, &Overrides::default())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    // External clients (go-leak…) run after the built-in scenarios; those whose peer is not built are skipped.
    let (mut plans, mut externals) = (Vec::new(), Vec::new());
    for scenario in scenarios {
        match scenario {
            Scenario::Builtin(plan) => plans.push(*plan),
            Scenario::External(plan) => externals.push(*plan),
        }
    }
    let target = args.common.target().map_err(usage)?;
    let reports_dir = args.common.reports_dir.clone();
    if let Some(name) = &args.verdict.baseline {
        compare::load_baselines(&reports_dir, name, &plans).map_err(usage)?;
    }
    if let Some(name) = &args.verdict.save_baseline {
        baseline::check_name(name).map_err(usage)?;
    }
    let run_args = args.common.forwarded(&target);
    let runner = std::env::current_exe().context("locating this binary").map_err(failed)?;

    let (runtime, stop) = runtime_with_stop()?;
    let options = CompareOptions {
        runner,
        run_args,
        reports_dir,
        quick: args.quick,
        baseline: args.verdict.baseline.clone(),
        save_baseline: args.verdict.save_baseline.clone(),
        stop,
        stdout_dir: None,
    };
    let outcome = runtime.block_on(compare::execute(&plans, &externals, options)).map_err(failed)?;

    let c = &outcome.comparison;
    println!();
    for failure in &c.failures {
        eprintln!("Error: scenario {}: {}", failure.scenario, failure.error);
    }
    for skipped in &c.skipped {
        println!("{}: skipped: {}", skipped.scenario, skipped.error);
    }
    print!("{}", compare::markdown::summary_lines(c));
    println!("comparison: {}/compare.md", outcome.dir.display());
    for error in &outcome.export_errors {
        eprintln!("Error: {error:#}");
    }
    Ok(exit_code(!outcome.export_errors.is_empty(), c.interrupted, c.outcome, false, args.verdict.bisect))
}

/// story → chapters run in order with the live view → page → exit code.
fn tell_demo(args: cli::DemoArgs) -> Result<ExitCode, ExitFailure> {
    let catalog = Catalog::locate(args.common.scenarios_dir.clone());
    let path = args.story.clone().unwrap_or_else(demo::story::default_path);
    let story = demo::story::load(&path, &catalog, args.fast).map_err(usage)?;
    let target = args.common.target().map_err(usage)?;
    if let run::TargetChoice::External { .. } = target {
        return Err(usage(anyhow::anyhow!("--target: the demo starts and measures its own server in every chapter")));
    }
    let mut run_args = args.common.forwarded(&target);
    if !args.common.quiet && !args.common.dashboard {
        run_args.push("--dashboard".to_owned());
    }
    let runner = std::env::current_exe().context("locating this binary").map_err(failed)?;
    let (runtime, stop) = runtime_with_stop()?;
    let options = DemoOptions { runner, run_args, reports_dir: args.common.reports_dir.clone(), fast: args.fast, stop };
    let outcome = runtime.block_on(demo::execute(&story, options)).map_err(failed)?;

    let record = &outcome.record;
    println!("\n{}: {} chapters in {:.0} s", story.title, record.chapters.len(), record.duration_s);
    print!("{}", demo::results_table(record));
    for skipped in &record.skipped {
        println!("  {}: skipped: {}", skipped.scenario, skipped.error);
    }
    for failure in &record.failures {
        eprintln!("Error: chapter {}: {}", failure.scenario, failure.error);
    }
    println!("page: {}/index.html", outcome.dir.display());
    println!("markdown: {}/demo.md", outcome.dir.display());
    for error in &outcome.export_errors {
        eprintln!("Error: {error:#}");
    }
    Ok(exit_code(!outcome.export_errors.is_empty(), record.interrupted, record.outcome, false, false))
}

/// run directory → summary (its own, or rebuilt from samples) → outputs written again.
fn report_again(dir: &std::path::Path) -> Result<ExitCode, ExitFailure> {
    let (summary, samples) = rebuild::rebuild(dir).map_err(failed)?;
    let (written, export_errors) = report::export_all(&Report { summary: &summary, samples: &samples }, dir);
    let outcome = RunOutcome { dir: dir.to_owned(), summary, samples, written, export_errors };
    print_summary(&outcome, None);
    Ok(ExitCode::from(if outcome.export_errors.is_empty() { exit::OK } else { exit::FAILED }))
}

/// A runtime, and a flag that Ctrl-C and SIGTERM turn true.
fn runtime_with_stop() -> Result<(tokio::runtime::Runtime, watch::Receiver<bool>), ExitFailure> {
    let runtime = run::runtime().map_err(failed)?;
    let (stop_tx, stop) = watch::channel(false);
    runtime.spawn(stop_on_signals(stop_tx));
    Ok((runtime, stop))
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

fn print_summary(outcome: &RunOutcome, baseline: Option<&BaselineComparison>) {
    let s = &outcome.summary;
    println!(
        "{}: {} requests ({} failed) in {:.1} s, {:.0} req/s; {}",
        s.scenario,
        s.requests.ok + s.requests.failed,
        s.requests.failed,
        s.load_duration_s,
        s.throughput_rps,
        latencies(&s.latency_us, s.latency_from_intended_us.as_ref())
    );
    let g = &s.growth;
    print_process("client", Some(&s.client), g.client_allocated_bytes_per_request, g.client_connections_per_request);
    print_process("server", s.server.as_ref(), g.server_allocated_bytes_per_request, g.server_connections_per_request);
    for (kind, count) in &s.requests.errors {
        println!("  errors: {kind} × {count}");
    }
    for sentence in leaklab_loadgen::report::lifecycle::sentences(s) {
        println!("  {sentence}");
    }
    if let Some(heap) = &s.heap_profile {
        for (name, growth) in [("client", &heap.client), ("server", &heap.server)] {
            let Some(growth) = growth else { continue };
            let coverage =
                growth.coverage.map(|c| format!(", {:.0}% of the allocator's", c * 100.0)).unwrap_or_default();
            println!(
                "  heap profile, {name}: {} of growth{coverage}; top stacks:",
                human_bytes(growth.profiled_growth_bytes)
            );
            for stack in growth.top.iter().take(3) {
                println!(
                    "    {} ({:.0}%) {}",
                    human_bytes(stack.bytes),
                    stack.share * 100.0,
                    stack.frames.first().map_or("", String::as_str)
                );
            }
        }
    }
    print_verdict("client", Some(&s.verdict.client));
    print_verdict("server", s.verdict.server.as_ref());
    if let Some(note) = s.notes.iter().find(|note| note.starts_with("Stopped at")) {
        println!("  {note}");
    }
    if let Some(baseline) = baseline {
        println!("  baseline {:?}: {}", baseline.name, if baseline.regressed { "✖ regressed" } else { "✔ held" });
        for line in baseline.lines() {
            println!("    {line}");
        }
        for reason in &baseline.reasons {
            println!("    {reason}");
        }
    }
    println!("report: {}", outcome.dir.display());
    for error in &outcome.export_errors {
        eprintln!("Error: {error:#}");
    }
}

fn print_verdict(name: &str, verdict: Option<&ProcessVerdict>) {
    let Some(verdict) = verdict else { return };
    let expected = match verdict.expected {
        Some(expected) => {
            format!(", expected {} {}", expected.name(), expectation_mark(verdict.kind, verdict.expectation_met))
        }
        None => String::new(),
    };
    println!(
        "  verdict {name}: {} — allocated {} per request over {} round{}{expected}",
        verdict.kind,
        slope_with_interval(verdict.slope_bytes_per_request, verdict.ci_low, verdict.ci_high),
        verdict.rounds,
        if verdict.rounds == 1 { "" } else { "s" }
    );
    if let Some(reason) = verdict.reasons.first() {
        println!("    {reason}");
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

/// A report that could not be written outranks an interruption, which
/// outranks a contradicted expectation, which outranks a stop at a limit.
fn exit_code(export_failed: bool, interrupted: bool, outcome: Outcome, at_limit: bool, bisect: bool) -> ExitCode {
    ExitCode::from(if export_failed {
        if bisect { exit::BISECT_SKIP } else { exit::FAILED }
    } else if interrupted {
        exit::INTERRUPTED
    } else {
        match outcome {
            Outcome::Contradicted => exit::CONTRADICTED,
            _ if at_limit => exit::STOPPED_AT_LIMIT,
            Outcome::Met => exit::OK,
            Outcome::Inconclusive if bisect => exit::BISECT_SKIP,
            Outcome::Inconclusive => exit::INCONCLUSIVE,
        }
    })
}
