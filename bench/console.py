"""Benchmark: how long each console page takes to answer on the demo world, cold (first visit draws and caches a
report's figures) and warm, beside `/healthz` and `/models` through the same app: one run, one machine.

    BENTOML_HOME=model_store .venv/bin/python bench/console.py [--repeat 5] [--promote]

Uses the model store as `scripts/demo.sh` leaves it (run the demo once first). The service runs in-process (its
ASGI app under Starlette's test client: no network, so the figure is the server's own time). With no API keys
configured it runs open, as on loopback; otherwise pass OMNIDECIDE_CONSOLE_KEY (a read key). Prints a markdown table
with date, machine, load and command.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone

PAGES = ["/ui/", "/ui/recommend?user_id={user}", "/ui/whatif", "/ui/reports", "/ui/reports/recommender",
         "/ui/reports/churn", "/ui/reports/allocator"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--user", default=None, help="customer id for the preview (default: the synthetic world's first)")
    ap.add_argument("--promote", action="store_true", help="first promote each serving version (logs a decision, so "
                    "the reports' lifecycle figures have something to draw; changes the store's stages)")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from omnidecide.serving.service import OmniDecide

    user = args.user or "u0000000"  # the synthetic world's first customer
    if args.promote:
        from omnidecide.store import registry

        for name in registry.MODEL_NAMES:
            if (tag := registry.serving_tag(name)) is not None:
                registry.promote(tag, reason="bench/console.py")
    key = os.environ.get("OMNIDECIDE_CONSOLE_KEY")
    rows = []
    with TestClient(OmniDecide.to_asgi()) as c:
        if key:
            c.cookies.set("omnidecide_key", key)
        auth = {"authorization": f"Bearer {key}"} if key else {}

        def timed(method: str, path: str) -> float:
            t = time.perf_counter()
            r = c.request(method, path, headers=auth, json={} if method == "POST" else None)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            return (time.perf_counter() - t) * 1000

        for method, path in [("GET", "/healthz"), ("POST", "/models")] + [("GET", p.format(user=user)) for p in PAGES]:
            cold = timed(method, path)
            warm = [timed(method, path) for _ in range(args.repeat)]
            rows.append((path, cold, statistics.median(warm), max(warm)))
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`")
    print("\n| page | cold ms | warm median ms | warm max ms |\n|---|---|---|---|")
    for path, cold, med, mx in rows:
        print(f"| `{path}` | {cold:.0f} | {med:.0f} | {mx:.0f} |")


if __name__ == "__main__":
    main()
