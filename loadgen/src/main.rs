//! `loadgen`: parse → plan → run → report → exit code, for each command.

mod baseline;
mod ci;
mod cli;
mod compare;
mod demo;
mod exit;
mod live;
mod merge;
#[cfg(test)]
mod modules;
mod report;
mod session;
mod terminal;

use std::process::ExitCode;

use clap::Parser;
use exit::{Failure, failed, usage};
use leaklab_engine::call::ResolveError;
use leaklab_engine::run;
use leaklab_engine::run_dir::RunDir;
use leaklab_engine::scenario::Catalog;
use report::console::RunConsole;
use session::Session;
use terminal::{errors, finish, print, print_and_report};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start: heap profiling enabled, sampling off until
/// `--heap-profile` switches it on (see `leaklab_probe::heap`).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: leaklab_probe::MallocConf = leaklab_probe::MallocConf(leaklab_probe::heap::MALLOC_CONF.as_ptr());

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A leak should meet the machine's real ceiling, not a shell's default; the summary reports both limits.
    if let Err(error) = leaklab_probe::procfs::raise_fd_limit() {
        eprintln!("loadgen: cannot raise the fd limit: {error}");
    }
    let ended = match cli.command {
        cli::Command::Attack(args) => attack(&args),
        cli::Command::List(args) => list(&Catalog::locate(args.scenarios.path)),
        cli::Command::Schema(args) => Ok(print(&args.text())),
        cli::Command::Run(args) => run_scenario(&args),
        cli::Command::Watch(args) => watch_process(&args),
        cli::Command::Compare(args) => compare_scenarios(&args),
        cli::Command::Demo(args) => tell_the_story(&args),
        cli::Command::Report(args) => report_again(&args.dir),
        cli::Command::Merge(args) => merge_segments(&args),
    };
    ExitCode::from(ended.unwrap_or_else(|(code, error)| {
        eprintln!("Error: {error:#}");
        code
    }))
}

/// scenario → plan → run → outputs → baseline → CI files → console → exit code.
fn run_scenario(args: &cli::RunArgs) -> Result<u8, Failure> {
    let plan = args.plan().map_err(usage)?;
    let baselines = args.baselines(&plan).map_err(usage)?;
    let session = Session::serving(args.ci.metrics_listen)?;
    let options = args.options(&session, plan.name()).map_err(usage)?;
    let bisect = args.verdict.bisect;
    let outcome = session.runtime.block_on(run::execute(&plan, options)).map_err(|error| {
        // A method that could not be made callable is the command line's mistake, found before anything ran.
        let code = if error.is::<ResolveError>() { exit::USAGE } else { exit::run_failed(bisect) };
        errors(&args.ci.files.files().write_unjudged("run", plan.name(), &error).errors);
        (code, error)
    })?;
    let mut reported = report::write_run(outcome);
    let (comparison, saved) = baselines.finish(&reported.report.summary);
    let saved = saved.and_then(|saved| saved.map_err(|error| reported.written.errors.push(error.into())).ok());
    reported.written.extend(args.ci.files.files().write(&reported.results("run", comparison.as_ref())));
    let saved_as = args.verdict.save_baseline.as_deref().zip(saved.as_deref());
    Ok(finish(&reported, RunConsole { baseline: comparison.as_ref(), saved_as, ..reported.console() }, bisect))
}

/// process → samples → verdict → outputs → CI files → console → exit code.
fn watch_process(args: &cli::WatchArgs) -> Result<u8, Failure> {
    let plan = args.plan().map_err(usage)?;
    let session = Session::serving(args.ci.metrics_listen)?;
    // A --pid that is not there or a command that cannot start is the command line's mistake.
    let outcome = session.runtime.block_on(run::execute(&plan, args.options(&session, plan.name()))).map_err(usage)?;
    let mut reported = report::write_run(outcome);
    reported.written.extend(args.ci.files.files().write(&reported.results("watch", None)));
    Ok(finish(&reported, reported.console(), false))
}

/// run directory → summary (its own, or rebuilt from samples) → outputs written again → exit code.
fn report_again(dir: &std::path::Path) -> Result<u8, Failure> {
    let reported = report::write_again(dir, RunDir::at(dir).rebuild().map_err(failed)?);
    // It writes a report again; it does not judge the run: only an output it could not write fails it.
    finish(&reported, reported.console(), false);
    Ok(if reported.written.errors.is_empty() { exit::OK } else { exit::FAILED })
}

/// segment directories → one scenario's split → merged run → outputs → CI files → console → exit code.
fn merge_segments(args: &cli::MergeArgs) -> Result<u8, Failure> {
    let runs: Vec<merge::SegmentRun> =
        args.dirs.iter().map(|dir| merge::SegmentRun::read(dir)).collect::<anyhow::Result<_>>().map_err(usage)?;
    let merged = merge::Split::check(runs).and_then(|split| split.merge()).map_err(usage)?;
    let merged = merged.write(&args.reports.path).map_err(failed)?;
    let mut reported = report::write_run(merged);
    reported.written.extend(args.ci.files().write(&reported.results("merge", None)));
    Ok(finish(&reported, reported.console(), false))
}

/// every scenario → plans → each run in its own process → comparison → CI files → exit code.
fn compare_scenarios(args: &cli::CompareArgs) -> Result<u8, Failure> {
    let plans = args.plans().map_err(usage)?;
    let session = Session::serving(args.ci.metrics_listen)?;
    let options = args.options(&session).map_err(usage)?;
    let mut outcome = session.runtime.block_on(compare::execute(&plans, options)).map_err(failed)?;
    outcome.written.extend(args.ci.files.files().write(&outcome.report.results()));
    print_and_report(&compare::markdown::CompareText, &outcome.report, &outcome.written);
    Ok(outcome.ending().code(args.verdict.bisect))
}

/// story → chapters run in order with the live view → page → CI files → exit code.
fn tell_the_story(args: &cli::DemoArgs) -> Result<u8, Failure> {
    let story = args.story().map_err(usage)?;
    let session = Session::serving(args.ci.metrics_listen)?;
    let options = args.options(&session).map_err(usage)?;
    let mut outcome = session.runtime.block_on(demo::execute(&story, options)).map_err(failed)?;
    outcome.written.extend(args.ci.files.files().write(&outcome.report.results()));
    print_and_report(&demo::DemoText, &outcome.report, &outcome.written);
    Ok(outcome.ending().code(false))
}

/// attack plan → the attack, to its end → what it did, as JSON.
fn attack(args: &cli::AttackArgs) -> Result<u8, Failure> {
    let plan = args.plan().map_err(usage)?;
    // Ctrl-C or SIGTERM ends it early, with its report: that is how a run stops its scenario's attack.
    let session = tokio::runtime::Runtime::new().and_then(|runtime| Session::on(runtime, None)).map_err(failed)?;
    let attacked = session.runtime.block_on(leaklab_engine::attack::run_until(&plan, session.stop));
    let report = attacked.map_err(|error| failed(anyhow::Error::msg(error)))?;
    let json = serde_json::to_string_pretty(&report).map_err(failed)?;
    Ok(print(&format!("{json}\n")))
}

fn list(catalog: &Catalog) -> Result<u8, Failure> {
    let empty = || usage(anyhow::anyhow!("no scenario files (*.toml) in {}", catalog.dir.display()));
    Ok(print(&catalog.listing().ok_or_else(empty)?))
}
