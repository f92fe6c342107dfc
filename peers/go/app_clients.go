package main

import (
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc"
)

var (
	sharedOnce sync.Once
	sharedConn *grpc.ClientConn
)

// echoClient is the service's shared client getter, like the incident's
// GetAaaRPCClient(): one ClientConn, dialled once and reused by every caller.
func echoClient() *grpc.ClientConn {
	sharedOnce.Do(func() {
		conn, err := grpc.Dial(app.addr, grpc.WithInsecure())
		if err != nil {
			fmt.Fprintf(os.Stderr, "dial %s: %v\n", app.addr, err)
			os.Exit(1)
		}
		sharedConn = conn
	})
	return sharedConn
}
