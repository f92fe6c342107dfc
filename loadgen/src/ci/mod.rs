//! What CI systems read besides the step summary: JUnit XML for their test
//! reports (`--junit`), and the two benchmark trackers' formats for history
//! and alerts: Bencher's metric format (`--bmf`) and github-action-benchmark's
//! `customSmallerIsBetter` list (`--gab`).
//!
//! All three read one [`Results`]: every scenario of a run, a comparison or a
//! demo, with the summary it left, the error that stopped it, or why it was
//! skipped. [`junit`] turns them into test cases, [`trackers`] into figures.

use std::path::{Path, PathBuf};

use crate::baseline::BaselineComparison;
use crate::report::{Exporter, Written};
use leaklab_engine::summary::Summary;

mod junit;
mod trackers;

use junit::Junit;
use trackers::{Bmf, Gab};

/// Every scenario one invocation ran or meant to run.
#[derive(Debug)]
pub(crate) struct Results<'a> {
    /// `run`, `watch`, `compare` or `demo`: the test suite is `leaklab <command>`.
    pub command: &'static str,
    /// When the invocation started, RFC 3339 in UTC.
    pub started_at: &'a str,
    pub entries: Vec<Entry<'a>>,
}

/// One scenario of [`Results`].
#[derive(Debug)]
pub(crate) enum Entry<'a> {
    /// It ran and left `summary` in `dir`; beside its baseline with `--baseline`.
    Ran { summary: &'a Summary, dir: &'a Path, baseline: Option<&'a BaselineComparison> },
    /// It could not run.
    Failed { scenario: &'a str, error: &'a str },
    /// It was left out: its external client is not built.
    Skipped { scenario: &'a str, reason: &'a str },
}

/// Where the command line asked for the files CI systems read; `None`: not that one.
#[derive(Debug, Clone, Default)]
pub(crate) struct CiFiles {
    pub junit: Option<PathBuf>,
    pub bmf: Option<PathBuf>,
    pub gab: Option<PathBuf>,
}

impl CiFiles {
    /// Writes the files the command line asked for; each one written, or why not.
    pub(crate) fn write(&self, results: &Results<'_>) -> Written {
        let mut written = Written::default();
        let files: [(&Option<PathBuf>, &dyn Exporter<Results<'_>>); 3] =
            [(&self.junit, &Junit), (&self.bmf, &Bmf), (&self.gab, &Gab)];
        for (path, exporter) in files {
            if let Some(path) = path {
                crate::report::write_file(exporter, results, path, &mut written);
            }
        }
        written
    }

    /// The files of a run that failed before its report: its cases are errors, with why.
    pub(crate) fn write_unjudged(&self, command: &'static str, scenario: &str, error: &anyhow::Error) -> Written {
        let started_at = leaklab_engine::run_dir::utc_seconds(std::time::SystemTime::now());
        let error = format!("{error:#}");
        self.write(&Results {
            command,
            started_at: &started_at,
            entries: vec![Entry::Failed { scenario, error: &error }],
        })
    }
}

impl crate::report::Reported {
    /// The run, beside its baseline if it has one, for the CI files.
    pub(crate) fn results<'a>(
        &'a self,
        command: &'static str,
        baseline: Option<&'a BaselineComparison>,
    ) -> Results<'a> {
        let summary = &self.report.summary;
        let entries = vec![Entry::Ran { summary, dir: &self.dir, baseline }];
        Results { command, started_at: &summary.started_at, entries }
    }
}

#[cfg(test)]
mod tests;
