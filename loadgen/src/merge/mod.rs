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
use leaklab_engine::halt::StopReason;
use leaklab_engine::latency::histogram_log::{self, LatencyLog};
use leaklab_engine::load::LoadReport;
use leaklab_engine::run::RunOutcome;
use leaklab_engine::run_dir::RunDir;
use leaklab_engine::sample::Sample;
use leaklab_engine::scenario::{Plan, RunPlan, Segment};
use leaklab_engine::summary::record::{RecordedPlan, RunRecord};
use leaklab_engine::summary::{BuiltinRun, RunFacts, SegmentSummary, Summary, TargetKind};

pub(crate) use align::{Part, align};

/// One segment's run directory, read.
#[derive(Debug)]
pub(crate) struct SegmentRun {
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
    pub(crate) fn read(dir: &Path) -> anyhow::Result<SegmentRun> {
        let shown = dir.display();
        let run = RunDir::at(dir);
        let record = run.read_record()?;
        let segment = match &record.plan {
            RecordedPlan::Scenario { segment: Some(segment), .. } => *segment,
            RecordedPlan::Scenario { segment: None, .. } => {
                bail!("{shown}: not a segment: the run had no --segment, so it ran the whole scenario")
            }
            RecordedPlan::Watch(_) => bail!("{shown}: a watch, not a segment of a scenario"),
        };
        let summary = run.read_summary().with_context(|| {
            format!("{shown}: no summary.json: the segment did not finish (`loadgen report` rebuilds it, without its latencies)")
        })?;
        let summary_path = run.file(RunDir::SUMMARY);
        if summary.requests.is_none() {
            bail!("{}: no request counts: not a run of the built-in client", summary_path.display());
        }
        let (samples, _) = run.read_samples()?;
        let samples_path = run.file(RunDir::SAMPLES);
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
        let latency = run.read_latency()?;
        Ok(SegmentRun { dir: dir.to_owned(), segment, record, summary, samples, latency })
    }

    /// Its scenario's name, file, text and overrides; an error for a run that was not a scenario's.
    fn scenario(&self) -> anyhow::Result<Scenario<'_>> {
        match &self.record.plan {
            RecordedPlan::Scenario { scenario_file, scenario_text, overrides, .. } => {
                Ok(Scenario { name: &self.summary.scenario, file: scenario_file, text: scenario_text, overrides })
            }
            RecordedPlan::Watch(_) => bail!("{}: a watch, not a segment of a scenario", self.dir.display()),
        }
    }
}

/// What a segment ran, as its `run.json` recorded it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scenario<'a> {
    name: &'a str,
    file: &'a Path,
    text: &'a str,
    overrides: &'a leaklab_engine::scenario::Overrides,
}

/// Every segment of one scenario's split, in segment order, with the scenario's whole plan.
#[derive(Debug)]
pub(crate) struct Split {
    pub plan: Plan,
    pub runs: Vec<SegmentRun>,
}

impl Split {
    /// Checks that `runs` are every segment, once each, of one scenario with the same settings, run
    /// against one target; an error names the directory that does not fit and why.
    pub(crate) fn check(mut runs: Vec<SegmentRun>) -> anyhow::Result<Split> {
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
    pub(crate) fn merge(&self) -> anyhow::Result<Merged> {
        let parts: Vec<Part<'_>> =
            self.runs.iter().map(|run| Part { segment: run.segment, samples: run.samples.as_slice() }).collect();
        let samples = align(&parts);
        let load = self.load()?;
        let first = &self.runs[0].summary;
        let started_at = self.runs.iter().map(|run| run.summary.started_at.clone()).min().unwrap_or_default();
        let facts = RunFacts {
            sampling_busy: Duration::from_secs_f64(self.runs.iter().map(|run| run.summary.samples.busy_s).sum()),
            stopped_at: self.runs.iter().find_map(|run| run.summary.stopped_at),
            segments: self.runs.iter().map(segment_summary).collect(),
            ..RunFacts::new(started_at, first.target.clone(), first.limits, load.stopped_by)
        };
        let summary = Summary::build(&BuiltinRun { plan: &self.plan, load: Some(&load) }, &samples, facts);
        let started = UNIX_EPOCH + Duration::from_secs_f64(samples.first().and_then(|s| s.unix_time_s).unwrap_or(0.0));
        Ok(Merged { summary, samples, latency: load.latency_log(started) })
    }

    /// The segments' loads as one: requests and errors summed, latency histograms merged, the longest load.
    fn load(&self) -> anyhow::Result<LoadReport> {
        let histogram = |tag: &str| -> anyhow::Result<Option<Histogram<u64>>> {
            let each: Option<Vec<&Histogram<u64>>> = self.runs.iter().map(|run| run.latency.get(tag)).collect();
            let Some(each) = each else { return Ok(None) };
            histogram_log::merge(each).map_err(|error| anyhow::anyhow!("merging the {tag} latencies: {error}"))
        };
        let latency_us = histogram("sent")?.ok_or_else(|| anyhow::anyhow!("a segment has no `sent` latencies"))?;
        let requests: Vec<&leaklab_engine::summary::Requests> =
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
        segment: run.segment,
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
pub(crate) struct Merged {
    pub summary: Summary,
    pub samples: Vec<Sample>,
    pub latency: LatencyLog,
}

impl Merged {
    /// Records the merged run in a new run directory under `reports_dir` (its `samples.jsonl`, as a run
    /// records itself), for its outputs to be written as any run's.
    pub(crate) fn write(self, reports_dir: &Path) -> anyhow::Result<RunOutcome> {
        let dir = RunDir::create(reports_dir, &self.summary.scenario, SystemTime::now())?;
        dir.write_samples(&self.samples)?;
        let Merged { summary, samples, latency } = self;
        Ok(RunOutcome { dir, summary, samples, latency: Some(latency), heap_profiled: false })
    }
}
