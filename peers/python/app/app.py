"""A small grpcio service shaped like the incident's, like the Go peer's -mode app.

Each of its requests runs through the handlers below, one module each, and
each handler calls an "external service" (the toy server's Echo/Unary):

  orders.list_orders           every request  the shared client (clients.shared_stub)
  payments.charge_payment      every request  a new channel per call, never closed
  inventory.reserve_stock      every 2nd      a new channel per call, never closed
  shipping.quote_shipping      every 4th      a new channel per call, never closed
  notify.send_notification     every 8th      a new channel per call, closed after it

The three leaking handlers and send_notification get their channels from the
same helper, clients.new_stub. --mode app-fixed is the same service with the
three leaking handlers on the shared client: the "after" picture.

Requests are sent open loop at --rate per second by --concurrency threads; it
prints `leaklab-progress ok=N failed=M` once a second on stdout (a request
fails if any of its calls does), and stays alive --hold seconds after the
last request, then exits 0. The stubs (echo_pb2, echo_pb2_grpc) are the ones
`make peers` generates into this directory's parent.
"""

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# The generated stubs live one level up (target/peers/python/).
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

import clients  # noqa: E402
from inventory import reserve_stock  # noqa: E402
from notify import send_notification  # noqa: E402
from orders import list_orders  # noqa: E402
from payments import charge_payment  # noqa: E402
from shipping import quote_shipping  # noqa: E402


def handle(n: int) -> None:
    """Runs request number n (from 0) through the service's handlers."""
    list_orders()
    charge_payment()
    if n % 2 == 0:
        reserve_stock()
    if n % 4 == 0:
        quote_shipping()
    if n % 8 == 0:
        send_notification()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default="127.0.0.1:50051", help="the toy server, host:port (loopback)")
    parser.add_argument("--mode", choices=["app", "app-fixed"], default="app")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to stay alive after the last request")
    parser.add_argument("--payload-bytes", type=int, default=0, help="bytes in every call's request")
    args = parser.parse_args()
    if args.requests < 1 or args.rate <= 0 or args.concurrency < 1 or args.payload_bytes < 0 or args.hold < 0:
        print("--requests, --rate and --concurrency must be positive, --payload-bytes and --hold not negative",
              file=sys.stderr)
        return 2
    clients.configure(args.addr, args.mode == "app-fixed", args.payload_bytes)

    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def request(n: int) -> None:
        try:
            handle(n)
            outcome = "ok"
        except grpc.RpcError:
            outcome = "failed"
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
        for n in range(args.requests):
            delay = start + n / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(request, n)
    progress()
    time.sleep(args.hold)
    done.set()
    progress()
    return 0


if __name__ == "__main__":
    sys.exit(main())
