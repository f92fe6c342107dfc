//! Pure statistics: spans, slopes with their intervals, a sign test, a
//! two-regressor fit. No I/O, no clocks, nothing from the rest of leaklab:
//! every function here is a function of its arguments.

pub mod fit;
pub mod trend;

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
}
