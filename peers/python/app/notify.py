"""send_notification: every 8th request. It makes a channel of its own per
call, as the leaking three do, but closes it after its call: a per-request
channel done right, which leaks nothing."""

import clients


def send_notification() -> None:
    channel, stub = clients.new_stub()
    try:
        stub.Unary(clients.request, timeout=10)
    finally:
        channel.close()
