"""`/recommend` throughput at a 10,000-item catalogue beside a no-op endpoint of the same server (issue H, item 7).

    .venv/bin/python bench/service.py --throughput [--users 3000] [--items 10000] [--seconds 20] [--concurrency 16]
        [--store BENTOML_HOME]   # a store already trained on that world (training 10,000 items takes a while)

Trains the recommender on a synthetic world of `--items` items, creates a read key, starts `omnidecide serve
--workers 2` and drives it from one asyncio client process (aiohttp) on the same machine:
1. closed loop, `--concurrency` requests in flight: `/noop` (a `@bentoml.api` that returns {} — what BentoML and
   the key check cost) and `/recommend` (a known user, k=20) alternately, twice each, so load drift on a shared
   machine hits both; requests/s per run and the mean per endpoint;
2. open loop at half `/recommend`'s requests/s (and at each other fraction of it given by `--loads`): requests sent
   on a fixed schedule whatever the answers do, latency
   counted from the scheduled send time (no coordinated omission): p50/p95/p99.
Targets: /recommend >= 0.5x /noop requests/s; p99 <= 15 ms at half load. The client's CPU seconds per run are
printed: where the client is saturated, both endpoints are capped by it and the ratio flatters /recommend. So is the
server's: CPU ms (user+sys) per request summed over the workers, and each worker's share of it — a worker left idle
(every connection on the other) halves a CPU-bound endpoint's throughput whatever the code costs. Last, the resident
memory of each worker.

The client's own garbage collector is off during every timed run (collected and frozen before it): a generation-2
collection of the client process, holding the open loop's thousands of pending requests, paused it for 47 ms in one
run, and every request due in that pause counted the pause as the server's latency, then arrived at once with the next
ones. A load generator without a collector (wrk, k6) has no such pause; the server's collector stays as deployed.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import platform
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def client_gc_off():
    """No collection in the client while it measures (module docstring); what it made before is frozen out of
    sight first, and the collector is back afterwards."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def workers(pid: int) -> list:
    """The BentoML worker processes under the server `pid`."""
    import psutil

    return [p for p in psutil.Process(pid).children(recursive=True) if "_bentoml_impl.worker" in " ".join(p.cmdline())]


def worker_cpu(procs: list) -> list[float]:
    """CPU seconds (user+sys) each worker has used so far."""
    return [sum(p.cpu_times()[:2]) for p in procs]


