//! `run.json`, and the summary of a run from what it left on disk.
//!
//! A run writes `run.json` (what it was started with) before its load and
//! appends to `samples.jsonl` as it samples, so even after `kill -9` the
//! directory holds enough to rebuild `summary.json`, the plots and
//! `report.md`. What only lived in memory (latency, error kinds, a watched
//! command's exit code) is missing from a rebuilt report, and its notes say so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{CommandInfo, Limits, Measured, Note, RunFacts, RunKind, Summary, TargetInfo};
use crate::halt::StopReason;
use crate::sample::Sample;
use crate::scenario::{self, ForeignClient, ForeignPlan, Overrides, RunPlan};

/// The file a run writes before its load.
pub const RUN_RECORD: &str = "run.json";

/// `run.json`: what a run was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// What it ran.
    pub plan: RecordedPlan,
    /// The server that was loaded.
    pub target: TargetInfo,
    /// Limits of the machine each process ran under.
    pub limits: Limits,
}

/// What a run ran, in a form that gives its plan back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedPlan {
    /// A scenario file's text when the run started (the file may have changed since), and the overrides over it.
    Scenario {
        scenario_file: PathBuf,
        scenario_text: String,
        overrides: Overrides,
        /// `--segment`: the share of the scenario the run was (`2/3`); absent for the whole.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        segment: Option<String>,
    },
    /// `loadgen watch`'s options.
    Watch {
        name: String,
        description: String,
        client: ForeignClient,
        duration_s: f64,
        interval_ms: u64,
        warmup_s: f64,
        tolerance_bytes_per_request: f64,
        tolerance_bytes_per_second: f64,
    },
}

impl RecordedPlan {
    /// The record of `plan`.
    pub fn of(plan: &RunPlan) -> RecordedPlan {
        match plan {
            RunPlan::Builtin(plan) => RecordedPlan::Scenario {
                scenario_file: plan.source.clone(),
                scenario_text: plan.origin.text.clone(),
                overrides: plan.origin.overrides.clone(),
                segment: plan.origin.segment.map(|segment| segment.to_string()),
            },
            RunPlan::Foreign(plan) => match &plan.source {
                Some(source) => RecordedPlan::Scenario {
                    scenario_file: source.clone(),
                    scenario_text: std::fs::read_to_string(source).unwrap_or_default(),
                    overrides: Overrides::default(),
                    segment: None,
                },
                None => RecordedPlan::Watch {
                    name: plan.name.clone(),
                    description: plan.description.clone(),
                    client: plan.client.clone(),
                    duration_s: plan.duration.as_secs_f64(),
                    interval_ms: plan.interval.as_millis() as u64,
                    warmup_s: plan.warmup.as_secs_f64(),
                    tolerance_bytes_per_request: plan.verdict.tolerance_bytes_per_request,
                    tolerance_bytes_per_second: plan.verdict.tolerance_bytes_per_second,
                },
            },
        }
    }

    /// The plan again.
    pub fn plan(&self) -> anyhow::Result<RunPlan> {
        Ok(match self {
            RecordedPlan::Scenario { scenario_file, scenario_text, overrides, segment } => {
                let plan = scenario::parse(scenario_file, scenario_text, overrides)?;
                match (segment, plan) {
                    (Some(segment), RunPlan::Builtin(plan)) => {
                        let segment =
                            scenario::Segment::parse(segment).map_err(|error| anyhow::anyhow!("segment {error}"))?;
                        RunPlan::Builtin(Box::new(plan.segment(segment).map_err(|error| anyhow::anyhow!(error))?))
                    }
                    (_, plan) => plan,
                }
            }
            RecordedPlan::Watch {
                name,
                description,
                client,
                duration_s,
                interval_ms,
                warmup_s,
                tolerance_bytes_per_request,
                tolerance_bytes_per_second,
            } => RunPlan::Foreign(Box::new(ForeignPlan::watch(
                name.clone(),
                description.clone(),
                client.clone(),
                Duration::from_secs_f64(*duration_s),
                Duration::from_millis(*interval_ms),
                Duration::from_secs_f64(*warmup_s),
                (*tolerance_bytes_per_request, *tolerance_bytes_per_second),
            ))),
        })
    }
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
    let plan = record.plan.plan().with_context(|| format!("the plan recorded in {}", record_path.display()))?;
    let (samples, cut) = read_samples(&dir.join("samples.jsonl"))?;
    let Some(first) = samples.first() else {
        anyhow::bail!("{}: no sample was written before the run ended", dir.join("samples.jsonl").display());
    };
    let mut notes = vec![Note::Rebuilt];
    if cut > 0 {
        notes.push(Note::CutLines { lines: cut as u64 });
    }
    let facts = RunFacts {
        started_at: record.started_at,
        target: record.target,
        samples_file: "samples.jsonl".to_owned(),
        sampling_busy: Duration::ZERO,
        notes,
        limits: record.limits,
        stopped_by: StopReason::Unfinished,
        stopped_at: None,
        // The proxy's log lived in the process that ended.
        fault: None,
        attack: None,
    };
    let summary = match &plan {
        RunPlan::Builtin(plan) => Summary::build(Measured::Builtin { plan, load: None }, &samples, facts),
        RunPlan::Foreign(plan) => {
            let command = CommandInfo {
                pid: first.client.pid.unwrap_or_default(),
                argv: match &plan.client {
                    ForeignClient::Command(argv) => Some(argv.clone()),
                    ForeignClient::Pid(_) => None,
                },
                exit_code: None,
                max_duration_s: plan.duration.as_secs_f64(),
                warmup_s: plan.warmup.as_secs_f64(),
                warmup_requests: plan.warmup_requests,
                sample_interval_ms: plan.interval.as_millis() as u64,
                reported_progress: samples.iter().any(|s| s.requests() > 0),
                tcp_states_at_end: Default::default(),
            };
            let kind = if plan.source.is_some() { RunKind::External } else { RunKind::Watch };
            let measured = Measured::Foreign {
                kind,
                name: &plan.name,
                description: &plan.description,
                scenario_file: plan.source.as_ref().map(|p| p.display().to_string()),
                verdict: &plan.verdict,
                command,
            };
            Summary::build(measured, &samples, facts)
        }
    };
    Ok((summary, samples))
}
