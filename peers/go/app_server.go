package main

// -mode app-server: the same service as -mode app, served as a gRPC server,
// as the incident's web service was: each leaklab.v1.Echo/Unary call it
// answers runs one request through the handlers in app_*.go, which call the
// toy server at -addr downstream (three of them dialling a ClientConn per
// call and never closing it). leaklab loads it with --target, measures it
// with --server-pid and reads its profiles with --server-pprof. It listens on
// -listen (loopback), announced as
//
//	leaklab-listen addr=127.0.0.1:PORT
//
// reports SERVING for leaklab.v1.Echo on grpc.health.v1, and exits after
// -hold, so that a forgotten one stops by itself.

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Calls answered so far, numbering the requests as appRequest expects.
var served int64

var echoService = grpc.ServiceDesc{
	ServiceName: "leaklab.v1.Echo",
	HandlerType: (*interface{})(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: serveUnary}},
	Metadata:    "leaklab/v1/echo.proto",
}

// serveUnary is what protoc-gen-go-grpc would generate for Echo/Unary, with
// the service's request handling inlined.
func serveUnary(_ interface{}, ctx context.Context, decode func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	request := new(EchoRequest)
	if err := decode(request); err != nil {
		return nil, err
	}
	if err := appRequest(int(atomic.AddInt64(&served, 1) - 1)); err != nil {
		atomic.AddInt64(&failedCount, 1)
		return nil, err
	}
	atomic.AddInt64(&okCount, 1)
	return &EchoResponse{Payload: request.Payload}, nil
}

// serveApp serves the service on listen until hold has passed.
func serveApp(listen string, hold time.Duration) {
	listener := listenLoopback("-listen", listen)
	server := grpc.NewServer()
	server.RegisterService(&echoService, nil)
	status := health.NewServer()
	status.SetServingStatus(echoService.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(server, status)
	fmt.Printf("leaklab-listen addr=%s\n", listener.Addr())
	time.AfterFunc(hold, server.Stop)
	if err := server.Serve(listener); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("served ok=%d failed=%d\n", atomic.LoadInt64(&okCount), atomic.LoadInt64(&failedCount))
}
