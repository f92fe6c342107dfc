//! The TCP connector every leaklab channel dials through: plain TCP with
//! `TCP_NODELAY` (what tonic's own connector does), plus a count of the
//! connections that are open, kept exact by [`leaklab_probe::Counted`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use leaklab_probe::{ConnectionCounter, Counted};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;

/// A `tower::Service<Uri>` that opens counted TCP connections.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    counter: ConnectionCounter,
}

impl CountingConnector {
    pub fn new(counter: ConnectionCounter) -> Self {
        Self { counter }
    }
}

impl tower::Service<Uri> for CountingConnector {
    type Response = TokioIo<Counted<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let counter = self.counter.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(80);
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(counter.track(stream)))
        })
    }
}
