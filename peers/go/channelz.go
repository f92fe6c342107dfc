//go:build channelz
// +build channelz

package main

// -channelz-listen: gRPC's channelz service on a side port, so that leaklab
// (--channelz, a scenario's external.channelz) counts this process's
// channels, subchannels and sockets as grpc-go itself does. Importing the
// service package turns channelz on for the whole process, in every mode:
// each ClientConn, subchannel and transport then also keeps its channelz
// entry and a trace of its last 30 events, about 6.5 KB per leaked
// ClientConn, and calls count themselves, about 4% of closed-loop
// throughput. So it is built only with -tags channelz, into
// go-echo-client-channelz; go-echo-client is plain grpc-go.

import (
	"fmt"
	"os"

	"google.golang.org/grpc"
	channelzservice "google.golang.org/grpc/channelz/service"
)

// serveChannelz serves channelz on listen (loopback) for as long as the process runs.
func serveChannelz(listen string) {
	listener := listenLoopback("-channelz-listen", listen)
	server := grpc.NewServer()
	channelzservice.RegisterChannelzServiceToServer(server)
	go func() {
		if err := server.Serve(listener); err != nil {
			fmt.Fprintf(os.Stderr, "channelz: %v\n", err)
		}
	}()
}
