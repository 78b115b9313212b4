"""Workers share the listening socket fairly: each takes one new connection per wake-up, not every one waiting.

Why: `serve --workers N` hands one listening socket to N worker processes. asyncio accepts every connection waiting
when the socket becomes readable (up to the backlog, 2048), so the first worker to wake after a burst of connects
takes all of them: with a client or proxy that keeps a few connections alive (the benchmark's 8, a proxy's keep-alive
pool), one worker served every request in about half of the runs and the other idled — half the throughput of a
CPU-bound endpoint such as `/recommend`. Accepting one connection per wake-up lets every woken worker take its turn,
and a worker busy in a model call (slower to wake) takes fewer: what gunicorn's workers and libuv's
`UV_TCP_SINGLE_ACCEPT` do. Nothing else about accepting changes (errors, limits, TLS). Installed by the service in
each worker before the server starts listening.
"""
from __future__ import annotations

import asyncio.selector_events as selector_events
from typing import Any

_original = selector_events.BaseSelectorEventLoop._accept_connection


def _one_per_wakeup(self: Any, protocol_factory: Any, sock: Any, sslcontext: Any = None, server: Any = None,
                    backlog: int = 100, *args: Any, **kwargs: Any) -> Any:
    return _original(self, protocol_factory, sock, sslcontext, server, 1, *args, **kwargs)


def one_connection_per_wakeup() -> None:
    """Install (idempotent) for every asyncio selector loop of this process that starts serving afterwards."""
    selector_events.BaseSelectorEventLoop._accept_connection = _one_per_wakeup  # type: ignore[method-assign]
