//! The loaded part of a run: from the sample taken when warm-up ended to the
//! one taken when the load ended, and growth per request over it.

use super::{Phase, Sample};

/// The loaded part of a run, after warm-up: indices into the samples of its
/// first sample (taken when warm-up ended) and its last (taken when load ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadWindow {
    pub first: usize,
    pub last: usize,
}

impl LoadWindow {
    /// From the first `Load` sample to the first `Cooldown` sample, or to the
    /// last sample when the run never reached its cool-down. `None` when the
    /// run never got past warm-up.
    pub fn find(samples: &[Sample]) -> Option<LoadWindow> {
        let first = samples.iter().position(|s| s.phase == Phase::Load)?;
        let last = samples[first..]
            .iter()
            .position(|s| s.phase == Phase::Cooldown)
            .map_or(samples.len() - 1, |offset| first + offset);
        Some(LoadWindow { first, last })
    }

    /// Requests completed inside the window.
    pub fn requests(&self, samples: &[Sample]) -> u64 {
        samples[self.last].requests().saturating_sub(samples[self.first].requests())
    }

    /// Seconds between the window's first and last samples.
    pub fn seconds(&self, samples: &[Sample]) -> f64 {
        samples[self.last].elapsed_s - samples[self.first].elapsed_s
    }

    /// How much `value` grew over the window per request completed in it.
    /// `None` when no request completed, or `value` is missing at either end.
    pub fn growth_per_request(&self, samples: &[Sample], value: impl Fn(&Sample) -> Option<u64>) -> Option<f64> {
        let requests = self.requests(samples);
        if requests == 0 {
            return None;
        }
        Some(self.growth(samples, value)? as f64 / requests as f64)
    }

    /// How much `value` grew over the window; `None` when it is missing at either end.
    pub fn growth(&self, samples: &[Sample], value: impl Fn(&Sample) -> Option<u64>) -> Option<i64> {
        Some(value(&samples[self.last])? as i64 - value(&samples[self.first])? as i64)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use leaklab_probe::{Connections, ProcessSnapshot};

    pub(crate) fn sample(elapsed_s: f64, phase: Phase, requests: u64, rss_bytes: u64) -> Sample {
        Sample {
            elapsed_s,
            unix_time_s: None,
            phase,
            requests_ok: requests,
            requests_failed: 0,
            client: ProcessSnapshot {
                pid: Some(1),
                rss_bytes,
                rss_parts: None,
                fds: Some(3),
                threads: Some(1),
                jemalloc: None,
                connections: Some(Connections::default()),
                streams: None,
                runtime_heap: None,
            },
            server: None,
            network: Default::default(),
            settled: false,
            server_metrics: Default::default(),
            counters: Default::default(),
            segments: Default::default(),
        }
    }

    #[test]
    fn growth_is_measured_after_warmup_until_load_ends() {
        // Warm-up grows 1 MB with 100 requests (not counted); the load grows
        // 60 KB per request for 1,000 requests; the cool-down frees memory.
        let samples = vec![
            sample(0.0, Phase::Baseline, 0, 10_000_000),
            sample(0.1, Phase::Warmup, 0, 10_000_000),
            sample(0.5, Phase::Load, 100, 11_000_000),
            sample(1.0, Phase::Load, 600, 41_000_000),
            sample(1.5, Phase::Cooldown, 1_100, 71_000_000),
            sample(2.0, Phase::Cooldown, 1_100, 20_000_000),
        ];
        let window = LoadWindow::find(&samples).unwrap();
        assert_eq!(window, LoadWindow { first: 2, last: 4 });
        assert_eq!(window.requests(&samples), 1_000);
        assert!((window.seconds(&samples) - 1.0).abs() < 1e-9);
        let growth = window.growth_per_request(&samples, |s| Some(s.client.rss_bytes)).unwrap();
        assert!((growth - 60_000.0).abs() < 1e-9, "{growth}");
    }

    #[test]
    fn growth_is_absent_without_a_loaded_window_or_requests() {
        let warmup_only = vec![sample(0.0, Phase::Baseline, 0, 1), sample(0.1, Phase::Warmup, 5, 2)];
        assert_eq!(LoadWindow::find(&warmup_only), None);

        let no_requests = vec![sample(0.0, Phase::Load, 5, 1), sample(0.1, Phase::Cooldown, 5, 2)];
        let window = LoadWindow::find(&no_requests).unwrap();
        assert_eq!(window.growth_per_request(&no_requests, |s| Some(s.client.rss_bytes)), None);
    }

    #[test]
    fn an_interrupted_run_ends_its_window_at_the_last_sample() {
        let samples = vec![sample(0.0, Phase::Load, 0, 0), sample(0.1, Phase::Load, 10, 100)];
        assert_eq!(LoadWindow::find(&samples), Some(LoadWindow { first: 0, last: 1 }));
    }

    proptest::proptest! {
        /// A curve that grows by `slope` bytes per request, whatever its warm-up and
        /// cool-down do, gives back exactly `slope`.
        #[test]
        fn growth_recovers_any_linear_slope(
            slope in 0u64..200_000,
            base in 0u64..1_000_000_000,
            warmup_requests in 0u64..1_000,
            steps in proptest::collection::vec(1u64..5_000, 1..20),
            cooldown_drop in 0u64..1_000_000,
        ) {
            let mut samples = vec![sample(0.0, Phase::Warmup, 0, base)];
            let mut requests = warmup_requests;
            samples.push(sample(0.1, Phase::Load, requests, base + 7_777));
            for (i, step) in steps.iter().enumerate() {
                requests += step;
                samples.push(sample(0.2 + i as f64 * 0.1, Phase::Load, requests, base + 7_777 + (requests - warmup_requests) * slope));
            }
            let end = samples.last().unwrap().client.rss_bytes;
            samples.last_mut().unwrap().phase = Phase::Cooldown;
            samples.push(sample(99.0, Phase::Cooldown, requests, end.saturating_sub(cooldown_drop)));
            let window = LoadWindow::find(&samples).unwrap();
            let growth = window.growth_per_request(&samples, |s| Some(s.client.rss_bytes)).unwrap();
            proptest::prop_assert!((growth - slope as f64).abs() < 1e-6, "growth {} slope {}", growth, slope);
        }
    }
}
