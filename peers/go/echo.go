package main

// leaklab.v1.EchoRequest and EchoResponse (proto/leaklab/v1/echo.proto) as
// protoc-gen-go 1.3 would generate them: structs with protobuf field tags,
// which grpc-go's default "proto" codec marshals through
// github.com/golang/protobuf, as every plain grpc-go client does. Written by
// hand because the build is offline and has no protoc.

import "github.com/golang/protobuf/proto"

type EchoRequest struct {
	Payload       []byte `protobuf:"bytes,1,opt,name=payload,proto3" json:"payload,omitempty"`
	ResponseBytes uint32 `protobuf:"varint,2,opt,name=response_bytes,json=responseBytes,proto3" json:"response_bytes,omitempty"`
	DelayMs       uint32 `protobuf:"varint,3,opt,name=delay_ms,json=delayMs,proto3" json:"delay_ms,omitempty"`
}

func (m *EchoRequest) Reset()         { *m = EchoRequest{} }
func (m *EchoRequest) String() string { return proto.CompactTextString(m) }
func (*EchoRequest) ProtoMessage()    {}

type EchoResponse struct {
	Payload []byte `protobuf:"bytes,1,opt,name=payload,proto3" json:"payload,omitempty"`
}

func (m *EchoResponse) Reset()         { *m = EchoResponse{} }
func (m *EchoResponse) String() string { return proto.CompactTextString(m) }
func (*EchoResponse) ProtoMessage()    {}

// leaklab.v1.StreamRequest: the request of Echo/ServerStream.
type StreamRequest struct {
	Payload    []byte `protobuf:"bytes,1,opt,name=payload,proto3" json:"payload,omitempty"`
	Messages   uint32 `protobuf:"varint,2,opt,name=messages,proto3" json:"messages,omitempty"`
	IntervalMs uint32 `protobuf:"varint,3,opt,name=interval_ms,json=intervalMs,proto3" json:"interval_ms,omitempty"`
}

func (m *StreamRequest) Reset()         { *m = StreamRequest{} }
func (m *StreamRequest) String() string { return proto.CompactTextString(m) }
func (*StreamRequest) ProtoMessage()    {}
