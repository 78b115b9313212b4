"""Waiting for a started server to answer `GET /readyz`: the benches and the tests that start `omnidecide serve` or a
built Bento all need it, and a start-up (torch, BentoML, model loads) takes from seconds to minutes on 2 busy cores."""
from __future__ import annotations

import subprocess
import time

import httpx


def wait_ready(url: str, seconds: float, proc: subprocess.Popen | None = None,
               every: float = 1.0) -> httpx.Response | None:
    """The first 200 answer of `{url}/readyz`, polled every `every` s; None when `seconds` pass first, or at once when
    `proc` (the server's process) has exited: the caller says which, with the server's own output."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return None
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:  # not listening yet
            pass
        time.sleep(every)
    return None
