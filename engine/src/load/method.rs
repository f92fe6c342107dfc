//! What each call of the load invokes: the toy server's `Echo/Unary`
//! (compiled, with the scenario's request shape) or any method a `[call]`
//! made callable. Both go through tonic's `Grpc` client on the policy's
//! channel, the way tonic's generated clients call.

use std::sync::Arc;

use leaklab_proto::{EchoRequest, EchoResponse, StreamRequest};
use tonic::client::{Grpc, GrpcService};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, Bytes, StdError};

use super::channels::CallError;
use super::errors;
use crate::call::{Call, DynamicCodec, StreamRead};
use crate::scenario::RequestShape;

/// The method every call of the load invokes.
#[derive(Debug, Clone)]
pub enum Method {
    /// `leaklab.v1.Echo/Unary`, with its generated types.
    Echo(RequestShape),
    /// A method known by its descriptors.
    Call(Arc<Call>),
}

impl Default for Method {
    /// An empty `Echo`, answered at once.
    fn default() -> Self {
        Method::Echo(RequestShape::default())
    }
}

impl Method {
    /// Call number `index` on `grpc`; a server stream is read as the call says.
    pub(super) async fn invoke<T>(&self, grpc: &mut Grpc<T>, index: u64) -> Result<(), CallError>
    where
        T: GrpcService<tonic::body::Body>,
        T::Error: Into<StdError>,
        T::ResponseBody: Body<Data = Bytes> + Send + 'static,
        <T::ResponseBody as Body>::Error: Into<StdError> + Send,
    {
        // As the generated clients do: tonic reports a transport that is not ready as "unknown".
        grpc.ready()
            .await
            .map_err(|e| failed(tonic::Status::unknown(format!("Service was not ready: {}", e.into()))))?;
        match self {
            Method::Echo(shape) => {
                let request = EchoRequest {
                    payload: shape.payload.clone(),
                    response_bytes: shape.response_bytes,
                    delay_ms: if index.is_multiple_of(shape.delay_every) { shape.delay_ms } else { 0 },
                };
                let codec = tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default();
                let path = PathAndQuery::from_static("/leaklab.v1.Echo/Unary");
                grpc.unary(tonic::Request::new(request), path, codec).await.map(drop).map_err(failed)
            }
            Method::Call(call) => {
                let mut request = tonic::Request::new(call.request(index));
                *request.metadata_mut() = call.metadata.clone();
                let codec = DynamicCodec::new(call.output.clone());
                let Some(read) = call.streaming else {
                    return grpc.unary(request, call.path.clone(), codec).await.map(drop).map_err(failed);
                };
                let mut stream =
                    grpc.server_streaming(request, call.path.clone(), codec).await.map_err(failed)?.into_inner();
                let limit = match read {
                    StreamRead::ToTheEnd => u64::MAX,
                    StreamRead::First(messages) => messages.get(),
                };
                let mut received = 0;
                while received < limit {
                    match stream.message().await.map_err(failed)? {
                        Some(()) => received += 1,
                        None => break,
                    }
                }
                // Dropping the stream before its end cancels it (RST_STREAM CANCEL), as a client that
                // has read enough does.
                Ok(())
            }
        }
    }
}

impl Method {
    /// Opens the toy server's `Echo/ServerStream`, endless at one message per `interval` with this
    /// method's payload, and reads its first message: the stream is then open on both ends.
    pub(super) async fn open_stream<T>(
        &self,
        grpc: &mut Grpc<T>,
        interval: std::time::Duration,
    ) -> Result<tonic::Streaming<EchoResponse>, CallError>
    where
        T: GrpcService<tonic::body::Body>,
        T::Error: Into<StdError>,
        T::ResponseBody: Body<Data = Bytes> + Send + 'static,
        <T::ResponseBody as Body>::Error: Into<StdError> + Send,
    {
        let Method::Echo(shape) = self else {
            return Err(CallError("a stream policy calls Echo/ServerStream, not a [call]".to_owned()));
        };
        grpc.ready()
            .await
            .map_err(|e| failed(tonic::Status::unknown(format!("Service was not ready: {}", e.into()))))?;
        let request = StreamRequest {
            payload: shape.payload.clone(),
            messages: u32::MAX,
            interval_ms: interval.as_millis().try_into().unwrap_or(u32::MAX),
        };
        let codec = tonic_prost::ProstCodec::<StreamRequest, EchoResponse>::default();
        let path = PathAndQuery::from_static("/leaklab.v1.Echo/ServerStream");
        let mut stream =
            grpc.server_streaming(tonic::Request::new(request), path, codec).await.map_err(failed)?.into_inner();
        match stream.message().await.map_err(failed)? {
            Some(_) => Ok(stream),
            None => Err(failed(tonic::Status::data_loss("the stream ended before its first message"))),
        }
    }
}

fn failed(status: tonic::Status) -> CallError {
    CallError(errors::status_kind(&status))
}
