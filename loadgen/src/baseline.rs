//! Baselines: a run's `summary.json` kept under a name
//! (`reports/baselines/<name>/<scenario>.json`), and how a later run of the
//! same scenario compares with it. A run fails its baseline when its slope of
//! allocated bytes per request grew by more than the tolerance.

use std::fs;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use leaklab_engine::summary::{Side, Summary};

/// A baseline that cannot be saved or read, with the path to blame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BaselineError {
    #[error("--baseline/--save-baseline {name:?}: a baseline name is letters, digits, '.', '_' or '-'")]
    BadName { name: String },
    #[error("no baseline {name:?} for scenario {scenario:?}: {} does not exist (save one with --save-baseline {name})", path.display())]
    Missing { name: String, scenario: String, path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("{}: not a summary.json this version reads ({reason}); save the baseline again", path.display())]
    Format { path: PathBuf, reason: String },
}

/// Refuses a name that is not a plain file name (it becomes a directory).
pub(crate) fn check_name(name: &str) -> Result<(), BaselineError> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid { Ok(()) } else { Err(BaselineError::BadName { name: name.to_owned() }) }
}

/// Where baseline `name` of `scenario` lives under `reports_dir`.
pub(crate) fn path(reports_dir: &Path, name: &str, scenario: &str) -> Result<PathBuf, BaselineError> {
    check_name(name)?;
    Ok(reports_dir.join("baselines").join(name).join(format!("{scenario}.json")))
}

/// Stores `summary` as baseline `name`, replacing an older one.
pub(crate) fn save(reports_dir: &Path, name: &str, summary: &Summary) -> Result<PathBuf, BaselineError> {
    let path = path(reports_dir, name, &summary.scenario)?;
    let io = |error: std::io::Error| BaselineError::Io { path: path.clone(), reason: error.to_string() };
    fs::create_dir_all(path.parent().expect("a baseline path has a directory")).map_err(io)?;
    let text = serde_json::to_string_pretty(summary).expect("a summary serializes");
    fs::write(&path, text + "\n").map_err(io)?;
    Ok(path)
}

/// Reads baseline `name` of `scenario`.
pub(crate) fn load(reports_dir: &Path, name: &str, scenario: &str) -> Result<Summary, BaselineError> {
    let path = path(reports_dir, name, scenario)?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(BaselineError::Missing { name: name.to_owned(), scenario: scenario.to_owned(), path });
        }
        Err(error) => return Err(BaselineError::Io { path, reason: error.to_string() }),
    };
    serde_json::from_str(&text).map_err(|error| BaselineError::Format { path, reason: error.to_string() })
}

/// What a run does with baselines: compare with one, save itself as one.
#[derive(Debug, Clone)]
pub(crate) struct BaselineUse {
    reports_dir: PathBuf,
    compare_with: Option<(String, Summary)>,
    save_as: Option<String>,
}

impl BaselineUse {
    /// Checks both names and reads the baseline to compare with, before anything runs.
    pub(crate) fn prepare(
        reports_dir: &Path,
        compare_with: Option<&str>,
        save_as: Option<&str>,
        scenario: &str,
    ) -> Result<BaselineUse, BaselineError> {
        if let Some(name) = save_as {
            check_name(name)?;
        }
        let compare_with = match compare_with {
            Some(name) => Some((name.to_owned(), load(reports_dir, name, scenario)?)),
            None => None,
        };
        Ok(BaselineUse { reports_dir: reports_dir.to_owned(), compare_with, save_as: save_as.map(str::to_owned) })
    }

    /// `summary` beside the baseline, and where it was saved as one, if asked.
    pub(crate) fn finish(
        &self,
        summary: &Summary,
    ) -> (Option<BaselineComparison>, Option<Result<PathBuf, BaselineError>>) {
        let comparison = self.compare_with.as_ref().map(|(name, baseline)| compare(name, baseline, summary));
        let saved = self.save_as.as_ref().map(|name| save(&self.reports_dir, name, summary));
        (comparison, saved)
    }
}

