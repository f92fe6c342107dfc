//! Resident set size, open file descriptors and thread count, read from `/proc`.
//!
//! Each reader costs one small file read, except [`open_fds`], which lists
//! `/proc/<pid>/fd` (about a millisecond at 20,000 descriptors).

use std::fs;
use std::io;
use std::path::PathBuf;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// The calling process (`/proc/self`).
    Myself,
    /// Another process by pid.
    Pid(u32),
}

impl Proc {
    /// `/proc/<pid>/<file>`.
    pub fn path(self, file: &str) -> PathBuf {
        match self {
            Proc::Myself => PathBuf::from(format!("/proc/self/{file}")),
            Proc::Pid(pid) => PathBuf::from(format!("/proc/{pid}/{file}")),
        }
    }

    /// Whether the process exists and has not exited: a zombie, which has
    /// exited but not been reaped by its parent, does not count.
    pub fn is_running(self) -> bool {
        let Ok(stat) = fs::read_to_string(self.path("stat")) else { return false };
        let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_ascii_whitespace().next());
        !matches!(state, None | Some("Z" | "X" | "x"))
    }
}

/// A `/proc` file that could not be read or did not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: unexpected format: {reason}")]
    Format { path: PathBuf, reason: String },
    /// The process has exited (a zombie reads as all zeros): there is nothing left to measure.
    #[error("process {pid} has exited")]
    Exited { pid: u32 },
}

fn read(proc_: Proc, file: &str) -> Result<(PathBuf, String), ProcError> {
    let path = proc_.path(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

fn page_size_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 only for unknown names.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// Resident set size in bytes: the second field of `/proc/<pid>/statm`, times the page size.
pub fn rss_bytes(proc_: Proc) -> Result<u64, ProcError> {
    let (path, text) = read(proc_, "statm")?;
    parse_statm_rss_pages(&text)
        .map(|pages| pages * page_size_bytes())
        .ok_or_else(|| ProcError::Format { path, reason: format!("no resident field in {text:?}") })
}

fn parse_statm_rss_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// What a process's resident pages are, from `RssAnon`, `RssFile` and `RssShmem` in `/proc/<pid>/status`
/// (their sum is the RSS). Only anonymous pages hold a heap: file-backed ones (the program, shared
/// libraries, mapped files) are shared and come and go as the kernel pleases without anything leaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RssParts {
    /// `RssAnon`: anonymous pages: the heap, stacks and other private memory no file backs.
    pub anon_bytes: u64,
    /// `RssFile`: pages of mapped files: the program, its shared libraries, mapped data.
    pub file_bytes: u64,
    /// `RssShmem`: shared memory: System V segments, tmpfs files and shared anonymous mappings.
    pub shmem_bytes: u64,
}

fn parse_status_rss_parts(status: &str) -> Option<RssParts> {
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
        line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok().map(|kib| kib * 1024)
    };
    Some(RssParts { anon_bytes: kib("RssAnon")?, file_bytes: kib("RssFile")?, shmem_bytes: kib("RssShmem")? })
}

/// Number of threads: field 20 of `/proc/<pid>/stat`.
pub fn threads(proc_: Proc) -> Result<u64, ProcError> {
    let (path, text) = read(proc_, "stat")?;
    parse_stat_threads(&text).ok_or_else(|| ProcError::Format { path, reason: "no num_threads field".to_owned() })
}

fn parse_stat_threads(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces
    // or parentheses, so fields are counted from the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state); num_threads is field 20.
    after_comm.split_ascii_whitespace().nth(20 - 3)?.parse().ok()
}

/// A process's `statm`, `stat` and `status`, opened once and re-read with `pread` at
/// offset 0 (which makes the kernel regenerate them). A process that has run
/// out of file descriptors can still measure itself this way, which is
/// exactly when its figures matter; and watching another process costs no
/// `open` per sample.
#[derive(Debug)]
pub struct ProcFiles {
    proc_: Proc,
    statm: fs::File,
    stat: fs::File,
    status: fs::File,
}

impl ProcFiles {
    pub fn open(proc_: Proc) -> Result<Self, ProcError> {
        let open = |file: &str| {
            let path = proc_.path(file);
            fs::File::open(&path).map_err(|source| ProcError::Read { path, source })
        };
        Ok(Self { proc_, statm: open("statm")?, stat: open("stat")?, status: open("status")? })
    }

    fn reread(&self, file: &fs::File, name: &str) -> Result<(PathBuf, String), ProcError> {
        use std::os::unix::fs::FileExt;
        let path = self.proc_.path(name);
        // `status` runs to about 1.5 KB; 8 KB leaves room for kernels that add lines.
        let mut buffer = vec![0u8; 8192];
        let length = file.read_at(&mut buffer, 0).map_err(|source| ProcError::Read { path: path.clone(), source })?;
        buffer.truncate(length);
        let text = String::from_utf8(buffer)
            .map_err(|_| ProcError::Format { path: path.clone(), reason: "not UTF-8".to_owned() })?;
        Ok((path, text))
    }

