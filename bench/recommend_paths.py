"""`/recommend`'s two scoring paths side by side, in process (issues H 7, J 3): full scoring of the catalogue vs
faiss candidate retrieval, per-request time and agreement of the answers.

    .venv/bin/python bench/recommend_paths.py --items 500 1000 2000 4000 [--users 1000] [--requests 200]
    .venv/bin/python bench/recommend_paths.py --store /path/to/BENTOML_HOME [--recall-users 1000]

`--items`: for each size, a synthetic world (seed 0, cached under data/) and `Recommender.build` with default
settings (no tuning, no second stage), then both paths on the same sampled customers, interleaved so that load drift
on a shared machine hits both. Per request: CPU seconds of this process (user + sys) and wall time. This is where
`retrieval.MIN_ITEMS` comes from: the smallest catalogue where candidates are cheaper.

`--register WORLD --home BENTOML_HOME`: fit WORLD's recommender with `Recommender.build` (default filter settings, no
tuning, no second stage) and save it as a version in that store, for `bench/service.py --throughput --store` when
`train recommender` (tuning, LightGBM second stage) does not fit in the time at hand.

`--store`: the latest recommender of a trained model store (tuned, with its second stage, as served): the two paths
on `--recall-users` sampled customers (their top-20 overlap and how many lists are identical), and the index's own
top-20 recall against exact maximum-inner-product search over the filter's item vectors for the same customers.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# one BLAS / OpenMP thread, as `omnidecide serve` gives each worker (cli/lifecycle.py): a request's small products on
# two threads only spin-wait, which doubled the CPU per request measured here at 200k items (16.5 vs 4.5 ms)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn, users: list[str], k: int = 20) -> tuple[list, np.ndarray, np.ndarray]:
    """(answers, CPU ms per request, wall ms per request)."""
    out, cpu, wall = [], [], []
    for u in users:
        c0, w0 = _cpu(), time.perf_counter()
        out.append(fn(u, k))
        cpu.append(1e3 * (_cpu() - c0))
        wall.append(1e3 * (time.perf_counter() - w0))
    return out, np.array(cpu), np.array(wall)


def agreement(a: list, b: list) -> tuple[float, float]:
    """(mean top-k overlap, share of identical ordered lists) of two paths' answers."""
    ov = [len({r.item_id for r in x} & {r.item_id for r in y}) / max(len(x), 1) for x, y in zip(a, b)]
    same = [[r.item_id for r in x] == [r.item_id for r in y] for x, y in zip(a, b)]
    return float(np.mean(ov)), float(np.mean(same))


def both(rec, users: list[str], rounds: int = 2) -> dict:
    """Both paths on `users`, alternating in `rounds` halves; the retrieval path needs rec.retrieval set."""
    from omnidecide.models.recommender import rules

    index = rec.retrieval

    def exact(u, k):
        rec.retrieval = None
        try:
            return rules.recommend(rec, u, k)
        finally:
            rec.retrieval = index

    def ann(u, k):
        return rules.recommend(rec, u, k)

    ex, an = ([], [], []), ([], [], [])
    for part in np.array_split(np.array(users, dtype=object), rounds):
        for acc, fn in ((ex, exact), (an, ann)):
            res = timed(fn, list(part))
            for a, r in zip(acc, res):
                a.extend(r)
    overlap, same = agreement(ex[0], an[0])
    row = {"overlap@20": overlap, "identical": same}
    for name, (_, cpu, wall) in (("full", ex), ("retrieval", an)):
        row[f"{name}_cpu_ms_mean"] = float(np.mean(cpu))
        row[f"{name}_wall_ms_p50"] = float(np.median(wall))
        row[f"{name}_wall_ms_p99"] = float(np.quantile(wall, 0.99))
    return row


def sizes(args) -> None:
    from omnidecide.models.recommender.core import Recommender
    from omnidecide.models.recommender.retrieval import Retrieval

    print("| items | full: CPU ms/request | full: wall p50 / p99 ms | retrieval: CPU ms/request | retrieval: wall p50 / "
          "p99 ms | top-20 overlap | identical lists |")
    print("|---:|---:|---|---:|---|---:|---:|")
    for n in args.items:
        world = ROOT / "data" / f"paths-{args.users}-{n}"
        if not (world / "events.csv").exists():
            subprocess.run([str(Path(sys.executable).with_name("omnidecide")), "data", "synth", "--out", str(world),
                            "--users", str(args.users), "--items", str(n), "--seed", "0"], check=True,
                           stdout=subprocess.DEVNULL)
        ev = pd.read_csv(world / "events.csv", dtype={"user_id": str, "item_id": str}, parse_dates=["timestamp"])
        items = pd.read_csv(world / "items.csv", dtype={"item_id": str})
        users = pd.read_csv(world / "users.csv", dtype={"user_id": str})
        rec = Recommender.build(ev, items, users)
        rec.retrieval = Retrieval.build(rec)
        rng = np.random.default_rng(0)
        sample = list(rng.choice(rec.user_ids, min(args.requests, len(rec.user_ids)), replace=False))
        both(rec, sample[:20])  # warm caches
        r = both(rec, sample)
        print(f"| {len(rec.item_ids):,} | {r['full_cpu_ms_mean']:.2f} | {r['full_wall_ms_p50']:.1f} / "
              f"{r['full_wall_ms_p99']:.1f} | {r['retrieval_cpu_ms_mean']:.2f} | {r['retrieval_wall_ms_p50']:.1f} / "
              f"{r['retrieval_wall_ms_p99']:.1f} | {r['overlap@20']:.4f} | {r['identical']:.3f} |", flush=True)


