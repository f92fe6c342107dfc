package main

import (
	"context"

	"google.golang.org/grpc"
)

// reserveStock runs on every second request; it dials a client and never closes it.
func reserveStock(ctx context.Context) error {
	if app.fixed {
		return invokeEcho(ctx, echoClient())
	}
	conn, err := grpc.Dial(app.addr, grpc.WithInsecure())
	if err != nil {
		return err
	}
	return invokeEcho(ctx, conn)
}
