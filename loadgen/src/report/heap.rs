//! The heap profiles of a run with `--heap-profile`: the "where the memory
//! is" section of `report.md`, and the end profiles as flame graphs
//! (`flamegraph.client.svg`, `flamegraph.server.svg`, inferno) and pprof
//! files (`heap.pb.gz` for the load generator, `heap.server.pb.gz`).

use std::io::Write;
use std::path::Path;

use leaklab_probe::heap::Folded;

use super::units::human_bytes;
use super::{Exporter, Output};
use crate::heap::{self, HeapReport, Process};

/// The profiles both processes dumped at the end of the load, stacks named.
#[derive(Debug, Clone, Default)]
pub struct HeapProfiles {
    pub client: Option<Folded>,
    pub server: Option<Folded>,
}

impl HeapProfiles {
    /// The end profiles in a run directory; a missing or unreadable one is `None`.
    pub fn read(dir: &Path) -> HeapProfiles {
        HeapProfiles {
            client: heap::read(dir, heap::END, Process::Client),
            server: heap::read(dir, heap::END, Process::Server),
        }
    }

    fn of(&self, process: Process) -> Option<&Folded> {
        match process {
            Process::Client => self.client.as_ref(),
            Process::Server => self.server.as_ref(),
        }
    }

    /// The files to write: a flame graph and a pprof file per profile present.
    pub fn outputs(&self) -> Vec<Output<HeapProfiles>> {
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
pub struct FlameGraph(pub Process);

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
pub struct Pprof(pub Process);

impl Exporter<HeapProfiles> for Pprof {
    fn export(&self, profiles: &HeapProfiles, out: &mut dyn Write) -> anyhow::Result<()> {
        let profile = profiles.of(self.0).ok_or_else(|| anyhow::anyhow!("no {} profile", self.0.name()))?;
        out.write_all(&heap::pprof::encode_gzipped(profile))?;
        Ok(())
    }
}

/// The "where the memory is" section of `report.md`, its heading at `level` (2: `##`).
pub fn markdown(report: &HeapReport, level: usize) -> String {
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
    }
    out
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
}
