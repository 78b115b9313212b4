"""Recommender benchmark (issue 13). Reproduces the tables in docs/BENCHMARKS.md, section "Recommender".

    python bench/recommender.py ml100k --data data/ml-100k [--random-seeds 0 1 2]
    python bench/recommender.py ml100k --data data/ml-1m --random-seeds     (the same protocol on MovieLens 1M, time only)
    python bench/recommender.py repeat --data data/synth data/grocery

ml100k (headline: time): all ratings as implicit interactions; a global time cutoff (the latest 20% of ratings are the
test window, `training.splits.global_time_share`); every method's hyper-parameters are chosen on the same validation
windows carved from the training part (`tuning.validation_cuts`: its latest 20%, then two earlier 10% windows, each
predicted from its own past; scored together), the pick is refit on the whole training part and scored once on test
users who have training history; items they rated in training are excluded. Popularity, recent popularity (its
half-life chosen on the windows), ItemKNN, EASE and ours (the production pipeline's tuning: graph filter, EASE blend
weight or EASE alone, recent-popularity weight and half-life). `--random-seeds`: also the
per-user random 80/20 table (secondary, for comparison with the literature), one split per seed, one validation cut
carved the same way.

repeat: each world's last basket per user is the test (`splits.last_basket`); the validation cut is the last basket
of the training part. The repeat baselines (buy-again, TIFU-KNN, UP-CF@r; models/recommender/baskets.py) are tuned on
that validation cut and refit on the training part; ours is `pipeline.fit_and_evaluate` (it tunes and chooses what
serves on the same kind of cut). Baselines see purchases only; ours also sees views/carts where a world has them, so
the default world is also run "strict": every training event on the test basket's day removed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnidecide.models.metrics import ranking_report  # noqa: E402
from omnidecide.models.recommender.baselines import EASE, ItemKNN, Popularity  # noqa: E402
from omnidecide.models.recommender.baskets import TIFU, UPCF, buy_again_scores, frequency  # noqa: E402
from omnidecide.models.recommender.core import POP_HALF_LIVES, Recommender  # noqa: E402
from omnidecide.models.recommender.graph_filter import FilterParams  # noqa: E402
from omnidecide.store.io import load  # noqa: E402
from omnidecide.training import splits  # noqa: E402
from omnidecide.training.recommender import pipeline, tuning  # noqa: E402

K = 20


def md(df: pd.DataFrame, index: bool = True) -> str:
    """A markdown table without optional dependencies."""
    d = df.reset_index() if index else df
    fmt = lambda v: f"{v:.4f}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines)


def _key(m: dict) -> float:
    return m["recall@20"] + m["ndcg@20"]


def _topk(S: np.ndarray, exclude: sp.csr_matrix | None = None, k: int = K) -> list[np.ndarray]:
    S = np.array(S, dtype=np.float64, copy=True)
    if exclude is not None:
        S[exclude.nonzero()] = -np.inf
    top = np.argpartition(-S, k, axis=1)[:, :k]
    return list(np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1, kind="stable"), 1))


def index_of(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame):
    """The users/items index our model uses for `train`, and the test users (with training history), their relevant
    sets and user-item matrix of the training part."""
    rec = Recommender.build(train, items, params=FilterParams(k=2))
    uidx, rel, now = pipeline.relevant_sets(rec, test)
    return rec, uidx, rel


# --- ML-100K: time split (headline) and random split (secondary) -----------------------------------------------
def ml100k_split(ev: pd.DataFrame, items: pd.DataFrame, split, seed: int) -> dict:
    """One split: baselines tuned on the validation cuts of the training part, ours through the pipeline's tuning."""
    train, test = split(ev, seed)
    protocol = "random" if split is random_split else "time"
    # the same validation cuts as ours (time split: three windows), so every method gets the same discipline
    cuts = tuning.validation_cuts(train, seed, has_repeats=False, protocol=protocol)
    res = {}
    idx_fits = [index_of(fit, val, items) for fit, val in cuts]
    idx_tr = index_of(train, test, items)

    def X_of(rec: Recommender) -> sp.csr_matrix:
        return (rec.X > 0).astype(np.float64).tocsr()

    def val_key(model_of, g) -> float:
        reports, n = [], []
        for recf, uf, relf in idx_fits:
            Xf = X_of(recf)
            reports.append(ranking_report(_topk(model_of(g).fit(Xf).scores(Xf[uf]), Xf[uf]), relf, K))
            n.append(len(relf))
        return float(np.dot([_key(r) for r in reports], n) / sum(n))

    def pick(make, grid):
        best = max(grid, key=lambda g: val_key(make, g))
        rect, ut, relt = idx_tr
        Xt = X_of(rect)
        t = time.time()
        model = make(best).fit(Xt)
        secs = time.time() - t
        return ranking_report(_topk(model.scores(Xt[ut]), Xt[ut]), relt, K), best, secs

    res["popularity"] = pick(lambda g: Popularity(), [None])

    def recent_pop(rec: Recommender, u: np.ndarray, hl: float) -> np.ndarray:
        return np.tile(rec.pop_z(hl), (len(u), 1))

    def recent_key(hl: float) -> float:
        reports = [ranking_report(_topk(recent_pop(recf, uf, hl), X_of(recf)[uf]), relf, K) for recf, uf, relf in idx_fits]
        return float(np.dot([_key(r) for r in reports], [len(r) for _, _, r in idx_fits]) / sum(len(r) for _, _, r in idx_fits))

    hl = max(POP_HALF_LIVES, key=recent_key)  # the same half-lives our stage 1 may choose from, on the same windows
    rect, ut, relt = idx_tr
    res["recent popularity"] = (ranking_report(_topk(recent_pop(rect, ut, hl), X_of(rect)[ut]), relt, K), hl, 0.0)
    res["ItemKNN"] = pick(lambda g: ItemKNN(k=g), [20, 50, 100, 200])
    res["EASE"] = pick(lambda g: EASE(lam=g), [50, 100, 200, 300, 500, 800, 1200])
    gp, stp, tinfo = pipeline.tune(train, items, seed, has_repeats=False, protocol=protocol)
    gp = pipeline.for_size(gp, tinfo["n_tuned"], pipeline.edges(train))
    t = time.time()
    rec = Recommender.build(train, items, params=gp, stage=stp)
    secs = time.time() - t
    uidx, rel, now = pipeline.relevant_sets(rec, test)
    chosen = {**gp.as_dict(), **{k: getattr(stp, k) for k in ("pop_w", "pop_hl", "ease_w", "ease_lam")},
              "validation_users": tinfo["val_windows"]}
    res["ours"] = (ranking_report(pipeline.topk_stage1(rec, uidx, now), rel, K), chosen, secs)
    res["_n_test_users"] = len(uidx)
    return res


