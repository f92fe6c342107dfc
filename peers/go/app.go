package main

// -mode app: a small service shaped like the incident's. Each of its requests
// runs through the handlers in app_*.go, and each handler calls an "external
// service" (the toy server). Most go through the shared client getter
// (app_clients.go); three dial a new ClientConn and never close it, at
// different rates, as the incident's three code paths did:
//
//	app_payments.go   chargePayment   every request
//	app_inventory.go  reserveStock    every 2nd request
//	app_shipping.go   quoteShipping   every 4th request
//
// app_orders.go uses the shared client, and app_notify.go (every 8th request)
// dials its own and closes it: neither leaks.
//
// -mode app-fixed is the same service with those three going through the
// shared getter: the "after" picture.
//
// -pprof-listen serves net/http/pprof on a loopback port, announced as
//
//	leaklab-pprof addr=127.0.0.1:PORT
//
// and -mem-profile-rate sets runtime.MemProfileRate (bytes per heap-profile
// sample; Go's default, 512 KiB, is too coarse to see the call sites).

import (
	"context"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"time"

	"google.golang.org/grpc"
)

// appConfig is what the handlers need from the command line.
type appConfig struct {
	addr  string
	fixed bool
	// Every call's request, echoed back by the toy server.
	payload []byte
}

var app appConfig

// appRequest runs request number n (from 0) through the service's handlers.
func appRequest(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := listOrders(ctx); err != nil {
		return err
	}
	if err := chargePayment(ctx); err != nil {
		return err
	}
	if n%2 == 0 {
		if err := reserveStock(ctx); err != nil {
			return err
		}
	}
	if n%4 == 0 {
		if err := quoteShipping(ctx); err != nil {
			return err
		}
	}
	if n%8 == 0 {
		if err := sendNotification(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startApp sets the heap profile's rate and serves pprof; it must run before
// the first request so that every ClientConn is sampled at that rate.
func startApp(addr string, fixed bool, payloadBytes int, pprofListen string, memProfileRate int) {
	if memProfileRate > 0 {
		runtime.MemProfileRate = memProfileRate
	}
	app = appConfig{addr: addr, fixed: fixed, payload: make([]byte, payloadBytes)}
	if pprofListen == "" {
		return
	}
	listener := listenLoopback("-pprof-listen", pprofListen)
	fmt.Printf("leaklab-pprof addr=%s\n", listener.Addr())
	go http.Serve(listener, nil)
}

// listenLoopback listens on addr, given by flag, and exits unless it is a loopback address.
func listenLoopback(flag, addr string) net.Listener {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", flag, addr, err)
		os.Exit(2)
	}
	if tcp, ok := listener.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		fmt.Fprintf(os.Stderr, "%s %s: loopback only\n", flag, addr)
		os.Exit(2)
	}
	return listener
}

// invokeEcho makes one Echo call on conn, as a generated stub would.
func invokeEcho(ctx context.Context, conn *grpc.ClientConn) error {
	return conn.Invoke(ctx, method, &EchoRequest{Payload: app.payload}, new(EchoResponse))
}
