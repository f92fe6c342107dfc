//! Pure statistics: spans, latency percentiles, slopes with their intervals,
//! a sign test, a two-regressor fit. No I/O, no clocks, nothing from the rest
//! of leaklab: every function here is a function of its arguments.

pub mod fit;
pub mod histogram_log;
pub mod trend;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One quantity over a run: its first value, its last value and its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Span {
    /// Value in the first sample (before any request).
    pub start: u64,
    /// Value in the last sample (after the cool-down).
    pub end: u64,
    /// Largest value in any sample.
    pub peak: u64,
}

impl Span {
    /// The span of `values` in order; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = u64>) -> Option<Span> {
        let mut values = values.into_iter();
        let start = values.next()?;
        let (end, peak) = values.fold((start, start), |(_, peak), value| (value, peak.max(value)));
        Some(Span { start, end, peak })
    }
}

/// Latency percentiles in microseconds, from an HdrHistogram (3 significant digits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    /// Latencies recorded (successful calls only).
    pub count: u64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0.0, count: 0 };
        }
        Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
            count: histogram.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_tracks_first_last_and_max() {
        assert_eq!(Span::of([3, 9, 4]), Some(Span { start: 3, end: 4, peak: 9 }));
        assert_eq!(Span::of([7]), Some(Span { start: 7, end: 7, peak: 7 }));
        assert_eq!(Span::of([]), None);
    }

    proptest::proptest! {
        /// Span's invariants hold for any sequence: peak bounds every value and is one of them.
        #[test]
        fn span_peak_is_the_maximum(values in proptest::collection::vec(0u64..u64::MAX, 1..50)) {
            let span = Span::of(values.iter().copied()).unwrap();
            proptest::prop_assert_eq!(span.start, values[0]);
            proptest::prop_assert_eq!(span.end, *values.last().unwrap());
            proptest::prop_assert_eq!(span.peak, *values.iter().max().unwrap());
        }
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for micros in 1..=1000 {
            histogram.record(micros).unwrap();
        }
        let latency = Latency::of(&histogram);
        assert_eq!(latency.count, 1000);
        assert!((499..=501).contains(&latency.p50), "{latency:?}");
        assert!((989..=991).contains(&latency.p99), "{latency:?}");
        assert_eq!(latency.max, 1000);
        assert_eq!(Latency::of(&Histogram::<u64>::new(3).unwrap()).count, 0);
    }
}
