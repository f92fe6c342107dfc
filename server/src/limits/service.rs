//! The service of one connection under the limits, and the ticket each of its streams holds in the ledger.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;

use super::RESPONSE_CHUNK;
use super::bodies::{RequestBody, ResponseBody};
use super::executor::{AbortSwitch, STREAM_SWITCH};
use super::ledger::{Ledger, Offender, Reservation, Waiting};

/// One stream's entries in the ledger, shared by its request body, its call and its response body.
#[derive(Debug)]
pub(super) struct Ticket {
    ledger: Arc<Ledger>,
    connection: Arc<Offender>,
    state: Mutex<TicketState>,
    /// The response body once the call answered; taken when a limit ends the stream, so that its
    /// bytes are freed at once rather than when the stream's task next runs.
    response: Mutex<Option<tonic::body::Body>>,
}

#[derive(Debug, Default)]
pub(super) struct TicketState {
    switch: Option<Arc<AbortSwitch>>,
    request_arrived: bool,
    waiting_request: Option<u64>,
    waiting_response: Option<u64>,
    /// The part of the response not yet handed to hyper.
    pub(super) rest: Bytes,
    /// The room its handler reserved for the response, until the response is handed on.
    reservation: Option<Arc<Reservation>>,
}

impl Ticket {
    pub(super) fn state(&self) -> MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn response(&self) -> MutexGuard<'_, Option<tonic::body::Body>> {
        self.response.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The call started on its stream's task: its request waits until it has arrived in full.
    pub(super) fn started(&self) {
        let Ok(switch) = STREAM_SWITCH.try_with(Arc::clone) else { return };
        let mut state = self.state();
        if !state.request_arrived {
            state.waiting_request = Some(self.ledger.hold_request(&self.connection, Arc::clone(&switch)));
        }
        state.switch = Some(switch);
    }

    /// The request's END_STREAM came, or the call answered without waiting for it.
    pub(super) fn request_done(&self) {
        let mut state = self.state();
        state.request_arrived = true;
        if let Some(id) = state.waiting_request.take() {
            self.ledger.release(Waiting::Request, id);
        }
    }

    /// hyper took the bytes handed to it last: the response moves.
    pub(super) fn response_moved(&self) {
        if let Some(id) = self.state().waiting_response.take() {
            self.ledger.release(Waiting::Response, id);
        }
    }

    /// The next chunk of `data` for hyper; it and the rest count as waiting until hyper asks again.
    pub(super) fn hand_on(self: &Arc<Self>, mut data: Bytes) -> Bytes {
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

    pub(super) fn take_rest(&self) -> Bytes {
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
    pub(super) inner: S,
    pub(super) ledger: Arc<Ledger>,
    pub(super) connection: Arc<Offender>,
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
