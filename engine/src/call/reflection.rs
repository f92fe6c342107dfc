//! A method described by the server itself, through gRPC server reflection
//! (what grpcurl and ghz ask when no `.proto` is given): `grpc.reflection.v1`,
//! falling back to `v1alpha` for servers that only have the older one. The
//! two versions' messages are the same on the wire, so one exchange serves
//! both, on each version's path.

use std::collections::BTreeSet;

use prost::Message;
use prost_reflect::DescriptorPool;
use prost_reflect::prost_types::FileDescriptorProto;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use super::{Call, DescribedBy, ResolveError, describe, error};
use crate::scenario::CallSpec;

/// Each version's service, newest first.
const VERSIONS: [(&str, &str); 2] = [
    ("grpc.reflection.v1", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
    ("grpc.reflection.v1alpha", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
];

/// The most files one method's descriptors may span: a bound on a server that keeps naming new ones.
const MAX_FILES: usize = 1_000;

/// The method of `spec`, described by the reflection service of the server `channel` reaches.
pub async fn from_reflection(spec: &CallSpec, channel: Channel) -> Result<Call, ResolveError> {
    let origin = &spec.origins.method;
    for (version, path) in VERSIONS {
        let mut reflection = Reflection { channel: channel.clone(), path: PathAndQuery::from_static(path) };
        let first = match reflection.ask(MessageRequest::FileContainingSymbol(spec.service.clone())).await {
            Err(status) if status.code() == Code::Unimplemented => continue,
            Err(status) => return Err(error(origin, format!("asking the server's {version}: {status}"))),
            Ok(response) => response,
        };
        let files = match first {
            MessageResponse::FileDescriptorResponse(files) => files.file_descriptor_proto,
            MessageResponse::ErrorResponse(answer) if answer.error_code == Code::NotFound as i32 => {
                let services = reflection.services().await.unwrap_or_default();
                return Err(error(
                    origin,
                    format!("the server has no service {}; its reflection lists {}", spec.service, services.join(", ")),
                ));
            }
            other => return Err(error(origin, format!("{version} answered {other:?}"))),
        };
        let files = reflection
            .with_dependencies(files)
            .await
            .map_err(|reason| error(origin, format!("{version}: {reason}")))?;
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(files)
            .map_err(|e| error(origin, format!("the descriptors {version} sent do not build: {e}")))?;
        return describe(spec, &pool, DescribedBy::Reflection(version));
    }
    Err(error(
        origin,
        "the server has no reflection service (neither grpc.reflection.v1 nor v1alpha): \
         give the method's .proto files with --proto (call.proto)",
    ))
}

struct Reflection {
    channel: Channel,
    path: PathAndQuery,
}

impl Reflection {
    /// One question on a stream of its own, and its answer.
    async fn ask(&mut self, question: MessageRequest) -> Result<MessageResponse, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(question) };
        let codec = tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
        let mut answers = grpc
            .streaming(tonic::Request::new(tokio_stream::once(request)), self.path.clone(), codec)
            .await?
            .into_inner();
        match answers.message().await? {
            Some(ServerReflectionResponse { message_response: Some(answer), .. }) => Ok(answer),
            _ => Err(tonic::Status::data_loss("the reflection stream ended without an answer")),
        }
    }

    async fn services(&mut self) -> Result<Vec<String>, tonic::Status> {
        match self.ask(MessageRequest::ListServices(String::new())).await? {
            MessageResponse::ListServicesResponse(list) => Ok(list.service.into_iter().map(|s| s.name).collect()),
            _ => Ok(Vec::new()),
        }
    }

    /// `files` and every file they import, asked for by name until none is missing.
    async fn with_dependencies(&mut self, files: Vec<Vec<u8>>) -> Result<Vec<FileDescriptorProto>, String> {
        let mut known: Vec<FileDescriptorProto> = Vec::new();
        let mut pending = files;
        loop {
            for bytes in pending.drain(..) {
                let file = FileDescriptorProto::decode(bytes.as_slice())
                    .map_err(|e| format!("a file descriptor does not decode: {e}"))?;
                if !known.iter().any(|k| k.name == file.name) {
                    known.push(file);
                }
            }
            let names: BTreeSet<&str> = known.iter().map(|file| file.name()).collect();
            let missing: Vec<String> = known
                .iter()
                .flat_map(|file| file.dependency.iter())
                .filter(|dependency| !names.contains(dependency.as_str()))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let Some(name) = missing.into_iter().next() else { return Ok(known) };
            if known.len() >= MAX_FILES {
                return Err(format!("more than {MAX_FILES} files"));
            }
            match self
                .ask(MessageRequest::FileByFilename(name.clone()))
                .await
                .map_err(|status| format!("asking for {name}: {status}"))?
            {
                MessageResponse::FileDescriptorResponse(files) if !files.file_descriptor_proto.is_empty() => {
                    pending = files.file_descriptor_proto;
                }
                other => return Err(format!("asking for {name}: answered {other:?}")),
            }
        }
    }
}
