"""Recommender benchmark (issue B). Reproduces the tables in docs/BENCHMARKS.md, section "Recommender (issue B)".

    python bench/recommender.py ml100k --data data/ml-100k --seeds 0 1 2
    python bench/recommender.py synth  --data data/synth

ml100k: all ratings as implicit interactions, per-user random 80/20 split (training.splits.per_user_random, one split
per seed), items seen in training excluded. Every method's hyper-parameters are chosen on a validation split carved
from the training part (per_user_random again, seed + 1000); the chosen setting is refit on the whole training part
and scored once on test. Same run: popularity, ItemKNN, EASE, a plain LightGCN (BPR), and our graph model.
synth: last-basket split on the repeat-heavy synthetic world; our pipeline vs buy-again and popularity, plus
diversity (coverage, long-tail share) at several MMR lambdas.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnidecide.models.metrics import catalog_coverage, long_tail_share, ranking_report, tail_items_by_popularity  # noqa: E402
from omnidecide.models.recommender.baselines import EASE, ItemKNN, Popularity  # noqa: E402
from omnidecide.models.recommender.core import Recommender  # noqa: E402
from omnidecide.training import splits  # noqa: E402
from omnidecide.store.io import load  # noqa: E402
from omnidecide.training.recommender import pipeline  # noqa: E402

K = 20


def md(df: pd.DataFrame, index: bool = True) -> str:
    """A markdown table without optional dependencies."""
    d = df.reset_index() if index else df
    fmt = lambda v: f"{v:.4f}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines)


def _topk(S: np.ndarray, X: sp.csr_matrix, k: int = K) -> list[np.ndarray]:
    S = np.array(S, dtype=np.float64, copy=True)
    S[X.nonzero()] = -np.inf
    top = np.argpartition(-S, k, axis=1)[:, :k]
    return list(np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1, kind="stable"), 1))


class Frame:
    """Index users/items of a data set once; matrices for any subset of its rows."""

    def __init__(self, ev: pd.DataFrame):
        self.users = pd.Index(sorted(ev["user_id"].unique()))
        self.items = pd.Index(sorted(ev["item_id"].unique()))

    def X(self, df: pd.DataFrame) -> sp.csr_matrix:
        u, i = self.users.get_indexer(df["user_id"]), self.items.get_indexer(df["item_id"])
        return sp.csr_matrix((np.ones(len(df)), (u, i)), shape=(len(self.users), len(self.items)))

    def relevant(self, df: pd.DataFrame) -> list[set]:
        rel = [set() for _ in range(len(self.users))]
        for u, i in zip(self.users.get_indexer(df["user_id"]), self.items.get_indexer(df["item_id"])):
            rel[u].add(i)
        return rel


def lightgcn_bpr(X: sp.csr_matrix, *, dim: int = 64, layers: int = 3, lr: float = 1e-3, epochs: int = 1000,
                 budget_s: float = 60.0, bs: int = 2048, l2: float = 1e-4, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Plain LightGCN (torch_geometric.nn.models.LightGCN), BPR with one uniform negative, stopped at a time budget."""
    from torch_geometric.nn.models import LightGCN

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    n_u, n_i = X.shape
    Xc = X.tocoo()
    ei = torch.tensor(np.vstack([np.concatenate([Xc.row, Xc.col + n_u]), np.concatenate([Xc.col + n_u, Xc.row])]),
                      dtype=torch.long)
    model = LightGCN(n_u + n_i, dim, layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    pu, pi = torch.tensor(Xc.row, dtype=torch.long), torch.tensor(Xc.col, dtype=torch.long)
    t0, ep = time.time(), 0
    while ep < epochs and time.time() - t0 < budget_s:
        perm = torch.randperm(len(pu), generator=g)
        for b in range(0, len(pu), bs):
            idx = perm[b: b + bs]
            neg = torch.randint(0, n_i, (len(idx),), generator=g)
            src = torch.cat([pu[idx], pu[idx]])
            dst = torch.cat([pi[idx], neg]) + n_u
            rank = model(ei, torch.stack([src, dst]))
            pos, negs = rank.chunk(2)
            loss = model.recommendation_loss(pos, negs, node_id=torch.cat([src, dst]).unique(), lambda_reg=l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        ep += 1
    with torch.no_grad():
        emb = model.get_embedding(ei)
    return (emb[:n_u] @ emb[n_u:].T).numpy(), {"epochs": ep, "seconds": round(time.time() - t0, 1)}


def run_ml100k(data: Path, seeds: list[int], lgcn_budget: float) -> dict:
    ev = load(data / "events.csv", "events").data
    items = load(data / "items.csv", "items").data
    fr = Frame(ev)
    rows = []
    for seed in seeds:
        train, test = splits.per_user_random(ev, 0.2, seed)
        fit, val = splits.per_user_random(train, 0.2, seed + 1000)
        Xf, Xt = fr.X(fit), fr.X(train)
        rel_val, rel_test = fr.relevant(val), fr.relevant(test)

        def pick(make, grid):
            best = max(grid, key=lambda g: sum(ranking_report(_topk(make(g).fit(Xf).scores(Xf), Xf), rel_val, K)[m]
                                                for m in ("recall@20", "ndcg@20")))
            t = time.time()
            model = make(best).fit(Xt)
            secs = time.time() - t
            return ranking_report(_topk(model.scores(Xt), Xt), rel_test, K), best, secs

        res = {}
        res["popularity"] = pick(lambda g: Popularity(), [None])
        res["ItemKNN"] = pick(lambda g: ItemKNN(k=g), [20, 50, 100, 200])
        res["EASE"] = pick(lambda g: EASE(lam=g), [50, 100, 200, 300, 500, 800, 1200])
        S, info = lightgcn_bpr(Xt, budget_s=lgcn_budget, seed=seed)
        res["LightGCN (BPR, plain)"] = (ranking_report(_topk(S, Xt), rel_test, K), info, info["seconds"])
        # our model: the production pipeline's tuning (validation carved from train) and scoring path
        gp, stp, tinfo = pipeline.tune(train, items, seed, has_repeats=False)
        gp = pipeline.for_size(gp, tinfo["n_tuned"], pipeline.edges(train))
        t = time.time()
        rec = Recommender.build(train, items, params=gp, stage=stp)
        secs = time.time() - t
        uidx, rel, now = pipeline.relevant_sets(rec, test)
        res["GNN (ours)"] = (ranking_report(pipeline.topk_stage1(rec, uidx, now), rel, K), gp.as_dict(), secs)
        for name, (m, chosen, secs) in res.items():
            rows.append({"seed": seed, "method": name, **m, "fit_seconds": secs, "chosen": json.dumps(chosen, default=str)})
            print(f"seed {seed} {name:24s} R@20 {m['recall@20']:.4f} N@20 {m['ndcg@20']:.4f} fit {secs:.1f}s {chosen}",
                  file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby("method", sort=False).agg(
        recall=("recall@20", "mean"), recall_sd=("recall@20", "std"), ndcg=("ndcg@20", "mean"),
        ndcg_sd=("ndcg@20", "std"), fit_s=("fit_seconds", "mean"))
    ease = table.loc["EASE"]
    table["recall_vs_EASE"] = table["recall"] / ease["recall"]
    table["ndcg_vs_EASE"] = table["ndcg"] / ease["ndcg"]
    return {"per_seed": df, "table": table}


def strict_events(ev: pd.DataFrame) -> pd.DataFrame:
    """Drop every event on or after the calendar day of each user's last basket except that basket itself, so no
    same-day session signal (views/carts just before the purchase) is left in training."""
    train, test = splits.last_basket(ev)
    day = test.groupby("user_id")["timestamp"].min().dt.floor("D")
    cut = train["user_id"].map(day)
    return pd.concat([train[cut.isna() | (train["timestamp"] < cut)], test]).sort_values("timestamp", kind="stable")


def run_synth(data: Path, seed: int, max_users: int = 500) -> dict:
    ev = load(data / "events.csv", "events").data
    items = load(data / "items.csv", "items").data
    t = time.time()
    rec, metrics, params = pipeline.fit_and_evaluate(ev, items, None, seed=seed)
    total = time.time() - t
    _, strict, _ = pipeline.fit_and_evaluate(strict_events(ev), items, None, seed=seed)
    # diversity at several MMR lambdas, on holdout users (the serving rules path, stock rules off)
    from omnidecide.models.recommender import rules
    train, test = pipeline.holdout(ev, seed, True)
    r2 = Recommender.build(train, items, params=rec.gnn.params, stage=rec.stage)
    r2.ranker = rec.ranker
    r2.stock = np.full(len(r2.item_ids), np.inf)
    uidx, rel, now = pipeline.relevant_sets(r2, test)
    uidx, rel, now = uidx[:max_users], rel[:max_users], now[:max_users]
    tail = tail_items_by_popularity({j: c for j, c in enumerate(np.asarray((r2.X > 0).sum(0)).ravel())})
    div = []
    for lam in (0.0, 0.3, 0.6):
        tops = [np.array([r2.item_index[r.item_id] for r in rules.recommend(r2, str(r2.user_ids[u]), K, diversity=lam,
                                                                             now=n)]) for u, n in zip(uidx, now)]
        m = ranking_report(tops, rel, K)
        div.append({"lambda": lam, **m, "coverage": catalog_coverage(tops, len(r2.item_ids)),
                    "long_tail_share": long_tail_share(tops, tail)})
    return {"metrics": metrics, "strict": strict, "params": params, "seconds": total, "diversity": pd.DataFrame(div)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["ml100k", "synth"])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lightgcn-budget", type=float, default=60.0, help="seconds of BPR training for plain LightGCN")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"cuda={torch.cuda.is_available()}; command: {' '.join(sys.argv)}")
    if args.which == "ml100k":
        out = run_ml100k(args.data, args.seeds, args.lightgcn_budget)
        print(md(out["table"]))
        print()
        print(md(out["per_seed"][["seed", "method", "recall@20", "ndcg@20", "fit_seconds", "chosen"]], index=False))
    else:
        out = run_synth(args.data, args.seeds[0])
        print("| split | method | Recall@20 | NDCG@20 |\n|---|---|---|---|")
        for split, m in (("last basket", out["metrics"]), ("last basket, no same-day events", out["strict"])):
            for name, label in (("holdout", "ours (served: stage 1 + LightGBM if kept)"), ("holdout_stage1", "ours, stage 1 only"),
                                ("buy_again", "buy-again"), ("popularity", "popularity")):
                print(f"| {split} | {label} | {m[f'{name}_recall@20']:.4f} | {m[f'{name}_ndcg@20']:.4f} |")
        for split, m in (("last basket", out["metrics"]), ("no same-day", out["strict"])):
            print(split, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()
                          if k.startswith(("second_stage", "purchase_prob", "stage1_cand", "total", "final"))})
        print(out["params"])
        print(md(out["diversity"], index=False))
        print(f"pipeline seconds (tune + evaluate + refit): {out['seconds']:.1f}")


if __name__ == "__main__":
    main()
