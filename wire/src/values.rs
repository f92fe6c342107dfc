//! The values the scenario files and both command lines write besides numbers: durations (`"500ms"`)
//! and sizes (`"300MiB"`), each read with an error that says what was expected.

use std::time::Duration;

/// A duration like `"500ms"`, `"30s"` or `"1m 30s"` (humantime's syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like \"500ms\" or \"30s\" ({error})"))
}

/// How a duration is written back: `1s 500ms`, which [`parse_duration`] reads.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A size like `300MiB`, `2GiB`, `512KB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => return Err(format!("{text:?}: unknown unit {other:?}; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 && value * multiplier < u64::MAX as f64 => {
            Ok((value * multiplier) as u64)
        }
        _ => Err(format!("{text:?} is not a size like \"300MiB\" or \"2GiB\"")),
    }
}
