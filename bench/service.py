"""Benchmark: latency of every HTTP endpoint through the real server (`omnidecide serve`), one run, one machine.

    .venv/bin/python bench/service.py [--users 5000] [--requests 300] [--concurrency 8]
    .venv/bin/python bench/service.py --throughput [--items 10000]   # /recommend vs a no-op endpoint, 2 workers
    .venv/bin/python bench/service.py --ingest [--batches 600] [--concurrency 8]   # /events throughput only

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


def ingest(batches: int = 600, batch_size: int = 100, clients: int = 8) -> None:
    """`--ingest`: `/events` throughput in batches of `batch_size` and `/customer_scores` lookup latency, on the
    embedded SQLite and on PostgreSQL (the
    server `scripts/services/postgres.sh` starts; skipped with a note when it is not running), each through a real
    server with no models (ingestion needs none), `clients` concurrent clients, then every acknowledged event counted
    back in the database. Prints a markdown table with date, machine, load and command."""
    import threading

    import httpx

    from omnidecide.store.db import Database

    url_file = Path("/tmp/omnidecide-test-database-url")
    pg = os.environ.get("OMNIDECIDE_TEST_DATABASE_URL") or (url_file.read_text().strip() if url_file.exists() else "")
    omni = [str(Path(sys.executable).with_name("omnidecide"))]
    rows: list[tuple] = []
    lookups: list[tuple] = []
    for backend in ("SQLite (embedded)", "PostgreSQL"):
        home = tempfile.mkdtemp(prefix="omnidecide-bench-ingest-")
        env = {**os.environ, "BENTOML_HOME": home}
        url = f"sqlite:///{home}/omnidecide.sqlite3"
        if backend == "PostgreSQL":
            if not pg:
                rows.append((backend, None, None, None, None, "not run: start scripts/services/postgres.sh"))
                continue
            import psycopg
            name = f"omnidecide_bench_{os.getpid()}"
            with psycopg.connect(pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{name}"')
            url = pg.rsplit("/", 1)[0] + f"/{name}"
            env.update(OMNIDECIDE_DATABASE_URL=url, OMNIDECIDE_HASH_SECRET="bench")
        port = free_port()
        server = subprocess.Popen(omni + ["serve", "--port", str(port)], env=env, cwd=ROOT, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(180):
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            now = "2026-06-01T10:00:00"

            def body(n: int) -> dict:
                return {"events": [{"user_id": f"u{(n * batch_size + k) % 5000}", "item_id": f"i{k % 400}",
                                    "event": "view", "timestamp": now, "channel": "app"} for k in range(batch_size)],
                        "idempotency_key": f"b{n}"}

            with httpx.Client(base_url=base, timeout=60) as c:  # warm-up
                for n in range(10):
                    assert c.post("/events", json=body(-1 - n)).status_code == 200
            latencies: list[float] = []
            acked = [0]
            lock = threading.Lock()
            todo = iter(range(batches))

            def client() -> None:
                with httpx.Client(base_url=base, timeout=60) as c:
                    for n in todo:  # shared iterator: each batch posted once
                        t = time.perf_counter()
                        r = c.post("/events", json=body(n))
                        with lock:
                            latencies.append((time.perf_counter() - t) * 1000)
                            acked[0] += r.json()["accepted"] if r.status_code == 200 else 0

            threads = [threading.Thread(target=client) for _ in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            stored = Database(url).query("SELECT COUNT(*) FROM events")[0][0] - 10 * batch_size
            p50, p99 = np.percentile(latencies, [50, 99])
            rows.append((backend, acked[0] / wall, p50, p99, f"{stored}/{acked[0]}", ""))
            lookups.extend((backend, *row) for row in score_lookups(base, Database(url)))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    print(f"Run: `{' '.join(['.venv/bin/python', 'bench/service.py'] + sys.argv[1:])}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}; {batches} batches of {batch_size} events from {clients} concurrent "
          f"clients on the same machine, one server process (BentoML default), each batch with an idempotency key.\n")
    print("| store | events/s | batch p50 ms | batch p99 ms | stored / acknowledged | note |")
    print("|---|---|---|---|---|---|")
    for backend, eps, p50, p99, kept, note in rows:
        figs = "| — | — | — | — " if eps is None else f"| {eps:,.0f} | {p50:.1f} | {p99:.1f} | {kept} "
        print(f"| {backend} {figs}| {note} |")
    print("\n`/customer_scores` over 50,000 published scores (sequential calls, half the ids unknown):\n")
    print("| store | ids per call | calls | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for backend, n, calls, p50, p99 in lookups:
        print(f"| {backend} | {n:,} | {calls} | {p50:.1f} | {p99:.1f} |")


def score_lookups(base: str, db) -> list[tuple[int, int, float, float]]:
    """Publish 50,000 customer scores into the server's database, then time `/customer_scores` for 1 and 1,000 ids
    per call: (ids, calls, p50 ms, p99 ms)."""
    import httpx

    from omnidecide.store import scores

    n = 50_000
    table = pd.DataFrame({"user_id": [f"s{i}" for i in range(n)], "churn_probability": np.linspace(0, 1, n),
                          "risk_tier": "low", "segment": "loyal", "expected_spend": 10.0, "reason": "bench"})
    scores.publish(table, "churn:bench", "2026-06-30", db)
    rng = random.Random(0)
    out = []
    with httpx.Client(base_url=base, timeout=60) as c:
        for ids, calls in ((1, 300), (1000, 100)):
            lat = []
            for k in range(calls + 5):
                body = {"user_ids": [f"s{rng.randrange(2 * n)}" for _ in range(ids)]}  # half unknown
                t = time.perf_counter()
                r = c.post("/customer_scores", json=body)
                if k >= 5:  # warm-up
                    lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text[:300]
            out.append((ids, calls, *np.percentile(lat, [50, 99])))
    return out


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
    ap.add_argument("--ingest", action="store_true", help="only /events throughput in batches of 100 (SQLite, PostgreSQL)")
    ap.add_argument("--batches", type=int, default=600, help="with --ingest: batches of 100 events to post")
    args = ap.parse_args()
    if args.ingest:
        return ingest(args.batches, clients=args.concurrency)
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
