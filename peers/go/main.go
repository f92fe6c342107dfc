// Command go-echo-client calls leaklab's toy server the three ways the
// incident's code paths could: one reused ClientConn, a new ClientConn per
// request that is never closed (the bug), or a new one per request that is
// closed. Calls go through ClientConn.Invoke, as generated stubs do, with
// the message types of echo.go and grpc-go's default protobuf codec (-codec
// proto: a plain grpc-go client), or with protobuf bytes encoded once by hand
// and a pass-through codec (-codec raw: no marshalling at all).
//
// It prints one progress line a second on stdout, which `loadgen watch`
// reads to count requests:
//
//	leaklab-progress ok=1200 failed=0 goroutines=37
//
// With -rate 0 it runs closed loop instead: -concurrency goroutines, each
// sending its next request when the last one returns, over one shared
// ClientConn in mode reused (one connection, that many concurrent streams).
// That is `make bench`'s grpc-go client; at the end it prints
//
//	leaklab-bench ok=200000 failed=0 seconds=3.1 p50_us=812 p99_us=2950
//
// -mode app and app-fixed are a small service shaped like the incident's
// (app.go), and -mode app-server the same service as a gRPC server
// (app_server.go).
//
// Built offline from Debian's golang-go and golang-google-grpc-dev (GOPATH
// mode), whose grpc-go predates the idle mode newer versions use to close
// unused channels, so the classic unbounded growth reproduces.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// rawCodec sends and receives bytes already encoded as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	out := v.(*[]byte)
	*out = append((*out)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// echoRequest encodes leaklab.v1.EchoRequest{payload: payload}: field 1, bytes.
func echoRequest(payload []byte) []byte {
	out := []byte{0x0a}
	n := len(payload)
	for n >= 0x80 {
		out = append(out, byte(n)|0x80)
		n >>= 7
	}
	out = append(out, byte(n))
	return append(out, payload...)
}

const method = "/leaklab.v1.Echo/Unary"

// Requests answered OK and failed so far.
var okCount, failedCount int64

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "the toy server, host:port (loopback)")
	mode := flag.String("mode", "reused", "reused | leak (dial per request, never Close) | close (dial per request, Close after) | stream-leak | stream-cancel (see streams.go) | app | app-fixed (see app.go) | app-server (see app_server.go)")
	requests := flag.Int("requests", 2000, "requests to send")
	rate := flag.Float64("rate", 200, "requests per second (open loop); 0 for closed loop")
	concurrency := flag.Int("concurrency", 4, "requests in flight at most")
	hold := flag.Duration("hold", 3*time.Second, "stay alive this long after the last request, so a watcher sees the end state; mode app-server: serve this long")
	listen := flag.String("listen", "127.0.0.1:0", "mode app-server: serve on this loopback host:port")
	payloadBytes := flag.Int("payload-bytes", 64, "payload size")
	codec := flag.String("codec", "proto", "proto (messages marshalled by grpc-go's default codec) | raw (pre-encoded bytes, no marshalling)")
	pprofListen := flag.String("pprof-listen", "", "modes app*: serve net/http/pprof on this loopback host:port")
	memProfileRate := flag.Int("mem-profile-rate", 0, "modes app*: runtime.MemProfileRate, bytes per heap sample (0: Go's default)")
	streamInterval := flag.Duration("stream-interval", 30*time.Second, "modes stream-*: the server sends on each stream this often")
	channelzListen := flag.String("channelz-listen", "", "serve gRPC's channelz service on this loopback host:port (see channelz.go)")
	flag.Parse()
	switch *mode {
	case "reused", "leak", "close", "stream-leak", "stream-cancel", "app", "app-fixed", "app-server":
	default:
		fmt.Fprintf(os.Stderr, "-mode %q: expected reused, leak, close, stream-leak, stream-cancel, app, app-fixed or app-server\n", *mode)
		os.Exit(2)
	}
	if *codec != "proto" && *codec != "raw" {
		fmt.Fprintf(os.Stderr, "-codec %q: expected proto or raw\n", *codec)
		os.Exit(2)
	}
	if *requests < 1 || *rate < 0 || *concurrency < 1 || *payloadBytes < 0 {
		fmt.Fprintln(os.Stderr, "-requests and -concurrency must be positive, -rate and -payload-bytes 0 or more")
		os.Exit(2)
	}
	if *channelzListen != "" {
		serveChannelz(*channelzListen)
	}
	appMode := *mode == "app" || *mode == "app-fixed" || *mode == "app-server"
	if appMode {
		startApp(*addr, *mode == "app-fixed", *payloadBytes, *pprofListen, *memProfileRate)
	}
	if *mode == "app-server" {
		serveApp(*listen, *hold)
		return
	}

	payload := make([]byte, *payloadBytes)
	encoded := echoRequest(payload)
	options := []grpc.DialOption{grpc.WithInsecure()}
	if *codec == "raw" {
		options = append(options, grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	}
	dial := func() (*grpc.ClientConn, error) { return grpc.Dial(*addr, options...) }
	invoke := func(ctx context.Context, conn *grpc.ClientConn) error {
		if *codec == "raw" {
			in, out := encoded, []byte(nil)
			return conn.Invoke(ctx, method, &in, &out)
		}
		return conn.Invoke(ctx, method, &EchoRequest{Payload: payload}, new(EchoResponse))
	}
	streamMode := *mode == "stream-leak" || *mode == "stream-cancel"
	reportStreams = streamMode
	var shared *grpc.ClientConn
	if *mode == "reused" || streamMode {
		var err error
		if shared, err = dial(); err != nil {
			fmt.Fprintf(os.Stderr, "dial %s: %v\n", *addr, err)
			os.Exit(1)
		}
	}

	var started int64
	call := func() {
		if appMode {
			if err := appRequest(int(atomic.AddInt64(&started, 1) - 1)); err != nil {
				atomic.AddInt64(&failedCount, 1)
			} else {
				atomic.AddInt64(&okCount, 1)
			}
			return
		}
		if streamMode {
			if err := streamCall(shared, payload, *streamInterval, *mode == "stream-cancel"); err != nil {
				atomic.AddInt64(&failedCount, 1)
			} else {
				atomic.AddInt64(&okCount, 1)
			}
			return
		}
		conn := shared
		if conn == nil {
			var err error
			if conn, err = dial(); err != nil {
				atomic.AddInt64(&failedCount, 1)
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := invoke(ctx, conn); err != nil {
			atomic.AddInt64(&failedCount, 1)
		} else {
			atomic.AddInt64(&okCount, 1)
		}
		if *mode == "close" {
			conn.Close()
		}
		// mode "leak": conn goes out of scope unclosed, as in the incident.
	}

	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				printProgress()
			case <-done:
				return
			}
		}
	}()

	if *rate == 0 {
		closedLoop(*requests, *concurrency, call)
		close(done)
		return
	}

	slots := make(chan struct{}, *concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *requests; i++ {
		due := start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))
		time.Sleep(time.Until(due))
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			call()
		}()
	}
	wg.Wait()
	printProgress()
	time.Sleep(*hold)
	close(done)
	printProgress()
}

