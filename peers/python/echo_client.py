"""A grpcio client of leaklab's toy server, with the same modes as the Go peer.

  reused  one channel for every request
  leak    a new channel per request, never closed; each is kept in a list, as
          a per-request cache would keep it (grpcio closes a channel that is
          garbage-collected, so dropping it would not leak)
  close   a new channel per request, closed after its call
  stream-leak    one channel; each request opens the endless Echo/ServerStream,
                 reads its first message and keeps the call in a list, neither
                 cancelled nor read to its end (grpcio cancels a call whose
                 iterator is garbage-collected, so dropping it would not leak)
  stream-cancel  the same, cancelling each call after its first message

It prints `leaklab-progress ok=N failed=M` once a second on stdout, which
`loadgen watch` reads to count requests, with `streams=N` (calls held open)
in the stream modes. With --channelz-listen it serves gRPC's channelz
service (grpcio-channelz) on a side port, so that leaklab counts its
channels, subchannels and sockets as gRPC C-core does; C-core keeps that
bookkeeping whether or not it is served. The stubs are generated from
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
    parser.add_argument(
        "--mode", choices=["reused", "leak", "close", "stream-leak", "stream-cancel"], default="reused"
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to stay alive after the last request")
    parser.add_argument(
        "--stream-interval", type=float, default=30.0, help="seconds between a stream's messages (stream modes)"
    )
    parser.add_argument("--channelz-listen", help="serve gRPC's channelz service on this loopback host:port")
    args = parser.parse_args()
    if args.requests < 1 or args.rate <= 0 or args.concurrency < 1:
        print("--requests, --rate and --concurrency must be positive", file=sys.stderr)
        return 2

    # grpcio stops a server that is garbage-collected: this one is kept until main returns.
    channelz_server = serve_channelz(args.channelz_listen) if args.channelz_listen else None  # noqa: F841

    request = echo_pb2.EchoRequest(payload=b"x" * 64)
    streams = args.mode.startswith("stream-")
    stream_request = echo_pb2.StreamRequest(
        payload=b"x" * 64, messages=2**32 - 1, interval_ms=int(args.stream_interval * 1000)
    )
    shared = grpc.insecure_channel(args.addr) if args.mode == "reused" or streams else None
    leaked = []
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def stream_call() -> None:
        responses = echo_pb2_grpc.EchoStub(shared).ServerStream(stream_request)
        try:
            next(responses)
            outcome = "ok"
        except (grpc.RpcError, StopIteration):
            outcome = "failed"
        if args.mode == "stream-cancel":
            responses.cancel()
        elif outcome == "ok":
            # The bug: the call is kept, neither cancelled nor read to its end.
            with lock:
                leaked.append(responses)
        with lock:
            counts[outcome] += 1

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
            held = f" streams={len(leaked)}" if streams else ""
            print(f"leaklab-progress ok={counts['ok']} failed={counts['failed']}{held}", flush=True)

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
            pool.submit(stream_call if streams else call)
    progress()
    time.sleep(args.hold)
    done.set()
    progress()
    return 0


def serve_channelz(listen: str) -> grpc.Server:
    """Serves channelz on `listen` (loopback only) for as long as the server returned is kept."""
    from grpc_channelz.v1 import channelz

    host = listen.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"--channelz-listen {listen}: loopback only", file=sys.stderr)
        sys.exit(2)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    channelz.add_channelz_servicer(server)
    if server.add_insecure_port(listen) == 0:
        print(f"--channelz-listen {listen}: cannot listen", file=sys.stderr)
        sys.exit(2)
    server.start()
    return server


if __name__ == "__main__":
    sys.exit(main())
