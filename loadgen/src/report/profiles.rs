//! The end heap profiles of a run with `--heap-profile`, as files: flame
//! graphs (`flamegraph.client.svg`, `flamegraph.server.svg`, inferno) and
//! pprof files (`heap.pb.gz` for the load generator, `heap.server.pb.gz`).
//! What they say is put into words by [`heap`](super::heap).

use std::io::Write;
use std::path::Path;

use leaklab_probe::heap::Folded;

use super::{Exporter, Output};
use leaklab_engine::heap::{self, ProfileMoment};
use leaklab_engine::summary::Side;

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
            client: heap::read(dir, ProfileMoment::End, Side::Client),
            server: heap::read(dir, ProfileMoment::End, Side::Server),
        }
    }

    fn of(&self, process: Side) -> Option<&Folded> {
        match process {
            Side::Client => self.client.as_ref(),
            Side::Server => self.server.as_ref(),
        }
    }

    /// The files to write: a flame graph and a pprof file per profile present.
    pub(crate) fn outputs(&self) -> Vec<Output<HeapProfiles>> {
        let mut outputs = Vec::new();
        if self.client.is_some() {
            outputs.push(Output { file: "flamegraph.client.svg", exporter: &FlameGraph(Side::Client) });
            outputs.push(Output { file: "heap.pb.gz", exporter: &Pprof(Side::Client) });
        }
        if self.server.is_some() {
            outputs.push(Output { file: "flamegraph.server.svg", exporter: &FlameGraph(Side::Server) });
            outputs.push(Output { file: "heap.server.pb.gz", exporter: &Pprof(Side::Server) });
        }
        outputs
    }
}

/// A process's end profile as a flame graph of in-use memory.
#[derive(Debug)]
pub(crate) struct FlameGraph(pub Side);

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
pub(crate) struct Pprof(pub Side);

impl Exporter<HeapProfiles> for Pprof {
    fn export(&self, profiles: &HeapProfiles, out: &mut dyn Write) -> anyhow::Result<()> {
        let profile = profiles.of(self.0).ok_or_else(|| anyhow::anyhow!("no {} profile", self.0.name()))?;
        out.write_all(&heap::pprof::encode_gzipped(profile))?;
        Ok(())
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
        let svg = crate::report::to_string(&FlameGraph(Side::Client), &profiles).unwrap();
        assert!(svg.contains("<svg") && svg.contains("FramedWrite"));
        let mut gzipped = Vec::new();
        Pprof(Side::Client).export(&profiles, &mut gzipped).unwrap();
        let samples = heap::pprof::decode(&gzipped).unwrap();
        assert!(samples.iter().any(|(bytes, frames)| *bytes == 4096 && frames[0] == "h2::codec::FramedWrite::new"));
        assert!(FlameGraph(Side::Server).export(&profiles, &mut Vec::new()).is_err(), "no server profile");
    }
}
