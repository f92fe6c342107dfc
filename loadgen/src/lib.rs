//! leaklab's load generator and scenario runner.
//!
//! One pipeline for every kind of run, one module per stage, each taking the
//! previous stage's type and nothing else:
//! [`scenario`] (file → typed [`scenario::RunPlan`]) → [`call`] (a `[call]`'s
//! method made callable, before anything runs) → [`run`] (the server,
//! then the built-in client's [`load`] or a foreign process) while [`sample`]
//! records both processes → [`verdict`] (one judge, on [`stats`]) →
//! [`summary`] (one record for every kind of run) → [`report`] (exporters).
//! [`compare`] and [`demo`] run several scenarios, each in its own process,
//! and set them side by side; [`exit`] maps how a run ended to its exit code.
//!
//! Lower modules never import higher ones: `scenario`, `stats`, `halt` and
//! `heap` import no other module of the crate (a test checks the graph).

pub mod attack;
pub mod baseline;
pub mod call;
pub mod compare;
pub mod demo;
pub mod exit;
pub mod fault;
pub mod halt;
pub mod heap;
pub mod http;
pub mod load;
pub mod merge;
pub mod report;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod stats;
pub mod summary;
pub mod target;
pub mod tls;
pub mod verdict;

#[cfg(test)]
mod modules;
