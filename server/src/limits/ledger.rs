//! The server-wide account of streams that hold memory while they wait, and the limits that end them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::executor::AbortSwitch;
use super::service::{Limited, Ticket};
use super::{Limits, RESPONSE_CHUNK, STREAM_BYTES};
use crate::lifecycle::{Lifecycle, LimitHit};

/// How often timed-out streams are looked for: often enough to act within an eighth of the
/// shortest time limit; never, without one.
fn sweep_period(limits: &Limits) -> Option<Duration> {
    let shortest = [limits.request_timeout, limits.unread_response_timeout].into_iter().flatten().min()?;
    Some((shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250)))
}

/// A stream counted against `max_concurrent_streams_total` until its task ends.
#[derive(Debug)]
pub(super) struct StreamSlot {
    ledger: Arc<Ledger>,
    connection: Arc<Offender>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.ledger.streams.fetch_sub(1, Ordering::Relaxed);
        if self.connection.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.ledger.busy_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Room reserved for a response being built; it returns to the budget when the response is handed
/// to hyper (and counted as waiting) or dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    ledger: Arc<Ledger>,
    bytes: AtomicU64,
}

impl Reservation {
    /// Its bytes, now counted elsewhere.
    pub(super) fn claim(&self) -> u64 {
        self.bytes.swap(0, Ordering::AcqRel)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let bytes = self.claim();
        if bytes > 0 {
            self.ledger.held().building -= bytes;
        }
    }
}

/// A response refused because responses being built fill `max_unread_response_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseRefused;

/// One connection as the limits see it: a connection whose stream a limit ended is closed, so that a
/// client cannot fill what was freed with the next stream, and the next.
#[derive(Debug, Default)]
pub(crate) struct Offender {
    id: u64,
    /// Its streams whose tasks have not ended.
    streams: AtomicUsize,
    offended: std::sync::atomic::AtomicBool,
    told: Notify,
}

impl Offender {
    /// Connection number `id`, with no streams yet.
    pub(super) fn new(id: u64) -> Self {
        Self { id, ..Self::default() }
    }

    fn offend(&self) {
        if !self.offended.swap(true, Ordering::AcqRel) {
            self.told.notify_one();
        }
    }

    pub(crate) fn is_offended(&self) -> bool {
        self.offended.load(Ordering::Acquire)
    }

    /// Resolves once a limit ended one of the connection's streams.
    pub(crate) async fn offended(&self) {
        self.told.notified().await;
    }
}

/// Which limit an entry of the ledger counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    Request,
    Response,
}

#[derive(Debug)]
struct Entry {
    connection: Arc<Offender>,
    since: Instant,
    bytes: u64,
    switch: Arc<AbortSwitch>,
    /// A waiting response's stream, whose bytes an end frees at once rather than when its task next runs.
    response: Option<std::sync::Weak<Ticket>>,
}

/// Streams holding memory while they wait, oldest first (ids only grow).
#[derive(Debug, Default)]
pub(super) struct Held {
    next_id: u64,
    requests: BTreeMap<u64, Entry>,
    responses: BTreeMap<u64, Entry>,
    response_bytes: u64,
    /// Response bytes handlers reserved and have not yet handed to hyper.
    pub(super) building: u64,
    /// Per connection: its waiting responses and their bytes.
    responses_by_connection: HashMap<u64, (BTreeSet<u64>, u64)>,
}

impl Held {
    /// The incomplete request that makes room: the oldest of the connection holding the most. An attacker
    /// holds many; a client whose one request is slow to arrive (a busy machine) keeps it, however many
    /// streams the attacker opens after it.
    fn most_held_request(&self) -> u64 {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for entry in self.requests.values() {
            *counts.entry(entry.connection.id).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        // In order of arrival, so among connections holding as many the oldest request goes.
        self.requests
            .iter()
            .find(|(_, entry)| counts[&entry.connection.id] == most)
            .map(|(id, _)| *id)
            .expect("a request is held")
    }

    fn remove(&mut self, waiting: Waiting, id: u64) -> Option<Entry> {
        match waiting {
            Waiting::Request => self.requests.remove(&id),
            Waiting::Response => {
                let entry = self.responses.remove(&id)?;
                self.response_bytes -= entry.bytes;
                if let Some((ids, bytes)) = self.responses_by_connection.get_mut(&entry.connection.id) {
                    ids.remove(&id);
                    *bytes -= entry.bytes;
                    if ids.is_empty() {
                        self.responses_by_connection.remove(&entry.connection.id);
                    }
                }
                Some(entry)
            }
        }
    }
}

/// The server-wide account of streams that wait, and the limits that end them.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(super) limits: Limits,
    pub(super) max_message_bytes: usize,
    pub(super) lifecycle: Lifecycle,
    held: Mutex<Held>,
    connections: AtomicU64,
    /// Stream tasks not yet ended, over all connections.
    pub(super) streams: AtomicUsize,
    /// Connections with at least one such stream.
    pub(super) busy_connections: AtomicUsize,
}

