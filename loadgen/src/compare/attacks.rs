//! `attacks.png` and `attacks.svg`: each attack scenario beside its
//! `-unlimited` twin, the server's allocated memory over time, one row per
//! attack on one scale, so that what the limits bound shows against what
//! climbs without them.

use std::io::Write;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{CompareReport, RunRecord};
use crate::report::Exporter;
use crate::report::plot::{house_chart, png, svg};
use crate::report::units::mib;
use leaklab_engine::sample::Sample;

const WIDTH: u32 = 1200;
const ROW_HEIGHT: u32 = 300;
const HEADER: u32 = 70;
const LIMITED: RGBColor = RGBColor(44, 160, 44);
const UNLIMITED: RGBColor = RGBColor(214, 39, 40);

/// The suffix of a scenario that runs its twin's attack with the relevant limit off.
pub(crate) const UNLIMITED_SUFFIX: &str = "-unlimited";

/// An attack scenario and its `-unlimited` twin, both run in this comparison.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub limited: &'a RunRecord,
    pub unlimited: &'a RunRecord,
}

/// Every scenario that ran an attack and whose `-unlimited` twin (the same attack, its limits off) ran too,
/// in the order they ran.
pub(crate) fn pairs(runs: &[RunRecord]) -> Vec<Pair<'_>> {
    runs.iter()
        .filter(|run| run.attack.is_some() && !run.scenario.ends_with(UNLIMITED_SUFFIX))
        .filter_map(|limited| {
            let twin = format!("{}{UNLIMITED_SUFFIX}", limited.scenario);
            let unlimited = runs.iter().find(|run| run.scenario == twin && run.attack == limited.attack)?;
            Some(Pair { limited, unlimited })
        })
        .collect()
}

/// `attacks.svg`.
#[derive(Debug)]
pub(crate) struct AttacksSvg;
/// `attacks.png`.
#[derive(Debug)]
pub(crate) struct AttacksPng;

fn height(report: &CompareReport) -> u32 {
    HEADER + ROW_HEIGHT * pairs(&report.runs).len().max(1) as u32
}

impl Exporter<CompareReport> for AttacksSvg {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        svg((WIDTH, height(report)), out, &|root| draw(root, &pairs(&report.runs)).map_err(|e| e.to_string()))
    }
}

impl Exporter<CompareReport> for AttacksPng {
    fn export(&self, report: &CompareReport, out: &mut dyn Write) -> anyhow::Result<()> {
        png((WIDTH, height(report)), out, &|root| draw(root, &pairs(&report.runs)).map_err(|e| e.to_string()))
    }
}

/// The server's allocated memory in MiB, against seconds since the run started.
fn server_allocated(samples: &[Sample]) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| Some((s.elapsed_s, mib(s.server.as_ref()?.process.jemalloc?.allocated_bytes))))
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pairs: &[Pair<'_>],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    header.draw(&Text::new(
        "leaklab attacks: the server with its limits (left) and without (right)",
        (20, 10),
        ("sans-serif", 26).into_font().color(&BLACK),
    ))?;
    header.draw(&Text::new(
        "The server's allocated memory while an abusive client runs beside a well-behaved one. Each row on one scale.",
        (20, 40),
        ("sans-serif", 15).into_font().color(&RGBColor(60, 60, 60)),
    ))?;
    let rows = body.split_evenly((pairs.len().max(1), 1));
    for (row, pair) in rows.iter().zip(pairs) {
        let lines = [(pair.limited, LIMITED), (pair.unlimited, UNLIMITED)]
            .map(|(run, color)| (&run.scenario, server_allocated(&run.samples), color));
        let x_max = lines.iter().flat_map(|(_, points, _)| points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
        let y_max = lines.iter().flat_map(|(_, points, _)| points.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.1;
        // Whole MiB on the axis, unless the row stays within a few.
        let decimals = if y_max < 10.0 { 1 } else { 0 };
        let (left, right) = row.split_horizontally(WIDTH / 2);
        for ((name, points, color), area) in lines.iter().zip([left, right]) {
            let peak = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
            let title = format!("{name}: peak {peak:.0} MiB");
            let mut chart = house_chart(&area, &title, (x_max, "seconds since start", 0), (y_max, "MiB", decimals))?;
            chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(3)))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::attack::AttackKind;
    use leaklab_engine::fixtures::scripted_report;
    use leaklab_verdict::VerdictKind;

    fn run(scenario: &str, attack: Option<AttackKind>) -> RunRecord {
        let (_, samples) = scripted_report();
        RunRecord {
            scenario: scenario.to_owned(),
            attack,
            client: VerdictKind::NoLeak,
            client_bytes_per_request: Some(12.0),
            samples,
        }
    }

    #[test]
    fn an_attack_is_paired_with_its_unlimited_twin_only_when_both_ran() {
        let slow = Some(AttackKind::SlowStreams);
        let runs = vec![
            run("reused", None),
            run("attack-a", slow),
            run("attack-a-unlimited", slow),
            run("attack-b", Some(AttackKind::RapidReset)),
        ];
        let found = pairs(&runs);
        assert_eq!(found.len(), 1, "attack-b has no twin, reused is no attack");
        assert_eq!((&*found[0].limited.scenario, &*found[0].unlimited.scenario), ("attack-a", "attack-a-unlimited"));
        let comparison = crate::compare::Comparison {
            started_at: String::new(),
            quick: true,
            baseline: None,
            rows: vec![],
            failures: vec![],
            outcome: leaklab_verdict::Outcome::Met,
            interrupted: false,
            skipped: vec![],
        };
        let report = CompareReport { comparison, runs, summaries: Vec::new(), dir: std::path::PathBuf::new() };
        let mut png = Vec::new();
        AttacksPng.export(&report, &mut png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn pairs_come_from_the_runs_attacks_not_from_their_names_or_legends() {
        let slow = Some(AttackKind::SlowStreams);
        // A scenario named like an attack that ran none is no attack; one that ran an attack is, whatever its name.
        let runs = vec![
            run("attack-lookalike", None),
            run("attack-lookalike-unlimited", None),
            run("flood", slow),
            run("flood-unlimited", slow),
        ];
        let found = pairs(&runs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((&*found[0].limited.scenario, &*found[0].unlimited.scenario), ("flood", "flood-unlimited"));
        // A twin that ran another attack is not this one's twin.
        let runs = vec![run("flood", slow), run("flood-unlimited", Some(AttackKind::RapidReset))];
        assert!(pairs(&runs).is_empty());
    }
}
