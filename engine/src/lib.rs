//! leaklab's engine: a scenario becomes a typed plan, the plan runs, and the
//! run comes back as results. It writes what a run records as it goes (its
//! directory, `run.json`, `samples.jsonl`, the processes' logs) and nothing
//! else: the command line hands the results to the exporters.
//!
//! One pipeline for every kind of run, one module per stage, each taking the
//! previous stage's type and nothing else:
//! [`scenario`] (file → typed [`scenario::RunPlan`]) → [`call`] (a `[call]`'s
//! method made callable, before anything runs) → [`run`] (the server,
//! then the built-in client's [`load`] or a foreign process) while [`sample`]
//! records both processes → the verdicts (`leaklab-verdict`) →
//! [`summary`] (one record for every kind of run), returned with the samples.
//!
//! Lower modules never import higher ones: `scenario`, `latency`, `halt`,
//! `heap` and `http` import no other module of the crate (a test checks the graph).

pub mod attack;
pub mod call;
pub mod fault;
pub mod fixtures;
pub mod halt;
pub mod heap;
pub mod http;
pub mod latency;
pub mod load;
pub mod run;
pub mod run_dir;
pub mod sample;
pub mod scenario;
pub mod summary;
pub mod target;
pub mod tls;
