//! `loadgen merge DIR…`: one report from the run directories of one scenario
//! split over several load generators (`loadgen run --segment I/N`).
//!
//! Each segment's directory is [read](SegmentRun::read), the set is
//! [checked](Split::check) to be every segment of one scenario against one
//! target, and the [merged](Split::merge) run goes through the same summary,
//! verdicts and exporters as any run:
//! - its samples are the segments' lined up on wall-clock time ([`align`]):
//!   the clients summed, the requests summed, the server as each segment
//!   scraped it, so that the server is judged once against every request;
//! - its latencies are the segments' histograms merged exactly (`latency.hlog`);
//! - its client, the sum, is judged together, and each segment's client is
//!   kept as its own run judged it (`segments` in `summary.json`).

mod align;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

pub use align::{Part, align};

use crate::halt::StopReason;
use crate::load::LoadReport;
use crate::report::json::SamplesJsonl;
use crate::report::{self, Output, Report, RunDir};
use crate::run::{LATENCY_LOG, RunOutcome};
use crate::sample::Sample;
use crate::scenario::{Plan, RunPlan, Segment};
use crate::stats::histogram_log;
use crate::summary::record::{RUN_RECORD, RecordedPlan, RunRecord};
use crate::summary::{Measured, RunFacts, SegmentSummary, Summary, TargetKind};

/// One segment's run directory, read.
#[derive(Debug)]
pub struct SegmentRun {
    pub dir: PathBuf,
    pub segment: Segment,
    pub record: RunRecord,
    pub summary: Summary,
    pub samples: Vec<Sample>,
    /// Its latency histograms by tag (`sent`, `intended`), from `latency.hlog`.
    pub latency: BTreeMap<String, Histogram<u64>>,
}

impl SegmentRun {
    /// Reads a finished segment's directory; an error names the directory or file and what is wrong.
    pub fn read(dir: &Path) -> anyhow::Result<SegmentRun> {
        let shown = dir.display();
        let record_path = dir.join(RUN_RECORD);
        let text = std::fs::read_to_string(&record_path)
            .with_context(|| format!("{shown}: not a run directory (no {RUN_RECORD})"))?;
        let record: RunRecord =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", record_path.display()))?;
        let segment = match &record.plan {
            RecordedPlan::Scenario { segment: Some(segment), .. } => Segment::parse(segment)
                .map_err(|error| anyhow::anyhow!("{}: segment {error}", record_path.display()))?,
            RecordedPlan::Scenario { segment: None, .. } => {
                bail!("{shown}: not a segment: the run had no --segment, so it ran the whole scenario")
            }
            RecordedPlan::Watch { .. } => bail!("{shown}: a watch, not a segment of a scenario"),
        };
        let summary_path = dir.join("summary.json");
        let summary_text = std::fs::read_to_string(&summary_path)
            .with_context(|| format!("{shown}: no summary.json: the segment did not finish (`loadgen report` rebuilds it, without its latencies)"))?;
        let summary: Summary =
            serde_json::from_str(&summary_text).with_context(|| format!("parsing {}", summary_path.display()))?;
        if summary.requests.is_none() {
            bail!("{}: no request counts: not a run of the built-in client", summary_path.display());
        }
        let samples_path = dir.join(&summary.samples.file);
        let (samples, _) = crate::summary::record::read_samples(&samples_path)?;
        if samples.is_empty() {
            bail!("{}: no samples", samples_path.display());
        }
        if let Some(line) = samples.iter().position(|s| s.unix_time_s.is_none()) {
            bail!(
                "{}: line {}: no unix_time_s: the samples were written by a leaklab that did not record wall-clock time",
                samples_path.display(),
                line + 1
            );
        }
        let log_path = dir.join(LATENCY_LOG);
        let bytes = std::fs::read(&log_path).with_context(|| format!("reading {}", log_path.display()))?;
        let latency = histogram_log::decode(&bytes)
            .map_err(|error| anyhow::anyhow!("{}: {error}", log_path.display()))?
            .into_iter()
            .collect::<BTreeMap<String, Histogram<u64>>>();
        if !latency.contains_key("sent") {
            bail!("{}: no `sent` histogram: not a latency log of loadgen run", log_path.display());
        }
        Ok(SegmentRun { dir: dir.to_owned(), segment, record, summary, samples, latency })
    }

