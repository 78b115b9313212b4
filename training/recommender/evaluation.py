"""Recommender evaluation shared by tuning, the pipeline and the benchmark: holdout cuts (time first, issue 13), the
relevant sets of a cut, top-K of what serving ranks, and the baselines the pipeline compares with."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from omnidecide.models.metrics import ranking_report
from omnidecide.models.recommender.baskets import buy_again_scores
from omnidecide.models.recommender.core import CONSUMED, EVENT_WEIGHTS, Recommender, seconds
from omnidecide.models.recommender.graph_filter import FilterParams
from omnidecide.training import splits

K = 20
# The best cut-off mu falls as the graph grows: on nested validation splits of ML-100K (51k vs 64k ratings) it fell
# about in proportion to 1/edges, in every seed and every (c, p). Tuning happens on a part of the data, so the chosen
# mu is moved to the size of the graph it is applied to: mu * (edges_tuned / edges)^MU_SIZE_EXPONENT.
MU_SIZE_EXPONENT = 1.0
# Dense score rows (users x catalogue) are built in batches of at most BATCH_CELLS cells: 1,024 users up to 20k items
# (what every batch was before), fewer above (1,024 x 200k float64 rows were 1.6 GB per array, and a batch holds ~10).
BATCH_CELLS = 1024 * 20_000
# A cut's relevant users are scored over the whole catalogue several times (stage 1, baselines, second stage): above
# EVAL_CELLS users x items a fixed random sample of them (seeded) is scored: 20,000 users at 20k items, 2,000 at 200k.
EVAL_CELLS = 20_000 * 20_000


def tuning_users(n_items: int) -> int:
    """Validation users scored per tuning setting, at most: 3,000 up to 20k items (tuning.MAX_TUNING_USERS), above as
    many as fill the same dense users x items arrays (tuning.Parts holds ~10; 300 users at 200k items)."""
    return max(50, 3000 * 20_000 // max(n_items, 1))


def batch_rows(n_items: int) -> int:
    """Users per dense batch over a catalogue of `n_items` (see BATCH_CELLS)."""
    return int(max(16, min(1024, BATCH_CELLS // max(n_items, 1))))


def score_key(m: dict) -> float:
    """What every choice on validation maximises."""
    return m["ndcg@20"] + m["recall@20"]


def edges(events: pd.DataFrame) -> int:
    """Number of user-item edges the graph built from `events` will have."""
    ev = events[events["item_id"].notna() & events["event"].isin(list(EVENT_WEIGHTS))]
    return int(len(ev.drop_duplicates(["user_id", "item_id"])))


def for_size(gp: FilterParams, n_tuned: int, n: int) -> FilterParams:
    """The filter tuned on a graph of `n_tuned` edges, moved to a graph of `n` edges (see MU_SIZE_EXPONENT)."""
    return replace(gp, mu=gp.mu * (n_tuned / max(n, 1)) ** MU_SIZE_EXPONENT)


def detect_repeats(events: pd.DataFrame) -> tuple[bool, float]:
    """Does anyone re-buy? (share of buyer-item pairs bought on two or more days, over items with re-buys)."""
    from omnidecide.models.recommender.repeat import MIN_REBUY_SHARE

    buys = events[(events["event"] == "purchase") & events["item_id"].notna()]
    if not len(buys):
        return False, 0.0
    days = buys.assign(d=buys["timestamp"].dt.floor("D")).drop_duplicates(["user_id", "item_id", "d"])
    per_pair = days.groupby(["user_id", "item_id"]).size()
    share = float((per_pair >= 2).mean())
    return share >= MIN_REBUY_SHARE / 5, share


def holdout(events: pd.DataFrame, seed: int, has_repeats: bool, protocol: str = "time") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Repeat-heavy data: each user's last basket; otherwise the latest 20% of events (global cutoff), or a per-user
    random 80/20 split with protocol="random"."""
    if has_repeats:
        return splits.last_basket(events)
    if protocol == "random":
        return splits.per_user_random(events, 0.2, seed)
    return splits.global_time_share(events, 0.2)


