//! What the comparison's figures draw of each built-in run, typed as its
//! summary has it: a plot builds its legend from these values where it draws
//! it, and the attacks are paired by their scenarios' names, so nothing is
//! ever read back out of a label.

use leaklab_engine::attack::AttackKind;
use leaklab_engine::sample::Sample;
use leaklab_engine::summary::{RunKind, Summary};
use leaklab_verdict::VerdictKind;

/// One built-in run of a comparison, for its figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunRecord {
    /// Its scenario's name.
    pub scenario: String,
    /// The kind of attack the scenario ran beside its load; `None` for a scenario without an `[attack]`.
    pub attack: Option<AttackKind>,
    /// The client's verdict.
    pub client: VerdictKind,
    /// The client's slope in bytes per request, as its verdict has it.
    pub client_bytes_per_request: Option<f64>,
    /// Every sample of the run.
    pub samples: Vec<Sample>,
}

impl RunRecord {
    /// The run `summary` sums up, with its `samples`; `None` for an external client's, whose memory is
    /// not the allocated bytes the figures draw.
    pub(crate) fn of(summary: &Summary, samples: Vec<Sample>) -> Option<RunRecord> {
        (summary.kind == RunKind::Builtin).then(|| RunRecord {
            scenario: summary.scenario.clone(),
            attack: summary.attack.as_ref().and_then(|attack| attack.kind),
            client: summary.verdict.client.kind,
            client_bytes_per_request: summary.verdict.client.slope_bytes_per_request,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_engine::fixtures::scripted_report;

    #[test]
    fn a_record_has_its_run_s_scenario_attack_and_client_verdict_and_an_external_run_none() {
        let (mut summary, samples) = scripted_report();
        summary.attack =
            Some(leaklab_engine::attack::AttackReport { kind: Some(AttackKind::SlowStreams), ..Default::default() });
        let record = RunRecord::of(&summary, samples.clone()).expect("a built-in run");
        assert_eq!(record.scenario, "leak");
        assert_eq!(record.attack, Some(AttackKind::SlowStreams));
        assert_eq!(record.client, VerdictKind::Leak);
        assert!(record.client_bytes_per_request.is_some_and(|slope| (slope - 60_000.0).abs() < 1.0));
        assert_eq!(record.samples.len(), samples.len());
        summary.kind = RunKind::External;
        assert_eq!(RunRecord::of(&summary, samples), None);
    }
}
