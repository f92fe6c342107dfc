//! The progress lines a foreign command prints (`leaklab-progress ok=N failed=M goroutines=37`), read
//! as its output is copied into `command.log`: a command that prints them reports its requests, and is
//! then judged per request.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::heap::orphans::{ORPHANED_CHANNELS, OrphanLog, OrphanReport};
use crate::load::LoadCounters;
use crate::summary::Note;

/// The line a command prints to report its progress: `leaklab-progress ok=N failed=M`.
pub const PROGRESS_PREFIX: &str = "leaklab-progress ";

/// Reads `ok=N failed=M NAME=COUNT…` after [`PROGRESS_PREFIX`]: `None` for a line that is not a progress
/// line, an error saying why for one that cannot be read.
pub fn parse_progress(line: &str) -> Option<Result<Progress, String>> {
    let rest = line.trim().strip_prefix(PROGRESS_PREFIX.trim_end())?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut progress = Progress::default();
    let mut ok = None;
    for field in rest.split_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            return Some(Err(format!("{field:?} is not NAME=COUNT")));
        };
        let named = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !named {
            return Some(Err(format!("{name:?} is not a counter name (a-z, 0-9 and _, from a letter)")));
        }
        let Ok(count) = value.parse::<u64>() else {
            return Some(Err(format!("{name}={value}: not a whole number")));
        };
        match name {
            "ok" => ok = Some(count),
            "failed" => progress.failed = count,
            _ => {
                progress.counters.insert(name.to_owned(), count);
            }
        }
    }
    match ok {
        Some(ok) => Some(Ok(Progress { ok, ..progress })),
        None => Some(Err("no ok=N".to_owned())),
    }
}

/// What a progress line reports: requests so far, and the client's own counters (`goroutines=37`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub ok: u64,
    pub failed: u64,
    pub counters: BTreeMap<String, u64>,
}

/// The first malformed progress line, why, and how many there were.
#[derive(Debug, Default)]
struct Malformed {
    first: Option<(String, String)>,
    lines: u64,
}

/// A started command's stdout and stderr, copied into `command.log` as they come by a thread each, with
/// its progress lines read into the counters on the way, and grpc-java's reports of orphaned channels
/// counted (the counter `orphaned_channels`).
#[derive(Debug)]
pub(super) struct CommandOutput {
    copies: Vec<std::thread::JoinHandle<()>>,
    reported: Arc<AtomicBool>,
    malformed: Arc<Mutex<Malformed>>,
    /// Each stream's orphan reports.
    orphans: Vec<Arc<Mutex<OrphanLog>>>,
}