    /// Resident set size in bytes, as [`rss_bytes`].
    pub fn rss_bytes(&self) -> Result<u64, ProcError> {
        let (path, text) = self.reread(&self.statm, "statm")?;
        parse_statm_rss_pages(&text)
            .map(|pages| pages * page_size_bytes())
            .ok_or_else(|| ProcError::Format { path, reason: format!("no resident field in {text:?}") })
    }

    /// Anonymous, file-backed and shared resident bytes, from `status`.
    pub fn rss_parts(&self) -> Result<RssParts, ProcError> {
        let (path, text) = self.reread(&self.status, "status")?;
        parse_status_rss_parts(&text)
            .ok_or_else(|| ProcError::Format { path, reason: "no RssAnon, RssFile and RssShmem lines in kB".into() })
    }

    /// Number of threads, as [`threads`].
    pub fn threads(&self) -> Result<u64, ProcError> {
        let (path, text) = self.reread(&self.stat, "stat")?;
        parse_stat_threads(&text).ok_or_else(|| ProcError::Format { path, reason: "no num_threads field".to_owned() })
    }
}

/// Number of open file descriptors of the process.
///
/// Since Linux 6.2, `stat` on `/proc/<pid>/fd` reports the count as its size,
/// in constant time; listing the directory instead costs about a millisecond
/// per thousand descriptors, too much at 20,000 and ten samples a second.
/// Older kernels report 0 there, and then the directory is listed.
pub fn open_fds(proc_: Proc) -> Result<u64, ProcError> {
    let path = proc_.path("fd");
    let metadata = fs::metadata(&path).map_err(|source| ProcError::Read { path: path.clone(), source })?;
    if metadata.len() > 0 {
        return Ok(metadata.len());
    }
    count_fd_entries(proc_)
}

/// Number of open file descriptors, by listing `/proc/<pid>/fd`.
pub fn count_fd_entries(proc_: Proc) -> Result<u64, ProcError> {
    let path = proc_.path("fd");
    let entries = fs::read_dir(&path).map_err(|source| ProcError::Read { path: path.clone(), source })?;
    let mut count = 0;
    for entry in entries {
        entry.map_err(|source| ProcError::Read { path: path.clone(), source })?;
        count += 1;
    }
    // Listing /proc/self/fd opens one descriptor for the listing itself.
    if proc_ == Proc::Myself {
        count -= 1
    }
    Ok(count)
}

/// The machine in one line, for reports that quote figures measured on it:
/// `AMD EPYC 7B13, 2 cores, 23.5 GiB, Linux 6.1.0`.
pub fn machine_description() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = total_memory_bytes()
        .map_or_else(|_| String::new(), |bytes| format!(", {:.1} GiB", bytes as f64 / (1u64 << 30) as f64));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores{memory}, Linux {}", kernel.trim())
}

/// The machine's physical memory (`MemTotal` in `/proc/meminfo`), bytes.
pub fn total_memory_bytes() -> Result<u64, ProcError> {
    let path = PathBuf::from("/proc/meminfo");
    let text = fs::read_to_string(&path).map_err(|source| ProcError::Read { path: path.clone(), source })?;
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| ProcError::Format { path, reason: "no MemTotal line in kB".into() })
}

/// A process's limits on open file descriptors (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FdLimits {
    /// The limit in force: opening one more fails with "too many open files".
    pub soft: u64,
    /// The most the soft limit can be raised to without privileges.
    pub hard: u64,
}

/// The soft and hard limits on open file descriptors (`RLIMIT_NOFILE`) of this process.
pub fn fd_limits() -> io::Result<FdLimits> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdLimits { soft: limit.rlim_cur, hard: limit.rlim_max })
}