// printProgress prints the requests answered so far, and the goroutines now: a leaked ClientConn keeps
// some of its own.
func printProgress() {
	streams := ""
	if reportStreams {
		streams = fmt.Sprintf(" streams=%d", atomic.LoadInt64(&openStreams))
	}
	fmt.Printf("leaklab-progress ok=%d failed=%d goroutines=%d%s\n",
		atomic.LoadInt64(&okCount), atomic.LoadInt64(&failedCount), runtime.NumGoroutine(), streams)
}

// closedLoop sends requests from `concurrency` goroutines, each one after the
// last returns, until `requests` were sent; then prints the bench line. Each
// goroutine keeps its own latencies, so timing takes no lock.
func closedLoop(requests, concurrency int, call func()) {
	var next int64
	latencies := make([][]time.Duration, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, requests/concurrency+1)
			for atomic.AddInt64(&next, 1) <= int64(requests) {
				sent := time.Now()
				call()
				mine = append(mine, time.Since(sent))
			}
			latencies[w] = mine
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, mine := range latencies {
		all = append(all, mine...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	percentile := func(p float64) int64 {
		if len(all) == 0 {
			return 0
		}
		return all[int(p*float64(len(all)-1))].Microseconds()
	}
	printProgress()
	ok, failed := atomic.LoadInt64(&okCount), atomic.LoadInt64(&failedCount)
	fmt.Printf("leaklab-bench ok=%d failed=%d seconds=%.3f p50_us=%d p99_us=%d\n",
		ok, failed, elapsed.Seconds(), percentile(0.50), percentile(0.99))
}
