//! The codec of a method known only by its descriptors: requests go out as
//! the bytes [`super::Call`] encoded from JSON once, and every response is
//! decoded against its message descriptor (and dropped), so a server that
//! answers with something else fails the call instead of passing unseen.

use bytes::{Buf, BufMut, Bytes};
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes pre-encoded request bytes; decodes responses as `output`.
#[derive(Debug, Clone)]
pub struct DynamicCodec {
    output: MessageDescriptor,
}

impl DynamicCodec {
    pub fn new(output: MessageDescriptor) -> Self {
        Self { output }
    }
}

impl Codec for DynamicCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = BytesEncoder;
    type Decoder = CheckingDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckingDecoder { output: self.output.clone() }
    }
}

#[derive(Debug)]
pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

#[derive(Debug)]
pub struct CheckingDecoder {
    output: MessageDescriptor,
}

impl Decoder for CheckingDecoder {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        check(&self.output, src.copy_to_bytes(src.remaining())).map(Some)
    }
}

/// `bytes` decoded as an `output` message, and dropped.
fn check(output: &MessageDescriptor, bytes: Bytes) -> Result<(), Status> {
    DynamicMessage::decode(output.clone(), bytes)
        .map(drop)
        .map_err(|error| Status::internal(format!("the response is not a {}: {error}", output.full_name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_that_does_not_decode_as_its_message_is_an_error() {
        let pool = prost_reflect::DescriptorPool::decode(leaklab_proto::FILE_DESCRIPTOR_SET).unwrap();
        let output = pool.get_message_by_name("leaklab.v1.EchoResponse").unwrap();
        assert!(check(&output, Bytes::from_static(b"\x0a\x02hi")).is_ok());
        // Field 1 as a varint where the message has bytes.
        let status = check(&output, Bytes::from_static(b"\x08\x01")).unwrap_err();
        assert!(status.message().starts_with("the response is not a leaklab.v1.EchoResponse"), "{status:?}");
    }
}
