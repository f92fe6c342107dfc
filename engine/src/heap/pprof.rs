//! pprof's `profile.proto`, the fields a heap or goroutine profile needs: a
//! profile encoded for `go tool pprof` and friends, and one read back, as the
//! load generator writes them or as a Go process's `net/http/pprof` serves them.

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
        #[prost(message, repeated, tag = "3")]
        pub(super) label: Vec<Label>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Label {
        #[prost(int64, tag = "1")]
        pub(super) key: i64,
        #[prost(int64, tag = "2")]
        pub(super) str: i64,
        #[prost(int64, tag = "3")]
        pub(super) num: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Location {
        #[prost(uint64, tag = "1")]
        pub(super) id: u64,
        #[prost(uint64, tag = "3")]
        pub(super) address: u64,
        /// The functions at this address, the innermost (inlined) first and the one it was inlined into last.
        #[prost(message, repeated, tag = "4")]
        pub(super) line: Vec<Line>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub(super) function_id: u64,
        #[prost(int64, tag = "2")]
        pub(super) line: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
        #[prost(uint64, tag = "1")]
        pub(super) id: u64,
        #[prost(int64, tag = "2")]
        pub(super) name: i64,
        #[prost(int64, tag = "4")]
        pub(super) filename: i64,
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
                out.function.push(proto::Function { id: next, name: strings.len() as i64 - 1, filename: 0 });
                out.location.push(proto::Location {
                    id: next,
                    address: 0,
                    line: vec![proto::Line { function_id: next, line: 0 }],
                });
                next
            });
            location_id.push(id);
        }
        out.sample.push(proto::Sample { location_id, value: vec![bytes.round() as i64], label: Vec::new() });
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

/// A gzipped pprof profile's samples: first values and frame names, leaf first.
pub fn decode(gzipped: &[u8]) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    Ok(Profile::decode(gzipped)?
        .samples
        .into_iter()
        .map(|sample| {
            let names = sample.frames.into_iter().map(|frame| frame.function).collect();
            (sample.values.first().copied().unwrap_or(0), names)
        })
        .collect())
}

/// A profile read back, its frames resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// What each sample's values are, as `(type, unit)`: Go's heap profile has `alloc_objects`,
    /// `alloc_space`, `inuse_objects`, `inuse_space`; its goroutine profile `goroutine`, `count`.
    pub sample_types: Vec<(String, String)>,
    /// One sample every `period` units of `period_type` (a Go heap profile: bytes, its `MemProfileRate`).
    pub period: i64,
    pub period_type: Option<(String, String)>,
    pub samples: Vec<ProfileSample>,
}

/// One stack and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSample {
    /// One value per sample type.
    pub values: Vec<i64>,
    /// Innermost first; an inlined function is a frame of its own, before the one it was inlined into.
    pub frames: Vec<Frame>,
    /// Its labels, as `key=value` (a Go heap sample's object size: `bytes=80`).
    pub labels: Vec<String>,
}

/// A function at a line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
    /// Inlined into the next frame: not a call of its own.
    pub inlined: bool,
    /// The instruction's address in the binary: two samples are one stack only where they match too, as
    /// pprof merges them.
    pub address: u64,
}

