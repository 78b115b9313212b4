"""Benchmark: latency of every HTTP endpoint through the real server (`omnidecide serve`), one run, one machine.

    .venv/bin/python bench/service.py [--users 5000] [--requests 300] [--concurrency 8]
    .venv/bin/python bench/service.py --throughput [--items 10000]   # /recommend vs a no-op endpoint, 2 workers
    .venv/bin/python bench/service.py --faults [--users 2000] [--fuzz-examples 50]
    .venv/bin/python bench/service.py --ingest [--batches 600] [--concurrency 8]   # /events throughput, score lookups

Builds a synthetic world (cached under data/), trains every model into a private model store, starts the BentoML
server as users would, then times each endpoint from a client on the same machine: sequential requests for the
latency percentiles, then `--concurrency` client threads for throughput. `/healthz` is the floor: what the web
framework alone costs per request. Prints a markdown table with date, machine, load and command.

`--faults` measures reliability instead (the reliability table in docs/BENCHMARKS.md): schemathesis cases against the
server's own /docs.json (valid and invalid, every operation) and how many answered 5xx; `/events` batches
acknowledged before the server is killed with SIGKILL mid-stream vs found after a restart (counted through
`/forget_user`); `/recommend` requests that failed while production was swapped between two versions under load.
"""
from __future__ import annotations

import argparse
import json
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