/// One figure in the baseline and now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Delta {
    pub baseline: f64,
    pub current: f64,
    /// `current − baseline`.
    pub change: f64,
}

impl Delta {
    fn of(baseline: f64, current: f64) -> Delta {
        Delta { baseline, current, change: current - baseline }
    }

    fn of_options(baseline: Option<f64>, current: Option<f64>) -> Option<Delta> {
        Some(Delta::of(baseline?, current?))
    }
}

/// A process whose bytes per request grew beyond the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Regression {
    /// `client` or `server`.
    pub process: Side,
    /// Its slope in the baseline and now, bytes per request.
    pub bytes_per_request: Delta,
}

/// A run set beside a baseline of the same scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct BaselineComparison {
    /// The baseline's name.
    pub name: String,
    /// When the baseline run started.
    pub baseline_started_at: String,
    /// Client slope of allocated bytes per request (verdict's Theil–Sen estimate).
    pub client_bytes_per_request: Option<Delta>,
    /// Server slope of allocated bytes per request.
    pub server_bytes_per_request: Option<Delta>,
    /// Requests per second; `null` when either run has no request counts.
    pub throughput_rps: Option<Delta>,
    /// p99 latency in microseconds; `null` when either run did not measure latency.
    pub latency_p99_us: Option<Delta>,
    /// Client peak RSS in bytes.
    pub client_peak_rss_bytes: Delta,
    /// Server peak RSS in bytes.
    pub server_peak_rss_bytes: Option<Delta>,
    /// Bytes per request may grow by this much before the run fails its baseline.
    pub tolerance: f64,
    /// Whether a process's bytes per request grew beyond the tolerance.
    pub regressed: bool,
    /// The slopes that grew too much.
    pub regressions: Vec<Regression>,
}

