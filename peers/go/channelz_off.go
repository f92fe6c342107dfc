//go:build !channelz
// +build !channelz

package main

import (
	"fmt"
	"os"
)

// serveChannelz refuses: this build has channelz off, as grpc-go has by default (see channelz.go).
func serveChannelz(listen string) {
	fmt.Fprintf(os.Stderr, "-channelz-listen %s: this build has no channelz; use go-echo-client-channelz (built with -tags channelz)\n", listen)
	os.Exit(2)
}