async def closed_loop(url: str, path: str, bodies: list[dict], key: str, concurrency: int, seconds: float) -> dict:
    import aiohttp

    done, errors = 0, 0
    stop = time.perf_counter() + seconds
    headers = {"authorization": f"Bearer {key}"}

    async def worker(session, n: int) -> None:
        nonlocal done, errors
        i = n
        while time.perf_counter() < stop:
            async with session.post(url + path, json=bodies[i % len(bodies)], headers=headers) as r:
                await r.read()
                done += r.status == 200
                errors += r.status != 200
            i += concurrency

    with client_gc_off():
        cpu0, t0 = _cpu(), time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
            await asyncio.gather(*(worker(s, n) for n in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"rps": done / wall, "done": done, "errors": errors, "client_cpu_share": (_cpu() - cpu0) / wall}


async def open_loop(url: str, path: str, bodies: list[dict], key: str, rate: float, seconds: float) -> dict:
    import aiohttp

    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    headers = {"authorization": f"Bearer {key}"}
    start = time.perf_counter() + 0.2

    async def one(session, i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        async with session.post(url + path, json=bodies[i % len(bodies)], headers=headers) as r:
            await r.read()
            if r.status == 200:
                lat[i] = (time.perf_counter() - due) * 1000

    with client_gc_off():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            await asyncio.gather(*(one(s, i) for i in range(n)))
    ok = lat[np.isfinite(lat)]
    p50, p95, p99 = np.percentile(ok, [50, 95, 99])
    return {"rate": rate, "n": n, "failed": int(n - len(ok)), "p50": p50, "p95": p95, "p99": p99, "max": ok.max()}


def worker_memory(pid: int) -> list[tuple[float, float]]:
    """(resident, proportional) memory in GiB of each BentoML worker process under the server `pid`, read once after
    the timed runs: PSS counts a page shared by the workers (the version's mapped arrays) once in all, RSS in each.
    Never during them: reading PSS walks the worker's page tables under its memory-map lock (bench/scale.py)."""
    from procmem import rollup

    memory = [rollup(p.pid) for p in workers(pid)]
    return sorted((m.get("Rss", float("nan")), m.get("Pss", float("nan"))) for m in memory)


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--world-items", type=int, default=None,
                    help="train on a world of this many items and post the rest of --items to /items (cold items)")
    ap.add_argument("--store", type=Path, default=None,
                    help="a model store (BENTOML_HOME) whose recommender was trained on this world: skips training")
    ap.add_argument("--loads", default="0.5", help="comma-separated fractions of /recommend's max req/s to run the "
                    "open loop at (the issue's target is at 0.5; bench/scale.py adds 0.25)")
    ap.add_argument("--world", type=Path, default=None,
                    help="the world --store was trained on (users.csv or users.parquet), instead of a synthetic one "
                    "made from --users/--items (bench/scale.py: the 1M-customer world)")
    args = ap.parse_args(argv)
    import httpx

    from omnidecide.serving.ready import wait_ready

    world_items = args.world_items or args.items
    world = args.world or ROOT / "data" / f"bench-service-{args.users}-{world_items}"
    omni = [str(Path(sys.executable).with_name("omnidecide"))]
    if args.world is None and not (world / "truth.json").exists():
        subprocess.run(omni + ["data", "synth", "--out", str(world), "--users", str(args.users), "--seed", "0",
                               "--items", str(world_items)], check=True)
    env = {**os.environ, "BENTOML_HOME": str(args.store or tempfile.mkdtemp(prefix="omnidecide-bench-throughput-"))}
    env.pop("OMNIDECIDE_DATABASE_URL", None)  # the store's own embedded database
    t0 = time.perf_counter()
    if args.store is None:
        subprocess.run(omni + ["train", "recommender", "--events", str(world / "events.csv"), "--items",
                               str(world / "items.csv"), "--users", str(world / "users.csv")], check=True, env=env,
                       cwd=ROOT)
    train = f"`train recommender` {time.perf_counter() - t0:.0f} s" if args.store is None else "store trained earlier"
    key = subprocess.run(omni + ["keys", "create", "--scope", "read", "--name", f"bench-{os.getpid()}"], check=True,
                         env=env, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = _free_port()
    server = subprocess.Popen(omni + ["serve", "--port", str(port), "--workers", "2"], env=env, cwd=ROOT,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(0)
    users = (pd.read_parquet(world / "users.parquet", columns=["user_id"]) if (world / "users.parquet").exists() else
             pd.read_csv(world / "users.csv", dtype=str, usecols=["user_id"]))["user_id"].astype(str).tolist()
    rec = [{"user_id": rng.choice(users), "k": 20} for _ in range(2000)]
    noop = [{}]
    runs: dict[str, list[dict]] = {"/noop": [], "/recommend": []}
    try:
        wait_ready(url, 900)  # a 1M-customer version takes minutes to load
        if world_items < args.items:  # the rest of the catalogue arrives live (POST /items), as cold items
            ingest = subprocess.run(omni + ["keys", "create", "--scope", "ingest", "--name", f"bench-in-{os.getpid()}"],
                                    check=True, env=env, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            cats = pd.read_csv(world / "items.csv", dtype={"item_id": str})["category"].tolist()
            new = [{"item_id": f"live{n:05d}", "category": rng.choice(cats), "price": round(rng.uniform(1, 99), 2),
                    "margin": 0.3, "stock": 50} for n in range(args.items - world_items)]
            for b in range(0, len(new), 1000):
                r = httpx.post(f"{url}/items", json={"items": new[b: b + 1000]},
                               headers={"authorization": f"Bearer {ingest}"}, timeout=120)
                assert r.status_code == 200, r.text
        first = httpx.post(f"{url}/recommend", json=rec[0], headers={"authorization": f"Bearer {key}"},
                           timeout=120).json()
        assert first.get("items"), first
        asyncio.run(closed_loop(url, "/recommend", rec, key, args.concurrency, 5))  # warm both workers
        load0 = os.getloadavg()[0]
        procs = workers(server.pid)
        for _ in range(2):
            for path, bodies in (("/noop", noop), ("/recommend", rec)):
                cpu0 = worker_cpu(procs)
                run = asyncio.run(closed_loop(url, path, bodies, key, args.concurrency, args.seconds))
                used = [b - a for a, b in zip(cpu0, worker_cpu(procs))]
                run["server_cpu_ms"] = sum(used) / max(run["done"] + run["errors"], 1) * 1000
                run["worker_shares"] = [u / max(sum(used), 1e-9) for u in used]
                runs[path].append(run)
        rps = {p: float(np.mean([r["rps"] for r in rs])) for p, rs in runs.items()}
        opens = {f: asyncio.run(open_loop(url, "/recommend", rec, key, rps["/recommend"] * f, args.seconds))
                 for f in sorted({0.5, *map(float, args.loads.split(","))})}
        load1 = os.getloadavg()[0]
        memory = worker_memory(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    ratio = rps["/recommend"] / rps["/noop"]
    print(f"Run: `{' '.join(['.venv/bin/python', 'bench/service.py'] + argv)}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {load0:.1f} before / {load1:.1f} after the timed runs; "
          f"{f'world {world}' if args.world else f'synthetic world {args.users} users, {world_items} items (seed 0)'}, "
          f"{train}; served catalogue {args.items} items"
          f"{f' ({args.items - world_items} posted to /items, cold)' if world_items < args.items else ''}; `omnidecide serve --workers 2`, one "
          f"aiohttp client process on the same machine, {args.concurrency} requests in flight, {args.seconds:.0f} s "
          f"per run.\n")
    print("| endpoint | req/s run 1 | req/s run 2 | mean req/s | server CPU ms/request (runs 1, 2) | "
          "workers' shares of it (runs 1, 2) | client CPU share | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for path, rs in runs.items():
        shares = ", ".join("/".join(f"{x:.2f}" for x in r["worker_shares"]) for r in rs)
        print(f"| {path} | {rs[0]['rps']:.0f} | {rs[1]['rps']:.0f} | {rps[path]:.0f} | "
              f"{rs[0]['server_cpu_ms']:.2f}, {rs[1]['server_cpu_ms']:.2f} | {shares} | "
              f"{np.mean([r['client_cpu_share'] for r in rs]):.2f} | {sum(r['errors'] for r in rs)} |")
    print(f"\n/recommend / /noop = **{ratio:.2f}x** (target >= 0.5x).\n")
    for f, o in opens.items():
        print(f"Open loop at {f:g} of /recommend's rate ({o['rate']:.0f} req/s, {o['n']} requests, "
              f"{o['failed']} failed): p50 {o['p50']:.1f} ms, p95 {o['p95']:.1f} ms, **p99 {o['p99']:.1f} ms**"
              f"{' (target <= 15 ms)' if f == 0.5 else ''}, max {o['max']:.1f} ms.")
    print(f"\nMemory per worker after the runs: RSS {', '.join(f'{r:.2f}' for r, _ in memory)} GiB, "
          f"PSS {', '.join(f'{p:.2f}' for _, p in memory)} GiB.")
