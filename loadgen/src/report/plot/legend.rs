//! The legend, in its own strip beside each panel's chart.

use plotters::coord::Shift;
use plotters::prelude::*;

use leaklab_engine::summary::{EventKind, TimelineEvent};

use super::lines::Line;
use super::panels::event_color;

/// The legend, in its own strip beside the chart so it never hides a line.
pub(super) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
    events: &[TimelineEvent],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = ("sans-serif", 15).into_font().color(&RGBColor(40, 40, 40));
    let mut y = 52;
    for line in lines {
        let style = line.style();
        if line.dashed {
            area.draw(&PathElement::new(vec![(6, y), (14, y)], style))?;
            area.draw(&PathElement::new(vec![(19, y), (27, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(6, y), (27, y)], style))?;
        }
        let label = if line.points.is_empty() { format!("{} (n/a)", line.label) } else { line.label.to_string() };
        // A metric's name and its peak take a line each: a legend strip is narrow.
        for (row, text) in label.split('\n').enumerate() {
            area.draw(&Text::new(text.to_owned(), (36, y - 9 + 17 * row as i32), font.clone()))?;
        }
        y += 26 + 17 * label.matches('\n').count() as i32;
    }
    // One entry per kind of event, with how many there were.
    let mut totals: std::collections::BTreeMap<EventKind, u64> = std::collections::BTreeMap::new();
    for event in events {
        *totals.entry(event.kind).or_default() += event.count;
    }
    for (kind, total) in totals {
        if kind == EventKind::Fault {
            area.draw(&PathElement::new(vec![(6, y), (27, y)], event_color(kind).stroke_width(2)))?;
        } else {
            area.draw(&TriangleMarker::new((16, y), 5, event_color(kind).filled()))?;
        }
        area.draw(&Text::new(format!("{} ({total})", kind.name()), (36, y - 9), font.clone()))?;
        y += 26;
    }
    Ok(())
}