impl Profile {
    /// A profile in pprof's file format, gzipped (as pprof writes it) or not.
    pub fn decode(data: &[u8]) -> anyhow::Result<Profile> {
        use prost::Message;
        use std::io::Read;
        let mut bytes = Vec::new();
        let raw = if data.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(data).read_to_end(&mut bytes).context("a gzip stream cut short")?;
            bytes.as_slice()
        } else {
            data
        };
        let profile = proto::Profile::decode(raw).context("not a pprof profile (profile.proto)")?;
        if profile.sample_type.is_empty() {
            anyhow::bail!("not a pprof profile: it has no sample types");
        }
        let string = |index: i64| profile.string_table.get(index as usize).cloned().unwrap_or_default();
        let value_type = |v: &proto::ValueType| (string(v.r#type), string(v.unit));
        let functions: BTreeMap<u64, &proto::Function> = profile.function.iter().map(|f| (f.id, f)).collect();
        let locations: BTreeMap<u64, Vec<Frame>> = profile
            .location
            .iter()
            .map(|location| {
                let last = location.line.len().saturating_sub(1);
                let frames = location
                    .line
                    .iter()
                    .enumerate()
                    .map(|(index, line)| {
                        let function = functions.get(&line.function_id);
                        Frame {
                            function: function.map(|f| string(f.name)).unwrap_or_default(),
                            file: function.map(|f| string(f.filename)).unwrap_or_default(),
                            line: line.line,
                            inlined: index < last,
                            address: location.address,
                        }
                    })
                    .collect();
                (location.id, frames)
            })
            .collect();
        let samples = profile
            .sample
            .iter()
            .map(|sample| ProfileSample {
                values: sample.value.clone(),
                frames: sample
                    .location_id
                    .iter()
                    .flat_map(|id| locations.get(id).cloned().unwrap_or_default())
                    .collect(),
                labels: sample
                    .label
                    .iter()
                    .map(|label| match label.str {
                        0 => format!("{}={}", string(label.key), label.num),
                        text => format!("{}={}", string(label.key), string(text)),
                    })
                    .collect(),
            })
            .collect();
        Ok(Profile {
            sample_types: profile.sample_type.iter().map(value_type).collect(),
            period: profile.period,
            period_type: profile.period_type.as_ref().map(value_type),
            samples,
        })
    }
}

impl Profile {
    /// The profile in pprof's format, gzipped: what a runtime's own profile becomes once converted, for
    /// `go tool pprof` and for the diff every runtime shares. Each frame is a location of its own.
    pub fn encode_gzipped(&self) -> Vec<u8> {
        use prost::Message;
        use std::io::Write;
        let mut strings: Vec<String> = vec![String::new()];
        let mut string_ids: BTreeMap<String, i64> = BTreeMap::new();
        let mut string = |text: &str| {
            *string_ids.entry(text.to_owned()).or_insert_with(|| {
                strings.push(text.to_owned());
                strings.len() as i64 - 1
            })
        };
        let mut value_type =
            |(kind, unit): &(String, String)| proto::ValueType { r#type: string(kind), unit: string(unit) };
        let mut out = proto::Profile {
            sample_type: self.sample_types.iter().map(&mut value_type).collect(),
            period_type: self.period_type.as_ref().map(&mut value_type),
            period: self.period,
            ..Default::default()
        };
        let mut functions: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut locations: BTreeMap<&Frame, u64> = BTreeMap::new();
        for sample in &self.samples {
            let mut location_id = Vec::with_capacity(sample.frames.len());
            for frame in &sample.frames {
                let next_function = functions.len() as u64 + 1;
                let function_id = *functions.entry((&frame.function, &frame.file)).or_insert_with(|| {
                    let (name, filename) = (string(&frame.function), string(&frame.file));
                    out.function.push(proto::Function { id: next_function, name, filename });
                    next_function
                });
                let next_location = locations.len() as u64 + 1;
                let id = *locations.entry(frame).or_insert_with(|| {
                    out.location.push(proto::Location {
                        id: next_location,
                        address: frame.address,
                        line: vec![proto::Line { function_id, line: frame.line }],
                    });
                    next_location
                });
                location_id.push(id);
            }
            let label = sample
                .labels
                .iter()
                .filter_map(|label| label.split_once('='))
                .map(|(key, value)| proto::Label { key: string(key), str: string(value), num: 0 })
                .collect();
            out.sample.push(proto::Sample { location_id, value: sample.values.clone(), label });
        }
        out.string_table = strings;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&out.encode_to_vec()).expect("writing to a Vec cannot fail");
        gzip.finish().expect("writing to a Vec cannot fail")
    }
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

    #[test]
    fn a_converted_profile_round_trips_with_files_lines_and_labels() {
        let frame = |function: &str, line| Frame {
            function: function.into(),
            file: "/srv/shop/payments.js".into(),
            line,
            inlined: false,
            address: 0,
        };
        let profile = Profile {
            sample_types: vec![("inuse_objects".into(), "count".into()), ("inuse_space".into(), "bytes".into())],
            period: 8192,
            period_type: Some(("space".into(), "bytes".into())),
            samples: vec![
                ProfileSample {
                    values: vec![3, 4096],
                    frames: vec![frame("newClient", 4), frame("charge", 12)],
                    labels: vec![],
                },
                ProfileSample {
                    values: vec![1, 64],
                    frames: vec![frame("charge", 13)],
                    labels: vec!["bytes=64".into()],
                },
            ],
        };
        assert_eq!(Profile::decode(&profile.encode_gzipped()).unwrap(), profile);
    }
}
