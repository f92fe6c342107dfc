//! Scenario files, and their validation into a typed plan before anything runs.
//!
//! A scenario is a TOML file in `scenarios/`; every table and key is
//! documented in `docs/scenarios.md` and described for editors by
//! `schema/scenario.schema.json`, both generated from [`file`]. Unknown keys
//! are errors, so a typo cannot silently fall back to a default, and every
//! error names the file, the line and the key (or the flag that set it).
//!
//! - [`file`]: the file as written, one type per table;
//! - [`options`]: the options a command line overrides, declared once;
//! - [`validate`]: the file's values checked and turned into a [`Plan`] or a [`ForeignPlan`];
//! - [`plan`]: what a run needs to know, decided before it starts;
//! - [`catalog`]: where scenarios are found by name;
//! - [`reference`]: the schema and the reference page.

mod attack;
mod catalog;
mod client;
mod document;
pub mod file;
mod foreign;
pub mod options;
mod plan;
pub mod reference;
mod validate;
pub mod values;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

pub use attack::{
    AttackError, AttackKind, AttackSpec, DEFAULT_MAX_STREAMS, MAX_CONNECTIONS, MAX_DURATION as MAX_ATTACK_DURATION,
    MAX_EXPOSURE, MAX_STREAMS,
};
pub use catalog::{Catalog, Entry};
pub use client::{ClientKeepalive, ClientPlan, ClientTlsPlan, Identity, TlsOrigins, Transport, Trust};
pub use document::Document;
pub use foreign::{ForeignClient, ForeignPlan, RuntimeChoice, WatchSpec};
pub use leaklab_verdict::{Expectation, MIN_ROUNDS, VerdictPlan};
pub use options::{Kind, OPTIONS, Opt, OptionSpec, Overrides, Value};
pub use plan::{
    Blackhole, CallData, CallOrigins, CallSpec, CapsPlan, ChannelPolicy, FaultPlan, LoadPlan, Origin, Plan,
    QUICK_COOLDOWN, QUICK_MEASURED_REQUESTS, RequestShape, SamplingPlan, Segment, ServerPlan, ServerTlsPlan,
};
pub use values::{PolicyName, channelz_address, parse_duration, parse_size, pprof_url};

/// Defaults for keys a scenario file leaves out. Small on purpose: a run
/// with no settings must be safe on a laptop.
pub mod defaults {
    use std::time::Duration;
    pub const CONCURRENCY: i64 = 4;
    pub const REQUESTS: i64 = 2_000;
    pub const DURATION: Duration = Duration::from_secs(60);
    pub const WARMUP_REQUESTS: i64 = 200;
    pub const PAYLOAD_BYTES: i64 = 64;
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
    pub const COOLDOWN: Duration = Duration::from_secs(3);
    pub const ROUNDS: i64 = 8;
    pub const CAP_CLIENT_RSS: u64 = 2 << 30;
    pub const CAP_SERVER_RSS: u64 = 2 << 30;
    pub const CAP_FDS: i64 = 10_000;
    pub const TOLERANCE_BYTES_PER_REQUEST: f64 = 256.0;
    /// A foreign client judged against time: 64 KiB a second is a runtime breathing, not a leak.
    pub const TOLERANCE_BYTES_PER_SECOND: f64 = 65_536.0;
    /// A foreign process that has just started is still loading its code and warming its heap.
    pub const FOREIGN_WARMUP: Duration = Duration::from_secs(1);
}

/// A scenario that cannot become a plan, with the file and the key to blame.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}{}: {key}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { path: PathBuf, line: Option<usize>, key: String, reason: String },
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax { path: PathBuf, line: Option<usize>, reason: String },
    #[error("no scenario named {name:?} in {}; available: {}", dir.display(), available.join(", "))]
    UnknownName { name: String, dir: PathBuf, available: Vec<String> },
}

/// What a run will do: drive the built-in client, or watch a foreign one (an
/// external scenario's command, or `loadgen watch`'s process).
#[derive(Debug, Clone)]
pub enum RunPlan {
    Builtin(Box<Plan>),
    Foreign(Box<ForeignPlan>),
}

impl RunPlan {
    /// The run directory's name under `reports/`.
    pub fn name(&self) -> &str {
        match self {
            RunPlan::Builtin(plan) => &plan.name,
            RunPlan::Foreign(plan) => &plan.name,
        }
    }

    pub fn description(&self) -> &str {
        match self {
            RunPlan::Builtin(plan) => &plan.description,
            RunPlan::Foreign(plan) => &plan.description,
        }
    }

    /// The built-in plan, or `None` for a foreign client.
    pub fn builtin(self) -> Option<Plan> {
        match self {
            RunPlan::Builtin(plan) => Some(*plan),
            RunPlan::Foreign(_) => None,
        }
    }
}

/// Reads and validates the scenario at `path`; `overrides` apply over its values.
pub fn load(path: &Path, overrides: &Overrides) -> Result<RunPlan, ScenarioError> {
    let text = fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    parse(path, &text, overrides)
}

/// Validates scenario text; `path` names it in errors and gives the scenario its name (the file's stem).
pub fn parse(path: &Path, text: &str, overrides: &Overrides) -> Result<RunPlan, ScenarioError> {
    let document = Document::parse(path, text)?;
    let validator = validate::Validator::new(path, &document, overrides);
    if document.table.contains_key("external") {
        if !overrides.is_empty() {
            return Err(validator.invalid(
                "external",
                "an external client runs its own load: load, sampling and caps flags do not apply",
            ));
        }
        let file: file::ScenarioFile = document.read(path, document.table.clone())?;
        return validator.external(file).map(|plan| RunPlan::Foreign(Box::new(plan)));
    }
    let mut table = document.table.clone();
    overrides.apply(&mut table);
    let file: file::ScenarioFile = document.read(path, table)?;
    let mut plan = validator.plan(file)?;
    plan.origin = Origin { text: text.to_owned(), overrides: overrides.clone(), segment: None };
    Ok(RunPlan::Builtin(Box::new(plan)))
}
