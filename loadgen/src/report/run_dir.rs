//! `reports/<scenario>/<UTC timestamp>/`, and the `latest` link beside it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

/// The directory one run writes into.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    /// When the run started, RFC 3339 in UTC (`2026-11-28T01:09:08Z`).
    pub started_at: String,
}

impl RunDir {
    /// Creates `<reports>/<scenario>/<timestamp>` (with a `-2`, `-3`… suffix if
    /// two runs start in the same second) and points `<reports>/<scenario>/latest` at it.
    pub fn create(reports: &Path, scenario: &str, now: SystemTime) -> anyhow::Result<Self> {
        let started_at = humantime::format_rfc3339_seconds(now).to_string();
        let stamp: String = started_at.chars().filter(|c| *c != '-' && *c != ':').collect();
        let parent = reports.join(scenario);
        std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let mut name = stamp.clone();
        let mut attempt = 1;
        let path = loop {
            let candidate = parent.join(&name);
            match std::fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                    name = format!("{stamp}-{attempt}");
                }
                Err(error) => return Err(error).with_context(|| format!("creating {}", candidate.display())),
            }
        };
        point_latest(&parent, &name).with_context(|| format!("updating {}", parent.join("latest").display()))?;
        Ok(Self { path, started_at })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
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
        let reports = std::env::temp_dir().join(format!("leaklab-rundir-{}", std::process::id()));
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let first = RunDir::create(&reports, "leak", now).unwrap();
        let second = RunDir::create(&reports, "leak", now).unwrap();
        assert_eq!(first.started_at, "2026-11-18T11:06:40Z");
        assert_eq!(first.path, reports.join("leak/20261118T110640Z"));
        assert_eq!(second.path, reports.join("leak/20261118T110640Z-2"));
        let latest = std::fs::read_link(reports.join("leak/latest")).unwrap();
        assert_eq!(latest, Path::new("20261118T110640Z-2"));
        std::fs::remove_dir_all(&reports).unwrap();
    }
}
