//! The heap profiles of a run with `--heap-profile`: the "where the memory
//! is" section of `report.md`, and the end profiles as flame graphs
//! (`flamegraph.client.svg`, `flamegraph.server.svg`, inferno) and pprof
//! files (`heap.pb.gz` for the load generator, `heap.server.pb.gz`).

use std::io::Write;
use std::path::Path;

use leaklab_probe::heap::Folded;

use super::units::human_bytes;
use super::{Exporter, Output};
use leaklab_engine::heap::{self, HeapReport, Process, ProfileMoment};

/// The profiles both processes dumped at the end of the load, stacks named.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeapProfiles {
    pub client: Option<Folded>,
    pub server: Option<Folded>,
}

impl HeapProfiles {
    /// The end profiles in a run directory; a missing or unreadable one is `None`.
    pub(crate) fn read(dir: &Path) -> HeapProfiles {
        HeapProfiles {
            client: heap::read(dir, ProfileMoment::End, Process::Client),
            server: heap::read(dir, ProfileMoment::End, Process::Server),
        }
    }

    fn of(&self, process: Process) -> Option<&Folded> {
        match process {
            Process::Client => self.client.as_ref(),
            Process::Server => self.server.as_ref(),
        }
    }

    /// The files to write: a flame graph and a pprof file per profile present.
    pub(crate) fn outputs(&self) -> Vec<Output<HeapProfiles>> {
        let mut outputs = Vec::new();
        if self.client.is_some() {
            outputs.push(Output { file: "flamegraph.client.svg", exporter: &FlameGraph(Process::Client) });
            outputs.push(Output { file: "heap.pb.gz", exporter: &Pprof(Process::Client) });
        }
        if self.server.is_some() {
            outputs.push(Output { file: "flamegraph.server.svg", exporter: &FlameGraph(Process::Server) });
            outputs.push(Output { file: "heap.server.pb.gz", exporter: &Pprof(Process::Server) });
        }
        outputs
    }
}

/// A process's end profile as a flame graph of in-use memory.
#[derive(Debug)]
pub(crate) struct FlameGraph(pub Process);

impl Exporter<HeapProfiles> for FlameGraph {
    fn export(&self, profiles: &HeapProfiles, out: &mut dyn Write) -> anyhow::Result<()> {
        let process = self.0.name();
        let profile = profiles.of(self.0).ok_or_else(|| anyhow::anyhow!("no {process} profile"))?;
        // inferno wants integer counts: bytes, rounded.
        let lines: Vec<String> = profile
            .stacks
            .iter()
            .filter(|(_, bytes)| **bytes >= 1.0)
            .map(|(stack, bytes)| {
                format!("{} {}", if stack.is_empty() { "[unknown]" } else { stack }, bytes.round() as u64)
            })
            .collect();
        if lines.is_empty() {
            anyhow::bail!("the {process} profile has no sampled stacks");
        }
        let mut options = inferno::flamegraph::Options::default();
        options.title = format!("{process}: in-use memory at the end of the load");
        options.count_name = "bytes".to_owned();
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)?;
        Ok(())
    }
}

/// A process's end profile in pprof's format, gzipped, for `go tool pprof` and friends.
#[derive(Debug)]
pub(crate) struct Pprof(pub Process);

impl Exporter<HeapProfiles> for Pprof {
    fn export(&self, profiles: &HeapProfiles, out: &mut dyn Write) -> anyhow::Result<()> {
        let profile = profiles.of(self.0).ok_or_else(|| anyhow::anyhow!("no {} profile", self.0.name()))?;
        out.write_all(&heap::pprof::encode_gzipped(profile))?;
        Ok(())
    }
}