def store(args) -> None:
    os.environ["BENTOML_HOME"] = str(args.store)
    from omnidecide.models.recommender.retrieval import Retrieval, filter_vectors, queries, recall_at
    from omnidecide.serving.recommender import RecommenderRuntime

    t0 = time.perf_counter()
    rt = RecommenderRuntime(live=False)
    load_s = time.perf_counter() - t0
    rec = rt.rec
    if rec.retrieval is None:
        rec.retrieval = Retrieval.build(rec)
    rng = np.random.default_rng(0)
    active = np.flatnonzero(rec.X.getnnz(1) > 0)
    uidx = np.sort(rng.choice(active, min(args.recall_users, len(active)), replace=False))
    users = [str(u) for u in rec.user_ids[uidx]]
    both(rec, users[:20])
    r = both(rec, users)
    g, p = rec.graph, rec.graph.params
    E, L, _ = filter_vectors(g.Q, g.lam, g.d_graph, p)
    recall = recall_at(queries(rec.X[uidx], L), E, rec.retrieval.items, k=20)
    print(f"Store {args.store}: {rt.tag}, {len(rec.item_ids):,} items, {len(rec.user_ids):,} customers; loaded in "
          f"{load_s:.1f} s; {len(users)} sampled customers with history, k=20, {rec.stage.serve} serving "
          f"{'with' if rec.ranker is not None and rec.ranker.use_for_ranking else 'without'} the LightGBM ranker.\n")
    print("| path | CPU ms/request | wall p50 ms | wall p99 ms |")
    print("|---|---:|---:|---:|")
    for name in ("full", "retrieval"):
        print(f"| {name} | {r[f'{name}_cpu_ms_mean']:.2f} | {r[f'{name}_wall_ms_p50']:.1f} | "
              f"{r[f'{name}_wall_ms_p99']:.1f} |")
    print(f"\nTop-20 lists, retrieval vs full scoring: overlap **{r['overlap@20']:.4f}**, identical lists "
          f"{r['identical']:.3f}. Index top-20 recall of exact inner-product search (300 candidates): "
          f"**{recall:.4f}**.")
    # the HNSW search breadth: recall of exact at the served number of candidates, and the search time per query
    from omnidecide.models.recommender import retrieval
    # the served search for this catalogue's size (retrieval.Retrieval.nearest: wider above LARGE_ITEMS)
    N_ANN, EF_SEARCH = (retrieval.N_ANN_LARGE, retrieval.EF_SEARCH_LARGE) if len(rec.item_ids) > retrieval.LARGE_ITEMS \
        else (retrieval.N_ANN, retrieval.EF_SEARCH)
    U = queries(rec.X[uidx], L)
    print(f"\n| efSearch | top-20 recall of exact ({N_ANN} candidates) | search ms p50 / p99 |\n|---:|---:|---|")
    for ef in sorted({64, 128, EF_SEARCH, 2 * EF_SEARCH}):
        lat = []
        for u in U[:300]:
            t = time.perf_counter()
            rec.retrieval.items.search(u[None, :], N_ANN, ef)
            lat.append(1e3 * (time.perf_counter() - t))
        rc = recall_at(U, E, rec.retrieval.items, k=20, candidates=N_ANN, ef=ef)
        print(f"| {ef}{' (served)' if ef == EF_SEARCH else ''} | {rc:.4f} | {np.median(lat):.2f} / "
              f"{np.quantile(lat, 0.99):.2f} |")


def register(world: Path, home: Path) -> None:
    os.environ["BENTOML_HOME"] = str(home)
    from omnidecide.models.recommender.core import Recommender
    from omnidecide.store import registry, snapshot
    from omnidecide.store.io import load

    from omnidecide.models.recommender.baskets import TIFU
    from omnidecide.training.recommender.scale import TIFU_POOL, is_large

    ext = ".parquet" if (world / "events.parquet").exists() else ".csv"
    large = is_large(world / f"events{ext}")  # the scale world: compact frames, TIFU neighbours from a pool
    ev = load(world / f"events{ext}", "events", compact=large).data
    it = load(world / f"items{ext}", "items").data
    ss = load(world / f"store_stock{ext}", "store_stock").data if (world / f"store_stock{ext}").exists() else None
    us = load(world / f"users{ext}", "users").data if not large else None  # as `train` is run at scale: no users
    t0 = time.perf_counter()
    rec = Recommender.build(ev, it, us, tifu=TIFU(pool=TIFU_POOL) if large else None)
    del ev
    print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)

    def write(folder: Path) -> None:
        rec.save(folder)
        snapshot.write(folder, it, ss)

    tag = registry.save("recommender", write, metrics={}, params={"fit": "Recommender.build, default settings"},
                        data_fingerprint=registry.fingerprint([world / f"events{ext}"]),
                        extra={"n_users": len(rec.user_ids), "n_items": len(rec.item_ids)})
    print(f"{tag}: fitted and saved in {time.perf_counter() - t0:.0f} s into {home}")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, nargs="*", default=[])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--recall-users", type=int, default=1000)
    ap.add_argument("--register", type=Path, default=None, help="a world folder to fit and save (with --home)")
    ap.add_argument("--home", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.register:
        return register(args.register, args.home)
    print(f"Run: `.venv/bin/python bench/recommend_paths.py {' '.join(argv)}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} at the start.\n", flush=True)
    if args.items:
        sizes(args)
    if args.store:
        store(args)
    print(f"\nLoad average {os.getloadavg()[0]:.1f} at the end.")


if __name__ == "__main__":
    main(sys.argv[1:])