impl CommandOutput {
    /// Starts copying `child`'s output into `log`; its progress lines go to `counters`.
    pub(super) fn copy(child: &mut Child, log: &Path, counters: &Arc<LoadCounters>) -> anyhow::Result<CommandOutput> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let file = Arc::new(Mutex::new(file));
        let outputs: Vec<Box<dyn Read + Send>> = [
            child.stdout.take().map(|out| Box::new(out) as Box<dyn Read + Send>),
            child.stderr.take().map(|err| Box::new(err) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (reported, malformed) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Malformed::default())));
        let mut copies = Vec::new();
        let orphans: Vec<Arc<Mutex<OrphanLog>>> = outputs.iter().map(|_| Arc::default()).collect();
        for (output, orphan_log) in outputs.into_iter().zip(&orphans) {
            let (file, counters, reported) = (Arc::clone(&file), Arc::clone(counters), Arc::clone(&reported));
            let (malformed, orphan_log, every_log) = (Arc::clone(&malformed), Arc::clone(orphan_log), orphans.clone());
            let copy = move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if orphan_log.lock().is_ok_and(|mut log| log.read(&line)) {
                        let total = every_log.iter().filter_map(|log| Some(log.lock().ok()?.reported)).sum();
                        counters.report(BTreeMap::from([(ORPHANED_CHANNELS.to_owned(), total)]));
                    }
                    match parse_progress(&line) {
                        Some(Ok(progress)) => {
                            counters.store(progress.ok, progress.failed);
                            counters.report(progress.counters);
                            reported.store(true, Ordering::Relaxed);
                        }
                        // Kept for the report, once: a client's typo must not stop the watch nor flood it.
                        Some(Err(reason)) => {
                            if let Ok(mut malformed) = malformed.lock() {
                                malformed.lines += 1;
                                malformed.first.get_or_insert((line.clone(), reason));
                            }
                        }
                        None => {}
                    }
                    if let Ok(mut file) = file.lock() {
                        let _ = writeln!(file, "{line}");
                    }
                }
            };
            copies.push(std::thread::Builder::new().name("command-output".into()).spawn(copy)?);
        }
        Ok(CommandOutput { copies, reported, malformed, orphans })
    }

    /// Waits (briefly, off the runtime) until the copying threads have written all the command's output:
    /// a command that ended before its first sample is reported with what it said. A grandchild holding
    /// the pipes open would keep them going; it is not waited for. Whether the command reported its
    /// progress, the note for its malformed progress lines, if any, and grpc-java's orphan reports.
    pub(super) async fn finish(
        self,
        own_code: &[String],
    ) -> anyhow::Result<(bool, Option<Note>, Option<OrphanReport>)> {
        let copies = self.copies;
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + OUTPUT_DRAIN;
            while copies.iter().any(|copy| !copy.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await
        .context("the command's output")?;
        let malformed = self.malformed.lock().ok().and_then(|malformed| {
            let (line, reason) = malformed.first.clone()?;
            Some(Note::MalformedProgress { line, reason, lines: malformed.lines })
        });
        let logs: Vec<OrphanLog> = self
            .orphans
            .iter()
            .filter_map(|log| log.lock().ok().map(|mut log| std::mem::take(&mut *log)))
            .map(|mut log| {
                log.finish();
                log
            })
            .collect();
        Ok((self.reported.load(Ordering::Relaxed), malformed, OrphanReport::of(&logs, own_code)))
    }
}

/// How long the output of a command that has ended may take to reach `command.log`.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_read_and_others_ignored() {
        let read = |line: &str| parse_progress(line).map(|p| p.map(|p| (p.ok, p.failed, p.counters)));
        let none = BTreeMap::new();
        assert_eq!(read("leaklab-progress ok=1200 failed=3"), Some(Ok((1200, 3, none.clone()))));
        assert_eq!(read("  leaklab-progress failed=0 ok=7\n"), Some(Ok((7, 0, none.clone()))));
        assert_eq!(read("leaklab-progress ok=12"), Some(Ok((12, 0, none))), "no counters");
        let counters = BTreeMap::from([("goroutines".to_owned(), 37), ("streams".to_owned(), 12)]);
        assert_eq!(read("leaklab-progress ok=1200 failed=0 goroutines=37 streams=12"), Some(Ok((1200, 0, counters))));
        assert_eq!(read("2026/11/28 dialing 127.0.0.1:1"), None);
        assert_eq!(read("leaklab-progressive rock"), None, "another word");
        // Malformed: said why, never a panic.
        for (line, reason) in [
            ("leaklab-progress failed=2", "no ok=N"),
            ("leaklab-progress ok=lots", "ok=lots: not a whole number"),
            ("leaklab-progress ok=1 goroutines=-3", "goroutines=-3: not a whole number"),
            ("leaklab-progress ok=1 goroutines", "\"goroutines\" is not NAME=COUNT"),
            ("leaklab-progress ok=1 Streams=2", "\"Streams\" is not a counter name"),
            ("leaklab-progress", "no ok=N"),
        ] {
            match read(line) {
                Some(Err(error)) => assert!(error.starts_with(reason), "{line}: {error}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
