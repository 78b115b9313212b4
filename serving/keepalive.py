"""At most `KEEPALIVE_REQUESTS` requests per kept-alive connection, as nginx's `keepalive_requests` does: the answer
to the last one carries `Connection: close`, and the client's next request opens a new connection.

Why: BentoML hands every worker one shared listening socket, and a worker's event loop accepts a waiting connection
only when it is not busy. A request on a kept-alive connection waits for the worker that connection landed on, even
when the other worker is idle; a request on a new connection is accepted by a worker that is free. On 2 workers
that decides the tail of a CPU-bound endpoint: `/recommend` at half its maximal rate (bench/service.py --throughput,
same machine, one run after the other) had p99 17.8 ms with 25 requests per connection and 10.9 ms with one, at
the same requests/s and server CPU per request (docs/BENCHMARKS.md). Hence the default 1: every request is
dispatched to a free worker, as behind nginx's default upstream (no kept-alive upstream connections). Cost: one TCP
handshake per request (inside the figures above: the server CPU per request did not change); a deployment whose clients reach the
workers directly over slow links may set `OMNIDECIDE_KEEPALIVE_REQUESTS` higher (0 never closes). With kept-alive
connections, recycling also keeps a burst of new connections from all landing on one worker for good.

Connections are told apart by the client's (address, port) in the ASGI scope, one pair per open TCP connection.
"""
from __future__ import annotations

import os

KEEPALIVE_REQUESTS = int(os.environ.get("OMNIDECIDE_KEEPALIVE_REQUESTS", "1"))
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
