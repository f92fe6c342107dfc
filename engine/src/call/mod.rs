//! A method of any service, made callable: its descriptors (from `.proto`
//! files compiled at run time, or from the server's reflection service), its
//! request messages encoded from JSON, and its metadata, all checked before
//! any load is sent. Every error names the flag, file or field to blame.

mod codec;
mod reflection;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

pub use codec::DynamicCodec;
pub use reflection::from_reflection;

use crate::scenario::{CallData, CallSpec};

/// The most request messages a `data_file` may hold: each is kept encoded for the whole run.
pub const MAX_DATA_LINES: usize = 100_000;

/// A method ready to be called.
#[derive(Debug, Clone)]
pub struct Call {
    /// `package.Service/Method`.
    pub name: String,
    /// The HTTP/2 path, `/package.Service/Method`.
    pub path: PathAndQuery,
    /// The response message, which every response is decoded as.
    pub output: MessageDescriptor,
    /// Server-streaming: how many messages to read before cancelling; `None` for a unary method.
    pub streaming: Option<StreamRead>,
    /// The request messages, encoded; call `i` sends `requests[i % len]`.
    pub requests: Vec<Bytes>,
    /// Sent with every call.
    pub metadata: MetadataMap,
    /// Where the descriptors came from.
    pub described_by: DescribedBy,
}

/// How much of a server stream each call reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRead {
    /// Every message, to the end of the stream.
    ToTheEnd,
    /// This many, then the stream is cancelled (RST_STREAM CANCEL).
    First(NonZeroU64),
}

/// Where a [`Call`]'s descriptors came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescribedBy {
    Protos(Vec<PathBuf>),
    /// leaklab's own `echo.proto`, for the toy server.
    ToyServer,
    /// The server's reflection service, and which version of it answered.
    Reflection(&'static str),
}

impl Call {
    /// The request message call number `index` sends.
    pub fn request(&self, index: u64) -> Bytes {
        self.requests[(index % self.requests.len() as u64) as usize].clone()
    }
}

/// Why a method could not be made callable: `origin` is the flag, or the file, line and key, to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct ResolveError {
    pub origin: String,
    pub reason: String,
}

fn error(origin: &str, reason: impl Into<String>) -> ResolveError {
    ResolveError { origin: origin.to_owned(), reason: reason.into() }
}

/// The method of `spec`, described by its `.proto` files.
pub fn from_protos(spec: &CallSpec) -> Result<Call, ResolveError> {
    let pool = compile(spec)?;
    describe(spec, &pool, DescribedBy::Protos(spec.protos.clone()))
}

/// The method of `spec`, described by the toy server's own `echo.proto`, compiled into leaklab.
pub fn from_toy_server(spec: &CallSpec) -> Result<Call, ResolveError> {
    let pool = DescriptorPool::decode(leaklab_proto::FILE_DESCRIPTOR_SET).expect("the build encoded echo.proto");
    describe(spec, &pool, DescribedBy::ToyServer)
}

/// Compiles the `.proto` files, each found from the import paths and then from its own directory.
fn compile(spec: &CallSpec) -> Result<DescriptorPool, ResolveError> {
    for proto in &spec.protos {
        if let Err(io) = std::fs::metadata(proto) {
            return Err(error(&spec.origins.proto, format!("{}: {io}", proto.display())));
        }
    }
    let mut includes: Vec<PathBuf> = spec.import_paths.clone();
    for proto in &spec.protos {
        let dir = proto.parent().map(Path::to_owned).unwrap_or_default();
        if !includes.contains(&dir) {
            includes.push(dir);
        }
    }
    let mut compiler = protox::Compiler::new(&includes).map_err(|e| error(&spec.origins.proto, format!("{e:?}")))?;
    compiler.include_imports(true);
    // The Debug form of protox's error is `file:line:column: message`.
    compiler.open_files(&spec.protos).map_err(|e| error(&spec.origins.proto, format!("{e:?}")))?;
    Ok(compiler.descriptor_pool())
}

