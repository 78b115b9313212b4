"""`/recommend`'s rows on one stored version, saved by one code version and compared by another (issue H, item 7):
how far a speed change moves the answers.

    .venv/bin/python bench/recommend_rows.py dump ROWS.json --store BENTOML_HOME      # on the code before
    .venv/bin/python bench/recommend_rows.py compare ROWS.json --store BENTOML_HOME   # on the code after
        [--customers N]   # every n-th customer, about N of them (default: every customer)

Requests, in process through `RecommenderRuntime.rank` (what the endpoint serves): every customer of the version
with k=20; every third also with k=10 at one of the version's stores on channel "app" (per-store stock); every fifth
also with a fresh "cart" event on an item picked by a fixed rule. `compare` prints the mean top-k overlap with the
saved lists, the share of identical item lists, of identical rows (items, reasons, sources) and of rows identical
with their scores to 9 digits, and the CPU ms per request of this run (this thread's user+sys).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["dump", "compare"])
    ap.add_argument("rows", type=Path)
    ap.add_argument("--store", type=Path, required=True, help="BENTOML_HOME holding the recommender version")
    ap.add_argument("--customers", type=int, default=0,
                    help="every n-th customer so that about this many are asked (0: every customer; the 1M-customer "
                    "version of bench/scale.py)")
    args = ap.parse_args(argv)
    os.environ["BENTOML_HOME"] = str(args.store)
    os.environ.pop("OMNIDECIDE_DATABASE_URL", None)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="omnidecide-rows-"))
    from omnidecide.serving.recommender import RecommenderRuntime, RecommendRequest

    rt = RecommenderRuntime(live=False)
    stores = sorted(rt.store_stock)
    items = rt.rec.item_ids
    reqs = []
    step = max(1, len(rt.rec.user_ids) // args.customers) if args.customers else 1
    for n, u in enumerate(rt.rec.user_ids[::step]):
        reqs.append(RecommendRequest(user_id=str(u), k=20))
        if n % 3 == 0 and stores:
            reqs.append(RecommendRequest(user_id=str(u), k=10, store_id=stores[n % len(stores)], channel="app"))
        if n % 5 == 0:
            reqs.append(RecommendRequest(user_id=str(u), k=20, recent_events=[
                {"item_id": str(items[(n * 37) % len(items)]), "event": "cart"}]))
    for q in reqs[:50]:  # warm-up: lazy imports and per-catalogue memos
        rt.rank(q)
    start = time.thread_time()
    out = [[[r.item_id, round(r.score, 9), r.reason, r.source] for r in rt.rank(q).rows] for q in reqs]
    cpu_ms = (time.thread_time() - start) / len(reqs) * 1000
    if args.action == "dump":
        args.rows.write_text(json.dumps({"tag": rt.tag, "rows": out}))
        print(f"{len(reqs)} requests on {rt.tag}: {cpu_ms:.2f} CPU ms each; rows written to {args.rows}")
        return
    saved = json.loads(args.rows.read_text())
    assert saved["tag"] == rt.tag and len(saved["rows"]) == len(out), "saved on another version or request set"
    overlap = same_items = same_rows = same_scores = 0.0
    for a, b in zip(saved["rows"], out):
        ia, ib = [x[0] for x in a], [x[0] for x in b]
        overlap += len(set(ia) & set(ib)) / max(len(ia), 1)
        same_items += ia == ib
        same_rows += [(x[0], x[2], x[3]) for x in a] == [(x[0], x[2], x[3]) for x in b]
        same_scores += a == b
    n = len(out)
    print(f"Run: `.venv/bin/python bench/recommend_rows.py {' '.join(argv)}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}; {n} requests on "
          f"{rt.tag}, {cpu_ms:.2f} CPU ms each.\n")
    print(f"Against the saved rows: top-k overlap **{overlap / n:.5f}**, identical item lists {same_items / n:.4f}, "
          f"identical rows (items, reasons, sources) {same_rows / n:.4f}, identical with scores to 9 digits "
          f"{same_scores / n:.4f}.")


if __name__ == "__main__":
    main(sys.argv[1:])
