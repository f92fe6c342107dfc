//! `run.json`: what a run was started with.
//!
//! A run writes it before its load and appends to `samples.jsonl` as it
//! samples, so even after `kill -9` the directory holds enough to rebuild
//! `summary.json`, the plots and `report.md` (`RunDir::rebuild`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Limits, TargetInfo};
use crate::scenario::{self, Overrides, RunPlan, Segment, WatchSpec};

/// `run.json`: what a run was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// What it ran.
    pub plan: RecordedPlan,
    /// The server that was loaded.
    pub target: TargetInfo,
    /// Limits of the machine each process ran under.
    pub limits: Limits,
}

/// What a run ran, in a form that gives its plan back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedPlan {
    /// A scenario file's text when the run started (the file may have changed since), and the overrides over it.
    Scenario {
        scenario_file: PathBuf,
        scenario_text: String,
        overrides: Overrides,
        /// `--segment`: the share of the scenario the run was (`2/3`); absent for the whole.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        segment: Option<Segment>,
    },
    /// `loadgen watch`'s options.
    Watch(WatchSpec),
}

impl RecordedPlan {
    /// The record of `plan`.
    pub fn of(plan: &RunPlan) -> RecordedPlan {
        match plan {
            RunPlan::Builtin(plan) => RecordedPlan::Scenario {
                scenario_file: plan.source.clone(),
                scenario_text: plan.origin.text.clone(),
                overrides: plan.origin.overrides.clone(),
                segment: plan.origin.segment,
            },
            RunPlan::Foreign(plan) => match &plan.source {
                Some(source) => RecordedPlan::Scenario {
                    scenario_file: source.clone(),
                    scenario_text: std::fs::read_to_string(source).unwrap_or_default(),
                    overrides: Overrides::default(),
                    segment: None,
                },
                None => RecordedPlan::Watch(WatchSpec::of(plan)),
            },
        }
    }

    /// The plan again.
    pub fn plan(&self) -> anyhow::Result<RunPlan> {
        Ok(match self {
            RecordedPlan::Scenario { scenario_file, scenario_text, overrides, segment } => {
                let plan = scenario::parse(scenario_file, scenario_text, overrides)?;
                match (segment, plan) {
                    (Some(segment), RunPlan::Builtin(plan)) => {
                        RunPlan::Builtin(Box::new(plan.segment(*segment).map_err(|error| anyhow::anyhow!(error))?))
                    }
                    (_, plan) => plan,
                }
            }
            RecordedPlan::Watch(watch) => RunPlan::Foreign(Box::new(watch.plan())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{ForeignClient, RuntimeChoice};

    #[test]
    fn a_watch_comes_back_from_its_record_with_every_option() {
        let watch = WatchSpec {
            name: "watch-client".to_owned(),
            description: "`client`, watched from outside".to_owned(),
            client: ForeignClient::Command(vec!["client".to_owned(), "{pprof_addr}".to_owned()]),
            duration_s: 20.0,
            interval_ms: 100,
            warmup_s: 1.5,
            warmup_requests: 3_000,
            tolerance_bytes_per_request: 2048.0,
            tolerance_bytes_per_second: 65_536.0,
            pprof: Some("http://{pprof_addr}/debug/pprof".to_owned()),
            own_code: vec!["main.".to_owned()],
            call_sites: true,
            channelz: Some("{channelz_addr}".to_owned()),
            runtime: RuntimeChoice::Jvm,
        };
        let recorded = RecordedPlan::of(&RunPlan::Foreign(Box::new(watch.plan())));
        let text = serde_json::to_string(&recorded).unwrap();
        let back: RecordedPlan = serde_json::from_str(&text).unwrap();
        let RunPlan::Foreign(plan) = back.plan().unwrap() else { panic!("a watch is a foreign plan") };
        assert_eq!(*plan, watch.plan(), "{text}");
        assert_eq!(plan.warmup_requests, 3_000, "the warm-up in requests is kept");
    }

    #[test]
    fn a_watch_recorded_before_its_options_were_kept_still_reads() {
        let text = r#"{"kind":"watch","name":"watch-sleep","description":"d","client":{"pid":7},
            "duration_s":5.0,"interval_ms":100,"warmup_s":1.0,
            "tolerance_bytes_per_request":2048.0,"tolerance_bytes_per_second":65536.0}"#;
        let RecordedPlan::Watch(watch) = serde_json::from_str(text).unwrap() else { panic!("a watch") };
        assert_eq!((watch.warmup_requests, watch.pprof, watch.own_code.len(), watch.call_sites), (0, None, 0, false));
    }
}
