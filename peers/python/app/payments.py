"""charge_payment: every request.

Mode app: a new channel per call (clients.new_stub), never closed. Each is
kept in _channels, as a per-call cache would keep it: grpcio closes a channel
that is garbage-collected, so dropping it would not leak. Mode app-fixed: the
shared client.
"""

import clients

_channels = []


def charge_payment() -> None:
    if clients.fixed:
        stub = clients.shared_stub()
    else:
        channel, stub = clients.new_stub()
        _channels.append(channel)
    stub.Unary(clients.request, timeout=10)