/// The method `spec` names, found in `pool`, with its requests and metadata encoded.
pub(crate) fn describe(
    spec: &CallSpec,
    pool: &DescriptorPool,
    described_by: DescribedBy,
) -> Result<Call, ResolveError> {
    let method = find_method(spec, pool, &described_by)?;
    if method.is_client_streaming() {
        let shape = if method.is_server_streaming() { "bidirectional-streaming" } else { "client-streaming" };
        return Err(error(
            &spec.origins.method,
            format!("{} is {shape}; leaklab calls unary and server-streaming methods", spec.full_name()),
        ));
    }
    let read = spec.stream_messages.map_or(StreamRead::ToTheEnd, StreamRead::First);
    let streaming = method.is_server_streaming().then_some(read);
    if spec.stream_messages.is_some() && streaming.is_none() {
        return Err(error(
            &spec.origins.method,
            format!(
                "{} is unary; call.stream_messages (--stream-messages) applies to server-streaming methods",
                spec.full_name()
            ),
        ));
    }
    let requests = encode_requests(spec, &method.input())?;
    let metadata = metadata(&spec.origins.metadata, &spec.metadata)?;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    Ok(Call {
        name: spec.full_name(),
        path: PathAndQuery::try_from(path.as_str()).map_err(|e| error(&spec.origins.method, e.to_string()))?,
        output: method.output(),
        streaming,
        requests,
        metadata,
        described_by,
    })
}

fn find_method(
    spec: &CallSpec,
    pool: &DescriptorPool,
    described_by: &DescribedBy,
) -> Result<MethodDescriptor, ResolveError> {
    let offered = match described_by {
        DescribedBy::Protos(files) => {
            let files: Vec<String> = files.iter().map(|file| file.display().to_string()).collect();
            files.join(", ")
        }
        DescribedBy::ToyServer => "the toy server's proto/leaklab/v1/echo.proto".to_owned(),
        DescribedBy::Reflection(_) => "the server's reflection service".to_owned(),
    };
    let Some(service) = pool.get_service_by_name(&spec.service) else {
        let mut services: Vec<String> = pool.services().map(|service| service.full_name().to_owned()).collect();
        services.sort();
        let listed = if services.is_empty() { "no service".to_owned() } else { services.join(", ") };
        return Err(error(
            &spec.origins.method,
            format!("no service {} in {offered}; it offers {listed}", spec.service),
        ));
    };
    service.methods().find(|method| method.name() == spec.method).ok_or_else(|| {
        let methods: Vec<String> = service.methods().map(|method| method.name().to_owned()).collect();
        error(
            &spec.origins.method,
            format!("{} has no method {}; it has {}", spec.service, spec.method, methods.join(", ")),
        )
    })
}

/// The request messages from `spec`'s JSON, each checked against `input` and encoded.
fn encode_requests(spec: &CallSpec, input: &MessageDescriptor) -> Result<Vec<Bytes>, ResolveError> {
    match &spec.data {
        CallData::Inline(json) => {
            Ok(vec![encode_json(input, json).map_err(|reason| error(&spec.origins.data, reason))?])
        }
        CallData::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|io| error(&spec.origins.data, format!("{}: {io}", path.display())))?;
            let mut requests = Vec::new();
            for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
                if requests.len() == MAX_DATA_LINES {
                    return Err(error(
                        &spec.origins.data,
                        format!("{}: more than {MAX_DATA_LINES} messages", path.display()),
                    ));
                }
                let encoded = encode_json(input, line)
                    .map_err(|reason| error(&format!("{}:{}", path.display(), number + 1), reason))?;
                requests.push(encoded);
            }
            if requests.is_empty() {
                return Err(error(&spec.origins.data, format!("{}: no message in it", path.display())));
            }
            Ok(requests)
        }
    }
}

/// One message from its canonical JSON; an error names the field (`items[0].quantity`) and why.
pub fn encode_json(input: &MessageDescriptor, json: &str) -> Result<Bytes, String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let mut track = serde_path_to_error::Track::new();
    let message = DynamicMessage::deserialize(
        input.clone(),
        serde_path_to_error::Deserializer::new(&mut deserializer, &mut track),
    )
    .and_then(|message| deserializer.end().map(|()| message));
    match message {
        Ok(message) => Ok(Bytes::from(message.encode_to_vec())),
        Err(reason) => {
            let path = track.path().to_string();
            let at = if path == "." || path.is_empty() { String::new() } else { format!("field `{path}`: ") };
            Err(format!("not a {}: {at}{reason}", input.full_name()))
        }
    }
}