impl Ledger {
    pub(crate) fn new(limits: Limits, max_message_bytes: usize, lifecycle: Lifecycle) -> Arc<Self> {
        Arc::new(Self {
            limits,
            max_message_bytes,
            lifecycle,
            held: Mutex::default(),
            connections: AtomicU64::new(0),
            streams: AtomicUsize::new(0),
            busy_connections: AtomicUsize::new(0),
        })
    }

    /// A slot for a new stream of `connection`, or `None` (counted) when the server holds
    /// `max_concurrent_streams_total` streams and the connection its fair share of them.
    pub(super) fn admit(self: &Arc<Self>, connection: &Arc<Offender>) -> Option<StreamSlot> {
        if let Some(max) = self.limits.max_concurrent_streams_total {
            let max = max as usize;
            let fair_share = (max / self.busy_connections.load(Ordering::Relaxed).max(1)).max(1);
            // Read without a lock: racing admissions may pass the bound by a few streams.
            if self.streams.load(Ordering::Relaxed) >= max && connection.streams.load(Ordering::Relaxed) >= fair_share {
                self.lifecycle.limit_hit(LimitHit::StreamRefused);
                return None;
            }
        }
        self.streams.fetch_add(1, Ordering::Relaxed);
        if connection.streams.fetch_add(1, Ordering::Relaxed) == 0 {
            self.busy_connections.fetch_add(1, Ordering::Relaxed);
        }
        Some(StreamSlot { ledger: Arc::clone(self), connection: Arc::clone(connection) })
    }

    /// Room for a response of `bytes` before a handler builds it, counted with the waiting responses
    /// against `max_unread_response_bytes_total`: the oldest waiting responses are ended to make it.
    /// `Err` (counted) when responses being built fill the bound already. A response of one chunk
    /// or less needs no room: the stream bounds bound it.
    pub(crate) fn reserve_response(self: &Arc<Self>, bytes: u64) -> Result<Option<Reservation>, ResponseRefused> {
        let Some(max) = self.limits.max_unread_response_bytes_total else { return Ok(None) };
        if bytes <= RESPONSE_CHUNK as u64 {
            return Ok(None);
        }
        let mut ended = Vec::new();
        {
            let mut held = self.held();
            if held.building > 0 && held.building + bytes > max {
                drop(held);
                self.lifecycle.limit_hit(LimitHit::UnreadResponse);
                return Err(ResponseRefused);
            }
            while held.building + held.response_bytes + bytes > max {
                let Some(&oldest) = held.responses.keys().next() else { break };
                ended.extend(held.remove(Waiting::Response, oldest));
            }
            held.building += bytes;
        }
        for entry in ended {
            self.end(Waiting::Response, entry);
        }
        Ok(Some(Reservation { ledger: Arc::clone(self), bytes: AtomicU64::new(bytes) }))
    }

    pub(super) fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The service for one new connection.
    pub(crate) fn limit<S>(self: &Arc<Self>, inner: S) -> Limited<S> {
        let id = self.connections.fetch_add(1, Ordering::Relaxed);
        Limited { inner, ledger: Arc::clone(self), connection: Arc::new(Offender::new(id)) }
    }

    /// Ends the stream, counts it, and marks its connection for closing.
    fn end(&self, waiting: Waiting, entry: Entry) {
        entry.switch.pull();
        entry.connection.offend();
        if let Some(ticket) = entry.response.and_then(|ticket| ticket.upgrade()) {
            ticket.state().rest = Bytes::new();
            drop(ticket.response().take());
        }
        let hit = match waiting {
            Waiting::Request => LimitHit::IncompleteRequest,
            Waiting::Response => LimitHit::UnreadResponse,
        };
        self.lifecycle.limit_hit(hit);
    }

