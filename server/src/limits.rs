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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use leaklab_wire::limits::Limits;

use crate::lifecycle::{Lifecycle, LimitHit};

/// What a waiting response's stream costs the server besides its bytes: h2's
/// stream state, hyper's task and tonic's call (about 14 KB measured).
pub const STREAM_BYTES: u64 = 16 << 10;

/// Response bytes handed to hyper at a time, so that what h2 buffers beyond
/// the peer's window stays small and the rest waits where the limits see it.
const RESPONSE_CHUNK: usize = 16 << 10;

/// How often timed-out streams are looked for: often enough to act within an eighth of the
/// shortest time limit; never, without one.
fn sweep_period(limits: &Limits) -> Option<Duration> {
    let shortest = [limits.request_timeout, limits.unread_response_timeout].into_iter().flatten().min()?;
    Some((shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250)))
}

/// A switch that ends one stream's task.
#[derive(Debug, Default)]
struct AbortSwitch(Notify);

impl AbortSwitch {
    fn pull(&self) {
        // A stored permit: the task ends even if it is not waiting on the switch right now.
        self.0.notify_one();
    }
}

tokio::task_local! {
    static STREAM_SWITCH: Arc<AbortSwitch>;
}

/// hyper's executor for one connection's stream tasks: tokio's, with an abort switch per task,
/// and a stream refused before it is spawned when the server-wide stream bound says so.
#[derive(Debug, Clone)]
pub(crate) struct StreamExecutor {
    ledger: Arc<Ledger>,
    connection: Arc<Offender>,
}

impl StreamExecutor {
    pub(crate) fn new<S>(service: &Limited<S>) -> Self {
        Self { ledger: Arc::clone(&service.ledger), connection: Arc::clone(&service.connection) }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        // Dropping the task unspawned resets the stream (RST_STREAM CANCEL).
        let Some(slot) = self.ledger.admit(&self.connection) else { return };
        let switch = Arc::new(AbortSwitch::default());
        let pulled = Arc::clone(&switch);
        tokio::spawn(STREAM_SWITCH.scope(switch, async move {
            let _slot = slot;
            tokio::select! {
                biased;
                () = pulled.0.notified() => {}
                _ = stream => {}
            }
        }));
    }
}

