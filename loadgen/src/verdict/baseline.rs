//! Baselines: a run's `summary.json` kept under a name
//! (`reports/baselines/<name>/<scenario>.json`), and how a later run of the
//! same scenario compares with it. A run fails its baseline when its slope of
//! allocated bytes per request grew by more than the tolerance.

use std::fs;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::Summary;
use crate::report::units::{human_bytes, signed_bytes};

/// A baseline that cannot be saved or read, with the path to blame.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
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
pub fn check_name(name: &str) -> Result<(), BaselineError> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid { Ok(()) } else { Err(BaselineError::BadName { name: name.to_owned() }) }
}

/// Where baseline `name` of `scenario` lives under `reports_dir`.
pub fn path(reports_dir: &Path, name: &str, scenario: &str) -> Result<PathBuf, BaselineError> {
    check_name(name)?;
    Ok(reports_dir.join("baselines").join(name).join(format!("{scenario}.json")))
}

/// Stores `summary` as baseline `name`, replacing an older one.
pub fn save(reports_dir: &Path, name: &str, summary: &Summary) -> Result<PathBuf, BaselineError> {
    let path = path(reports_dir, name, &summary.scenario)?;
    let io = |error: std::io::Error| BaselineError::Io { path: path.clone(), reason: error.to_string() };
    fs::create_dir_all(path.parent().expect("a baseline path has a directory")).map_err(io)?;
    let text = serde_json::to_string_pretty(summary).expect("a summary serializes");
    fs::write(&path, text + "\n").map_err(io)?;
    Ok(path)
}

/// Reads baseline `name` of `scenario`.
pub fn load(reports_dir: &Path, name: &str, scenario: &str) -> Result<Summary, BaselineError> {
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

/// One figure in the baseline and now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delta {
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

/// A run set beside a baseline of the same scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineComparison {
    /// The baseline's name.
    pub name: String,
    /// When the baseline run started.
    pub baseline_started_at: String,
    /// Client slope of allocated bytes per request (verdict's Theil–Sen estimate).
    pub client_bytes_per_request: Option<Delta>,
    /// Server slope of allocated bytes per request.
    pub server_bytes_per_request: Option<Delta>,
    /// Requests per second.
    pub throughput_rps: Delta,
    /// p99 latency in microseconds.
    pub latency_p99_us: Delta,
    /// Client peak RSS in bytes.
    pub client_peak_rss_bytes: Delta,
    /// Server peak RSS in bytes.
    pub server_peak_rss_bytes: Option<Delta>,
    /// Bytes per request may grow by this much before the run fails its baseline.
    pub tolerance: f64,
    /// Whether a process's bytes per request grew beyond the tolerance.
    pub regressed: bool,
    /// Which slopes grew too much, in sentences.
    pub reasons: Vec<String>,
}

/// Compares `current` with `baseline` (a summary of the same scenario).
pub fn compare(name: &str, baseline: &Summary, current: &Summary) -> BaselineComparison {
    let tolerance = current.verdict.client.tolerance;
    let client = Delta::of_options(
        baseline.verdict.client.slope_bytes_per_request,
        current.verdict.client.slope_bytes_per_request,
    );
    let server = Delta::of_options(
        baseline.verdict.server.as_ref().and_then(|v| v.slope_bytes_per_request),
        current.verdict.server.as_ref().and_then(|v| v.slope_bytes_per_request),
    );
    let mut reasons = Vec::new();
    for (process, delta) in [("client", client), ("server", server)] {
        if let Some(delta) = delta.filter(|d| d.change > tolerance) {
            reasons.push(format!(
                "The {process} keeps {} more per request than in baseline {name:?} ({} → {}), beyond the tolerance of {}.",
                human_bytes(delta.change),
                human_bytes(delta.baseline),
                human_bytes(delta.current),
                human_bytes(tolerance)
            ));
        }
    }
    BaselineComparison {
        name: name.to_owned(),
        baseline_started_at: baseline.started_at.clone(),
        client_bytes_per_request: client,
        server_bytes_per_request: server,
        throughput_rps: Delta::of(baseline.throughput_rps, current.throughput_rps),
        latency_p99_us: Delta::of(baseline.latency_us.p99 as f64, current.latency_us.p99 as f64),
        client_peak_rss_bytes: Delta::of(baseline.client.rss_bytes.peak as f64, current.client.rss_bytes.peak as f64),
        server_peak_rss_bytes: Delta::of_options(
            baseline.server.as_ref().map(|s| s.rss_bytes.peak as f64),
            current.server.as_ref().map(|s| s.rss_bytes.peak as f64),
        ),
        tolerance,
        regressed: !reasons.is_empty(),
        reasons,
    }
}

impl BaselineComparison {
    /// One line per figure, for the console and `compare.md`.
    pub fn lines(&self) -> Vec<String> {
        let bytes = |d: &Delta| {
            format!("{} → {} per request ({})", human_bytes(d.baseline), human_bytes(d.current), signed_bytes(d.change))
        };
        let percent = |d: &Delta| {
            if d.baseline != 0.0 { format!("{:+.1}%", 100.0 * d.change / d.baseline) } else { "n/a".to_owned() }
        };
        let mut lines = Vec::new();
        if let Some(d) = &self.client_bytes_per_request {
            lines.push(format!("client allocated: {}", bytes(d)));
        }
        if let Some(d) = &self.server_bytes_per_request {
            lines.push(format!("server allocated: {}", bytes(d)));
        }
        let t = &self.throughput_rps;
        lines.push(format!("throughput: {:.0} → {:.0} req/s ({})", t.baseline, t.current, percent(t)));
        let p = &self.latency_p99_us;
        lines.push(format!("p99 latency: {:.0} → {:.0} µs ({})", p.baseline, p.current, percent(p)));
        let r = &self.client_peak_rss_bytes;
        lines.push(format!(
            "client peak RSS: {} → {} ({})",
            human_bytes(r.baseline),
            human_bytes(r.current),
            percent(r)
        ));
        if let Some(r) = &self.server_peak_rss_bytes {
            lines.push(format!(
                "server peak RSS: {} → {} ({})",
                human_bytes(r.baseline),
                human_bytes(r.current),
                percent(r)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::scripted_report;

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
        assert!(comparison.reasons[0].contains("The client keeps 1.0 KB more per request"), "{:?}", comparison.reasons);

        let plan = crate::scenario::VerdictPlan {
            tolerance_bytes_per_request: 256.0,
            expect_client: Some(crate::scenario::Expectation::Leak),
            expect_server: None,
        };
        assert_eq!(current.verdict.outcome(&plan), crate::verdict::Outcome::Met);
        assert_eq!(
            current.verdict.outcome_with_baseline(&plan, Some(&comparison)),
            crate::verdict::Outcome::Contradicted,
            "a regression fails the run even when its expectation holds"
        );

        current.verdict.client.slope_bytes_per_request = Some(slope + 100.0);
        assert!(!compare("main", &baseline, &current).regressed, "100 B is within the 256 B tolerance");
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
