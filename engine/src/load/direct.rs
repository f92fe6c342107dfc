//! The `h2` transport: tonic's generated client and codec straight on one
//! `h2` connection, without the stack a tonic `Channel` puts between them.
//!
//! A `Channel` call goes from the caller's task through tower's `Buffer`
//! worker, hyper's dispatch task and a task hyper spawns for each request's
//! body, before h2's connection task writes it. Here the caller's task hands
//! the request to h2 itself. On one thread that is about a third less CPU
//! per call (BENCHMARKS.md). It is for pushing a server hard; a client the way
//! Rust code is written is the `channel` transport.

use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tonic::codegen::StdError;
use tonic::codegen::http::{self, Uri, uri};
use tower::Service;

use super::connector::CountingConnector;

/// A tower service sending each request on its own stream of one HTTP/2 connection.
#[derive(Debug)]
pub struct H2Transport {
    send: h2::client::SendRequest<Bytes>,
    authority: uri::Authority,
    /// Why the connection cannot take another stream, kept for the call: tonic reports an error of
    /// `poll_ready` as "Service was not ready", without the HTTP/2 reason.
    not_ready: Option<h2::Error>,
}

impl Clone for H2Transport {
    fn clone(&self) -> Self {
        Self { send: self.send.clone(), authority: self.authority.clone(), not_ready: None }
    }
}

/// HTTP/2 windows as hyper's client sets them, which tonic's `Channel` keeps, so both transports
/// send the same WINDOW_UPDATEs.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

impl H2Transport {
    /// Dials `authority` through `connector` (counted, GOAWAYs observed) and does the HTTP/2 handshake.
    /// The connection is driven by a task of its own on the current runtime until it closes.
    pub async fn connect(connector: &CountingConnector, authority: uri::Authority) -> Result<Self, ConnectError> {
        let uri = origin(authority.clone(), uri::PathAndQuery::from_static("/"))
            .expect("a scheme, an authority and a path make a URI");
        let io = connector.clone().call(uri).await.map_err(ConnectError::Dial)?.into_inner();
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        // Its end is seen by the calls: they fail with the connection's error.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { send, authority, not_ready: None })
    }

    /// Opens the request's stream and sends its body.
    fn send(&mut self, mut parts: http::request::Parts, data: Bytes) -> Result<h2::client::ResponseFuture, StdError> {
        if let Some(error) = self.not_ready.take() {
            return Err(Box::new(Unready(error)));
        }
        // tonic's client leaves scheme and authority to the `Channel`; h2 needs them for its pseudo-headers.
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| uri::PathAndQuery::from_static("/"));
        parts.uri = origin(self.authority.clone(), path)?;
        let (response, mut stream) = self.send.send_request(http::Request::from_parts(parts, ()), data.is_empty())?;
        if !data.is_empty() {
            stream.send_data(data, true)?;
        }
        Ok(response)
    }
}

/// `http://{authority}{path}`.
fn origin(authority: uri::Authority, path: uri::PathAndQuery) -> Result<Uri, http::Error> {
    Uri::builder().scheme(uri::Scheme::HTTP).authority(authority).path_and_query(path).build()
}

/// The connection's error, as the call that found it not ready reports it.
#[derive(Debug, thiserror::Error)]
#[error("the connection cannot take another call: {0}")]
struct Unready(#[source] h2::Error);

/// A request whose body was not ready at once: a stream, which the load generator never sends.
#[derive(Debug, thiserror::Error)]
#[error("the h2 transport carries unary calls, whose one message is ready when the call starts")]
struct NotUnary;

/// Why dialling an [`H2Transport`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("dialling the server: {0}")]
    Dial(#[source] std::io::Error),
    #[error("the HTTP/2 handshake: {0}")]
    Handshake(#[source] h2::Error),
}

impl tower::Service<http::Request<tonic::body::Body>> for H2Transport {
    type Response = http::Response<ResponseBody>;
    // Boxed as they come (`h2::Error`, `tonic::Status`): tonic finds either in a boxed error and
    // turns it into the call's status, as it does for a `Channel`.
    type Error = StdError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, StdError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        if let Err(error) = ready!(self.send.poll_ready(cx)) {
            self.not_ready = Some(error);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let mut collect = body.collect();
        // A unary request's body is one encoded message, ready at once: it is sent here, on the handle
        // `poll_ready` saw ready, as one DATA frame that ends the stream.
        if let Poll::Ready(collected) = Pin::new(&mut collect).poll(&mut Context::from_waker(Waker::noop())) {
            let response = collected.map_err(StdError::from).and_then(|body| self.send(parts, body.to_bytes()));
            return Box::pin(async move { Ok(response?.await?.map(ResponseBody::new)) });
        }
        Box::pin(async { Err(Box::new(NotUnary) as StdError) })
    }
}

/// A response's DATA frames, then its trailers.
#[derive(Debug)]
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl ResponseBody {
    fn new(recv: h2::RecvStream) -> Self {
        Self { recv, data_done: false }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Hand the window back as soon as the bytes are ours.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_probe::ConnectionCounter;
    use leaklab_server::{Server, ServerConfig};

    /// A request body that never has a frame ready.
    struct NeverReady;

    impl Body for NeverReady {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_request_body_that_is_not_ready_at_once_is_refused_and_says_why() {
        let server =
            Server::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), ServerConfig::default()).await.unwrap();
        let connector = CountingConnector::new(ConnectionCounter::new());
        let mut transport = H2Transport::connect(&connector, server.addr.to_string().parse().unwrap()).await.unwrap();
        std::future::poll_fn(|cx| transport.poll_ready(cx)).await.unwrap();
        let error = transport.call(http::Request::new(tonic::body::Body::new(NeverReady))).await.unwrap_err();
        assert!(error.to_string().contains("carries unary calls"), "{error}");
        server.shutdown(std::time::Duration::from_secs(1)).await;
    }
}
