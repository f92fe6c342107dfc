//! Everything a run leaves behind, one file per output format.
//!
//! A run writes into `reports/<scenario>/<UTC timestamp>/` ([`RunDir`]):
//! `samples.jsonl` while it runs, then [`summary.json`](json), the plots
//! ([`plot`]) and [`report.md`](markdown) from its [`Summary`].

pub mod dashboard;
pub mod heap;
pub mod json;
pub mod lifecycle;
pub mod markdown;
pub mod plot;
pub mod progress;
pub mod rebuild;
mod run_dir;
pub mod summary;
pub mod units;

use std::path::{Path, PathBuf};

pub use run_dir::RunDir;
pub use summary::Summary;

use crate::sample::Sample;

/// What exporters read: the run's record and its samples.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub summary: &'a Summary,
    pub samples: &'a [Sample],
}

/// One output file of a run.
pub trait Exporter {
    /// The file's name inside the run directory.
    fn file_name(&self) -> &'static str;
    fn write(&self, report: &Report<'_>, path: &Path) -> anyhow::Result<()>;
}

/// The outputs every run writes, the summary first so a later failure loses nothing.
pub fn exporters() -> Vec<Box<dyn Exporter>> {
    vec![Box::new(json::SummaryJson), Box::new(plot::SvgPlot), Box::new(plot::PngPlot), Box::new(markdown::Markdown)]
}

/// Runs every exporter into `dir`; one failing does not stop the others.
/// Returns the files written and the errors met.
pub fn export_all(report: &Report<'_>, dir: &Path) -> (Vec<PathBuf>, Vec<anyhow::Error>) {
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for exporter in exporters() {
        let path = dir.join(exporter.file_name());
        match exporter.write(report, &path) {
            Ok(()) => written.push(path),
            Err(error) => errors.push(error.context(format!("writing {}", path.display()))),
        }
    }
    (written, errors)
}

/// Appends `markdown` to the file `$GITHUB_STEP_SUMMARY` names (a CI job's
/// summary page), when it is set; returns that file and how writing went.
pub fn append_to_step_summary(markdown: &str) -> Option<(PathBuf, anyhow::Result<()>)> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let path = PathBuf::from(std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty())?);
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{markdown}"))
        .with_context(|| format!("appending to $GITHUB_STEP_SUMMARY ({})", path.display()));
    Some((path, appended))
}

/// A scripted run for tests of exporters: a leak-shaped client curve.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use hdrhistogram::Histogram;
    use leaklab_probe::control::ServerStats;
    use leaklab_probe::{ConnectionCounts, JemallocStats, ProcessSnapshot};

    use super::summary::{RunFacts, Summary, TargetInfo, TargetKind};
    use crate::load::{LoadReport, StopReason};
    use crate::sample::{Phase, Sample};
    use crate::scenario::{Overrides, parse};

    pub(crate) fn snapshot(allocated: u64, connections: u64) -> ProcessSnapshot {
        ProcessSnapshot {
            pid: 1,
            rss_bytes: allocated + 8_000_000,
            fds: connections + 10,
            threads: 4,
            jemalloc: Some(JemallocStats {
                allocated_bytes: allocated,
                active_bytes: allocated,
                resident_bytes: allocated,
                mapped_bytes: allocated,
                retained_bytes: 0,
            }),
            connections: ConnectionCounts { open: connections, opened: connections, closed: 0 },
        }
    }

    /// 100 warm-up requests, then 10 rounds of 100 requests that each keep
    /// 60 KB in the client and 20 KB in the server, then a cool-down.
    pub(crate) fn scripted_report() -> (Summary, Vec<Sample>) {
        scripted_report_with(|_| {})
    }

    /// [`scripted_report`] with its samples changed by `edit` before the summary is built.
    pub(crate) fn scripted_report_with(edit: impl FnOnce(&mut Vec<Sample>)) -> (Summary, Vec<Sample>) {
        let plan = parse(
            Path::new("scenarios/leak.toml"),
            "description = \"scripted leak\"\n[client]\npolicy = \"leak\"\n[load]\nrequests = 1100\nwarmup_requests = 100\n\
             rounds = 10\n[expect]\nclient = \"leak\"\nserver = \"leak\"\n",
            &Overrides::default(),
        )
        .unwrap();
        let mut samples = Vec::new();
        let mut push = |t: f64, phase: Phase, requests: u64| {
            let server = ServerStats {
                process: snapshot(5_000_000 + requests * 20_000, requests),
                requests_served: requests,
                requests_failed: 0,
                lifecycle: Default::default(),
            };
            samples.push(Sample {
                elapsed_s: t,
                phase,
                requests_ok: requests,
                requests_failed: 0,
                client: snapshot(10_000_000 + requests * 60_000, requests),
                server: Some(server),
                // Checkpoints: after warm-up, after each round, at the end.
                settled: phase == Phase::Load || phase == Phase::Cooldown,
                network: Default::default(),
            });
        };
        push(0.0, Phase::Baseline, 0);
        push(0.1, Phase::Warmup, 0);
        push(0.5, Phase::Load, 100);
        for step in 1..=10 {
            push(0.5 + step as f64 * 0.3, if step == 10 { Phase::Cooldown } else { Phase::Load }, 100 + step * 100);
        }
        push(4.0, Phase::Cooldown, 1_100);
        edit(&mut samples);
        let mut latency_us = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        latency_us.record(800).unwrap();
        let load = LoadReport {
            latency_us,
            latency_from_intended_us: None,
            ok: 1_100,
            failed: 0,
            errors: BTreeMap::new(),
            first_error: None,
            elapsed: Duration::from_secs(3),
            stopped_by: StopReason::Requests,
        };
        let facts = RunFacts {
            started_at: "2026-11-28T00:00:00Z".into(),
            target: TargetInfo { kind: TargetKind::Spawned, address: "127.0.0.1:1".into(), server_pid: Some(2) },
            samples_file: "samples.jsonl".into(),
            sampling_busy: Duration::from_millis(12),
            notes: vec![],
            limits: super::summary::Limits {
                client_fds: Some(leaklab_probe::procfs::FdLimits { soft: 20_000, hard: 20_000 }),
                server_fds: Some(leaklab_probe::procfs::FdLimits { soft: 20_000, hard: 20_000 }),
            },
            stopped_at: None,
            fault: None,
        };
        (Summary::build(&plan, &samples, &load, facts), samples)
    }
}
