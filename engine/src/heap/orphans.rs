//! grpc-java's own count of the incident's bug. A `ManagedChannel` dropped
//! without `shutdown()` is reported by `ManagedChannelOrphanWrapper`, at
//! SEVERE, once a collection has freed its wrapper and the next channel is
//! built:
//!
//! ```text
//! SEVERE: *~*~*~ Channel ManagedChannelImpl{logId=43, target=127.0.0.1:50051} was not shutdown properly!!! ~*~*~*
//!     Make sure to call shutdown()/shutdownNow() and wait until awaitTermination() returns true.
//! java.lang.RuntimeException: ManagedChannel allocation site
//!     at io.grpc.internal.ManagedChannelOrphanWrapper$ManagedChannelReference.<init>(ManagedChannelOrphanWrapper.java:93)
//!     at io.grpc.internal.ManagedChannelImplBuilder.build(ManagedChannelImplBuilder.java:625)
//!     at com.example.Clients.newChannel(Clients.java:80)
//!     at com.example.Orders.place(Orders.java:42)
//! ```
//!
//! [`OrphanLog`] reads those from a command's output, line by line, counting
//! them (the counter `orphaned_channels`) and keeping each allocation stack;
//! [`call_sites`] groups the stacks by the service's own code that asked for
//! the channel.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::own::{Attributed, CodeRuntime, OwnCode, attribute};
use super::pprof;

/// The counter the orphan reports become.
pub const ORPHANED_CHANNELS: &str = "orphaned_channels";

/// The warning's words, as grpc-java 1.x logs them.
const WARNING: &str = "was not shutdown properly!!!";
const ALLOCATION_SITE: &str = "ManagedChannel allocation site";

/// One frame of a Java stack: `com.example.Orders.place(Orders.java:42)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Frame {
    /// Class and method, `com.example.Orders.place`.
    pub function: String,
    pub file: String,
    /// 0 when the frame has no line (`Native Method`, `Unknown Source`).
    pub line: i64,
}

impl Frame {
    /// A `\tat …` line of a stack trace.
    pub fn parse(line: &str) -> Option<Frame> {
        let rest = line.trim_start().strip_prefix("at ")?;
        let (function, place) = rest.split_once('(')?;
        // A module prefix (`java.base/`) is not part of the class.
        let function = function.rsplit_once('/').map_or(function, |(_, function)| function);
        let place = place.strip_suffix(')')?;
        let (file, line) = match place.rsplit_once(':') {
            Some((file, line)) => (file, line.parse().unwrap_or(0)),
            None => (place, 0),
        };
        Some(Frame { function: function.to_owned(), file: file.to_owned(), line })
    }

    /// The frame as a profile's: no inlining, no address.
    fn to_pprof(&self) -> pprof::Frame {
        pprof::Frame {
            function: self.function.clone(),
            file: self.file.clone(),
            line: self.line,
            inlined: false,
            address: 0,
        }
    }
}

/// Where one output stream is in a report.
#[derive(Debug, Default)]
enum Reading {
    #[default]
    Outside,
    /// After the warning, before its stack.
    Warned,
    /// In the allocation stack.
    Stack(Vec<Frame>),
}

/// The orphan reports read from one output stream so far.
#[derive(Debug, Default)]
pub struct OrphanLog {
    reading: Reading,
    /// Reports seen.
    pub reported: u64,
    /// Each distinct allocation stack (innermost frame first) and how many reports had it: a leak
    /// reports the same few stacks over and over, so what is kept stays small however long it runs.
    pub stacks: BTreeMap<Vec<Frame>, u64>,
}

impl OrphanLog {
    /// Reads the next line of the stream; true when it was a report (the count grew).
    pub fn read(&mut self, line: &str) -> bool {
        if line.contains(WARNING) {
            self.finish();
            self.reported += 1;
            self.reading = Reading::Warned;
            return true;
        }
        match &mut self.reading {
            Reading::Warned if line.contains(ALLOCATION_SITE) => self.reading = Reading::Stack(Vec::new()),
            Reading::Stack(frames) => match Frame::parse(line) {
                Some(frame) => frames.push(frame),
                None => self.finish(),
            },
            _ => {}
        }
        false
    }

