//! Latency histograms kept losslessly: HdrHistogram's interval log with V2
//! (deflate-compressed) histograms, the format HdrHistogram's own tools and
//! wrk2 read. Histograms from several load generators merge exactly: a
//! merged histogram's percentiles are those of one histogram fed every value.

use std::time::{Duration, SystemTime};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

/// What a run keeps of its latencies (`latency.hlog`): the histogram from each send (tag `sent`), and in
/// an open loop the one from each intended send time (`intended`), over the load from `started`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyLog {
    pub started: SystemTime,
    pub elapsed: Duration,
    pub sent: Histogram<u64>,
    pub intended: Option<Histogram<u64>>,
}

impl LatencyLog {
    /// The interval log's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut histograms = vec![("sent", &self.sent)];
        if let Some(intended) = &self.intended {
            histograms.push(("intended", intended));
        }
        encode(&histograms, self.started, self.elapsed)
    }
}

/// An interval log of `histograms`, each under its tag, all covering `duration` from `start`.
pub fn encode(
    histograms: &[(&str, &Histogram<u64>)],
    start: SystemTime,
    duration: Duration,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(
            "leaklab latencies in microseconds: tag sent (from the send), intended (from the intended send time)",
        )
        .with_start_time(start)
        .with_base_time(start)
        .begin_log_with(&mut bytes, &mut serializer)
        .map_err(|error| error.to_string())?;
    for (tag, histogram) in histograms {
        let tag = Tag::new(tag).ok_or_else(|| format!("{tag:?} cannot be a tag"))?;
        writer.write_histogram(histogram, Duration::ZERO, duration, Some(tag)).map_err(|error| error.to_string())?;
    }
    Ok(bytes)
}

/// Every histogram of an interval log, with its tag (empty when it has none).
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Histogram<u64>)>, String> {
    let mut deserializer = Deserializer::new();
    let mut histograms = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let LogEntry::Interval(interval) = entry.map_err(|error| format!("{error:?}"))? else { continue };
        let tag = interval.tag().map_or_else(String::new, |tag| tag.as_str().to_owned());
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|error| format!("histogram {tag:?}: {error}"))?;
        let histogram = deserializer
            .deserialize(&mut compressed.as_slice())
            .map_err(|error| format!("histogram {tag:?}: {error:?}"))?;
        histograms.push((tag, histogram));
    }
    Ok(histograms)
}

/// One histogram holding every value of `histograms`.
pub fn merge<'a>(histograms: impl IntoIterator<Item = &'a Histogram<u64>>) -> Result<Option<Histogram<u64>>, String> {
    let mut merged: Option<Histogram<u64>> = None;
    for histogram in histograms {
        match merged.as_mut() {
            Some(merged) => merged.add(histogram).map_err(|error| format!("{error:?}"))?,
            None => merged = Some(histogram.clone()),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
    }

    proptest::proptest! {
        /// Values split over several load generators, each logged and read back, merge into exactly
        /// the histogram of one generator that saw them all.
        #[test]
        fn logged_histograms_merge_into_the_histogram_of_every_value(
            values in proptest::collection::vec((1u64..60_000_000, 0usize..3), 1..2_000)
        ) {
            let mut parts = [histogram(), histogram(), histogram()];
            let mut whole = histogram();
            for (value, part) in &values {
                parts[*part].record(*value).unwrap();
                whole.record(*value).unwrap();
            }
            let start = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
            let logs: Vec<Vec<u8>> = parts
                .iter()
                .map(|part| encode(&[("sent", part)], start, Duration::from_secs(10)).unwrap())
                .collect();
            let read: Vec<Histogram<u64>> = logs
                .iter()
                .flat_map(|log| decode(log).unwrap())
                .map(|(tag, histogram)| { assert_eq!(tag, "sent"); histogram })
                .collect();
            let merged = merge(&read).unwrap().unwrap();
            proptest::prop_assert_eq!(merged.len(), whole.len());
            for quantile in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
                proptest::prop_assert_eq!(merged.value_at_quantile(quantile), whole.value_at_quantile(quantile));
            }
            proptest::prop_assert_eq!((merged.min(), merged.max()), (whole.min(), whole.max()));
            proptest::prop_assert_eq!(merged.mean(), whole.mean());
        }
    }

    #[test]
    fn a_log_keeps_its_tags_and_a_broken_one_is_an_error() {
        let (mut sent, mut intended) = (histogram(), histogram());
        sent.record(250).unwrap();
        intended.record(900).unwrap();
        let log = encode(&[("sent", &sent), ("intended", &intended)], UNIX_EPOCH, Duration::from_secs(1)).unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.contains("#[StartTime: 0.000") && text.contains("Tag=sent,") && text.contains("Tag=intended,"));
        let read = decode(&log).unwrap();
        assert_eq!(
            read.iter().map(|(tag, h)| (tag.as_str(), h.max())).collect::<Vec<_>>(),
            [("sent", 250), ("intended", 900)]
        );
        assert!(decode(b"Tag=sent,0.000,1.000,250.000,not-base64!\n").is_err());
        assert_eq!(merge(std::iter::empty()).unwrap(), None);
    }
}