/// A stream counted against `max_concurrent_streams_total` until its task ends.
#[derive(Debug)]
struct StreamSlot {
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
    fn claim(&self) -> u64 {
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
enum Waiting {
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
struct Held {
    next_id: u64,
    requests: BTreeMap<u64, Entry>,
    responses: BTreeMap<u64, Entry>,
    response_bytes: u64,
    /// Response bytes handlers reserved and have not yet handed to hyper.
    building: u64,
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
    limits: Limits,
    max_message_bytes: usize,
    lifecycle: Lifecycle,
    held: Mutex<Held>,
    connections: AtomicU64,
    /// Stream tasks not yet ended, over all connections.
    streams: AtomicUsize,
    /// Connections with at least one such stream.
    busy_connections: AtomicUsize,
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
    fn admit(self: &Arc<Self>, connection: &Arc<Offender>) -> Option<StreamSlot> {
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

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The service for one new connection.
    pub(crate) fn limit<S>(self: &Arc<Self>, inner: S) -> Limited<S> {
        let id = self.connections.fetch_add(1, Ordering::Relaxed);
        Limited { inner, ledger: Arc::clone(self), connection: Arc::new(Offender { id, ..Offender::default() }) }
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

    fn hold_request(&self, connection: &Arc<Offender>, switch: Arc<AbortSwitch>) -> u64 {
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

    fn hold_response(
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

    fn release(&self, waiting: Waiting, id: u64) {
        self.held().remove(waiting, id);
    }

    /// Ends every stream that has waited longer than its time limit.
    fn sweep(&self, now: Instant) {
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
    fn waiting(&self) -> (usize, usize, u64) {
        let held = self.held();
        (held.requests.len(), held.responses.len(), held.response_bytes)
    }
}

/// One stream's entries in the ledger, shared by its request body, its call and its response body.
#[derive(Debug)]
struct Ticket {
    ledger: Arc<Ledger>,
    connection: Arc<Offender>,
    state: Mutex<TicketState>,
    /// The response body once the call answered; taken when a limit ends the stream, so that its
    /// bytes are freed at once rather than when the stream's task next runs.
    response: Mutex<Option<tonic::body::Body>>,
}

#[derive(Debug, Default)]
struct TicketState {
    switch: Option<Arc<AbortSwitch>>,
    request_arrived: bool,
    waiting_request: Option<u64>,
    waiting_response: Option<u64>,
    /// The part of the response not yet handed to hyper.
    rest: Bytes,
    /// The room its handler reserved for the response, until the response is handed on.
    reservation: Option<Arc<Reservation>>,
}

impl Ticket {
    fn state(&self) -> MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn response(&self) -> MutexGuard<'_, Option<tonic::body::Body>> {
        self.response.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The call started on its stream's task: its request waits until it has arrived in full.
    fn started(&self) {
        let Ok(switch) = STREAM_SWITCH.try_with(Arc::clone) else { return };
        let mut state = self.state();
        if !state.request_arrived {
            state.waiting_request = Some(self.ledger.hold_request(&self.connection, Arc::clone(&switch)));
        }
        state.switch = Some(switch);
    }

    /// The request's END_STREAM came, or the call answered without waiting for it.
    fn request_done(&self) {
        let mut state = self.state();
        state.request_arrived = true;
        if let Some(id) = state.waiting_request.take() {
            self.ledger.release(Waiting::Request, id);
        }
    }

    /// hyper took the bytes handed to it last: the response moves.
    fn response_moved(&self) {
        if let Some(id) = self.state().waiting_response.take() {
            self.ledger.release(Waiting::Response, id);
        }
    }

    /// The next chunk of `data` for hyper; it and the rest count as waiting until hyper asks again.
    fn hand_on(self: &Arc<Self>, mut data: Bytes) -> Bytes {
        let (switch, waiting, reservation) = {
            let mut state = self.state();
            if data.len() > RESPONSE_CHUNK {
                state.rest = data.split_off(RESPONSE_CHUNK);
                // A copy: a slice would keep the whole response's allocation alive in h2's send
                // buffer after a limit ended the stream and dropped the rest.
                data = Bytes::copy_from_slice(&data);
            }
            (state.switch.clone(), (data.len() + state.rest.len()) as u64, state.reservation.take())
        };
        // Not under this ticket's lock: making room may end another stream and lock its ticket.
        if let Some(switch) = switch {
            let id = self.ledger.hold_response(&self.connection, switch, waiting, reservation, Arc::downgrade(self));
            self.state().waiting_response = Some(id);
        }
        data
    }

    fn take_rest(&self) -> Bytes {
        std::mem::take(&mut self.state().rest)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = state.waiting_request.take() {
            self.ledger.release(Waiting::Request, id);
        }
        if let Some(id) = state.waiting_response.take() {
            self.ledger.release(Waiting::Response, id);
        }
    }
}

/// The service of one connection, under the server's limits.
#[derive(Debug, Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    ledger: Arc<Ledger>,
    connection: Arc<Offender>,
}

impl<S> Limited<S> {
    /// The connection, as the limits see it.
    pub(crate) fn offender(&self) -> Arc<Offender> {
        Arc::clone(&self.connection)
    }
}

impl<S, B> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<RequestBody<B>>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let ticket = Arc::new(Ticket {
            ledger: Arc::clone(&self.ledger),
            connection: Arc::clone(&self.connection),
            state: Mutex::default(),
            response: Mutex::default(),
        });
        let gather = self.ledger.limits.gather_messages.then_some(self.ledger.max_message_bytes);
        let request = request.map(|body| RequestBody::new(body, Arc::clone(&ticket), gather));
        let response = self.inner.call(request);
        Box::pin(async move {
            ticket.started();
            let response = response.await;
            ticket.request_done();
            let mut response = response?;
            ticket.state().reservation = response.extensions_mut().remove::<Arc<Reservation>>();
            Ok(response.map(|body| {
                *ticket.response() = Some(body);
                tonic::body::Body::new(ResponseBody { ticket })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A request body that tells its ticket when it has arrived in full, and that hands on whole
    /// gRPC messages when it gathers them.
    #[derive(Debug)]
    pub(crate) struct RequestBody<B> {
        #[pin]
        body: B,
        ticket: Arc<Ticket>,
        gathered: Option<Gathered>,
    }
}

/// Bytes of messages not yet whole, and what comes after them.
#[derive(Debug)]
struct Gathered {
    bytes: BytesMut,
    max_message_bytes: usize,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

/// gRPC's length-prefixed message framing: a flag byte and a 4-byte length.
const PREFIX: usize = 5;

impl Gathered {
    /// The longest prefix of `bytes` made of whole messages; all of it when a declared length is
    /// over the maximum (the decoder refuses it at once) or when the stream has ended.
    fn ready(&mut self) -> Option<Bytes> {
        let mut end = 0;
        while self.bytes.len() - end >= PREFIX {
            let declared = (&self.bytes[end + 1..end + PREFIX]).get_u32() as usize;
            if declared > self.max_message_bytes {
                end = self.bytes.len();
                break;
            }
            if self.bytes.len() - end - PREFIX < declared {
                break;
            }
            end += PREFIX + declared;
        }
        if self.ended {
            end = self.bytes.len();
        }
        (end > 0).then(|| self.bytes.split_to(end).freeze())
    }
}

impl<B> RequestBody<B> {
    fn new(body: B, ticket: Arc<Ticket>, gather: Option<usize>) -> Self {
        let gathered = gather.map(|max_message_bytes| Gathered {
            bytes: BytesMut::new(),
            max_message_bytes,
            trailers: None,
            ended: false,
        });
        Self { body, ticket, gathered }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut me = self.project();
        let Some(gathered) = me.gathered.as_mut() else {
            let frame = std::task::ready!(me.body.as_mut().poll_frame(cx));
            if frame.is_none() || me.body.is_end_stream() {
                me.ticket.request_done();
            }
            return Poll::Ready(frame);
        };
        loop {
            if let Some(messages) = gathered.ready() {
                return Poll::Ready(Some(Ok(Frame::data(messages))));
            }
            if gathered.ended {
                return Poll::Ready(gathered.trailers.take().map(|trailers| Ok(Frame::trailers(trailers))));
            }
            match std::task::ready!(me.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => gathered.bytes.extend_from_slice(&data),
                    Err(frame) => gathered.trailers = frame.into_trailers().ok(),
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => gathered.ended = true,
            }
            if me.body.is_end_stream() {
                gathered.ended = true;
            }
            if gathered.ended {
                me.ticket.request_done();
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.gathered {
            None => self.body.is_end_stream(),
            Some(gathered) => gathered.ended && gathered.bytes.is_empty() && gathered.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.gathered {
            None => self.body.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}

/// A response body handed to hyper in chunks of [`RESPONSE_CHUNK`], each counted as waiting until
/// hyper asks for the next: a response behind a closed window stops asking.
#[derive(Debug)]
struct ResponseBody {
    ticket: Arc<Ticket>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let ticket = &self.ticket;
        ticket.response_moved();
        let rest = ticket.take_rest();
        if !rest.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(ticket.hand_on(rest)))));
        }
        let frame = {
            let mut response = ticket.response();
            let Some(body) = response.as_mut() else {
                return Poll::Ready(Some(Err(tonic::Status::cancelled("a server limit ended the stream"))));
            };
            std::task::ready!(Pin::new(body).poll_frame(cx))
        };
        Poll::Ready(frame.map(|frame| {
            frame.map(|frame| match frame.into_data() {
                Ok(data) => Frame::data(ticket.hand_on(data)),
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.ticket.state().rest.is_empty() && self.ticket.response().as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.ticket.response().as_ref().map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint());
        let rest = self.ticket.state().rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(limits: Limits) -> Arc<Ledger> {
        Ledger::new(limits, 4 << 20, Lifecycle::default())
    }

    fn switch() -> Arc<AbortSwitch> {
        Arc::new(AbortSwitch::default())
    }

    async fn pulled(switch: &AbortSwitch) -> bool {
        tokio::time::timeout(Duration::from_millis(1), switch.0.notified()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_incomplete_request_makes_room() {
        let ledger = ledger(Limits { max_incomplete_requests: Some(2), ..Limits::default() });
        let switches: Vec<_> = (0..3).map(|_| switch()).collect();
        let connection = Arc::new(Offender::default());
        for switch in &switches {
            ledger.hold_request(&connection, Arc::clone(switch));
        }
        assert!(connection.offended.load(Ordering::Acquire), "its connection is to be closed");
        assert!(pulled(&switches[0]).await, "the oldest is ended");
        assert!(!pulled(&switches[1]).await && !pulled(&switches[2]).await);
        assert_eq!(ledger.waiting().0, 2);
        assert_eq!(ledger.lifecycle.counts().streams_reset_incomplete, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_s_one_request_outlasts_an_attacker_s_many() {
        let ledger = ledger(Limits { max_incomplete_requests: Some(3), ..Limits::default() });
        let slow_client = Arc::new(Offender { id: 1, ..Offender::default() });
        let attacker = Arc::new(Offender { id: 2, ..Offender::default() });
        let slow = switch();
        ledger.hold_request(&slow_client, Arc::clone(&slow));
        let attacks: Vec<_> = (0..10).map(|_| switch()).collect();
        for switch in &attacks {
            ledger.hold_request(&attacker, Arc::clone(switch));
        }
        assert!(!pulled(&slow).await, "the oldest request, but its connection holds only it");
        assert!(!slow_client.offended.load(Ordering::Acquire));
        assert!(attacker.offended.load(Ordering::Acquire));
        let mut ended = 0;
        for switch in &attacks {
            ended += usize::from(pulled(switch).await);
        }
        assert_eq!(ended, 8, "the attacker keeps its 2 newest beside the slow client's one");
        assert_eq!(ledger.waiting().0, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_not_arrived_in_time_is_ended_and_one_that_arrived_is_not() {
        let ledger = ledger(Limits { request_timeout: Some(Duration::from_secs(5)), ..Limits::default() });
        let (slow, quick) = (switch(), switch());
        let connection = Arc::new(Offender::default());
        ledger.hold_request(&connection, Arc::clone(&slow));
        let id = ledger.hold_request(&connection, Arc::clone(&quick));
        ledger.release(Waiting::Request, id);
        tokio::time::advance(Duration::from_millis(4_999)).await;
        ledger.sweep(Instant::now());
        assert!(!pulled(&slow).await, "not yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        ledger.sweep(Instant::now());
        assert!(pulled(&slow).await);
        assert!(!pulled(&quick).await, "it arrived");
        assert_eq!(ledger.lifecycle.counts().streams_reset_incomplete, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_responses_are_bounded_per_connection_and_in_total() {
        let ledger = ledger(Limits {
            max_unread_response_bytes: Some(3 * (STREAM_BYTES + 1_000)),
            max_unread_response_bytes_total: Some(4 * (STREAM_BYTES + 1_000)),
            ..Limits::default()
        });
        let (one, two) =
            (Arc::new(Offender { id: 1, ..Offender::default() }), Arc::new(Offender { id: 2, ..Offender::default() }));
        let first: Vec<_> = (0..4).map(|_| switch()).collect();
        for switch in &first {
            ledger.hold_response(&one, Arc::clone(switch), 1_000, None, std::sync::Weak::new());
        }
        assert!(pulled(&first[0]).await, "the connection's fourth ends its oldest");
        let other = switch();
        ledger.hold_response(&two, Arc::clone(&other), 1_000, None, std::sync::Weak::new());
        ledger.hold_response(&two, switch(), 1_000, None, std::sync::Weak::new());
        assert!(pulled(&first[1]).await, "the server's fifth ends the oldest anywhere");
        assert!(!pulled(&other).await);
        assert_eq!(ledger.waiting(), (0, 4, 4 * (STREAM_BYTES + 1_000)));
        assert_eq!(ledger.lifecycle.counts().responses_reset_unread, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_larger_than_the_bound_alone_still_goes() {
        let ledger = ledger(Limits { max_unread_response_bytes_total: Some(1_000), ..Limits::default() });
        let alone = switch();
        ledger.hold_response(&Arc::new(Offender::default()), Arc::clone(&alone), 4 << 20, None, std::sync::Weak::new());
        assert!(!pulled(&alone).await);
    }

    #[test]
    fn beyond_the_stream_bound_a_connection_gets_its_fair_share() {
        let ledger = ledger(Limits { max_concurrent_streams_total: Some(10), ..Limits::default() });
        let greedy = Arc::new(Offender { id: 1, ..Offender::default() });
        let slots: Vec<_> = (0..10).map(|_| ledger.admit(&greedy).expect("under the bound")).collect();
        assert!(ledger.admit(&greedy).is_none(), "at the bound, and all ten are its own");
        let modest = Arc::new(Offender { id: 2, ..Offender::default() });
        let modest_slots: Vec<_> =
            (0..5).map(|_| ledger.admit(&modest).expect("under its fair share of 10 / 2")).collect();
        assert!(ledger.admit(&modest).is_none(), "its share is spent too");
        assert_eq!(ledger.lifecycle.counts().streams_refused, 2);
        drop(modest_slots);
        drop(slots);
        assert_eq!(ledger.streams.load(Ordering::Relaxed), 0, "ended streams free their slots");
        assert_eq!(ledger.busy_connections.load(Ordering::Relaxed), 0);
        assert!(ledger.admit(&greedy).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_reserves_room_before_it_is_built() {
        let chunk = RESPONSE_CHUNK as u64;
        let ledger = ledger(Limits { max_unread_response_bytes_total: Some(10 * chunk), ..Limits::default() });
        assert!(ledger.reserve_response(chunk).unwrap().is_none(), "one chunk needs no room");
        let waiting = switch();
        ledger.hold_response(
            &Arc::new(Offender::default()),
            Arc::clone(&waiting),
            4 * chunk,
            None,
            std::sync::Weak::new(),
        );
        let building = ledger.reserve_response(6 * chunk).unwrap().expect("room");
        assert!(pulled(&waiting).await, "the waiting response made room for the one being built");
        assert!(ledger.reserve_response(6 * chunk).is_err(), "responses being built fill the bound");
        assert_eq!(ledger.lifecycle.counts().responses_reset_unread, 2, "the one ended and the one refused");
        drop(building);
        assert_eq!(ledger.held().building, 0, "a dropped reservation returns its room");
        let alone = ledger.reserve_response(20 * chunk).unwrap().expect("alone, even over the bound");
        let handed_on = switch();
        ledger.hold_response(
            &Arc::new(Offender::default()),
            handed_on,
            20 * chunk,
            Some(Arc::new(alone)),
            std::sync::Weak::new(),
        );
        assert_eq!(ledger.held().building, 0, "handed on, its bytes count as waiting instead");
    }

    #[test]
    fn whole_messages_are_handed_on_and_a_declared_length_reserves_nothing() {
        let mut gathered =
            Gathered { bytes: BytesMut::new(), max_message_bytes: 1 << 20, trailers: None, ended: false };
        let message = |len: u32| {
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend(std::iter::repeat_n(7u8, len as usize));
            bytes
        };
        let two = [message(3), message(10)].concat();
        gathered.bytes.extend_from_slice(&two[..12]);
        assert_eq!(gathered.ready().unwrap(), Bytes::copy_from_slice(&two[..8]), "the first, whole");
        assert!(gathered.ready().is_none(), "the second is not whole yet");
        assert!(gathered.bytes.capacity() < 1 << 10, "nothing reserved for what was only declared");
        gathered.bytes.extend_from_slice(&two[12..]);
        assert_eq!(gathered.ready().unwrap(), Bytes::copy_from_slice(&two[8..]));

        gathered.bytes.extend_from_slice(&message(2 << 20)[..9]);
        assert_eq!(gathered.ready().unwrap().len(), 9, "over the maximum: on at once, for the decoder to refuse");
        gathered.bytes.extend_from_slice(&message(100)[..30]);
        assert!(gathered.ready().is_none());
        gathered.ended = true;
        assert_eq!(gathered.ready().unwrap().len(), 30, "at the end, what there is");
    }
}
