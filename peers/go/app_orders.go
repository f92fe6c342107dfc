package main

import "context"

// listOrders uses the shared client: no leak.
func listOrders(ctx context.Context) error {
	return invokeEcho(ctx, echoClient())
}