    pub(super) fn hold_request(&self, connection: &Arc<Offender>, switch: Arc<AbortSwitch>) -> u64 {
        let connection = Arc::clone(connection);
        let mut ended = Vec::new();
        let id = {
            let mut held = self.held();
            let id = held.next_id;
            held.next_id += 1;
            held.requests.insert(id, Entry { connection, since: Instant::now(), bytes: 0, switch, response: None });
            if let Some(max) = self.limits.max_incomplete_requests {
                while held.requests.len() > max as usize {
                    let evicted = held.most_held_request();
                    ended.push(held.requests.remove(&evicted).expect("a held request"));
                }
            }
            id
        };
        for entry in ended {
            self.end(Waiting::Request, entry);
        }
        id
    }

    pub(super) fn hold_response(
        &self,
        offender: &Arc<Offender>,
        switch: Arc<AbortSwitch>,
        bytes: u64,
        reservation: Option<Arc<Reservation>>,
        ticket: std::sync::Weak<Ticket>,
    ) -> u64 {
        let (connection, offender) = (offender.id, Arc::clone(offender));
        let bytes = bytes + STREAM_BYTES;
        let mut ended = Vec::new();
        let id = {
            let mut held = self.held();
            let held = &mut *held;
            // The bytes move from being built to waiting.
            held.building -= reservation.map_or(0, |reservation| reservation.claim());
            let id = held.next_id;
            held.next_id += 1;
            let entry = Entry { connection: offender, since: Instant::now(), bytes, switch, response: Some(ticket) };
            held.responses.insert(id, entry);
            held.response_bytes += bytes;
            let (ids, on_connection) = held.responses_by_connection.entry(connection).or_default();
            ids.insert(id);
            *on_connection += bytes;
            // The newest response is never the one ended: it has not waited yet.
            if let Some(max) = self.limits.max_unread_response_bytes {
                while held.responses_by_connection[&connection].1 > max {
                    let oldest = *held.responses_by_connection[&connection].0.first().expect("has this one");
                    if oldest == id {
                        break;
                    }
                    ended.extend(held.remove(Waiting::Response, oldest));
                }
            }
            if let Some(max) = self.limits.max_unread_response_bytes_total {
                while held.response_bytes + held.building > max {
                    let oldest = *held.responses.keys().next().expect("has this one");
                    if oldest == id {
                        break;
                    }
                    ended.extend(held.remove(Waiting::Response, oldest));
                }
            }
            id
        };
        for entry in ended {
            self.end(Waiting::Response, entry);
        }
        id
    }

    pub(super) fn release(&self, waiting: Waiting, id: u64) {
        self.held().remove(waiting, id);
    }

    /// Ends every stream that has waited longer than its time limit.
    pub(super) fn sweep(&self, now: Instant) {
        let mut ended = Vec::new();
        {
            let mut held = self.held();
            for (waiting, limit) in [
                (Waiting::Request, self.limits.request_timeout),
                (Waiting::Response, self.limits.unread_response_timeout),
            ] {
                let Some(limit) = limit else { continue };
                loop {
                    let queue = match waiting {
                        Waiting::Request => &held.requests,
                        Waiting::Response => &held.responses,
                    };
                    match queue.first_key_value() {
                        Some((&id, entry)) if now.duration_since(entry.since) >= limit => {
                            let entry = held.remove(waiting, id).expect("just seen");
                            ended.push((waiting, entry));
                        }
                        _ => break,
                    }
                }
            }
        }
        for (waiting, entry) in ended {
            self.end(waiting, entry);
        }
    }

    /// Looks for timed-out streams until the returned task is aborted; `None` when no time limit is on.
    pub(crate) fn sweeper(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let period = sweep_period(&self.limits)?;
        let ledger = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                ledger.sweep(Instant::now());
            }
        }))
    }

    /// Streams waiting now: (requests still arriving, responses waiting for window, their bytes).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> (usize, usize, u64) {
        let held = self.held();
        (held.requests.len(), held.responses.len(), held.response_bytes)
    }
}
