//! leaklab's load generator and scenario runner.
//!
//! The pipeline of a run, one module per stage:
//! [`scenario`] (file → typed [`scenario::Plan`]) → [`target`] (the server)
//! → [`load`] (requests through a channel policy) while [`sample`] records
//! both processes → [`stats`] (pure) → [`verdict`] (rules) → [`report`]
//! (summary, plots, markdown). [`compare`] runs several scenarios and sets them
//! side by side.
//! [`run::execute`] strings them together.

pub mod compare;
pub mod demo;
pub mod fault;
pub mod load;
pub mod report;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod verdict;
pub mod watch;