    /// Its scenario's name, file, text and overrides; an error for a run that was not a scenario's.
    fn scenario(&self) -> anyhow::Result<Scenario<'_>> {
        match &self.record.plan {
            RecordedPlan::Scenario { scenario_file, scenario_text, overrides, .. } => {
                Ok(Scenario { name: &self.summary.scenario, file: scenario_file, text: scenario_text, overrides })
            }
            RecordedPlan::Watch { .. } => bail!("{}: a watch, not a segment of a scenario", self.dir.display()),
        }
    }
}

/// What a segment ran, as its `run.json` recorded it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scenario<'a> {
    name: &'a str,
    file: &'a Path,
    text: &'a str,
    overrides: &'a crate::scenario::Overrides,
}

/// Every segment of one scenario's split, in segment order, with the scenario's whole plan.
#[derive(Debug)]
pub struct Split {
    pub plan: Plan,
    pub runs: Vec<SegmentRun>,
}

impl Split {
    /// Checks that `runs` are every segment, once each, of one scenario with the same settings, run
    /// against one target; an error names the directory that does not fit and why.
    pub fn check(mut runs: Vec<SegmentRun>) -> anyhow::Result<Split> {
        let Some(first) = runs.first() else { bail!("no run directory to merge") };
        let scenario = first.scenario()?;
        let name = scenario.name;
        let count = first.segment.count;
        let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
        for run in &runs {
            let shown = run.dir.display();
            let other = run.scenario()?;
            if other.name != name {
                bail!("{shown}: scenario {}, not {name} as in {}", other.name, first.dir.display());
            }
            if other.text != scenario.text || other.overrides != scenario.overrides {
                bail!(
                    "{shown}: scenario {name} with other settings than in {} (its scenario file or command-line overrides differ)",
                    first.dir.display()
                );
            }
            if run.summary.target.kind != TargetKind::External {
                bail!("{shown}: the run started its own server: the segments of a split load one --target");
            }
            if run.summary.target.address != first.summary.target.address {
                let address = |run: &SegmentRun| run.summary.target.address.clone().unwrap_or_default();
                bail!(
                    "{shown}: target {}, not {} as in {}: the segments of a split load one server",
                    address(run),
                    address(first),
                    first.dir.display()
                );
            }
            if run.segment.count != count {
                bail!("{shown}: segment {}, but {} is segment {}", run.segment, first.dir.display(), first.segment);
            }
            if let Some(other) = seen.insert(run.segment.index, &run.dir) {
                bail!("{shown}: segment {} again (also {})", run.segment, other.display());
            }
        }
        let missing: Vec<String> =
            (1..=count).filter(|index| !seen.contains_key(index)).map(|index| format!("{index}/{count}")).collect();
        if !missing.is_empty() {
            bail!("segment {} of {name} missing: give every segment's run directory", missing.join(", "));
        }
        let whole = RecordedPlan::Scenario {
            scenario_file: scenario.file.to_owned(),
            scenario_text: scenario.text.to_owned(),
            overrides: scenario.overrides.clone(),
            segment: None,
        };
        let plan = match whole.plan().with_context(|| format!("the plan recorded in {}", first.dir.display()))? {
            RunPlan::Builtin(plan) => *plan,
            RunPlan::Foreign(_) => bail!("{}: an external client's run cannot be split", first.dir.display()),
        };
        runs.sort_by_key(|run| run.segment.index);
        Ok(Split { plan, runs })
    }

    /// The merged run: samples lined up, latencies and requests merged, the summary built and judged.
    pub fn merge(&self) -> anyhow::Result<Merged> {
        let parts: Vec<(String, &[Sample])> =
            self.runs.iter().map(|run| (run.segment.to_string(), run.samples.as_slice())).collect();
        let parts: Vec<Part<'_>> =
            parts.iter().map(|(segment, samples)| Part { segment: segment.as_str(), samples }).collect();
        let samples = align(&parts);
        let load = self.load()?;
        let first = &self.runs[0].summary;
        let facts = RunFacts {
            started_at: self.runs.iter().map(|run| run.summary.started_at.clone()).min().unwrap_or_default(),
            target: first.target.clone(),
            samples_file: "samples.jsonl".to_owned(),
            sampling_busy: Duration::from_secs_f64(self.runs.iter().map(|run| run.summary.samples.busy_s).sum()),
            notes: Vec::new(),
            limits: first.limits,
            stopped_by: load.stopped_by,
            stopped_at: self.runs.iter().find_map(|run| run.summary.stopped_at),
            fault: None,
            attack: None,
        };
        let mut summary = Summary::build(Measured::Builtin { plan: &self.plan, load: Some(&load) }, &samples, facts);
        summary.segments = self.runs.iter().map(segment_summary).collect();
        let started = UNIX_EPOCH + Duration::from_secs_f64(samples.first().and_then(|s| s.unix_time_s).unwrap_or(0.0));
        Ok(Merged { report: Report { summary, samples }, load, started })
    }

