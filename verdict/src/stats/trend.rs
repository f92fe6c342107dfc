//! Trend of a quantity against requests: the Theil–Sen slope with its
//! Kendall-based confidence interval, and a sign test on step-to-step changes.
//!
//! # Theil–Sen slope and interval
//!
//! For points `(x_i, y_i)`, `i = 1..n`, with distinct `x` (cumulative requests
//! at each checkpoint), the pairwise slopes are
//! `S_ij = (y_j − y_i) / (x_j − x_i)` for `i < j`: `N = n(n−1)/2` of them,
//! sorted `S_(1) ≤ … ≤ S_(N)`. The estimate is their median (Theil 1950,
//! Sen 1968). It ignores up to ~29% of wild points, so one noisy checkpoint
//! (a burst of allocator caching) cannot fake or hide a leak.
//!
//! The `1 − α` interval inverts Kendall's rank test (Sen 1968; Hollander &
//! Wolfe, *Nonparametric Statistical Methods*, §9.4), with Kendall's `S`
//! approximated as normal:
//!
//! ```text
//! C  = z(1 − α/2) · sqrt(n(n − 1)(2n + 5) / 18)
//! M1 = (N − C) / 2        M2 = (N + C) / 2
//! lower = S_(round(M1))   upper = S_(round(M2) + 1)      (1-based, clamped to 1..N)
//! ```
//!
//! It assumes the deviations from the line are independent and identically
//! distributed, not normal. With `n = 7` (six rounds) the interval runs from
//! the 4th to the 18th of 21 slopes.
//!
//! # Sign test
//!
//! For step-to-step changes of a count (open fds, open connections), the
//! one-sided sign test asks whether increases outnumber decreases more than
//! chance would: with `k` increases among `m` non-zero changes, the p-value is
//! `P(X ≥ k)` for `X ~ Binomial(m, 1/2)`. Six increases out of six give
//! `1/64 ≈ 0.016`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Two-sided confidence of every interval here.
pub const CONFIDENCE: f64 = 0.95;
/// `z(1 − α/2)` for [`CONFIDENCE`].
const Z_95: f64 = 1.959_963_984_540_054;

/// A slope in units of `y` per unit of `x`, with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Trend {
    /// Theil–Sen estimate: the median pairwise slope.
    pub slope: f64,
    /// Lower bound of the 95% interval.
    pub ci_low: f64,
    /// Upper bound of the 95% interval.
    pub ci_high: f64,
    /// Points the estimate used.
    pub points: u32,
}

/// The Theil–Sen slope of `points` and its 95% interval; `None` with fewer
/// than two points or when every `x` is the same.
///
/// Points sharing an `x` contribute no slope between them.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<Trend> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(xi, yi)) in points.iter().enumerate() {
        for &(xj, yj) in &points[i + 1..] {
            if xj != xi {
                slopes.push((yj - yi) / (xj - xi));
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let count = slopes.len();
    let slope = if count % 2 == 1 { slopes[count / 2] } else { (slopes[count / 2 - 1] + slopes[count / 2]) / 2.0 };
    let n = points.len() as f64;
    let c = Z_95 * (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0).sqrt();
    // 1-based ranks from the formula, turned into clamped 0-based indices.
    let lower_rank = ((count as f64 - c) / 2.0).round().max(1.0) as usize;
    let upper_rank = (((count as f64 + c) / 2.0).round() as usize + 1).min(count);
    Some(Trend {
        slope,
        ci_low: slopes[lower_rank.min(count) - 1],
        ci_high: slopes[upper_rank.max(1) - 1],
        points: points.len() as u32,
    })
}

/// The one-sided sign test on step-to-step changes of a count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignTest {
    /// Steps where the count went up.
    pub increases: u32,
    /// Steps where it went down.
    pub decreases: u32,
    /// Steps where it stayed the same (not counted by the test).
    pub unchanged: u32,
    /// Chance of at least this many increases if ups and downs were equally likely.
    pub p_value: f64,
}

impl SignTest {
    /// The test on consecutive changes of `values`.
    pub fn of(values: &[u64]) -> SignTest {
        let (mut increases, mut decreases, mut unchanged) = (0u32, 0u32, 0u32);
        for pair in values.windows(2) {
            match pair[1].cmp(&pair[0]) {
                std::cmp::Ordering::Greater => increases += 1,
                std::cmp::Ordering::Less => decreases += 1,
                std::cmp::Ordering::Equal => unchanged += 1,
            }
        }
        SignTest { increases, decreases, unchanged, p_value: binomial_upper_tail(increases + decreases, increases) }
    }

    /// Whether the count grows more often than chance allows at [`CONFIDENCE`].
    pub fn grows(&self) -> bool {
        self.p_value < 1.0 - CONFIDENCE
    }
}