/// The "where the memory is" section of `report.md`, its heading at `level` (2: `##`).
pub(crate) fn markdown(report: &HeapReport, level: usize) -> String {
    let (heading, subheading) = ("#".repeat(level), "#".repeat(level + 1));
    let mut out = format!(
        "{heading} Where the memory is\n\nThe allocation stacks whose in-use bytes grew most between the checkpoint after \
         warm-up and the one after the load, from jemalloc's sampling heap profiler (one sample per 128 KiB \
         allocated, unscaled as jeprof does), like `pprof -base`. The frames are the innermost ones outside the \
         standard library. `heap.pb.gz` (`heap.server.pb.gz`) holds the end profile for the pprof tools, and \
         `flamegraph.client.svg` (`flamegraph.server.svg`) draws it.\n",
    );
    for (name, growth) in [("client", &report.client), ("server", &report.server)] {
        let Some(growth) = growth else { continue };
        out += &format!("\n{subheading} {name}\n\n");
        match (growth.measured_growth_bytes, growth.coverage) {
            (Some(measured), Some(coverage)) => {
                out += &format!(
                    "The profile accounts for {} of growth; the allocator counted {} between the same checkpoints ({:.0}%).\n\n",
                    human_bytes(growth.profiled_growth_bytes),
                    human_bytes(measured),
                    coverage * 100.0
                );
            }
            _ => {
                out += &format!("The profile accounts for {} of growth.\n\n", human_bytes(growth.profiled_growth_bytes))
            }
        }
        out += "| grew by | share | where (innermost first) |\n|---:|---:|---|\n";
        for stack in &growth.top {
            let frames: Vec<String> =
                stack.frames.iter().map(|frame| format!("`{}`", frame.replace('|', "\\|"))).collect();
            out +=
                &format!("| {} | {:.1}% | {} |\n", human_bytes(stack.bytes), stack.share * 100.0, frames.join(" ← "));
        }
        out += &format!(
            "\nWhere the {name}'s own code allocated what grew (the innermost frame of leaklab's crates on each \
             stack; a closure counts in its function):\n\n"
        );
        if growth.call_sites.is_empty() {
            out += &format!("No function of the {name}'s own holds 5% or more of the growth.\n");
        } else {
            out += "| call site | bytes grown | share |\n|---|---:|---:|\n";
            for site in &growth.call_sites {
                out += &format!(
                    "| `{}` | {} | {:.1}% |\n",
                    site.function.replace('|', "\\|"),
                    human_bytes(site.bytes),
                    site.share * 100.0
                );
            }
        }
    }
    out
}

/// "From the profile to the code": a Go process's profiles compared, as a markdown section at `level`.
pub(crate) fn go_markdown(p: &leaklab_engine::heap::go::GoProfiles, process: Process, level: usize) -> String {
    let name = process.name();
    let heading = "#".repeat(level);
    let per = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), human_bytes);
    let rate = p.sample_period_bytes.map_or_else(|| "unknown".to_owned(), |b| format!("one sample per {b} bytes"));
    let mut out = format!(
        "{heading} From the profile to the code: the {name}\n\nThe {name}'s own heap and goroutine profiles, fetched \
         from {} when warm-up ended and when the load ended (`pprof-{name}-warmup.heap.pb.gz`, \
         `pprof-{name}-end.heap.pb.gz`…; `go tool pprof -base` reads them). Sampling: {rate}. In-use memory grew \
         by {} in {} objects, {} per connection the {name} kept open ({} connections); its RSS grew by {} per \
         connection over the same window.{}\n\n",
        p.url,
        human_bytes(p.inuse_bytes_growth as f64),
        p.inuse_objects_growth,
        per(p.bytes_per_connection),
        p.connections_grown.map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
        per(p.rss_per_connection),
        resident_mismatch(p).map(|s| format!(" {s}")).unwrap_or_default(),
    );
    out += "What grew, by where it was allocated:\n\n| allocated in | grew by | share | per connection |\n|---|---:|---:|---:|\n";
    for g in &p.growth {
        let name = match &g.known_as {
            Some(known) => format!("`{}` ({known})", g.function),
            None => format!("`{}`", g.function),
        };
        out += &format!(
            "| {name} | {} | {:.1}% | {} |\n",
            human_bytes(g.inuse_bytes_growth as f64),
            g.share * 100.0,
            per(g.bytes_per_connection)
        );
    }
    out += &format!(
        "\nWhere the {name}'s own code allocated what grew (the innermost frame of its own code on each stack):\n\n"
    );
    if p.call_sites.is_empty() {
        out += &format!("No call site of the {name}'s own code holds any of the growth.\n");
    } else {
        out += "| call site | at | objects grown | bytes grown |\n|---|---|---:|---:|\n";
        for site in &p.call_sites {
            let file = site.file_name();
            out += &format!(
                "| `{}` | `{file}:{}` | {} | {} |\n",
                site.function,
                site.line,
                site.inuse_objects_growth,
                human_bytes(site.inuse_bytes_growth as f64)
            );
        }
    }
    if p.smaller_call_sites > 0 {
        out += &format!(
            "\n{} more of its functions hold {} together, each under 5% of what its own code allocated or under \
             32 samples' worth (requests in flight when a profile was taken).\n",
            p.smaller_call_sites,
            human_bytes(p.smaller_call_sites_bytes as f64)
        );
    }
    if p.too_coarse {
        out += &format!(
            "\nOnly about {:.0} heap samples fell under these call sites: too few to rank them. Set a finer \
             `runtime.MemProfileRate` in the process (the Go peer's `-mem-profile-rate 1024`).\n",
            p.call_site_samples
        );
    }
    if !p.goroutines.is_empty() {
        out += &format!(
            "\nGoroutines grown, by where they are parked ({} per connection in all):\n\n| parked in | grown | per connection |\n|---|---:|---:|\n",
            p.goroutines_per_connection.map_or_else(|| "n/a".to_owned(), |g| format!("{g:.2}"))
        );
        for g in &p.goroutines {
            out += &format!(
                "| `{}` | {} | {} |\n",
                g.parked_in,
                g.grown,
                g.per_connection.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
            );
        }
    }
    out
}

