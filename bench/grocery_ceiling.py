"""How far above buy-again can anyone get on the grocery world? (issue 13 diagnostic)

    python bench/grocery_ceiling.py [--users 2000 --items 1000 --seed 0]

Replays `data synth --world grocery` customer by customer (same seeds, same orders) and, at each customer's
second-to-last order — the validation basket of `bench/recommender.py repeat`, never the test basket — ranks items by
the generator's own chance of each being in that order (`training.synth.grocery._chances`: repertoire logits it
drifts in secret plus its exploration draws). That ranking knows what no model can see, so its Recall/NDCG@20 is a
ceiling; buy-again (basket counts, ties by popularity) is computed on the same baskets beside it. A second table
splits each ranking's hits by what the customer's history held of the item (bought twice or more, once, never):
where the headroom over buy-again lies. A third gives, for items the customer had bought, the share found in the
validation basket by times bought (1, 2, 3+) and orders since the last purchase (1 = the previous order): how well
what a model can see separates them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnidecide.models.metrics import ranking_report  # noqa: E402
from omnidecide.training.synth import grocery  # noqa: E402

K = 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--days", type=int, default=365)  # `data synth`'s default
    args = ap.parse_args()
    rng = np.random.default_rng([args.seed, 20])
    _, dept, pop = grocery._catalogue(rng, args.items)
    join = np.array([d[2] for d in grocery.DEPARTMENTS])
    tops = {"generator's own chances (ceiling)": [], "buy-again": []}
    rel = []
    classes = ("bought 2+ times", "bought once", "never bought")
    hits = {name: np.zeros(3) for name in tops}
    n_rel = np.zeros(3)
    seen = np.zeros((3, 5, 2))  # times bought (1, 2, 3+) x orders since the last purchase (1..5+) x (items, in basket)
    for u in range(args.users):
        chances: list = []
        orders = grocery._customer(np.random.default_rng([args.seed, 21, u]), pop, dept, join, args.days, chances)
        if len(orders) < 3:  # the validation basket needs a test basket after it and a history before it
            continue
        k = len(orders) - 2
        counts = np.zeros(args.items)
        last = np.zeros(args.items, dtype=int)
        for n, (_, basket) in enumerate(orders[:k]):
            counts[basket] += 1
            last[basket] = n
        rel.append(set(orders[k][1]))
        tops["generator's own chances (ceiling)"].append(np.argsort(-chances[k], kind="stable")[:K])
        tops["buy-again"].append(np.argsort(-(counts + 0.99 * pop / pop.max()), kind="stable")[:K])
        had = np.flatnonzero(counts > 0)
        inside = np.isin(had, orders[k][1])
        at = (np.minimum(counts[had], 3).astype(int) - 1, np.minimum(k - last[had], 5) - 1)
        np.add.at(seen[..., 0], at, 1)
        np.add.at(seen[..., 1], at, inside)
        cls = np.where(counts >= 2, 0, np.where(counts == 1, 1, 2))
        n_rel += np.bincount(cls[list(rel[-1])], minlength=3)
        for name, t in tops.items():
            hits[name] += np.bincount(cls[[j for j in t[-1] if j in rel[-1]]], minlength=3)
    out = {name: ranking_report(t, rel, K) for name, t in tops.items()}
    base = out["buy-again"]
    print(f"validation baskets: {len(rel)}")
    print("| ranking | recall@20 | ndcg@20 | vs buy-again |\n|---|---|---|---|")
    for name, m in out.items():
        print(f"| {name} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} | "
              f"{m['recall@20'] / base['recall@20']:.3f}× / {m['ndcg@20'] / base['ndcg@20']:.3f}× |")
    print("\n| items of the validation baskets | in the baskets | " + " | ".join(f"hits: {n}" for n in tops) + " |")
    print("|---|---|" + "---|" * len(tops))
    for c, name in enumerate(classes):
        print(f"| {name} | {int(n_rel[c])} | " + " | ".join(str(int(hits[n][c])) for n in tops) + " |")
    print("\n| times bought \\ orders since the last purchase | 1 | 2 | 3 | 4 | 5+ |\n|---|---|---|---|---|---|")
    for c, name in enumerate(("1", "2", "3+")):
        print(f"| {name} | " + " | ".join(f"{seen[c, j, 1] / max(seen[c, j, 0], 1):.3f} ({int(seen[c, j, 0])})"
                                         for j in range(5)) + " |")
    print(json.dumps(vars(args)))


if __name__ == "__main__":
    main()