/// Compares `current` with `baseline` (a summary of the same scenario).
pub(crate) fn compare(name: &str, baseline: &Summary, current: &Summary) -> BaselineComparison {
    let tolerance = current.verdict.client.tolerance;
    // The client's figures: its memory outside the heap when that decided its LEAK.
    let client = Delta::of_options(
        baseline.verdict.client_figures().slope_bytes_per_request,
        current.verdict.client_figures().slope_bytes_per_request,
    );
    let server = Delta::of_options(
        baseline.verdict.server.as_ref().and_then(|v| v.slope_bytes_per_request),
        current.verdict.server.as_ref().and_then(|v| v.slope_bytes_per_request),
    );
    let regressions: Vec<Regression> = [(Side::Client, client), (Side::Server, server)]
        .into_iter()
        .filter_map(|(process, delta)| {
            delta.filter(|d| d.change > tolerance).map(|bytes_per_request| Regression { process, bytes_per_request })
        })
        .collect();
    BaselineComparison {
        name: name.to_owned(),
        baseline_started_at: baseline.started_at.clone(),
        client_bytes_per_request: client,
        server_bytes_per_request: server,
        throughput_rps: Delta::of_options(baseline.throughput_rps, current.throughput_rps),
        latency_p99_us: Delta::of_options(
            baseline.latency_us.map(|l| l.p99 as f64),
            current.latency_us.map(|l| l.p99 as f64),
        ),
        client_peak_rss_bytes: Delta::of(baseline.client.rss_bytes.peak as f64, current.client.rss_bytes.peak as f64),
        server_peak_rss_bytes: Delta::of_options(
            baseline.server.as_ref().map(|s| s.rss_bytes.peak as f64),
            current.server.as_ref().map(|s| s.rss_bytes.peak as f64),
        ),
        tolerance,
        regressed: !regressions.is_empty(),
        regressions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn names_are_checked_and_paths_are_per_scenario() {
        let dir = Path::new("reports");
        assert_eq!(path(dir, "main", "leak").unwrap(), Path::new("reports/baselines/main/leak.json"));
        for bad in ["", "../up", "a/b", ".hidden", "sp ace"] {
            let err = path(dir, bad, "leak").unwrap_err().to_string();
            assert!(err.contains("a baseline name is letters"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_saved_baseline_reads_back_and_compares_with_itself_as_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (summary, _) = scripted_report();
        let saved = save(dir.path(), "main", &summary).unwrap();
        assert!(saved.ends_with("baselines/main/leak.json"));
        let baseline = load(dir.path(), "main", "leak").unwrap();
        assert_eq!(baseline, summary);
        let comparison = compare("main", &baseline, &summary);
        assert!(!comparison.regressed);
        assert_eq!(comparison.client_bytes_per_request.unwrap().change, 0.0);
    }

    #[test]
    fn a_slope_that_grew_beyond_the_tolerance_fails_the_baseline() {
        let (baseline, _) = scripted_report();
        let mut current = baseline.clone();
        let slope = current.verdict.client.slope_bytes_per_request.unwrap();
        current.verdict.client.slope_bytes_per_request = Some(slope + 1_000.0);
        let comparison = compare("main", &baseline, &current);
        assert!(comparison.regressed);
        assert_eq!(comparison.regressions.len(), 1, "{:?}", comparison.regressions);
        assert_eq!(comparison.regressions[0].process, Side::Client);
        assert_eq!(comparison.regressions[0].bytes_per_request.change, 1_000.0);
        assert_eq!(current.outcome, leaklab_verdict::Outcome::Met);
        assert_eq!(
            current.outcome.with_regression(comparison.regressed),
            leaklab_verdict::Outcome::Contradicted,
            "a regression fails the run even when its expectation holds"
        );

        current.verdict.client.slope_bytes_per_request = Some(slope + 100.0);
        assert!(!compare("main", &baseline, &current).regressed, "100 B is within the 256 B tolerance");
    }

    #[test]
    fn memory_outside_the_heap_that_decided_the_leak_is_what_a_baseline_compares() {
        let (mut baseline, _) = scripted_report();
        let mut native = baseline.verdict.client.clone();
        native.quantity = leaklab_verdict::Quantity::NativeBytes;
        native.slope_bytes_per_request = Some(65_536.0);
        let decided = leaklab_verdict::Reason::NativeDecided { slope: 65_536.0, ci_low: 60_000.0 };
        baseline.verdict.client.reasons.insert(0, decided);
        baseline.verdict.client_native = Some(native);
        let mut current = baseline.clone();
        current.verdict.client_native.as_mut().unwrap().slope_bytes_per_request = Some(65_536.0 + 1_000.0);
        let comparison = compare("main", &baseline, &current);
        assert!(comparison.regressed, "the heap's slope did not move; the memory outside it did");
        assert_eq!(comparison.regressions[0].bytes_per_request.change, 1_000.0);
    }

    #[test]
    fn a_regression_names_its_process_as_stored_baselines_do() {
        let (baseline, _) = scripted_report();
        let mut current = baseline.clone();
        for verdict in [Some(&mut current.verdict.client), current.verdict.server.as_mut()].into_iter().flatten() {
            verdict.slope_bytes_per_request = verdict.slope_bytes_per_request.map(|slope| slope + 1_000.0);
        }
        let comparison = compare("main", &baseline, &current);
        let json = serde_json::to_value(&comparison).unwrap();
        let processes: Vec<&str> =
            json["regressions"].as_array().unwrap().iter().map(|r| r["process"].as_str().unwrap()).collect();
        assert_eq!(processes, ["client", "server"]);
        let read: BaselineComparison = serde_json::from_value(json).unwrap();
        assert_eq!(read, comparison);
        assert_eq!(read.regressions[1].process, Side::Server);
    }

    #[test]
    fn missing_and_foreign_baselines_name_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path(), "main", "leak").unwrap_err().to_string();
        assert!(
            err.contains("no baseline \"main\" for scenario \"leak\"") && err.contains("--save-baseline main"),
            "{err}"
        );
        let path = path(dir.path(), "old", "leak").unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "{\"schema_version\": 1}").unwrap();
        let err = load(dir.path(), "old", "leak").unwrap_err().to_string();
        assert!(err.contains("old/leak.json: not a summary.json this version reads"), "{err}");
    }
}