/// `P(X ≥ k)` for `X ~ Binomial(m, 1/2)`.
fn binomial_upper_tail(m: u32, k: u32) -> f64 {
    if k == 0 {
        return 1.0;
    }
    // Sum C(m, i) / 2^m for i in k..=m, with the binomial built up as a float.
    let mut coefficient = 1.0_f64; // C(m, 0)
    let mut tail = 0.0;
    for i in 0..=m {
        if i >= k {
            tail += coefficient;
        }
        coefficient = coefficient * f64::from(m - i) / f64::from(i + 1);
    }
    tail / 2f64.powi(m as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(slope: f64, noise: &[f64]) -> Vec<(f64, f64)> {
        noise.iter().enumerate().map(|(i, e)| (i as f64 * 500.0, 1e7 + slope * i as f64 * 500.0 + e)).collect()
    }

    #[test]
    fn an_exact_line_gives_its_slope_and_a_point_interval() {
        let trend = theil_sen(&line(60_000.0, &[0.0; 7])).unwrap();
        assert_eq!(trend.slope, 60_000.0);
        assert_eq!((trend.ci_low, trend.ci_high), (60_000.0, 60_000.0));
        assert_eq!(trend.points, 7);
    }

    #[test]
    fn the_interval_uses_the_ranks_of_the_formula() {
        // n = 7 has 21 slopes; C = 1.96 · sqrt(7·6·19/18) = 13.05, so ranks 4 and 18.
        // y = x² at x = 0..6 gives slopes i + j for every pair i < j.
        let points: Vec<(f64, f64)> = (0..7).map(|x| (f64::from(x), f64::from(x * x))).collect();
        let mut slopes: Vec<f64> = (0..7).flat_map(|i| (i + 1..7).map(move |j| f64::from(i + j))).collect();
        slopes.sort_by(f64::total_cmp);
        let trend = theil_sen(&points).unwrap();
        assert_eq!(trend.slope, slopes[10]);
        assert_eq!(trend.ci_low, slopes[3]);
        assert_eq!(trend.ci_high, slopes[17]);
    }

    #[test]
    fn one_wild_point_moves_the_estimate_little() {
        let mut noise = [0.0; 9];
        noise[4] = 5e6; // one checkpoint caught 5 MB of transient caching
        let trend = theil_sen(&line(10.0, &noise)).unwrap();
        assert!((trend.slope - 10.0).abs() < 1.0, "{trend:?}");
    }

    #[test]
    fn too_few_points_have_no_trend() {
        assert_eq!(theil_sen(&[]), None);
        assert_eq!(theil_sen(&[(1.0, 2.0)]), None);
        assert_eq!(theil_sen(&[(1.0, 2.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn sign_test_counts_and_tail() {
        let rising = SignTest::of(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!((rising.increases, rising.decreases, rising.unchanged), (6, 0, 0));
        assert!((rising.p_value - 1.0 / 64.0).abs() < 1e-12);
        assert!(rising.grows());
        let flat = SignTest::of(&[5, 5, 6, 5, 5, 5, 5]);
        assert_eq!((flat.increases, flat.decreases, flat.unchanged), (1, 1, 4));
        assert!((flat.p_value - 0.75).abs() < 1e-12);
        assert!(!flat.grows());
        assert_eq!(SignTest::of(&[3]).p_value, 1.0);
    }

    #[test]
    fn binomial_tail_matches_hand_counts() {
        assert!((binomial_upper_tail(3, 2) - 0.5).abs() < 1e-12); // (3 + 1) / 8
        assert!((binomial_upper_tail(10, 9) - 11.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(4, 0), 1.0);
    }

    /// A small deterministic generator, so the coverage trial is reproducible.
    fn gaussian_noise(seed: u64, count: usize, sd: f64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407) | 1;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        // Box–Muller.
        (0..count)
            .map(|_| sd * (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over 200 seeded series of 9 checkpoints (8 rounds) with Gaussian noise,
        /// the 95% interval covers the true slope in the large majority of trials.
        #[test]
        fn the_interval_covers_the_true_slope(
            slope in -1_000.0f64..100_000.0,
            noise_sd in 1_000.0f64..200_000.0,
            seed in any::<u64>(),
        ) {
            let trials = 200;
            let covered = (0..trials)
                .filter(|trial| {
                    let noise = gaussian_noise(seed ^ (*trial as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), 9, noise_sd);
                    let trend = theil_sen(&line(slope, &noise)).unwrap();
                    trend.ci_low <= slope && slope <= trend.ci_high
                })
                .count();
            prop_assert!(covered >= trials * 85 / 100, "covered {covered} of {trials}");
        }

        /// The estimate lies inside its interval, and the interval is ordered.
        #[test]
        fn estimate_is_inside_its_interval(ys in proptest::collection::vec(-1e9f64..1e9, 2..20)) {
            let points: Vec<(f64, f64)> = ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect();
            let trend = theil_sen(&points).unwrap();
            prop_assert!(trend.ci_low <= trend.slope && trend.slope <= trend.ci_high, "{trend:?}");
        }
    }
}
