"""Where a `/recommend` request's CPU goes, per component, in process, on a stored version (issue H, item 7).

    .venv/bin/python bench/recommend_profile.py --store BENTOML_HOME --world data/bench-service-1000-10000
        [--requests 400] [--evict-mb 8]

Runs what `OmniDecide.recommend` runs, step by step, for `--requests` known users (k=20, seed 0) after a warm-up pass,
and prints the CPU time (this thread's user+sys, `time.thread_time`) per request of each step: the request's
validation as BentoML does it (pydantic, from the JSON body), the online-store read, the version pick and the live
catalogue's check, the model path (retrieval, scores, rules, ranker, reasons: models/recommender), the decision-log
line (queued) and its batched insert (flushed once at the end, per line), the Prometheus observation and the JSON
body. What BentoML itself costs per request (HTTP, middlewares, the thread hop) is not here: `/noop` in
bench/service.py --throughput measures it. `--evict-mb N`: before each request (untimed) read N MB of other memory, as
the HTTP stack between two requests of a worker does: the model path's data then comes from memory, not from cache,
closer to what a served worker spends on it than back-to-back requests, which find it in cache.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="BENTOML_HOME holding the recommender version")
    ap.add_argument("--world", type=Path, required=True, help="its synthetic world (users.csv)")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--evict-mb", type=float, default=0.0, help="MB read before each request (untimed): a cold cache")
    args = ap.parse_args(argv)
    os.environ["BENTOML_HOME"] = str(args.store)
    os.environ.pop("OMNIDECIDE_DATABASE_URL", None)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="omnidecide-profile-"))
    import pandas as pd

    from omnidecide.serving import audit, metrics
    from omnidecide.serving.audit import DecisionLog
    from omnidecide.serving.online_store import OnlineStore
    from omnidecide.serving.recommender import RecommenderRuntime, RecommendRequest
    from omnidecide.serving.routing import Versions

    audit.FLUSH_S, audit.FLUSH_LINES = 1e9, 10**9  # the inserts are timed on their own, below
    versions, store, log = Versions("recommender", RecommenderRuntime), OnlineStore(), DecisionLog()
    rng = random.Random(0)
    users = pd.read_csv(args.world / "users.csv", dtype=str, usecols=["user_id"])["user_id"].tolist()
    bodies = [json.dumps({"user_id": rng.choice(users), "k": 20}).encode() for _ in range(args.requests)]
    spent: dict[str, float] = {}
    import numpy as np

    other = np.ones(int(args.evict_mb * 2**20 / 8))

    def timed(step: str, fn):
        start = time.thread_time()
        out = fn()
        spent[step] = spent.get(step, 0.0) + time.thread_time() - start
        return out

    for _ in range(2):  # the first pass warms caches and lazy imports; the second is reported
        spent.clear()
        log.flush()
        for body in bodies:
            other.sum()
            req = timed("request validation (pydantic, as BentoML)", lambda: RecommendRequest.model_validate_json(body))
            stored = timed("online-store read", lambda: store.recent_items(req.user_id))
            rt = timed("version pick + live catalogue check", lambda: (versions.pick(req.user_id), )[0])
            timed("version pick + live catalogue check", rt.sync)
            live, rt.live = rt.live, None  # synced just above: time the model alone
            ranked = timed("model path (models/recommender)", lambda: rt.rank(req, stored=stored))
            rt.live = live
            timed("decision-log line (queued)", lambda: log.write("recommend", ranked.model, req.user_id, {
                "fallback": ranked.fallback, "channel": req.channel, "store_id": req.store_id,
                "personalized": req.personalized, "items": [[r.item_id, r.reason] for r in ranked.rows]}, ms=1.0))
            timed("Prometheus observation", lambda: metrics.model_call("recommend", ranked.model, "ok", 0.005))
            timed("JSON body", ranked.json)
        timed("decision-log insert (batched, at the end)", log.flush)
    n = len(bodies)
    evicted = f", {args.evict_mb:g} MB read before each" if args.evict_mb else ""
    print(f"Run: `.venv/bin/python bench/recommend_profile.py {' '.join(argv)}` — "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average {os.getloadavg()[0]:.1f}, "
          f"{n} requests (k=20), version {rt.tag}{evicted}.\n")
    print("| step | CPU ms per request |")
    print("|---|---|")
    for step, s in spent.items():
        print(f"| {step} | {s / n * 1000:.3f} |")
    model = spent["model path (models/recommender)"]
    total = sum(spent.values())
    print(f"| **all** (outside the model: {(total - model) / n * 1000:.3f}) | {total / n * 1000:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