    /// The segments' loads as one: requests and errors summed, latency histograms merged, the longest load.
    fn load(&self) -> anyhow::Result<LoadReport> {
        let histogram = |tag: &str| -> anyhow::Result<Option<Histogram<u64>>> {
            let each: Option<Vec<&Histogram<u64>>> = self.runs.iter().map(|run| run.latency.get(tag)).collect();
            let Some(each) = each else { return Ok(None) };
            histogram_log::merge(each).map_err(|error| anyhow::anyhow!("merging the {tag} latencies: {error}"))
        };
        let latency_us = histogram("sent")?.ok_or_else(|| anyhow::anyhow!("a segment has no `sent` latencies"))?;
        let requests: Vec<&crate::summary::Requests> =
            self.runs.iter().filter_map(|run| run.summary.requests.as_ref()).collect();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, count) in requests.iter().filter_map(|r| r.errors.as_ref()).flatten() {
            *errors.entry(kind.clone()).or_default() += count;
        }
        let first_error = requests
            .iter()
            .filter_map(|r| r.first_error.as_ref())
            .min_by(|a, b| a.at_s.total_cmp(&b.at_s))
            .map(|e| (e.kind.clone(), Duration::from_secs_f64(e.at_s)));
        let elapsed = self.runs.iter().map(|run| run.summary.load_duration_s).fold(0.0, f64::max);
        Ok(LoadReport {
            latency_us,
            latency_from_intended_us: histogram("intended")?,
            ok: requests.iter().map(|r| r.ok).sum(),
            failed: requests.iter().map(|r| r.failed).sum(),
            errors,
            first_error,
            elapsed: Duration::from_secs_f64(elapsed),
            stopped_by: stopped_by(self.runs.iter().map(|run| run.summary.stopped_by)),
        })
    }
}

/// Why a split's load stopped: the first segment's reason that is not its plan's end, else the first's.
fn stopped_by(reasons: impl Iterator<Item = StopReason>) -> StopReason {
    let reasons: Vec<StopReason> = reasons.collect();
    let planned = |reason: &&StopReason| matches!(reason, StopReason::Requests | StopReason::Duration);
    reasons.iter().find(|reason| !planned(reason)).or(reasons.first()).copied().unwrap_or(StopReason::Requests)
}

fn segment_summary(run: &SegmentRun) -> SegmentSummary {
    let summary = &run.summary;
    SegmentSummary {
        segment: run.segment.to_string(),
        dir: run.dir.display().to_string(),
        started_at: summary.started_at.clone(),
        requests: summary.requests.clone().expect("read refuses a segment without request counts"),
        throughput_rps: summary.throughput_rps,
        client: summary.client.clone(),
        client_allocated_bytes_per_request: summary.growth.client_allocated_bytes_per_request,
        client_verdict: summary.verdict.client.clone(),
    }
}

/// A merged run, before it is written.
#[derive(Debug)]
pub struct Merged {
    pub report: Report,
    pub load: LoadReport,
    /// Its first sample's wall-clock time.
    pub started: SystemTime,
}

/// The files a merged run writes: its samples, then every run's outputs.
const MERGED_OUTPUTS: [Output<Report>; 1] = [Output { file: "samples.jsonl", exporter: &SamplesJsonl }];

impl Merged {
    /// Writes the merged run into a new run directory under `reports_dir`, as a run would.
    pub fn write(self, reports_dir: &Path) -> anyhow::Result<RunOutcome> {
        let name = &self.report.summary.scenario;
        let dir = RunDir::create(reports_dir, name, SystemTime::now())?;
        let mut written = report::write_outputs(&MERGED_OUTPUTS, &self.report, &dir.path);
        written.extend(report::write_outputs(&report::RUN_OUTPUTS, &self.report, &dir.path));
        written.extend(crate::run::latency_log(&self.load, self.started, &dir.path));
        Ok(RunOutcome { dir: dir.path, report: self.report, written })
    }
}
