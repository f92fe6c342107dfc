//! How bytes read in every output: the console, the progress line, the plot
//! and `report.md` share these, so the same figure is written the same way.
//!
//! Memory of a process is in MiB (1,048,576 bytes), like the plot's axis;
//! growth per request is in decimal KB (1,000 bytes), like "~60 KB per channel".

/// Bytes in a MiB.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// `bytes` in MiB, for axes and arithmetic.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// `bytes` as `12.3 MiB`.
pub(crate) fn format_mib(bytes: u64) -> String {
    format!("{:.1} MiB", mib(bytes))
}

/// Bytes as a reader says them: `58.9 KB`, `312.4 MB` (decimal units).
pub(crate) fn human_bytes(bytes: f64) -> String {
    let magnitude = bytes.abs();
    let (value, unit) = if magnitude >= 1e9 {
        (bytes / 1e9, "GB")
    } else if magnitude >= 1e6 {
        (bytes / 1e6, "MB")
    } else if magnitude >= 1e3 {
        (bytes / 1e3, "KB")
    } else {
        return format!("{bytes:.0} B");
    };
    format!("{value:.1} {unit}")
}

/// Bytes with their sign always written: `+60.8 KB`, `-47 B`.
pub(crate) fn signed_bytes(bytes: f64) -> String {
    // Less than half a byte either way prints as +0 B, never -0 B.
    let bytes = if bytes.abs() < 0.5 { 0.0 } else { bytes };
    format!("{}{}", if bytes >= 0.0 { "+" } else { "" }, human_bytes(bytes))
}

/// Signed growth per request, `+60.8 KB/request`, or `n/a` when it was not measured.
pub(crate) fn bytes_per_request(bytes: Option<f64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |bytes| format!("{}/request", signed_bytes(bytes)))
}

/// `p50 312 µs, p99 780 µs, max 2100 µs`, or a word when no latency was recorded.
pub(crate) fn latency(latency: &leaklab_engine::latency::Latency) -> String {
    if latency.count == 0 {
        return "latency not recorded".to_owned();
    }
    format!("latency {}", percentiles(latency))
}

fn percentiles(latency: &leaklab_engine::latency::Latency) -> String {
    format!("p50 {} µs, p99 {} µs, max {} µs", latency.p50, latency.p99, latency.max)
}

/// Both latencies of an open-loop run side by side, or the one a closed loop has.
pub(crate) fn latencies(
    sent: &leaklab_engine::latency::Latency,
    from_intended: Option<&leaklab_engine::latency::Latency>,
) -> String {
    match from_intended {
        Some(intended) if intended.count > 0 => {
            format!("{} (from intended send times: {})", latency(sent), percentiles(intended))
        }
        _ => latency(sent),
    }
}

/// A slope and its interval, in bytes per request: `+60.8 KB (+60.7 KB to +60.9 KB)`, or `n/a`.
pub(crate) fn slope_with_interval(slope: Option<f64>, low: Option<f64>, high: Option<f64>) -> String {
    match (slope, low, high) {
        (Some(slope), Some(low), Some(high)) => {
            format!("{} ({} to {})", signed_bytes(slope), signed_bytes(low), signed_bytes(high))
        }
        _ => "n/a".to_owned(),
    }
}

/// ✔ for a met expectation, ✖ for a contradicted one, ? when the verdict is
/// inconclusive, blank without an expectation.
pub(crate) fn expectation_mark(kind: leaklab_verdict::VerdictKind, met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "✔",
        Some(false) if kind == leaklab_verdict::VerdictKind::Inconclusive => "?",
        Some(false) => "✖",
        None => "",
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_a_person_says_them() {
        assert_eq!(human_bytes(58_900.0), "58.9 KB");
        assert_eq!(human_bytes(-1_500_000.0), "-1.5 MB");
        assert_eq!(human_bytes(312.0), "312 B");
    }

    #[test]
    fn growth_carries_its_sign() {
        assert_eq!(bytes_per_request(Some(60_800.0)), "+60.8 KB/request");
        assert_eq!(bytes_per_request(Some(-47.0)), "-47 B/request");
        assert_eq!(bytes_per_request(Some(-0.4)), "+0 B/request", "no negative zero");
        assert_eq!(bytes_per_request(None), "n/a");
    }

    #[test]
    fn an_undecided_verdict_is_marked_as_such_not_as_contradicted() {
        use leaklab_verdict::VerdictKind;
        assert_eq!(expectation_mark(VerdictKind::Leak, Some(true)), "✔");
        assert_eq!(expectation_mark(VerdictKind::NoLeak, Some(false)), "✖");
        assert_eq!(expectation_mark(VerdictKind::Inconclusive, Some(false)), "?");
        assert_eq!(expectation_mark(VerdictKind::Leak, None), "");
    }

    #[test]
    fn a_slope_reads_with_its_interval() {
        assert_eq!(
            slope_with_interval(Some(60_800.0), Some(60_700.0), Some(60_900.0)),
            "+60.8 KB (+60.7 KB to +60.9 KB)"
        );
        assert_eq!(slope_with_interval(Some(-37.0), Some(-63.0), Some(4.0)), "-37 B (-63 B to +4 B)");
        assert_eq!(slope_with_interval(Some(1.0), None, Some(2.0)), "n/a");
    }

    #[test]
    fn mib_is_binary() {
        assert_eq!(format_mib(10_000_000), "9.5 MiB");
        assert_eq!(mib(1 << 20), 1.0);
    }
}
