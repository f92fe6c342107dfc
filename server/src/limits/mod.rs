//! Bounds on what any one client can make the server hold.
//!
//! Without them, three kinds of client grow the server's memory as far as
//! they care to push it: streams whose request never arrives in full,
//! responses nobody reads (a closed flow-control window pins each one in the
//! server), and messages whose length prefix declares megabytes that never
//! come (tonic reserves the declared length at once). Each limit here ends
//! the streams that hold memory past it, oldest first, and counts them.
//!
//! A stream is ended by dropping the task hyper spawned for it: h2 then resets
//! the stream (RST_STREAM CANCEL) and frees what it buffered for it.
//! [`StreamExecutor`] spawns those tasks with an abort switch each, and the
//! service finds its stream's switch in a task-local.
//!
//! The parts: `ledger` keeps the account of streams that wait and ends them;
//! `executor` spawns each stream's task with its switch; `service` is one
//! connection's service, whose `Ticket` follows a stream through the ledger;
//! `bodies` are the request and response bodies that tell the ticket how far
//! the stream has got.

mod bodies;
mod executor;
mod ledger;
mod service;

pub(crate) use executor::StreamExecutor;
pub use leaklab_wire::limits::Limits;
pub(crate) use ledger::{Ledger, Offender};

/// What a waiting response's stream costs the server besides its bytes: h2's
/// stream state, hyper's task and tonic's call (about 14 KB measured).
pub const STREAM_BYTES: u64 = 16 << 10;

/// Response bytes handed to hyper at a time, so that what h2 buffers beyond
/// the peer's window stays small and the rest waits where the limits see it.
const RESPONSE_CHUNK: usize = 16 << 10;

#[cfg(test)]
mod tests;