def start(omni: list[str], env: dict, port: int) -> subprocess.Popen:
    """`omnidecide serve` as users start it, in its own process group; returns once /readyz answers 200."""
    from omnidecide.serving.ready import wait_ready

    server = subprocess.Popen(omni + ["serve", "--port", str(port)], env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_ready(f"http://127.0.0.1:{port}", 240) is not None:
        return server
    raise RuntimeError("the server did not become ready in 240 s")


def stop(server: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(server.pid, sig)  # the server and its worker processes
    except ProcessLookupError:
        pass
    server.wait(60)


def fuzz(base: str, examples: int) -> tuple[int, int, dict[str, int]]:
    """Schemathesis over the server's /docs.json: (cases, 5xx answers, answers by status class)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base}/docs.json")
    counts: dict[str, int] = {}
    for path, ops in schema.raw_schema["paths"].items():
        for method in ops:
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if method == "post" else [])
            for mode in modes:
                @given(schema[path][method.upper()].as_strategy(generation_mode=mode))
                @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def one(case):
                    status = case.call(base_url=base).status_code
                    counts[f"{status // 100}xx"] = counts.get(f"{status // 100}xx", 0) + 1
                one()
    return sum(counts.values()), counts.get("5xx", 0), counts


def sigkill_events(omni: list[str], env: dict, port: int, seconds: float, threads: int) -> tuple[int, int, int]:
    """Post 20-event batches (a new user per batch) from `threads` clients; SIGKILL the server after `seconds`;
    restart it and count each acknowledged batch's events through /forget_user. Returns (acknowledged, found, lost)."""
    import threading

    import httpx

    base = f"http://127.0.0.1:{port}"
    server = start(omni, env, port)
    acked: dict[str, int] = {}
    lock, stop_at = threading.Lock(), time.monotonic() + seconds

    def writer(w: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            n = 0
            while time.monotonic() < stop_at + 30:
                user = f"kill-{w}-{n}"
                n += 1
                batch = [{"user_id": user, "item_id": f"i{k}", "event": "view",
                          "timestamp": f"2026-06-01T10:{k:02d}:00"} for k in range(20)]
                try:
                    r = c.post("/events", json={"events": batch})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked[user] = r.json()["accepted"]

    pool = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop(server, signal.SIGKILL)
    for t in pool:
        t.join()
    server = start(omni, env, port)
    found = 0
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for user in acked:
                found += min(acked[user], c.post("/forget_user", json={"user_id": user}).json()["deleted_events"])
    finally:
        stop(server)
    total = sum(acked.values())
    return total, found, total - found


def hot_swap(omni: list[str], env: dict, port: int, tags: list[str], swaps: int, threads: int,
             users: list[str]) -> tuple[int, int, set[str]]:
    """/recommend from `threads` clients while production alternates between two versions `swaps` times.
    Returns (requests, failed, versions seen in the answers)."""
    import threading

    import httpx

    base = f"http://127.0.0.1:{port}"
    server = start(omni, env, port)
    done, lock = threading.Event(), threading.Lock()
    tally = {"requests": 0, "failed": 0}
    seen: set[str] = set()

    def reader(w: int) -> None:
        rng = random.Random(w)
        with httpx.Client(base_url=base, timeout=60) as c:
            while not done.is_set():
                try:
                    r = c.post("/recommend", json={"user_id": rng.choice(users), "k": 20})
                    ok, model = r.status_code == 200, r.json().get("model") if r.status_code == 200 else None
                except (httpx.TransportError, ValueError):
                    ok, model = False, None
                with lock:
                    tally["requests"] += 1
                    tally["failed"] += not ok
                    if model:
                        seen.add(model)

    pool = [threading.Thread(target=reader, args=(w,)) for w in range(threads)]
    try:
        for t in pool:
            t.start()
        for n in range(swaps):
            subprocess.run(omni + ["models", "promote", tags[n % 2]], env=env, cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            time.sleep(4)
        done.set()
        for t in pool:
            t.join()
    finally:
        done.set()
        stop(server)
    return tally["requests"], tally["failed"], seen


def faults(args: argparse.Namespace, world: Path, omni: list[str], env: dict) -> None:
    port = free_port()
    users = pd.read_csv(world / "users.csv", dtype=str, usecols=["user_id"])["user_id"].tolist()[:500]
    first = registry_tag(omni, env)
    subprocess.run(omni + ["train", "recommender", "--events", str(world / "events.csv"), "--items",
                           str(world / "items.csv"), "--users", str(world / "users.csv")],
                   env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    second = registry_tag(omni, env)
    server = start(omni, env, port)
    try:
        cases, errors5, counts = fuzz(f"http://127.0.0.1:{port}", args.fuzz_examples)
    finally:
        stop(server)
    acked, found, lost = sigkill_events(omni, env, port, seconds=8, threads=4)
    requests, failed, seen = hot_swap(omni, env, port, [first, second], swaps=6, threads=4, users=users)

    print(f"Run: `{' '.join(['.venv/bin/python', 'bench/service.py'] + sys.argv[1:])}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}; synthetic world {args.users} users (seed 0); real server "
          f"(`omnidecide serve`), clients on the same machine.\n")
    print("| check | tried | failed | notes |")
    print("|---|---|---|---|")
    print(f"| schemathesis over /docs.json (valid + invalid cases, every operation) | {cases} cases | {errors5} 5xx | "
          f"answers {', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))} |")
    print(f"| `/events` acknowledged, then SIGKILL mid-stream | {acked} events acknowledged | {lost} lost | "
          f"{found} found after restart (4 clients, 20-event batches, killed after 8 s) |")
    print(f"| `/recommend` under load during 6 hot swaps (promote) | {requests} requests | {failed} failed | "
          f"versions answering: {len(seen)} |")


def registry_tag(omni: list[str], env: dict) -> str:
    """The newest recommender version's tag (what `models list` prints first)."""
    code = "from omnidecide.store import registry; print(registry.versions('recommender')[0]['tag'])"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def ingest(batches: int = 600, batch_size: int = 100, clients: int = 8) -> None:
    """`--ingest`: `/events` throughput in batches of `batch_size` and `/customer_scores` lookup latency, on the
    embedded SQLite and on PostgreSQL (the
    server `scripts/services/postgres.sh` starts; skipped with a note when it is not running), each through a real
    server with no models (ingestion needs none), `clients` concurrent clients, then every acknowledged event counted
    back in the database. Prints a markdown table with date, machine, load and command."""
    import threading

    import httpx

    from omnidecide.serving.ready import wait_ready
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
        key, read_key = (subprocess.run(omni + ["keys", "create", "--scope", scope, "--name", f"bench-{scope}"], env=env,
                                        cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                         for scope in ("ingest", "read"))
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}  # as in production
        server = subprocess.Popen(omni + ["serve", "--port", str(port)], env=env, cwd=ROOT, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, 180)
            now = "2026-06-01T10:00:00"

            def body(n: int) -> bytes:
                return json.dumps({"events": [{"user_id": f"u{(n * batch_size + k) % 5000}", "item_id": f"i{k % 400}",
                                               "event": "view", "timestamp": now, "channel": "app"}
                                              for k in range(batch_size)], "idempotency_key": f"b{n}"}).encode()

            bodies = [body(n) for n in range(batches)]  # encoded before the clock starts: the server is measured
            with httpx.Client(base_url=base, timeout=60, headers=headers) as c:  # warm-up
                for n in range(10):
                    assert c.post("/events", content=body(-1 - n)).status_code == 200
            latencies: list[float] = []
            acked = [0]
            lock = threading.Lock()
            todo = iter(range(batches))

            def client() -> None:
                with httpx.Client(base_url=base, timeout=60, headers=headers) as c:
                    for n in todo:  # shared iterator: each batch posted once
                        t = time.perf_counter()
                        r = c.post("/events", content=bodies[n])
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
            rows.append((backend, acked[0] / wall, p50, p99, f"{stored}/{acked[0]}", f"HTTP, {clients} clients"))
            for threads in (1, clients):  # the store alone: one writer (no grouping possible) vs concurrent writers
                eps = in_process(Database(url), threads, batches // 2, batch_size)
                rows.append((backend, eps, None, None, "", f"in-process `OnlineStore.append`, {threads} thread(s)"))
            lookups.extend((backend, *row) for row in score_lookups(base, Database(url), read_key))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    print(f"Run: `{' '.join(['.venv/bin/python', 'bench/service.py'] + sys.argv[1:])}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}; {batches} batches of {batch_size} events from {clients} concurrent "
          f"clients on the same machine (bodies encoded before timing), one server process (BentoML default), each batch "
          f"with an idempotency key and an API key.\n")
    print("| store | events/s | batch p50 ms | batch p99 ms | stored / acknowledged | note |")
    print("|---|---|---|---|---|---|")
    for backend, eps, p50, p99, kept, note in rows:
        figs = "| — | — | — | — " if eps is None else \
            f"| {eps:,.0f} | {p50:.1f} | {p99:.1f} | {kept} " if p50 is not None else f"| {eps:,.0f} | | | "
        print(f"| {backend} {figs}| {note} |")
    print("\n`/customer_scores` over 50,000 published scores (sequential calls, half the ids unknown):\n")
    print("| store | ids per call | calls | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for backend, n, calls, p50, p99 in lookups:
        print(f"| {backend} | {n:,} | {calls} | {p50:.1f} | {p99:.1f} |")


def in_process(db, threads: int, batches: int, batch_size: int) -> float:
    """Events/s through `OnlineStore.append` from `threads` threads (group commit needs concurrent writers)."""
    import threading

    from omnidecide.serving.online_store import OnlineStore

    store = OnlineStore(db)
    todo = iter(range(batches))

    def work() -> None:
        for n in todo:
            store.append([{"user_id": f"p{(n * batch_size + k) % 5000}", "item_id": f"i{k % 400}", "event": "view",
                           "timestamp": "2026-06-01T10:00:00", "channel": "app"} for k in range(batch_size)])

    pool = [threading.Thread(target=work) for _ in range(threads)]
    t = time.perf_counter()
    for w in pool:
        w.start()
    for w in pool:
        w.join()
    return batches * batch_size / (time.perf_counter() - t)


def score_lookups(base: str, db, key: str) -> list[tuple[int, int, float, float]]:
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
    with httpx.Client(base_url=base, timeout=60, headers={"authorization": f"Bearer {key}"}) as c:
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
    ap.add_argument("--faults", action="store_true", help="reliability under fuzzing, SIGKILL and hot swaps instead")
    ap.add_argument("--fuzz-examples", type=int, default=50, help="--faults: schemathesis examples per operation+mode")
    ap.add_argument("--ingest", action="store_true", help="only /events throughput in batches of 100 and "
                    "/customer_scores lookups (SQLite, PostgreSQL)")
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
    if args.faults:
        return faults(args, world, omni, env)
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
