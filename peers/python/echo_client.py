"""A grpcio client of leaklab's toy server, with the same modes as the Go peer.

  reused  one channel for every request
  leak    a new channel per request, never closed; each is kept in a list, as
          a per-request cache would keep it (grpcio closes a channel that is
          garbage-collected, so dropping it would not leak)
  close   a new channel per request, closed after its call

It prints `leaklab-progress ok=N failed=M` once a second on stdout, which
`loadgen watch` reads to count requests. The stubs are generated from
proto/leaklab/v1/echo.proto by grpcio-tools when `make peers` runs.
"""

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

import echo_pb2
import echo_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default="127.0.0.1:50051", help="the toy server, host:port (loopback)")
    parser.add_argument("--mode", choices=["reused", "leak", "close"], default="reused")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to stay alive after the last request")
    args = parser.parse_args()
    if args.requests < 1 or args.rate <= 0 or args.concurrency < 1:
        print("--requests, --rate and --concurrency must be positive", file=sys.stderr)
        return 2

    request = echo_pb2.EchoRequest(payload=b"x" * 64)
    shared = grpc.insecure_channel(args.addr) if args.mode == "reused" else None
    leaked = []
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def call() -> None:
        channel = shared or grpc.insecure_channel(args.addr)
        try:
            echo_pb2_grpc.EchoStub(channel).Unary(request, timeout=10)
            outcome = "ok"
        except grpc.RpcError:
            outcome = "failed"
        if args.mode == "close":
            channel.close()
        elif args.mode == "leak":
            with lock:
                leaked.append(channel)
        with lock:
            counts[outcome] += 1

    def progress() -> None:
        with lock:
            print(f"leaklab-progress ok={counts['ok']} failed={counts['failed']}", flush=True)

    done = threading.Event()

    def report() -> None:
        while not done.wait(1.0):
            progress()

    threading.Thread(target=report, daemon=True).start()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for i in range(args.requests):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(call)
    progress()
    time.sleep(args.hold)
    done.set()
    progress()
    return 0


if __name__ == "__main__":
    sys.exit(main())
