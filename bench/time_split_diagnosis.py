"""Why does a model lose to EASE on a global time split? (issue 13 diagnostic; chooses nothing)

    python bench/time_split_diagnosis.py --data data/ml-100k

For a fixed list of candidates (popularity with and without a time decay, EASE, EASE plus recent popularity, EASE
fitted on time-decayed interactions) prints each one's score on the validation windows the pipeline tunes on
(`tuning.validation_cuts`, pooled over their users) next to its score on the test window of `bench/recommender.py
ml100k`. It answers one question: does what wins on validation also win on test? Nothing here feeds a choice.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import recommender as bench  # noqa: E402
from omnidecide.models.metrics import ranking_report  # noqa: E402
from omnidecide.models.recommender.baselines import EASE  # noqa: E402
from omnidecide.models.recommender.core import seconds  # noqa: E402
from omnidecide.store.io import load  # noqa: E402
from omnidecide.training.recommender import tuning  # noqa: E402

DAY = 86400.0


def prepare(fit: pd.DataFrame, val: pd.DataFrame, items: pd.DataFrame) -> dict:
    rec, u, rel = bench.index_of(fit, val, items)
    e = fit[fit["item_id"].notna()]
    return {"X": (rec.X > 0).astype(np.float64).tocsr(), "u": u, "rel": rel, "t": seconds(e["timestamp"]),
            "ui": pd.Index(rec.user_ids).get_indexer(e["user_id"]), "ii": pd.Index(rec.item_ids).get_indexer(e["item_id"])}


def z(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(1, keepdims=True)) / np.maximum(s.std(1, keepdims=True), 1e-12)


def decay(d: dict, hl: float | None) -> np.ndarray:
    return np.ones_like(d["t"]) if hl is None else 0.5 ** ((d["t"].max() - d["t"]) / DAY / hl)


def pop(d: dict, hl: float | None) -> np.ndarray:
    return np.bincount(d["ii"], weights=decay(d, hl), minlength=d["X"].shape[1])[None, :]


_EASE: dict = {}


def ease(d: dict, lam: float, hl: float | None = None) -> np.ndarray:
    """EASE fitted on interactions weighted by their age (half-life hl days; None: binary), scored on binary rows."""
    key = (id(d), lam, hl)
    if key in _EASE:
        return _EASE[key]
    Xf = d["X"] if hl is None else sp.csr_matrix((decay(d, hl), (d["ui"], d["ii"])), shape=d["X"].shape)
    _EASE[key] = np.asarray(d["X"][d["u"]] @ EASE(lam).fit(Xf).B)
    return _EASE[key]


CANDIDATES = {
    **{f"popularity, half-life {hl or 'none'}": (lambda d, hl=hl: np.tile(pop(d, hl), (len(d["u"]), 1)))
       for hl in (None, 30, 10, 3, 1)},
    **{f"EASE λ {lam}": (lambda d, lam=lam: ease(d, lam)) for lam in (100, 200, 300, 1000)},
    **{f"EASE λ 300 + {w} × log popularity, half-life {hl}": (lambda d, w=w, hl=hl: z(ease(d, 300)) + w * z(np.log1p(pop(d, hl))))
       for hl in (30, 10, 3) for w in (1, 4, 8)},
    **{f"EASE λ 300 fitted on interactions decayed, half-life {hl}": (lambda d, hl=hl: ease(d, 300, hl)) for hl in (30, 14)},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    ev = load(args.data / "events.csv", "events").data
    items = load(args.data / "items.csv", "items").data
    train, test = bench.time_split(ev, 0)
    sets = [prepare(f, v, items) for f, v in tuning.validation_cuts(train, 0, has_repeats=False, protocol="time")]
    sets.append(prepare(train, test, items))
    n = np.array([len(d["rel"]) for d in sets[:-1]], float)
    print(f"validation users per window {n.astype(int).tolist()}, test users {len(sets[-1]['rel'])}")
    print("| candidate | validation recall@20 | validation ndcg@20 | test recall@20 | test ndcg@20 |\n|---|---|---|---|---|")
    for name, scores in CANDIDATES.items():
        rs = [ranking_report(bench._topk(scores(d), d["X"][d["u"]]), d["rel"], bench.K) for d in sets]
        val = {k: float(np.dot([r[k] for r in rs[:-1]], n) / n.sum()) for k in ("recall@20", "ndcg@20")}
        print(f"| {name} | {val['recall@20']:.4f} | {val['ndcg@20']:.4f} | {rs[-1]['recall@20']:.4f} | "
              f"{rs[-1]['ndcg@20']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
