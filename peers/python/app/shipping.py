"""quote_shipping: every 4th request. Mode app: a new channel per call, never
closed and kept, as payments.charge_payment does; mode app-fixed: the shared
client."""

import clients

_channels = []


def quote_shipping() -> None:
    if clients.fixed:
        stub = clients.shared_stub()
    else:
        channel, stub = clients.new_stub()
        _channels.append(channel)
    stub.Unary(clients.request, timeout=10)
