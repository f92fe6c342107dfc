//! Ordinary least squares with two regressors: `y = c + a·x + b·z`.
//!
//! The centred sums of squares and products give the 2×2 normal equations
//! (the intercept drops out), solved by Cramer's rule. The split is only
//! meaningful when `x` and `z` are not collinear; above a correlation of
//! 0.99 in absolute value the fit is refused.

/// The slopes `(a, b)` of `y = c + a·x + b·z` over `points` (`[x, z, y]`),
/// or `None` with fewer than `min_points` points or when `x` and `z` are
/// (nearly) collinear.
pub fn two_slopes(points: &[[f64; 3]], min_points: usize) -> Option<(f64, f64)> {
    if points.len() < min_points.max(3) {
        return None;
    }
    let n = points.len() as f64;
    let mean = |i: usize| points.iter().map(|p| p[i]).sum::<f64>() / n;
    let (mx, mz, my) = (mean(0), mean(1), mean(2));
    let sum = |f: &dyn Fn(&[f64; 3]) -> f64| points.iter().map(f).sum::<f64>();
    let sxx = sum(&|p| (p[0] - mx).powi(2));
    let szz = sum(&|p| (p[1] - mz).powi(2));
    let sxz = sum(&|p| (p[0] - mx) * (p[1] - mz));
    let sxy = sum(&|p| (p[0] - mx) * (p[2] - my));
    let szy = sum(&|p| (p[1] - mz) * (p[2] - my));
    let determinant = sxx * szz - sxz * sxz;
    // 1 − r² below 0.0199 is |r| above 0.99.
    if sxx <= 0.0 || szz <= 0.0 || determinant <= 0.0199 * sxx * szz {
        return None;
    }
    Some(((sxy * szz - szy * sxz) / determinant, (szy * sxx - sxy * sxz) / determinant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_slopes_are_recovered_when_the_regressors_part() {
        // 3 KB per x for ever, 57 KB per z while z counts; z levels off at 800 while x climbs.
        let points: Vec<[f64; 3]> = (0..60u64)
            .map(|i| {
                let x = i * 100;
                let z = x.min(800) + (i % 3) * 7;
                let noise = (i * 7919 % 13) * 1000;
                [x as f64, z as f64, (5_000_000 + x * 3_000 + z * 57_000 + noise) as f64]
            })
            .collect();
        let (a, b) = two_slopes(&points, 8).expect("identifiable");
        assert!((a - 3_000.0).abs() < 150.0, "{a}");
        assert!((b - 57_000.0).abs() < 2_000.0, "{b}");
    }

    #[test]
    fn collinear_regressors_cannot_be_split() {
        let points: Vec<[f64; 3]> = (0..60).map(|i| [i as f64, i as f64, i as f64 * 60_000.0]).collect();
        assert_eq!(two_slopes(&points, 8), None);
        assert_eq!(two_slopes(&points[..5], 8), None, "too few points");
    }
}
