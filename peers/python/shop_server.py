"""A grpcio server of shop.v1.Orders (peers/python/protos), a service leaklab
did not write, for testing leaklab against someone else's server.

It checks every request it receives against what it was told to expect
(--expect-order, the Order as protobuf JSON; --expect-metadata, a JSON object
of headers) and counts the calls. It prints `listening on PORT` once it
serves, and on SIGTERM or SIGINT one JSON line of its counts:
{"calls": N, "mismatches": M, "first_mismatch": "…"}.

--reflection also serves grpc.reflection.v1 (and v1alpha).
--keep-bytes N keeps N bytes per call for the life of the process: a server
that leaks on purpose, to test a memory verdict.
--metrics-port PORT serves Prometheus metrics on 127.0.0.1 (port 0 picks one,
printed as `metrics on PORT` after the listening line): prometheus_client's
process figures and shop_calls_total, a count of the calls.
"""

import argparse
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format

from shop.v1 import orders_pb2, orders_pb2_grpc


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.mismatches = 0
        self.first_mismatch = None
        self.kept = []
        self.on_call = lambda: None

    def record(self, mismatch, keep: int) -> None:
        with self.lock:
            self.calls += 1
            self.on_call()
            if keep:
                self.kept.append(bytearray(keep))
            if mismatch:
                self.mismatches += 1
                if self.first_mismatch is None:
                    self.first_mismatch = mismatch

    def line(self) -> str:
        with self.lock:
            return json.dumps({"calls": self.calls, "mismatches": self.mismatches, "first_mismatch": self.first_mismatch})


class Orders(orders_pb2_grpc.OrdersServicer):
    def __init__(self, args, counts: Counts) -> None:
        self.expected_order = None
        if args.expect_order is not None:
            self.expected_order = json_format.Parse(args.expect_order, orders_pb2.Order())
        self.expected_metadata = json.loads(args.expect_metadata) if args.expect_metadata else {}
        self.keep = args.keep_bytes
        self.counts = counts

    def mismatch(self, request, context):
        headers = dict(context.invocation_metadata())
        for name, value in self.expected_metadata.items():
            if headers.get(name) != value:
                return f"metadata {name}: expected {value!r}, got {headers.get(name)!r}"
        if self.expected_order is not None and request != self.expected_order:
            return "order: expected " + json_format.MessageToJson(self.expected_order) + ", got " + json_format.MessageToJson(request)
        return None

    def Place(self, request, context):
        self.counts.record(self.mismatch(request, context), self.keep)
        return orders_pb2.Receipt(id=f"r-{request.customer}", lines=len(request.lines))

    def Track(self, request, context):
        headers = dict(context.invocation_metadata())
        mismatch = None
        for name, value in self.expected_metadata.items():
            if headers.get(name) != value:
                mismatch = f"metadata {name}: expected {value!r}, got {headers.get(name)!r}"
        self.counts.record(mismatch, self.keep)
        for step in range(request.updates):
            yield orders_pb2.OrderStatus(id=request.id, step=step)

    def Import(self, request_iterator, context):
        lines = sum(len(order.lines) for order in request_iterator)
        return orders_pb2.Receipt(id="import", lines=lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port; port 0 picks a free one (loopback only)")
    parser.add_argument("--expect-order", help="the Order every Place call must carry, as protobuf JSON")
    parser.add_argument("--expect-metadata", help="headers every call must carry, as a JSON object")
    parser.add_argument("--reflection", action="store_true", help="serve grpc.reflection.v1 and v1alpha")
    parser.add_argument("--keep-bytes", type=int, default=0, help="bytes kept per call, never freed")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    args = parser.parse_args()
    host = args.listen.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
        print(f"--listen {args.listen}: loopback only", file=sys.stderr)
        return 2

    # Blocked before any thread starts, so every thread inherits the mask and the signal waits,
    # pending, for sigwait below: a handler calling Event.set() could deadlock on the Event's own
    # lock if the signal came while the main thread was entering Event.wait(), and a signal sent
    # before a handler was installed would kill the process without its counts.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    counts = Counts()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    orders_pb2_grpc.add_OrdersServicer_to_server(Orders(args, counts), server)
    if args.reflection:
        from grpc_reflection.v1alpha import reflection

        names = (orders_pb2.DESCRIPTOR.services_by_name["Orders"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    if args.tls_cert:
        with open(args.tls_cert, "rb") as cert, open(args.tls_key, "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        port = server.add_secure_port(args.listen, credentials)
    else:
        port = server.add_insecure_port(args.listen)
    server.start()
    print(f"listening on {port}", flush=True)
    if args.metrics_port is not None:
        import prometheus_client

        calls = prometheus_client.Counter("shop_calls", "Calls to shop.v1.Orders.")
        counts.on_call = calls.inc
        metrics, _ = prometheus_client.start_http_server(args.metrics_port, addr="127.0.0.1")
        print(f"metrics on {metrics.server_port}", flush=True)

    signal.sigwait(stop_signals)
    server.stop(grace=1).wait()
    print(counts.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
