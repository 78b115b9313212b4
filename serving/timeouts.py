"""The service's request timeout (`traffic.timeout`), without keeping every request alive for the whole timeout.

Why: BentoML answers a request that has not started its answer within the timeout with 504, through its
TimeoutMiddleware, which schedules a timer per request and never cancels it. The timer holds the request's waiter and
a copy of its context (the request's OpenTelemetry span with its attributes, events and lock), so each request's
objects outlived it by the timeout, 30 s here: at ~90 requests/s per worker about 2,700 requests' worth (~40,000 live
objects per worker, growing with the rate), which every full collection of the worker's garbage collector walks — one
pause of ~27 ms every 15–30 s per worker during a `/recommend` open loop (bench/service.py --throughput). asyncpg
fixed the same pattern in its query timeouts (MagicStack/asyncpg#831).

`RequestTimeout` keeps BentoML's contract (same configuration, same 504 body, the work cancelled where it can be: an
async endpoint at its next await; a sync endpoint's thread finishes unheard) and differs in three points: its timer
runs in an empty context, it is cancelled as soon as the answer starts, and a request that fails before answering
reaches the server's error handling at once instead of after the timeout. `install()` puts it where BentoML's app
factory looks for its timeout middleware; the service module calls it at import, before any app is built.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging

from starlette.responses import JSONResponse

log = logging.getLogger(__name__)
replaced: type | None = None  # BentoML's own, once `install` has replaced it (tests/test_timeouts.py)


class RequestTimeout:
    """ASGI middleware: 504 (JSON) when the answer has not started within `timeout` seconds."""

    def __init__(self, app, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        def expire() -> None:
            if not started.done():
                started.set_exception(TimeoutError())

        # an empty context: the timer must not hold the request's span and context vars once it is cancelled
        timer = loop.call_later(self.timeout, expire, context=contextvars.Context())

        async def answering(message) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, answering))
        try:
            await asyncio.wait((started, work), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on the request: so does its work
            work.cancel()
            raise
        finally:
            timer.cancel()
        if work.done() or started.exception() is None:
            await work  # answered, or failed before answering: the error reaches the server's handler at once
            return
        if work.cancel():
            await JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                               status_code=504)(scope, receive, send)


def install() -> None:
    """Make BentoML's app factory build `RequestTimeout` where it builds its own timeout middleware (idempotent).
    Where a BentoML release has moved it, nothing is replaced and the log says so (tests/test_timeouts.py fails)."""
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:
        log.warning("BentoML's traffic module moved: its request timeout keeps each request alive for the timeout")
        return
    if not hasattr(traffic, "TimeoutMiddleware"):
        log.warning("BentoML has no TimeoutMiddleware any more: RequestTimeout not installed")
        return
    global replaced
    if traffic.TimeoutMiddleware is not RequestTimeout:
        replaced = traffic.TimeoutMiddleware
        traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc, assignment]