/// The metadata sent with every call; a `-bin` header's value is base64.
fn metadata(origin: &str, headers: &std::collections::BTreeMap<String, String>) -> Result<MetadataMap, ResolveError> {
    use base64::Engine;
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut map = MetadataMap::new();
    for (name, value) in headers {
        let invalid = |reason: String| error(origin, format!("header {name:?}: {reason}"));
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("grpc-") || lower.starts_with(':') {
            return Err(invalid("is reserved for gRPC itself".to_owned()));
        }
        if lower.ends_with("-bin") {
            let key = MetadataKey::from_bytes(lower.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let bytes = lenient.decode(value).map_err(|e| invalid(format!("a -bin value must be base64: {e}")))?;
            map.append_bin(key, MetadataValue::from_bytes(&bytes));
        } else {
            let key = MetadataKey::from_bytes(lower.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|e| invalid(format!("the value is not a valid header value: {e}")))?;
            map.append(key, value);
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::CallOrigins;

    const SHOP: &str = r#"
syntax = "proto3";
package shop.v1;
import "shop/v1/money.proto";

service Orders {
  rpc Place(Order) returns (Receipt);
  rpc Track(Receipt) returns (stream Order);
  rpc Upload(stream Order) returns (Receipt);
}

enum Size { SIZE_UNSPECIFIED = 0; SMALL = 1; LARGE = 2; }

message Order {
  message Line { string sku = 1; int32 quantity = 2; Size size = 3; }
  string customer = 1;
  repeated Line lines = 2;
  Money total = 3;
}

message Receipt { string id = 1; }
"#;
    const MONEY: &str =
        "syntax = \"proto3\";\npackage shop.v1;\nmessage Money { string currency = 1; int64 units = 2; }\n";

    /// The shop protos in a directory of their own, `shop/v1/orders.proto` importing `shop/v1/money.proto`.
    fn shop() -> (tempfile::TempDir, CallSpec) {
        let dir = tempfile::tempdir().unwrap();
        let protos = dir.path().join("shop/v1");
        std::fs::create_dir_all(&protos).unwrap();
        std::fs::write(protos.join("orders.proto"), SHOP).unwrap();
        std::fs::write(protos.join("money.proto"), MONEY).unwrap();
        let spec = CallSpec {
            service: "shop.v1.Orders".to_owned(),
            method: "Place".to_owned(),
            protos: vec![protos.join("orders.proto")],
            import_paths: vec![dir.path().to_owned()],
            data: CallData::Inline(
                r#"{"customer": "ada", "lines": [{"sku": "A-1", "quantity": 2, "size": "LARGE"}], "total": {"currency": "EUR", "units": "12"}}"#
                    .to_owned(),
            ),
            metadata: [("authorization".to_owned(), "Bearer x".to_owned())].into(),
            stream_messages: None,
            origins: CallOrigins {
                method: "--call".to_owned(),
                proto: "--proto".to_owned(),
                data: "--data".to_owned(),
                metadata: "--metadata".to_owned(),
            },
        };
        (dir, spec)
    }

    #[test]
    fn a_method_from_protos_with_imports_encodes_its_json_exactly() {
        let (_dir, spec) = shop();
        let call = from_protos(&spec).unwrap();
        assert_eq!(call.path.as_str(), "/shop.v1.Orders/Place");
        assert_eq!(call.streaming, None);
        assert_eq!(call.metadata.get("authorization").unwrap(), "Bearer x");
        let pool = compile(&spec).unwrap();
        let order = pool.get_message_by_name("shop.v1.Order").unwrap();
        let sent = DynamicMessage::decode(order, call.request(7)).unwrap();
        let json = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"customer": "ada", "lines": [{"sku": "A-1", "quantity": 2, "size": "LARGE"}],
                               "total": {"currency": "EUR", "units": "12"}})
        );
    }

    #[test]
    fn a_json_field_of_the_wrong_type_is_named_by_its_path() {
        let (_dir, mut spec) = shop();
        spec.data = CallData::Inline(r#"{"lines": [{"sku": "A"}, {"quantity": "many"}]}"#.to_owned());
        let error = from_protos(&spec).unwrap_err();
        assert_eq!(error.origin, "--data");
        assert!(error.reason.starts_with("not a shop.v1.Order: field `lines[1].quantity`: "), "{}", error.reason);
        spec.data = CallData::Inline(r#"{"lines": [{"size": "HUGE"}]}"#.to_owned());
        let error = from_protos(&spec).unwrap_err();
        assert!(error.reason.contains("field `lines[0].size`"), "{}", error.reason);
    }

    #[test]
    fn unknown_services_and_methods_list_what_the_protos_offer() {
        let (_dir, mut spec) = shop();
        spec.method = "Cancel".to_owned();
        let error = from_protos(&spec).unwrap_err();
        assert_eq!(error.to_string(), "--call: shop.v1.Orders has no method Cancel; it has Place, Track, Upload");
        spec.service = "shop.v1.Refunds".to_owned();
        let error = from_protos(&spec).unwrap_err();
        assert!(error.reason.starts_with("no service shop.v1.Refunds in "), "{error}");
        assert!(error.reason.ends_with("; it offers shop.v1.Orders"), "{error}");
    }

    #[test]
    fn client_streaming_is_refused_and_a_stream_limit_needs_a_stream() {
        let (_dir, mut spec) = shop();
        spec.method = "Upload".to_owned();
        assert!(from_protos(&spec).unwrap_err().reason.contains("is client-streaming"));
        spec.method = "Place".to_owned();
        spec.stream_messages = NonZeroU64::new(3);
        assert!(from_protos(&spec).unwrap_err().reason.contains("is unary"));
        spec.method = "Track".to_owned();
        spec.data = CallData::Inline(r#"{"id": "r-1"}"#.to_owned());
        assert_eq!(from_protos(&spec).unwrap().streaming, Some(StreamRead::First(NonZeroU64::new(3).unwrap())));
    }

    #[test]
    fn a_proto_that_does_not_compile_names_its_file_and_line() {
        let (dir, spec) = shop();
        std::fs::write(
            dir.path().join("shop/v1/money.proto"),
            "syntax = \"proto3\";\nmessage Money { int64 units = 2 }\n",
        )
        .unwrap();
        let error = from_protos(&spec).unwrap_err();
        assert_eq!(error.origin, "--proto");
        assert!(error.reason.starts_with("shop/v1/money.proto:2:"), "{}", error.reason);
    }

    #[test]
    fn a_data_file_is_read_line_by_line_and_its_errors_name_the_line() {
        let (dir, mut spec) = shop();
        let file = dir.path().join("orders.jsonl");
        std::fs::write(&file, "{\"customer\": \"a\"}\n\n{\"customer\": \"b\"}\n").unwrap();
        spec.data = CallData::File(file.clone());
        let call = from_protos(&spec).unwrap();
        assert_eq!(call.requests.len(), 2, "the blank line is skipped");
        assert_ne!(call.request(0), call.request(1));
        assert_eq!(call.request(0), call.request(2), "cycled through");
        std::fs::write(&file, "{\"customer\": \"a\"}\n{\"customer\": 3}\n").unwrap();
        let error = from_protos(&spec).unwrap_err();
        assert_eq!(error.origin, format!("{}:2", file.display()));
        assert!(error.reason.contains("field `customer`"), "{}", error.reason);
        spec.data = CallData::File(dir.path().join("absent.jsonl"));
        assert!(from_protos(&spec).unwrap_err().reason.contains("absent.jsonl: No such file"));
    }

    #[test]
    fn metadata_names_must_be_headers_and_bin_values_base64() {
        let headers = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let map = metadata("--metadata", &headers(&[("X-Team", "core"), ("trace-bin", "AAEC")])).unwrap();
        assert_eq!(map.get("x-team").unwrap(), "core");
        assert_eq!(map.get_bin("trace-bin").unwrap().to_bytes().unwrap().as_ref(), &[0, 1, 2]);
        let error = metadata("--metadata", &headers(&[("trace-bin", "not base64!")])).unwrap_err();
        assert!(
            error.to_string().starts_with("--metadata: header \"trace-bin\": a -bin value must be base64"),
            "{error}"
        );
        let error = metadata("--metadata", &headers(&[("bad header", "x")])).unwrap_err();
        assert!(error.to_string().starts_with("--metadata: header \"bad header\""), "{error}");
        assert!(metadata("--metadata", &headers(&[("grpc-timeout", "1S")])).is_err());
    }
}
