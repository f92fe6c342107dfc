//! Generated types and stubs for the `leaklab.v1` package.
//!
//! The contract lives in `proto/leaklab/v1/echo.proto`; it is compiled at
//! build time by protox, so no system `protoc` is needed.

/// Messages, the `Echo` client and the `Echo` server trait.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("leaklab.v1");
}

pub use pb::echo_client::EchoClient;
pub use pb::echo_server::{Echo, EchoServer};
pub use pb::{EchoRequest, EchoResponse, StreamRequest};

/// The fully qualified service name, as the health service reports it.
pub const ECHO_SERVICE_NAME: &str = "leaklab.v1.Echo";

/// `echo.proto`'s encoded `FileDescriptorSet`, for clients that build messages from descriptors.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echo_descriptor_set.bin"));

/// gRPC's channelz service (`grpc.channelz.v1`), the part leaklab reads: a
/// process's channels, subchannels and sockets as its gRPC runtime counts them.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod channelz {
    tonic::include_proto!("grpc.channelz.v1");
}
