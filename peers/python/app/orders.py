"""list_orders: every request, through the shared client; no leak."""

import clients


def list_orders() -> None:
    clients.shared_stub().Unary(clients.request, timeout=10)
