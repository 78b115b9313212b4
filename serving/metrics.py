"""Prometheus figures of the service, on BentoML's own `/metrics` (prometheus_client, multi-process safe).

Two histograms (count, sum and buckets each), so request rates, error rates and latency percentiles per endpoint and
per model version come from the scraper instead of being recomputed from log files:
- `omnidecide_request_seconds{endpoint, status}`: every HTTP request as the client saw it, refusals (401/403) and
  bad input (400) included;
- `omnidecide_model_seconds{endpoint, version, outcome}`: the model call of a request, by the version that answered
  (production or canary) and its outcome (ok, bad_input, error); what a canary is compared with production on.

The metric objects are made on first use, after BentoML has pointed prometheus_client at its multi-process folder
(made earlier, each worker would keep its figures to itself).
"""
from __future__ import annotations

import time

from omnidecide.serving.auth import OPEN, SCOPE_OF, StatusRecorder

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
KNOWN = set(SCOPE_OF) | OPEN
_made: tuple | None = None


def _histograms() -> tuple:
    global _made
    if _made is None:
        from prometheus_client import Histogram

        _made = (Histogram("omnidecide_request_seconds", "HTTP requests by endpoint and status code",
                           ["endpoint", "status"], buckets=BUCKETS),
                 Histogram("omnidecide_model_seconds", "Model calls by endpoint, serving version and outcome",
                           ["endpoint", "version", "outcome"], buckets=BUCKETS))
    return _made


_children: dict[tuple[str, str, str], object] = {}  # labelled histograms, looked up once (`labels` takes a lock)


def model_call(endpoint: str, version: str | None, outcome: str, seconds: float) -> None:
    key = (endpoint, version or "none", outcome)
    child = _children.get(key)
    if child is None:
        if len(_children) > 1000:  # versions come and go: keep the lookup bounded
            _children.clear()
        child = _children[key] = _histograms()[1].labels(*key)
    child.observe(seconds)  # type: ignore[attr-defined]


def endpoint_label(path: str) -> str:
    """The path when it is one of ours (a bounded label set), else "other"."""
    if path in KNOWN or path.startswith("/admin/"):
        return path
    return "other"


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request (outermost, so refused requests count too)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        sent = StatusRecorder(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            _histograms()[0].labels(endpoint_label(scope["path"]), str(sent.status)).observe(time.perf_counter() - start)
