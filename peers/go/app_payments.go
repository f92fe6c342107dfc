package main

import (
	"context"

	"google.golang.org/grpc"
)

// chargePayment dials its own client on every call and never closes it.
func chargePayment(ctx context.Context) error {
	if app.fixed {
		return invokeEcho(ctx, echoClient())
	}
	conn, err := grpc.Dial(app.addr, grpc.WithInsecure())
	if err != nil {
		return err
	}
	return invokeEcho(ctx, conn)
}
