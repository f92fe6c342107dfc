//! The load generator's integration tests, one binary (each file of `tests/` would be its own binary
//! linking the whole of leaklab: one links once). Most run the real `loadgen` and `leaklab-server`
//! binaries as a user does; the rest drive the engine in this process against a server on port 0.

#![allow(unreachable_pub)]

mod attack;
mod call_sites;
mod channelz;
mod ci_outputs;
mod cli;
mod common;
mod end_to_end;
mod go_profiles;
mod keepalive;
mod kubernetes;
mod merge;
mod own_service;
mod policies;
mod runtimes;
mod scenarios;
mod tls;
mod watch;
