//! pprof's `profile.proto`, the fields a heap profile needs: a profile
//! encoded for `go tool pprof` and friends, and read back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use leaklab_probe::heap::Folded;

mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub(super) sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub(super) sample: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub(super) location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub(super) function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub(super) string_table: Vec<String>,
        #[prost(message, optional, tag = "11")]
        pub(super) period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub(super) period: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ValueType {
        #[prost(int64, tag = "1")]
        pub(super) r#type: i64,
        #[prost(int64, tag = "2")]
        pub(super) unit: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub(super) location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub(super) value: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Location {
        #[prost(uint64, tag = "1")]
        pub(super) id: u64,
        #[prost(message, repeated, tag = "4")]
        pub(super) line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub(super) function_id: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
        #[prost(uint64, tag = "1")]
        pub(super) id: u64,
        #[prost(int64, tag = "2")]
        pub(super) name: i64,
    }
}

/// The profile in pprof's format, not yet gzipped: one sample per stack
/// with its in-use bytes, a location and function per frame name.
pub fn encode(profile: &Folded) -> Vec<u8> {
    use prost::Message;
    let mut strings: Vec<String> = vec![String::new(), "inuse_space".into(), "bytes".into()];
    let mut ids: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        period_type: Some(proto::ValueType { r#type: 1, unit: 2 }),
        period: leaklab_probe::heap::SAMPLE_BYTES as i64,
        ..Default::default()
    };
    for (stack, bytes) in &profile.stacks {
        let mut location_id = Vec::new();
        // pprof lists a sample's locations leaf first.
        for frame in stack.split(';').filter(|frame| !frame.is_empty()).rev() {
            let next = ids.len() as u64 + 1;
            let id = *ids.entry(frame.to_owned()).or_insert_with(|| {
                strings.push(frame.to_owned());
                out.function.push(proto::Function { id: next, name: strings.len() as i64 - 1 });
                out.location.push(proto::Location { id: next, line: vec![proto::Line { function_id: next }] });
                next
            });
            location_id.push(id);
        }
        out.sample.push(proto::Sample { location_id, value: vec![bytes.round() as i64] });
    }
    out.string_table = strings;
    out.encode_to_vec()
}

/// The profile in pprof's file format: gzipped.
pub fn encode_gzipped(profile: &Folded) -> Vec<u8> {
    use std::io::Write;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&encode(profile)).expect("writing to a Vec cannot fail");
    gzip.finish().expect("writing to a Vec cannot fail")
}

/// Reads a `heap.pb.gz` back: its samples' values and frame names, leaf first (for tests and checks).
pub fn read(path: &Path) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode(&bytes).with_context(|| path.display().to_string())
}

/// A gzipped pprof profile's samples: values and frame names, leaf first.
pub fn decode(gzipped: &[u8]) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    use prost::Message;
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gzipped).read_to_end(&mut bytes).context("not gzip")?;
    let profile = proto::Profile::decode(bytes.as_slice()).context("not a pprof profile")?;
    let name_of = |location: u64| -> String {
        profile
            .location
            .iter()
            .find(|l| l.id == location)
            .and_then(|l| l.line.first())
            .and_then(|line| profile.function.iter().find(|f| f.id == line.function_id))
            .and_then(|f| profile.string_table.get(f.name as usize))
            .cloned()
            .unwrap_or_default()
    };
    Ok(profile
        .sample
        .iter()
        .map(|sample| {
            (sample.value.first().copied().unwrap_or(0), sample.location_id.iter().map(|&id| name_of(id)).collect())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_with_its_frames_leaf_first() {
        let profile = Folded {
            stacks: [("main;h2::codec::FramedWrite::new", 4096.0), ("main;tokio::spawn", 1024.0)]
                .into_iter()
                .map(|(stack, bytes)| (stack.to_owned(), bytes))
                .collect(),
        };
        let samples = decode(&encode_gzipped(&profile)).unwrap();
        assert!(
            samples.contains(&(4096, vec!["h2::codec::FramedWrite::new".to_owned(), "main".to_owned()])),
            "{samples:?}"
        );
        assert!(decode(b"not gzip").is_err());
    }
}
