//! Everything a run leaves behind and prints, one exporter per format.
//!
//! An [`Exporter`] writes one document (a run's [`Report`], a comparison, a
//! demo) in one format over `impl Write`, so each format is tested on its
//! bytes; [`write_outputs`] writes a document's files into its directory,
//! each on its own so one failing loses no other. The console text is one
//! more exporter, written to stdout.
//!
//! The engine leaves a run's directory with what it recorded (`run.json`,
//! `samples.jsonl`, the processes' logs); [`write_run`] adds [`RUN_OUTPUTS`]
//! from its summary, its latency histograms, and with `--heap-profile` the
//! [heap profiles](profiles). What CI systems read (JUnit, benchmark trackers) is
//! written where the command line says (the `ci` module).

pub(crate) mod call_sites;
pub(crate) mod console;
pub(crate) mod csv;
pub(crate) mod heap;
pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod lifecycle;
pub(crate) mod markdown;
pub(crate) mod orphans;
pub(crate) mod plot;
pub(crate) mod profiles;
pub(crate) mod units;
pub(crate) mod words;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use leaklab_engine::latency::histogram_log::LatencyLog;
use leaklab_engine::run::RunOutcome;
use leaklab_engine::run_dir::RunDir;
use leaklab_engine::sample::Sample;
use leaklab_engine::summary::Summary;

/// Writes a document of type `D` in one format.
pub(crate) trait Exporter<D: ?Sized> {
    fn export(&self, document: &D, out: &mut dyn Write) -> anyhow::Result<()>;
}

/// One file of a document's directory, and the exporter that writes it.
pub(crate) struct Output<D: ?Sized + 'static> {
    pub file: &'static str,
    pub exporter: &'static (dyn Exporter<D> + Sync),
}

impl<D: ?Sized> std::fmt::Debug for Output<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("file", &self.file).finish_non_exhaustive()
    }
}

/// What a run's exporters read: its summary and its samples.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub summary: Summary,
    pub samples: Vec<Sample>,
}

/// The files every run writes, the summary first so a later failure loses nothing.
pub(crate) const RUN_OUTPUTS: [Output<Report>; 5] = [
    Output { file: RunDir::SUMMARY, exporter: &json::SUMMARY_JSON },
    Output { file: "samples.csv", exporter: &csv::SamplesCsv },
    Output { file: "memory.svg", exporter: &plot::SvgPlot },
    Output { file: "memory.png", exporter: &plot::PngPlot },
    Output { file: "report.md", exporter: &markdown::Markdown },
];

/// A run, with the files written for it and those that could not be.
#[derive(Debug)]
pub(crate) struct Reported {
    pub dir: std::path::PathBuf,
    pub report: Report,
    pub written: Written,
}

/// Writes a finished run's outputs into its directory.
pub(crate) fn write_run(outcome: RunOutcome) -> Reported {
    let RunOutcome { dir, summary, samples, latency, heap_profiled } = outcome;
    let report = Report { summary, samples };
    let mut written = write_outputs(&RUN_OUTPUTS, &report, &dir.path);
    if let Some(latency) = &latency {
        write_file(&LatencyHlog, latency, &dir.file(RunDir::LATENCY_LOG), &mut written);
    }
    if heap_profiled {
        let profiles = profiles::HeapProfiles::read(&dir.path);
        written.extend(write_outputs(&profiles.outputs(), &profiles, &dir.path));
    }
    Reported { dir: dir.path, report, written }
}

/// Writes the outputs of the run in `dir` again from its summary and samples (`loadgen report`).
pub(crate) fn write_again(dir: &Path, (summary, samples): (Summary, Vec<Sample>)) -> Reported {
    let report = Report { summary, samples };
    let written = write_outputs(&RUN_OUTPUTS, &report, dir);
    Reported { dir: dir.to_owned(), report, written }
}

/// `latency.hlog`: HdrHistogram's interval log, so that the runs of several hosts merge exactly.
#[derive(Debug)]
struct LatencyHlog;

impl Exporter<LatencyLog> for LatencyHlog {
    fn export(&self, log: &LatencyLog, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(&log.encode().map_err(anyhow::Error::msg)?)?;
        Ok(())
    }
}

/// The files written and the errors met, by [`write_outputs`].
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub files: Vec<PathBuf>,
    pub errors: Vec<anyhow::Error>,
}

impl Written {
    pub(crate) fn extend(&mut self, other: Written) {
        self.files.extend(other.files);
        self.errors.extend(other.errors);
    }
}

/// Writes each of `outputs` for `document` into `dir`; one failing does not stop the others.
pub(crate) fn write_outputs<D: ?Sized>(outputs: &[Output<D>], document: &D, dir: &Path) -> Written {
    let mut written = Written::default();
    for output in outputs {
        write_file(output.exporter, document, &dir.join(output.file), &mut written);
    }
    written
}

/// Writes `document` with `exporter` to `path` (a file the command line named); the file, or why it
/// could not be written, goes into `written`.
pub(crate) fn write_file<D: ?Sized>(exporter: &dyn Exporter<D>, document: &D, path: &Path, written: &mut Written) {
    let mut bytes = Vec::new();
    let result = exporter.export(document, &mut bytes).and_then(|()| {
        // `--junit out/junit.xml` before anything made `out/`.
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        Ok(std::fs::write(path, &bytes)?)
    });
    match result {
        Ok(()) => written.files.push(path.to_owned()),
        Err(error) => written.errors.push(error.context(format!("writing {}", path.display()))),
    }
}

/// Exports `document` with `exporter` into a string, for the console and tests.
pub(crate) fn to_string<D: ?Sized>(exporter: &dyn Exporter<D>, document: &D) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    exporter.export(document, &mut bytes)?;
    String::from_utf8(bytes).context("the exporter wrote text that is not UTF-8")
}

/// Appends what `exporter` writes of `document` to the file `$GITHUB_STEP_SUMMARY`
/// names (a CI job's summary page), when it is set; that file, or why it could
/// not be written, goes into `written`.
pub(crate) fn append_to_step_summary<D: ?Sized>(exporter: &dyn Exporter<D>, document: &D, written: &mut Written) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()).map(PathBuf::from) else {
        return;
    };
    let appended = to_string(exporter, document).and_then(|markdown| {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(writeln!(file, "{markdown}")?)
    });
    match appended {
        Ok(()) => written.files.push(path),
        Err(error) => {
            written.errors.push(error.context(format!("appending to $GITHUB_STEP_SUMMARY ({})", path.display())))
        }
    }
}