    /// Ends the stack being read, if any (at the end of the output too).
    pub fn finish(&mut self) {
        if let Reading::Stack(frames) = std::mem::take(&mut self.reading)
            && !frames.is_empty()
        {
            *self.stacks.entry(frames).or_default() += 1;
        }
    }
}

/// What grpc-java reported of the channels a process dropped without `shutdown()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrphanReport {
    /// Channels reported. grpc-java reports one only after a collection has freed its wrapper and the
    /// next channel is built: channels dropped at the end are never reported.
    pub reported: u64,
    /// The service's code that asked for them, most channels first.
    pub call_sites: Vec<OrphanSite>,
}

impl OrphanReport {
    /// The report of `logs` (one per output stream), its sites by `--own-code` (empty: the default rule);
    /// `None` when none had a report.
    pub fn of(logs: &[OrphanLog], own_code: &[String]) -> Option<OrphanReport> {
        let reported = logs.iter().map(|log| log.reported).sum();
        let mut stacks: BTreeMap<Vec<Frame>, u64> = BTreeMap::new();
        for (stack, count) in logs.iter().flat_map(|log| &log.stacks) {
            *stacks.entry(stack.clone()).or_default() += count;
        }
        let own = OwnCode::new(CodeRuntime::Jvm, own_code.to_vec());
        (reported > 0).then(|| OrphanReport { reported, call_sites: call_sites(&stacks, &own) })
    }
}

/// The service's code that asked for orphaned channels, and how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrphanSite {
    /// Class and method, `com.example.Orders.place`.
    pub function: String,
    pub file: String,
    pub line: i64,
    /// Orphaned channels whose allocation went through it.
    pub channels: u64,
    /// Their share of the stacks read.
    pub share: f64,
    /// The shared helper its channels were built through (`Clients.newChannel`).
    #[serde(default)]
    pub through: Option<String>,
}