/// Raises this process's soft fd limit to its hard limit, so a leak meets
/// the real ceiling of the machine rather than a default; returns the limits after.
pub fn raise_fd_limit() -> io::Result<FdLimits> {
    let limits = fd_limits()?;
    if limits.soft < limits.hard {
        let raised = libc::rlimit { rlim_cur: limits.hard, rlim_max: limits.hard };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    fd_limits()
}

/// Another process's fd limits, from `/proc/<pid>/limits` (`unlimited` reads as `u64::MAX`).
pub fn fd_limits_of(proc_: Proc) -> Result<FdLimits, ProcError> {
    let (path, text) = read(proc_, "limits")?;
    parse_limits_open_files(&text)
        .ok_or_else(|| ProcError::Format { path, reason: "no \"Max open files\" line with two limits".into() })
}

fn parse_limits_open_files(text: &str) -> Option<FdLimits> {
    let line = text.lines().find(|line| line.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace().map(|value| match value {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    });
    Some(FdLimits { soft: values.next()??, hard: values.next()?? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_running() {
        assert!(Proc::Myself.is_running());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it has exited (the bound only guards against a hang).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Proc::Pid(pid).is_running() {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(Proc::Pid(pid).path("stat").exists(), "still in the process table until reaped");
        child.wait().unwrap();
        assert!(!Proc::Pid(pid).is_running());
    }

    #[test]
    fn status_gives_the_parts_of_the_rss_and_they_add_up() {
        let text = "Name:\tgo-echo-client\nVmRSS:\t   12000 kB\nRssAnon:\t    8000 kB\n\
                    RssFile:\t    3900 kB\nRssShmem:\t     100 kB\nThreads:\t7\n";
        let parts = parse_status_rss_parts(text).unwrap();
        assert_eq!(parts, RssParts { anon_bytes: 8_000 * 1024, file_bytes: 3_900 * 1024, shmem_bytes: 100 * 1024 });
        assert_eq!(parse_status_rss_parts("Name:\tx\nRssAnon:\t8 kB\n"), None, "a missing line is no figure");

        // This process's own parts add up to its RSS, within what changed between the two reads.
        let files = ProcFiles::open(Proc::Myself).unwrap();
        let parts = files.rss_parts().unwrap();
        let rss = files.rss_bytes().unwrap() as i64;
        let sum = (parts.anon_bytes + parts.file_bytes + parts.shmem_bytes) as i64;
        assert!(parts.anon_bytes > 0 && parts.file_bytes > 0, "{parts:?}");
        assert!((sum - rss).abs() < 4 << 20, "parts {sum} vs RSS {rss}");
    }

    #[test]
    fn limits_file_gives_the_open_files_line() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95000                95000                processes \n\
                    Max open files            1024                 20000                files     \n";
        assert_eq!(parse_limits_open_files(text), Some(FdLimits { soft: 1024, hard: 20000 }));
        let unlimited = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_limits_open_files(unlimited), Some(FdLimits { soft: u64::MAX, hard: u64::MAX }));
        assert_eq!(parse_limits_open_files("Max processes 1 1\n"), None);
    }

    #[test]
    fn this_process_reads_the_same_limits_both_ways_and_can_raise_to_hard() {
        let raised = raise_fd_limit().unwrap();
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(fd_limits_of(Proc::Myself).unwrap(), raised);
    }

    #[test]
    fn files_opened_once_give_fresh_figures_on_every_read() {
        let _turn = crate::MEMORY_TESTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let files = ProcFiles::open(Proc::Myself).unwrap();
        let before = files.rss_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let during = files.rss_bytes().unwrap();
        assert!(during >= before + (32 << 20), "RSS {before} → {during} after touching 64 MiB");
        assert!(files.threads().unwrap() >= 1);
        assert_eq!(files.threads().unwrap(), threads(Proc::Myself).unwrap());
    }

    #[test]
    fn statm_second_field_is_resident_pages() {
        assert_eq!(parse_statm_rss_pages("6193 1234 567 10 0 300 0\n"), Some(1234));
        assert_eq!(parse_statm_rss_pages("6193"), None);
    }

    #[test]
    fn stat_threads_survive_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 123 4567 89";
        assert_eq!(parse_stat_threads(stat), Some(7));
        assert_eq!(parse_stat_threads("4242 (x) S 1"), None);
    }

    #[test]
    fn readers_return_sane_values_for_this_process() {
        let rss = rss_bytes(Proc::Myself).unwrap();
        assert!(rss > 512 * 1024, "rss {rss} below 512 KiB");
        assert!(rss < 24 << 30, "rss {rss} above the machine's memory");

        let threads = threads(Proc::Myself).unwrap();
        assert!(threads >= 1);

        let before = open_fds(Proc::Myself).unwrap();
        let extra: Vec<_> = (0..5).map(|_| fs::File::open("/proc/self/statm").unwrap()).collect();
        let during = open_fds(Proc::Myself).unwrap();
        // Other tests in this binary may open files concurrently, so bound rather than equate.
        assert!(during >= before + 5 - 1, "opened 5 files: fds went {before} -> {during}");
        drop(extra);
    }

    #[test]
    fn the_constant_time_count_agrees_with_a_listing() {
        // Other tests in this binary open and close files concurrently, so one
        // pair of readings may straddle a change; twenty pairs cannot all do so.
        let agree = (0..20).any(|_| open_fds(Proc::Myself).unwrap() == count_fd_entries(Proc::Myself).unwrap());
        assert!(
            agree,
            "stat size {} vs listing {}",
            open_fds(Proc::Myself).unwrap(),
            count_fd_entries(Proc::Myself).unwrap()
        );
    }

    #[test]
    fn pid_and_self_agree_on_threads_of_this_process() {
        let pid = std::process::id();
        assert!(threads(Proc::Pid(pid)).unwrap() >= 1);
        assert!(rss_bytes(Proc::Pid(pid)).unwrap() > 0);
    }

    #[test]
    fn missing_process_error_names_the_path() {
        let err = rss_bytes(Proc::Pid(u32::MAX)).unwrap_err().to_string();
        assert!(err.contains(&format!("/proc/{}/statm", u32::MAX)), "{err}");
    }

    #[test]
    fn fd_limits_are_ordered() {
        let FdLimits { soft, hard } = fd_limits().unwrap();
        assert!(soft >= 3 && soft <= hard, "soft {soft} hard {hard}");
    }
}
