package main

import (
	"context"

	"google.golang.org/grpc"
)

// quoteShipping runs on every fourth request; it dials a client and never closes it.
func quoteShipping(ctx context.Context) error {
	if app.fixed {
		return invokeEcho(ctx, echoClient())
	}
	conn, err := grpc.Dial(app.addr, grpc.WithInsecure())
	if err != nil {
		return err
	}
	return invokeEcho(ctx, conn)
}