/// Groups `stacks` by the service's own frame that asked for the channel, most channels first: the
/// innermost own frame, unless the stack went through a shared helper (`newChannel()` called from
/// `Orders.place` and `Payments.charge`): then the helper's caller, as for every runtime's call sites
/// (see [`super::own::attribute`]).
pub fn call_sites(stacks: &BTreeMap<Vec<Frame>, u64>, own: &OwnCode) -> Vec<OrphanSite> {
    let frames: Vec<Vec<pprof::Frame>> =
        stacks.keys().map(|stack| stack.iter().map(Frame::to_pprof).collect()).collect();
    let own_frames: Vec<Vec<&pprof::Frame>> =
        frames.iter().map(|stack| stack.iter().filter(|frame| own.owns(frame)).collect()).collect();
    let mut counts: BTreeMap<&pprof::Frame, (u64, Option<&str>)> = BTreeMap::new();
    // grpc-java reports dropped channels alone: a helper's other callers are seen only if they leak too.
    for (attributed, count) in attribute(&[], &own_frames).into_iter().zip(stacks.values()) {
        if let Some(Attributed { site, through }) = attributed {
            let entry = counts.entry(site).or_default();
            entry.0 += count;
            entry.1 = entry.1.or(through);
        }
    }
    let total = stacks.values().sum::<u64>().max(1) as f64;
    let mut sites: Vec<OrphanSite> = counts
        .into_iter()
        .map(|(frame, (channels, through))| OrphanSite {
            function: frame.function.clone(),
            file: frame.file.clone(),
            line: frame.line,
            channels,
            share: channels as f64 / total,
            through: through.map(str::to_owned),
        })
        .collect();
    sites.sort_by(|a, b| b.channels.cmp(&a.channels).then(a.function.cmp(&b.function)));
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(frames: &[&str]) -> String {
        let stack: String = frames.iter().map(|frame| format!("\tat {frame}\n")).collect();
        format!(
            "Dec 07, 2026 5:21:53 PM io.grpc.internal.ManagedChannelOrphanWrapper$ManagedChannelReference cleanQueue\n\
             SEVERE: *~*~*~ Channel ManagedChannelImpl{{logId=43, target=127.0.0.1:1}} was not shutdown properly!!! ~*~*~*\n    \
             Make sure to call shutdown()/shutdownNow() and wait until awaitTermination() returns true.\n\
             java.lang.RuntimeException: ManagedChannel allocation site\n\
             \tat io.grpc.internal.ManagedChannelOrphanWrapper$ManagedChannelReference.<init>(ManagedChannelOrphanWrapper.java:93)\n\
             \tat io.grpc.internal.ManagedChannelImplBuilder.build(ManagedChannelImplBuilder.java:625)\n{stack}\n"
        )
    }

    fn read(text: &str) -> OrphanLog {
        let mut log = OrphanLog::default();
        for line in text.lines() {
            log.read(line);
        }
        log.finish();
        log
    }

    #[test]
    fn each_report_is_counted_and_its_stack_kept_whatever_comes_between() {
        let text = [
            report(&["EchoClient.newChannel(EchoClient.java:280)", "EchoClient.leakOne(EchoClient.java:320)"]),
            "leaklab-progress ok=100 failed=0\n".to_owned(),
            report(&["java.base/java.lang.Thread.run(Thread.java:833)"]),
            // A report cut short by the end of the output still counts.
            "SEVERE: *~*~*~ Channel ManagedChannelImpl{logId=9, target=x} was not shutdown properly!!! ~*~*~*\n"
                .to_owned(),
        ]
        .concat();
        let log = read(&text);
        assert_eq!(log.reported, 3);
        let stacks: Vec<&Vec<Frame>> = log.stacks.keys().collect();
        assert_eq!(stacks.len(), 2);
        assert_eq!(log.stacks.values().sum::<u64>(), 2);
        assert_eq!(
            stacks[0][2],
            Frame { function: "EchoClient.newChannel".into(), file: "EchoClient.java".into(), line: 280 }
        );
        assert_eq!(stacks[1][2].function, "java.lang.Thread.run", "the module prefix is not the class's");
    }

    #[test]
    fn a_shared_helper_gives_way_to_its_callers_ranked() {
        let stack = |handler: &str| {
            report(&["com.shop.Clients.newChannel(Clients.java:80)", handler, "com.shop.Main.main(Main.java:9)"])
        };
        let text = [
            stack("com.shop.Orders.place(Orders.java:42)"),
            stack("com.shop.Orders.place(Orders.java:42)"),
            stack("com.shop.Orders.place(Orders.java:42)"),
            stack("com.shop.Payments.charge(Payments.java:17)"),
        ]
        .concat();
        let default = OwnCode::new(CodeRuntime::Jvm, Vec::new());
        let sites = call_sites(&read(&text).stacks, &default);
        let named: Vec<(&str, i64, u64)> = sites.iter().map(|s| (s.function.as_str(), s.line, s.channels)).collect();
        assert_eq!(named, [("com.shop.Orders.place", 42, 3), ("com.shop.Payments.charge", 17, 1)]);
        assert_eq!(sites[0].share, 0.75);
        assert!(sites.iter().all(|s| s.through.as_deref() == Some("com.shop.Clients.newChannel")), "{sites:?}");
        // With one caller, the function that made the channel is the site.
        let single = call_sites(&read(&stack("com.shop.Orders.place(Orders.java:42)")).stacks, &default);
        // --own-code naming the handlers' package and not the helper's class: the handlers, seen directly.
        let handlers = OwnCode::new(CodeRuntime::Jvm, vec!["com.shop.Orders".into(), "com.shop.Payments".into()]);
        let named = call_sites(&read(&text).stacks, &handlers);
        let named: Vec<(&str, Option<&str>)> =
            named.iter().map(|s| (s.function.as_str(), s.through.as_deref())).collect();
        assert_eq!(named, [("com.shop.Orders.place", None), ("com.shop.Payments.charge", None)]);
        assert_eq!(
            (single[0].function.as_str(), single[0].file.as_str(), single[0].line),
            ("com.shop.Clients.newChannel", "Clients.java", 80)
        );
    }
}
