//! `reports/<scenario>/<UTC timestamp>/`, the `latest` link beside it, and
//! every file a run directory holds: one type that names them, creates the
//! directory, writes what a run records as it goes and reads a run back
//! (`loadgen report`, `compare`, `merge`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::halt::StopReason;
use crate::latency::histogram_log;
use crate::sample::Sample;
use crate::scenario::RunPlan;
use crate::summary::record::RunRecord;
use crate::summary::{BuiltinRun, CommandInfo, ForeignRun, Note, RunFacts, Summary};

/// The directory one run writes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// What the run was started with, written before its load (see [`RunRecord`]).
    pub const RECORD: &str = "run.json";
    /// One sample per line, appended as each is taken.
    pub const SAMPLES: &str = crate::sample::SAMPLES_FILE;
    /// The run's one record (see [`Summary`]), written first of the outputs.
    pub const SUMMARY: &str = "summary.json";
    /// A built-in run's latency histograms, losslessly.
    pub const LATENCY_LOG: &str = "latency.hlog";
    /// The toy server's stderr.
    pub const SERVER_LOG: &str = "server.log";
    /// A foreign client's stdout and stderr.
    pub const COMMAND_LOG: &str = "command.log";

    /// Creates `<reports>/<name>/<timestamp>` (with a `-2`, `-3`… suffix if two runs start in the same
    /// second) and points `<reports>/<name>/latest` at it.
    pub fn create(reports: &Path, name: &str, now: SystemTime) -> anyhow::Result<RunDir> {
        let stamp: String = utc_seconds(now).chars().filter(|c| *c != '-' && *c != ':').collect();
        let parent = reports.join(name);
        std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let mut dir_name = stamp.clone();
        let mut attempt = 1;
        let path = loop {
            let candidate = parent.join(&dir_name);
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                    dir_name = format!("{stamp}-{attempt}");
                }
                Err(error) => return Err(error).with_context(|| format!("creating {}", candidate.display())),
            }
        };
        point_latest(&parent, &dir_name).with_context(|| format!("updating {}", parent.join("latest").display()))?;
        Ok(RunDir { path })
    }

    /// A run directory that exists, to read.
    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `run.json`.
    pub fn write_record(&self, record: &RunRecord) -> anyhow::Result<()> {
        let path = self.file(Self::RECORD);
        let text = serde_json::to_string_pretty(record).context("serializing the run record")? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// `samples.jsonl`, created empty for the recorder to append to.
    pub fn samples_writer(&self) -> anyhow::Result<BufWriter<File>> {
        let path = self.file(Self::SAMPLES);
        Ok(BufWriter::new(File::create(&path).with_context(|| format!("creating {}", path.display()))?))
    }

    /// `samples.jsonl` of samples that were not recorded as they were taken (a merged run's).
    pub fn write_samples(&self, samples: &[Sample]) -> anyhow::Result<()> {
        let path = self.file(Self::SAMPLES);
        let mut sink = self.samples_writer()?;
        let written: io::Result<()> = samples.iter().try_for_each(|sample| {
            serde_json::to_writer(&mut sink, sample)?;
            sink.write_all(b"\n")
        });
        written.and_then(|()| sink.flush()).with_context(|| format!("writing {}", path.display()))
    }

    /// `run.json`; an error says the directory is not a run's.
    pub fn read_record(&self) -> anyhow::Result<RunRecord> {
        let path = self.file(Self::RECORD);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: not a run directory (no {})", self.path.display(), Self::RECORD))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// `summary.json`: present once the run finished.
    pub fn read_summary(&self) -> anyhow::Result<Summary> {
        let path = self.file(Self::SUMMARY);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The samples, and how many lines at the end did not parse (a line cut short by a crash ends them).
    pub fn read_samples(&self) -> anyhow::Result<(Vec<Sample>, usize)> {
        let path = self.file(Self::SAMPLES);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let samples: Vec<Sample> = lines.iter().map_while(|line| serde_json::from_str(line).ok()).collect();
        let cut = lines.len() - samples.len();
        Ok((samples, cut))
    }

    /// A finished run's summary and samples.
    pub fn read_finished(&self) -> anyhow::Result<(Summary, Vec<Sample>)> {
        let summary = self.read_summary()?;
        let (samples, _) = self.read_samples()?;
        Ok((summary, samples))
    }

    /// `latency.hlog`'s histograms by tag (`sent`, and `intended` in an open loop).
    pub fn read_latency(&self) -> anyhow::Result<BTreeMap<String, Histogram<u64>>> {
        let path = self.file(Self::LATENCY_LOG);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let histograms =
            histogram_log::decode(&bytes).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        let histograms: BTreeMap<String, Histogram<u64>> = histograms.into_iter().collect();
        if !histograms.contains_key("sent") {
            anyhow::bail!("{}: no `sent` histogram: not a latency log of loadgen run", path.display());
        }
        Ok(histograms)
    }

    /// The run's summary and samples: its own `summary.json` when it finished, else one rebuilt from
    /// `run.json` and `samples.jsonl` (after `kill -9`). What lived only in memory (latency, error
    /// kinds, a watched command's exit code) is missing from a rebuilt summary, and its notes say so.
    pub fn rebuild(&self) -> anyhow::Result<(Summary, Vec<Sample>)> {
        if self.file(Self::SUMMARY).is_file() {
            return self.read_finished();
        }
        let record = self.read_record()?;
        let record_path = self.file(Self::RECORD);
        let plan = record.plan.plan().with_context(|| format!("the plan recorded in {}", record_path.display()))?;
        let (samples, cut) = self.read_samples()?;
        let Some(first) = samples.first() else {
            anyhow::bail!("{}: no sample was written before the run ended", self.file(Self::SAMPLES).display());
        };
        let mut notes = vec![Note::Rebuilt];
        if cut > 0 {
            notes.push(Note::CutLines { lines: cut as u64 });
        }
        let facts = RunFacts {
            notes,
            ..RunFacts::new(record.started_at, record.target, record.limits, StopReason::Unfinished)
        };
        let summary = match &plan {
            RunPlan::Builtin(plan) => Summary::build(&BuiltinRun { plan, load: None }, &samples, facts),
            RunPlan::Foreign(plan) => {
                let reported_progress = samples.iter().any(|s| s.requests() > 0);
                let command = CommandInfo::rebuilt(plan, first.client.pid.unwrap_or_default(), reported_progress);
                Summary::build(&ForeignRun { plan, command }, &samples, facts)
            }
        };
        Ok((summary, samples))
    }
}

/// `now` as RFC 3339 in UTC to the second (`2026-11-28T01:09:08Z`): when a run started.
pub fn utc_seconds(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now).to_string()
}

/// Replaces `latest` atomically: a new link under a temporary name, renamed over the old one.
fn point_latest(parent: &Path, name: &str) -> io::Result<()> {
    let temporary = parent.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(name, &temporary)?;
    std::fs::rename(&temporary, parent.join("latest"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn runs_get_timestamped_dirs_and_latest_follows() {
        let reports = tempfile::tempdir().unwrap();
        let reports = reports.path();
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let first = RunDir::create(reports, "leak", now).unwrap();
        let second = RunDir::create(reports, "leak", now).unwrap();
        assert_eq!(utc_seconds(now), "2026-11-18T11:06:40Z");
        assert_eq!(first.path, reports.join("leak/20261118T110640Z"));
        assert_eq!(second.path, reports.join("leak/20261118T110640Z-2"));
        let latest = std::fs::read_link(reports.join("leak/latest")).unwrap();
        assert_eq!(latest, Path::new("20261118T110640Z-2"));
    }

    #[test]
    fn a_directory_without_a_record_is_not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let error = RunDir::at(dir.path()).rebuild().unwrap_err().to_string();
        assert_eq!(error, format!("{}: not a run directory (no run.json)", dir.path().display()));
    }
}
