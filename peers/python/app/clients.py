"""The service's gRPC clients, like peers/go/app_clients.go.

shared_stub() is the service's shared client getter: one channel, made on
first use and reused by every caller. new_stub() is the per-call helper every
handler that wants a client of its own goes through: a fresh channel each
time, which its caller must close (or keep, which is the incident's leak).
"""

import threading

import grpc

import echo_pb2
import echo_pb2_grpc

# Set once by app.py before the first request.
addr = "127.0.0.1:50051"
fixed = False
request = echo_pb2.EchoRequest()

_lock = threading.Lock()
_shared = None


def configure(target: str, app_fixed: bool, payload_bytes: int) -> None:
    """What the handlers need from the command line."""
    global addr, fixed, request
    addr, fixed = target, app_fixed
    request = echo_pb2.EchoRequest(payload=b"x" * payload_bytes)


def shared_stub() -> echo_pb2_grpc.EchoStub:
    """The one shared client: a channel made once and reused."""
    global _shared
    with _lock:
        if _shared is None:
            channel = grpc.insecure_channel(addr)
            _shared = (channel, echo_pb2_grpc.EchoStub(channel))
        return _shared[1]


def new_stub() -> tuple:
    """A fresh channel and a stub on it, as (channel, stub); the caller owns the channel."""
    channel = grpc.insecure_channel(addr)
    return channel, echo_pb2_grpc.EchoStub(channel)