def time_split(ev: pd.DataFrame, seed: int):
    return splits.global_time_share(ev, 0.2)


def random_split(ev: pd.DataFrame, seed: int):
    return splits.per_user_random(ev, 0.2, seed)


def run_ml100k(data: Path, random_seeds: list[int]) -> dict:
    ev = load(data / "events.csv", "events").data
    items = load(data / "items.csv", "items").data
    out = {}
    for name, split, seeds in (("global time 80/20", time_split, [0]), ("per-user random 80/20", random_split, random_seeds)):
        rows = []
        for seed in seeds:
            res = ml100k_split(ev, items, split, seed)
            n_users = res.pop("_n_test_users")
            for method, (m, chosen, secs) in res.items():
                rows.append({"seed": seed, "method": method, **m, "fit_seconds": secs, "test_users": n_users,
                             "chosen": json.dumps(chosen, default=str)})
                print(f"{name} seed {seed} {method:22s} R@20 {m['recall@20']:.4f} N@20 {m['ndcg@20']:.4f} "
                      f"fit {secs:.1f}s {chosen}", file=sys.stderr, flush=True)
        if not rows:
            continue
        df = pd.DataFrame(rows)
        table = df.groupby("method", sort=False).agg(recall=("recall@20", "mean"), recall_sd=("recall@20", "std"),
                                                     ndcg=("ndcg@20", "mean"), ndcg_sd=("ndcg@20", "std"),
                                                     fit_s=("fit_seconds", "mean"), test_users=("test_users", "mean"))
        table["recall_vs_EASE"] = table["recall"] / table.loc["EASE", "recall"]
        table["ndcg_vs_EASE"] = table["ndcg"] / table.loc["EASE", "ndcg"]
        out[name] = {"table": table, "per_seed": df}
    return out


# --- repeat worlds: last basket vs buy-again, TIFU-KNN, UP-CF@r ----------------------------------------------------
TIFU_GRID = [dict(m=m, r_g=rg, k=k, alpha=a) for m, rg, k, a in itertools.product((3, 7), (0.7, 0.9), (100, 300), (0.7, 0.9))]
UPCF_GRID = [dict(r=r, asym=a, q=q) for r, a, q in itertools.product((1, 5, 25, None), (0.25, 0.5, 0.75), (1, 5, 10, 50))]


