"""Benchmark: latency of every HTTP endpoint through the real server (`omnidecide serve`), one run, one machine.

    .venv/bin/python bench/service.py [--users 5000] [--requests 300] [--concurrency 8]
    .venv/bin/python bench/service.py --throughput [--items 10000]   # /recommend vs a no-op endpoint, 2 workers

Builds a synthetic world (cached under data/), trains every model into a private model store, starts the BentoML
server as users would, then times each endpoint from a client on the same machine: sequential requests for the
latency percentiles, then `--concurrency` client threads for throughput. `/healthz` is the floor: what the web
framework alone costs per request. Prints a markdown table with date, machine, load and command.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def requests_for(world: Path, n: int, seed: int = 0) -> dict[str, list[dict | None]]:
    """`n` realistic bodies per endpoint, drawn from the world (known and unknown users, real items, real histories)."""
    rng = random.Random(seed)
    users = pd.read_csv(world / "users.csv", dtype=str, usecols=["user_id"])["user_id"].tolist()
    items = pd.read_csv(world / "items.csv", dtype={"item_id": str})["item_id"].tolist()
    events = pd.read_csv(world / "events.csv", dtype=str, keep_default_na=False, nrows=200_000)
    hist = {u: g for u, g in events.groupby("user_id")}
    churn_users = rng.sample(sorted(hist), min(n, len(hist)))
    as_of = str(pd.Timestamp(events["timestamp"].max()).date())
    channels = ["douyin", "wechat_moments", "tmall_ads", "search"]

    def recent(k: int) -> list[dict]:
        return [{"item_id": rng.choice(items), "event": rng.choice(["view", "click", "cart"])} for _ in range(k)]

    def churn_body(u: str) -> dict:
        g = hist[u]
        evs = [{"user_id": u, "timestamp": r.timestamp, "event": r.event, "item_id": r.item_id or None,
                "amount": float(r.amount) if r.amount else None} for r in g.itertuples()]
        return {"as_of": as_of, "events": evs}

    return {
        "/healthz": [None] * n,
        "/recommend (known user)": [{"user_id": rng.choice(users), "k": 20} for _ in range(n)],
        "/recommend (session events)": [{"user_id": f"visitor{i}", "k": 20, "recent_events": recent(5)} for i in range(n)],
        "/recommend (cold start)": [{"user_id": f"new{i}", "k": 20, "channel": rng.choice(channels)} for i in range(n)],
        "/events (5 events)": [{"events": [{"user_id": f"visitor{i}", "timestamp": "2026-06-01T10:00:00", **e}
                                           for e in recent(5)]} for i in range(n)],
        "/similar_items": [{"item_id": rng.choice(items), "k": 10} for _ in range(n)],
        "/bid (50 candidates)": [{"user_id": rng.choice(users), "channel": rng.choice(channels),
                                  "candidates": rng.sample(items, 50)} for _ in range(n)],
        "/predict_churn (1 customer)": [churn_body(rng.choice(churn_users)) for _ in range(n)],
        "/allocate (T=26, budget only)": [{"budget": rng.uniform(5e5, 2e6), "periods": 26, "reserve": 0.15}
                                          for _ in range(n)],
    }


def main() -> None:
    if "--throughput" in sys.argv:  # /recommend at 10,000 items vs a no-op endpoint, 2 workers (issue H)
        sys.path.insert(0, str(Path(__file__).parent))
        from recommend_throughput import main as throughput

        return throughput(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=400, help="catalogue size of the synthetic world")
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    import httpx

    world = ROOT / "data" / f"bench-service-{args.users}" if args.items == 400 else \
        ROOT / "data" / f"bench-service-{args.users}-{args.items}"
    omni = [str(Path(sys.executable).with_name("omnidecide"))]
    if not (world / "truth.json").exists():
        subprocess.run(omni + ["data", "synth", "--out", str(world), "--users", str(args.users), "--seed", "0",
                               "--items", str(args.items)], check=True)
    env = {**os.environ, "BENTOML_HOME": tempfile.mkdtemp(prefix="omnidecide-bench-service-")}
    t0 = time.perf_counter()
    subprocess.run(omni + ["train", "all", "--data", str(world)], check=True, env=env, cwd=ROOT)
    train_s = time.perf_counter() - t0
    port = free_port()
    server = subprocess.Popen(omni + ["serve", "--port", str(port)], env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(120):
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            bodies = requests_for(world, args.requests)
            rows = []
            for name, reqs in bodies.items():
                route = name.split(" ")[0]
                call = (lambda b: c.get(route)) if reqs[0] is None else (lambda b: c.post(route, json=b))
                for b in reqs[:10]:  # warm-up: first call per version/channel builds caches
                    assert call(b).status_code == 200, (name, call(b).text[:300])
                lat = []
                for b in reqs:
                    t = time.perf_counter()
                    r = call(b)
                    lat.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (name, r.text[:300])
                with ThreadPoolExecutor(args.concurrency) as pool, httpx.Client(base_url=base, timeout=60) as c2:
                    post = (lambda b: c2.get(route)) if reqs[0] is None else (lambda b: c2.post(route, json=b))
                    t = time.perf_counter()
                    list(pool.map(post, reqs))
                    rps = len(reqs) / (time.perf_counter() - t)
                q = np.percentile(lat, [50, 95, 99])
                rows.append((name, *q, max(lat), rps))
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its worker processes
        server.wait(30)

    print(f"Run: `{' '.join(['.venv/bin/python', 'bench/service.py'] + sys.argv[1:])}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}; synthetic world {args.users} users, {args.items} items (seed 0); "
          f"`train all` {train_s:.0f} s; "
          f"one server process (BentoML default), client on the same machine.\n")
    print(f"| endpoint | p50 ms | p95 ms | p99 ms | max ms | req/s with {args.concurrency} clients |")
    print("|---|---|---|---|---|---|")
    for name, p50, p95, p99, mx, rps in rows:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {mx:.1f} | {rps:.0f} |")


if __name__ == "__main__":
    main()
