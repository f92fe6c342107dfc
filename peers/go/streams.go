package main

// Modes stream-leak and stream-cancel: on one reused ClientConn, each request
// opens the toy server's Echo/ServerStream (endless, one message every
// -stream-interval) and reads its first message. grpc-go's documentation of
// NewStream names three ways to release a stream: cancel its context, close
// the ClientConn, or read until an error. stream-leak does none of them: its
// context is context.Background(), never cancelled, and the stream is never
// drained, so the stream and its goroutines stay on the client and the server
// keeps it open. stream-cancel cancels the context after the first message.

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

var serverStream = &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}

// Streams opened and not released, for the progress line's streams= (stream modes only).
var (
	openStreams   int64
	reportStreams bool
)

// streamCall opens one stream on conn and reads its first message; with cancel, it then releases it.
func streamCall(conn *grpc.ClientConn, payload []byte, interval time.Duration, cancel bool) error {
	ctx, release := context.Background(), context.CancelFunc(func() {})
	if cancel {
		ctx, release = context.WithCancel(ctx)
	}
	defer release()
	stream, err := conn.NewStream(ctx, serverStream, "/leaklab.v1.Echo/ServerStream")
	if err != nil {
		return err
	}
	request := &StreamRequest{Payload: payload, Messages: math.MaxUint32, IntervalMs: uint32(interval / time.Millisecond)}
	if err := stream.SendMsg(request); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if err := stream.RecvMsg(new(EchoResponse)); err != nil {
		return err
	}
	if !cancel {
		// The bug: the stream goes out of scope neither cancelled nor drained.
		atomic.AddInt64(&openStreams, 1)
	}
	return nil
}
