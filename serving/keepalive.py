"""At most `KEEPALIVE_REQUESTS` requests per kept-alive connection, as nginx's `keepalive_requests` does: the answer
to the last one carries `Connection: close`, and the client's next request opens a new connection.

Why: BentoML hands every worker one shared listening socket, and each worker's event loop accepts every connection
waiting when it wakes. A burst of new connections (a client or load balancer starting up) can therefore all land on
one worker and stay there for as long as they are kept alive, leaving the other worker idle: on 2 cores that halves a
CPU-bound endpoint's throughput (bench/service.py --throughput showed whole 15-s runs on one worker). A reopened
connection goes to whichever worker accepts first, which is seldom the busy one, so the connections spread over the
workers within seconds. Cost: one TCP handshake per `KEEPALIVE_REQUESTS` requests, borne by every endpoint alike (at 100,
/recommend's connections, ~11 requests/s each on a loaded machine, were recycled too seldom to spread within a 15-s
run; `OMNIDECIDE_KEEPALIVE_REQUESTS` sets it, 0 never closes).

Connections are told apart by the client's (address, port) in the ASGI scope, one pair per open TCP connection.
"""
from __future__ import annotations

import os

KEEPALIVE_REQUESTS = int(os.environ.get("OMNIDECIDE_KEEPALIVE_REQUESTS", "25"))
_TRACKED = 10_000  # connections counted at once; past it the counts start afresh (a closed connection leaves its count)


class RecycleConnections:
    """ASGI middleware: `Connection: close` on every `requests`-th answer of a connection (0: never)."""

    def __init__(self, app, requests: int | None = None) -> None:
        self.app = app
        self.requests = KEEPALIVE_REQUESTS if requests is None else requests
        self.seen: dict[tuple, int] = {}

    async def __call__(self, scope, receive, send) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        if not client or self.requests <= 0:
            return await self.app(scope, receive, send)
        key = tuple(client)
        n = self.seen.get(key, 0) + 1
        if n < self.requests:
            if len(self.seen) >= _TRACKED:
                self.seen.clear()
            self.seen[key] = n
            return await self.app(scope, receive, send)
        self.seen.pop(key, None)

        async def closing(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
