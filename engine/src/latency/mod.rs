//! Latency percentiles from an HdrHistogram, and the histograms kept losslessly
//! ([`histogram_log`]) so that the runs of several hosts merge exactly.

pub mod histogram_log;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