/// Why the profile's bytes per connection and the RSS's differ, when they differ by more than 15%.
fn resident_mismatch(p: &leaklab_engine::heap::go::GoProfiles) -> Option<&'static str> {
    let ratio = p.rss_per_connection? / p.bytes_per_connection.filter(|b| *b > 0.0)?;
    if ratio < 0.85 {
        Some(
            "RSS grew less than the heap held: a buffer is in use from its allocation, but its pages become \
             resident only when written to, and a connection that carries small messages never writes most of \
             its 64 KiB write buffer.",
        )
    } else if ratio > 1.15 {
        Some(
            "RSS grew more than the heap held: goroutine stacks, garbage not yet collected and memory outside \
             the Go heap (cgo) are resident but not in a heap profile.",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles() -> HeapProfiles {
        let folded = Folded {
            stacks: [("main;h2::codec::FramedWrite::new", 4096.0), ("main;tokio::spawn", 1024.0)]
                .into_iter()
                .map(|(stack, bytes)| (stack.to_owned(), bytes))
                .collect(),
        };
        HeapProfiles { client: Some(folded), server: None }
    }

    #[test]
    fn a_flame_graph_and_a_pprof_file_per_profile_present() {
        let profiles = profiles();
        let files: Vec<&str> = profiles.outputs().iter().map(|output| output.file).collect();
        assert_eq!(files, ["flamegraph.client.svg", "heap.pb.gz"]);
        let svg = crate::report::to_string(&FlameGraph(Process::Client), &profiles).unwrap();
        assert!(svg.contains("<svg") && svg.contains("FramedWrite"));
        let mut gzipped = Vec::new();
        Pprof(Process::Client).export(&profiles, &mut gzipped).unwrap();
        let samples = heap::pprof::decode(&gzipped).unwrap();
        assert!(samples.iter().any(|(bytes, frames)| *bytes == 4096 && frames[0] == "h2::codec::FramedWrite::new"));
        assert!(FlameGraph(Process::Server).export(&profiles, &mut Vec::new()).is_err(), "no server profile");
    }

    #[test]
    fn the_profiles_bytes_per_connection_are_set_beside_the_rss_and_a_gap_is_explained() {
        let close = go_markdown(&leaklab_engine::fixtures::go_profiles(120_000.0, 126_000.0), Process::Server, 2);
        assert!(close.starts_with("## From the profile to the code: the server"), "{close}");
        assert!(
            close.contains("120.0 KB per connection the server kept open (100 connections); its RSS grew by 126.0 KB")
        );
        assert!(!close.contains("RSS grew less") && !close.contains("RSS grew more"), "{close}");
        assert!(
            go_markdown(&leaklab_engine::fixtures::go_profiles(110_000.0, 86_000.0), Process::Client, 2)
                .contains("RSS grew less")
        );
        assert!(
            go_markdown(&leaklab_engine::fixtures::go_profiles(110_000.0, 140_000.0), Process::Client, 2)
                .contains("RSS grew more")
        );
    }
}