def repeat_baselines(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame, seed: int) -> dict:
    """Buy-again, TIFU-KNN and UP-CF@r: settings chosen on the last basket of the training part, refit on it all."""
    fit, val = splits.last_basket(train)
    sets = {"fit": index_of(fit, val, items), "train": index_of(train, test, items)}

    def report(part: str, scores) -> dict:
        rec, u, rel = sets[part]
        return ranking_report(_topk(scores(rec, u)), rel, K)

    def buy_again(rec, u):
        return buy_again_scores(frequency(rec.baskets)[u].toarray(), rec.pop["global"])

    res = {"buy-again": (report("train", buy_again), None)}
    for name, cls, grid in (("TIFU-KNN", TIFU, TIFU_GRID), ("UP-CF@r", UPCF, UPCF_GRID)):
        fitted = {}

        def scores(rec, u, g, part):
            key = (part, json.dumps({k: v for k, v in g.items() if k not in ("k", "alpha", "asym", "q")}))
            if key not in fitted:  # TIFU's neighbours/alpha and UP-CF's similarity settings need no refit
                fitted[key] = cls(**{**g, **({"k": 300} if cls is TIFU else {})}).fit(rec.baskets)
            model = fitted[key]
            for k, v in g.items():
                setattr(model, k, v)
            return model.scores(u)

        best = max(grid, key=lambda g: _key(report("fit", lambda rec, u: scores(rec, u, g, "fit"))))
        res[name] = (report("train", lambda rec, u: scores(rec, u, best, "train")), best)
    return res


def strict_events(ev: pd.DataFrame) -> pd.DataFrame:
    """Drop every event on or after the calendar day of each user's last basket except that basket itself, so no
    same-day session signal (views/carts just before the purchase) is left in training."""
    train, test = splits.last_basket(ev)
    day = test.groupby("user_id")["timestamp"].min().dt.floor("D")
    cut = train["user_id"].map(day)
    return pd.concat([train[cut.isna() | (train["timestamp"] < cut)], test]).sort_values("timestamp", kind="stable")


def run_world(data: Path, seed: int, strict: bool) -> tuple[pd.DataFrame, dict]:
    ev = load(data / "events.csv", "events").data
    items = load(data / "items.csv", "items").data
    if strict:
        ev = strict_events(ev)
    t = time.time()
    _, metrics, params = pipeline.fit_and_evaluate(ev, items, None, seed=seed)
    secs = time.time() - t
    train, test = splits.last_basket(ev)
    base = repeat_baselines(train[train["event"] == "purchase"], test, items, seed)
    rows = [{"method": "ours (served)", "recall@20": metrics["holdout_recall@20"], "ndcg@20": metrics["holdout_ndcg@20"],
             "chosen": metrics["served_ranking"]},
            {"method": "ours, stage 1 only", "recall@20": metrics["holdout_stage1_recall@20"],
             "ndcg@20": metrics["holdout_stage1_ndcg@20"], "chosen": json.dumps(params["stage"])}]
    rows += [{"method": name, "recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"], "chosen": json.dumps(g)}
             for name, (m, g) in base.items()]
    rows.append({"method": "popularity", "recall@20": metrics["popularity_recall@20"],
                 "ndcg@20": metrics["popularity_ndcg@20"], "chosen": ""})
    df = pd.DataFrame(rows).set_index("method")
    best = df.loc[["buy-again", "TIFU-KNN", "UP-CF@r"]]
    df["recall_vs_best_baseline"] = df["recall@20"] / best["recall@20"].max()
    df["ndcg_vs_best_baseline"] = df["ndcg@20"] / best["ndcg@20"].max()
    info = {"pipeline_seconds": round(secs, 1), "tifu": params["tifu"],
            "validation": {k: round(v, 4) for k, v in metrics.items() if k.startswith("validation_") and isinstance(v, float)},
            "purchase_prob": {k: round(v, 4) for k, v in metrics.items() if k.startswith("purchase_prob") and isinstance(v, float)}}
    return df, info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["ml100k", "repeat"])
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--random-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, python {platform.python_version()}; command: {' '.join(sys.argv)}")
    if args.which == "ml100k":
        for name, out in run_ml100k(args.data[0], args.random_seeds).items():
            print(f"\n#### {name}\n")
            print(md(out["table"]))
            print()
            print(md(out["per_seed"][["seed", "method", "recall@20", "ndcg@20", "chosen"]], index=False))
        return
    for data in args.data:
        truth = json.loads((data / "truth.json").read_text()) if (data / "truth.json").exists() else {}
        world = truth.get("world", "default")
        for strict in ((False, True) if world == "default" else (False,)):
            df, info = run_world(data, args.seed, strict)
            print(f"\n#### {data} ({world} world{', strict: no same-day events' if strict else ''})\n")
            print(md(df))
            print(json.dumps(info))


if __name__ == "__main__":
    main()
