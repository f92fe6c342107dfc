//! The request and response bodies of a stream under the limits: they tell its ticket how far the
//! stream has got, gather whole request messages, and hand the response to hyper a chunk at a time.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::service::Ticket;

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
pub(super) struct Gathered {
    pub(super) bytes: BytesMut,
    pub(super) max_message_bytes: usize,
    pub(super) trailers: Option<http::HeaderMap>,
    pub(super) ended: bool,
}

/// gRPC's length-prefixed message framing: a flag byte and a 4-byte length.
const PREFIX: usize = 5;

impl Gathered {
    /// The longest prefix of `bytes` made of whole messages; all of it when a declared length is
    /// over the maximum (the decoder refuses it at once) or when the stream has ended.
    pub(super) fn ready(&mut self) -> Option<Bytes> {
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
    pub(super) fn new(body: B, ticket: Arc<Ticket>, gather: Option<usize>) -> Self {
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
pub(super) struct ResponseBody {
    pub(super) ticket: Arc<Ticket>,
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
