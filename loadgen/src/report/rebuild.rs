//! `loadgen report <run dir>`: the report of a run from what it left on disk.
//!
//! A run writes `run.json` (what it was started with) before its load and
//! appends to `samples.jsonl` as it samples, so even after `kill -9` the
//! directory holds enough to rebuild `summary.json`, the plots and
//! `report.md`. What only lived in memory (latency, error kinds) is missing
//! from a rebuilt report, and its notes say so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Summary;
use super::summary::{Limits, RunFacts, TargetInfo};
use crate::load::{LoadReport, StopReason};
use crate::sample::{Phase, Sample};
use crate::scenario::{self, Overrides};

/// The file a run writes before its load.
pub const RUN_RECORD: &str = "run.json";

/// `run.json`: what a run was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// The scenario file, as given.
    pub scenario_file: PathBuf,
    /// Its text when the run started (the file may have changed since).
    pub scenario_text: String,
    /// Command-line overrides applied over it.
    pub overrides: Overrides,
    /// The server that was loaded.
    pub target: TargetInfo,
    /// Limits of the machine each process ran under.
    pub limits: Limits,
}

/// The samples of a run, and how many lines at the end did not parse (a
/// line cut short by a crash ends them).
pub fn read_samples(path: &Path) -> anyhow::Result<(Vec<Sample>, usize)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let samples: Vec<Sample> = lines.iter().map_while(|line| serde_json::from_str(line).ok()).collect();
    let cut = lines.len() - samples.len();
    Ok((samples, cut))
}

/// The summary and samples of the run in `dir`: its own `summary.json` when
/// it finished, else one rebuilt from `run.json` and `samples.jsonl`.
pub fn rebuild(dir: &Path) -> anyhow::Result<(Summary, Vec<Sample>)> {
    let summary_path = dir.join("summary.json");
    if let Ok(text) = std::fs::read_to_string(&summary_path) {
        let summary: Summary =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", summary_path.display()))?;
        let (samples, _) = read_samples(&dir.join(&summary.samples.file))?;
        return Ok((summary, samples));
    }
    let record_path = dir.join(RUN_RECORD);
    let text = std::fs::read_to_string(&record_path)
        .with_context(|| format!("{}: not a run directory (no {RUN_RECORD})", dir.display()))?;
    let record: RunRecord =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", record_path.display()))?;
    let plan = scenario::parse(&record.scenario_file, &record.scenario_text, &record.overrides)
        .with_context(|| format!("the scenario recorded in {}", record_path.display()))?;
    let (samples, cut) = read_samples(&dir.join("samples.jsonl"))?;
    let Some(last) = samples.last() else {
        anyhow::bail!("{}: no sample was written before the run ended", dir.join("samples.jsonl").display());
    };
    let load_started = samples.iter().find(|s| matches!(s.phase, Phase::Warmup | Phase::Load)).map(|s| s.elapsed_s);
    let load_ended = samples.iter().rev().find(|s| s.phase == Phase::Load).map(|s| s.elapsed_s);
    let elapsed = match (load_started, load_ended) {
        (Some(start), Some(end)) if end > start => Duration::from_secs_f64(end - start),
        _ => Duration::ZERO,
    };
    let load = LoadReport {
        latency_us: Histogram::new(3).expect("3 significant digits is valid"),
        latency_from_intended_us: None,
        ok: last.requests_ok,
        failed: last.requests_failed,
        errors: Default::default(),
        first_error: None,
        elapsed,
        stopped_by: StopReason::Unfinished,
    };
    let mut notes = vec![format!(
        "Rebuilt by `loadgen report` from {RUN_RECORD} and samples.jsonl: the run ended without writing its report \
         (killed?). Latency and error kinds lived only in its memory and are missing; the load duration is \
         approximate (from samples)."
    )];
    if cut > 0 {
        notes.push(format!("{cut} line(s) at the end of samples.jsonl were cut short and are left out."));
    }
    let facts = RunFacts {
        started_at: record.started_at,
        target: record.target,
        samples_file: "samples.jsonl".to_owned(),
        sampling_busy: Duration::ZERO,
        notes,
        limits: record.limits,
        stopped_at: None,
        // The proxy's log lived in the process that ended.
        fault: None,
    };
    Ok((Summary::build(&plan, &samples, &load, facts), samples))
}