def relevant_sets(rec: Recommender, test: pd.DataFrame) -> tuple[np.ndarray, list[set], np.ndarray]:
    """Users (indices into rec) with positive test items, their relevant item sets and their 'now' (first test time)."""
    pos = test[test["event"].isin(CONSUMED) & test["item_id"].notna()] if test["event"].isin(CONSUMED).any() else test
    pos = pos[pos["user_id"].isin(rec.user_index) & pos["item_id"].isin(rec.item_index)]
    u = pd.Index(rec.user_ids).get_indexer(pos["user_id"])
    i = pd.Index(rec.item_ids).get_indexer(pos["item_id"])
    df = pd.DataFrame({"u": u, "i": i, "t": seconds(pos["timestamp"]) - rec.t0})
    grp = df.groupby("u")
    uidx = np.array(sorted(grp.groups), dtype=int)
    items_of = grp["i"].agg(lambda s: set(s.tolist()))
    cap = max(EVAL_CELLS // max(len(rec.item_ids), 1), 1)
    if len(uidx) > cap:  # a fixed random sample (seeded), the same for every call on the same cut
        uidx = np.sort(np.random.default_rng(0).choice(uidx, cap, replace=False))
    rel = [items_of[x] for x in uidx]
    now = grp["t"].min().reindex(uidx).to_numpy(dtype=float)
    return uidx, rel, now


def test_channels(rec: Recommender, test: pd.DataFrame, uidx: np.ndarray) -> list:
    """The channel of each user's first test event (the request context), None when unknown."""
    if "channel" not in test.columns:
        return [None] * len(uidx)
    t = test.sort_values("timestamp", kind="stable").drop_duplicates("user_id")
    ch = dict(zip(t["user_id"], t["channel"]))
    return [ch.get(rec.user_ids[u]) if isinstance(ch.get(rec.user_ids[u]), str) else None for u in uidx]


def top_k(score: np.ndarray, allowed: np.ndarray, k: int = K) -> list[np.ndarray]:
    score = np.where(allowed, score, -np.inf)
    top = np.argpartition(-score, k, axis=1)[:, :k]
    return list(np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1, kind="stable"), 1))


def topk_stage1(rec: Recommender, uidx: np.ndarray, now: np.ndarray, k: int = K, chunk: int | None = None,
                with_ranker: bool = True) -> list[np.ndarray]:
    """What serving ranks (stage 1, the LightGBM stage when kept, or buy-again when validation chose it)."""
    out = []
    chunk = chunk or batch_rows(len(rec.item_ids))
    for b in range(0, len(uidx), chunk):
        st = rec.batch_state(uidx[b: b + chunk])
        score, z, rep, allowed = rec.stage1(st, now[b: b + chunk])
        if with_ranker and rec.ranker is not None and rec.stage.serve == "model":
            score = rec.ranker.rescore_batch(rec, score, z, rep, st, allowed, now[b: b + chunk])
        out.extend(top_k(score, allowed, k))
    return out


def evaluate(rec: Recommender, test: pd.DataFrame, k: int = K) -> dict[str, float]:
    uidx, rel, now = relevant_sets(rec, test)
    return ranking_report(topk_stage1(rec, uidx, now, k), rel, k)


def baseline_topk(rec: Recommender, test: pd.DataFrame, kind: str, k: int = K) -> dict[str, float]:
    """popularity (allowed items by training popularity) or buy_again (personal purchase count, ties by popularity)."""
    uidx, rel, now = relevant_sets(rec, test)
    tops, chunk = [], batch_rows(len(rec.item_ids))
    for b in range(0, len(uidx), chunk):
        st = rec.batch_state(uidx[b: b + chunk])
        allowed = ~(st.cons & (rec.repeat.item_share[None, :] <= 0))
        if kind == "buy_again":
            score = buy_again_scores(st.nb, rec.pop["global"])
            allowed = np.ones_like(allowed)
        else:
            score = np.broadcast_to(rec.pop["global"], allowed.shape)
        tops.extend(top_k(score, allowed, k))
    return ranking_report(tops, rel, k)
