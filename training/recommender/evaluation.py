"""Recommender evaluation shared by tuning, the pipeline and the benchmark: holdout cuts (time first, issue 13), the
relevant sets of a cut, top-K of what serving ranks, and the baselines the pipeline compares with."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from omnidecide.models.metrics import ranking_report
from omnidecide.models.recommender.baskets import buy_again_scores, top_of
from omnidecide.models.recommender.core import CONSUMED, EVENT_WEIGHTS, Recommender, seconds
from omnidecide.models.recommender.graph_filter import FilterParams
from omnidecide.models.recommender.retrieval import ItemIndex, Retrieval
from omnidecide.models.recommender.rows import dense_rows, gather
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
CANDIDATE_BATCH = 64  # users whose candidates are scored together (the union of their columns)
# Above CANDIDATE_MIN_ITEMS items (where the dense batches above start to shrink) evaluation ranks what `/recommend`
# ranks there: stage 1's exact scores on a few hundred candidates per customer (retrieval.py), not a dense row over
# the catalogue. Each tuning setting then costs ~candidates, not ~catalogue (200k items: ~20 s of dense rows per graph
# setting). The candidates are retrieval's, with the faiss search replaced by an exact top-N of the filter's inner
# product (a tuning setting changes the filter, and an HNSW build per setting would cost more than the dense rows), so
# the top-K is full scoring's whenever its items are among them (tests/test_scale_tuning.py checks the agreement).
CANDIDATE_MIN_ITEMS = 20_000
TUNING_ANN = 128  # the exact top-N of the filter among them (serving's search: retrieval.N_ANN, or 200 above 50k items)


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


class ExactCandidates(Retrieval):
    """Retrieval's candidate scoring (graph_z on chosen columns) for the model's current filter settings, with no
    faiss index: candidates come from `graph_top`, an exact top-N of the filter's inner products. Item vectors are
    float32 (as the index's are); the Gram matrix of the moments depends on the basis and c only, so it is kept on the
    graph per c across a tuning grid's (mu, p). Get one with `for_model`."""

    def __init__(self, rec) -> None:  # not Retrieval.__init__: it builds the HNSW index
        g, p = rec.graph, rec.graph.params
        self.keep, self.h = p.kept(g.lam)
        self.c, self.n_trained = p.c, g.Q.shape[0]
        gram = g.__dict__.get("_eval_gram")  # on the graph: it lives and dies with the basis it was made from
        if gram is None or gram["Q"] is not g.Q or gram["d"] is not g.d_graph or gram["c"] != p.c:
            E = (g.Q * (g.d_graph[: self.n_trained] ** p.c)[:, None]).astype(np.float32)
            E64 = E.astype(np.float64)
            gram = g.__dict__["_eval_gram"] = {"Q": g.Q, "d": g.d_graph, "c": p.c, "E": E, "total": E64.sum(0),
                                               "second": E64.T @ E64}
            del E64
        full = len(self.keep) == g.Q.shape[1]
        self.E = gram["E"] if full else np.ascontiguousarray(gram["E"][:, self.keep])
        self.scale = g.d_graph[: self.n_trained] ** (-2 * self.c)
        self.items = _Moments(len(self.E), gram["total"][self.keep],
                              gram["second"] if full else gram["second"][np.ix_(self.keep, self.keep)])

    @classmethod
    def for_model(cls, rec) -> "ExactCandidates":
        """The one for the model's graph and its current (mu, p, c), kept on the graph while they stay."""
        g = rec.graph
        key = (g.Q, g.d_graph, rec.item_cat, g.params.mu, g.params.p, g.params.c)
        hit = g.__dict__.get("_eval_candidates")
        if hit is None or any(a is not b if isinstance(a, np.ndarray) else a != b for a, b in zip(hit[0], key)):
            hit = g.__dict__["_eval_candidates"] = (key, cls(rec))
        return hit[1]

    def graph_top(self, U: np.ndarray, n: int) -> np.ndarray:
        """Per query row, the n items of largest inner product <u, e_j> (unordered)."""
        S = U.astype(np.float32) @ self.E.T
        n = min(n, S.shape[1] - 1)
        return np.argpartition(-S, n, axis=1)[:, :n] if n > 0 else np.zeros((len(U), 0), dtype=np.int64)


class _Moments:
    """ItemIndex.moments without the index: exact mean and spread of <u, e_j> over the catalogue."""

    def __init__(self, n: int, total: np.ndarray, second_total: np.ndarray) -> None:
        self.n, self.total, self.second_total = n, total, second_total

    moments = ItemIndex.moments


def uses_candidates(rec: Recommender) -> bool:
    return len(rec.item_ids) > CANDIDATE_MIN_ITEMS and rec.graph.Q is not None and rec.ease is None


def candidate_stage1(rec: Recommender, u: np.ndarray, now: np.ndarray, n_rank: int = K, model: bool = False):
    """Stage 1 for users `u` over the union of their candidates (sorted columns `cols`): retrieval's candidates
    (the filter's exact top max(TUNING_ANN, 2 n_rank), the users' own items, the first cold items of each category, the
    top of popularity and of the TIFU score when stage 1 weighs them in). Returns (cols, st, score, z, rep, allowed)
    with the arrays over `cols`."""
    ret = ExactCandidates.for_model(rec)
    hist = np.unique(gather(rec.X, u)[1])
    U = ret.query(rec, dense_rows(rec.X, u, hist), hist)
    parts = [hist, ret.graph_top(U, max(TUNING_ANN, 2 * n_rank)).ravel()]
    parts += [c[:n_rank] for c in ret.cold(rec)[2]]
    for hl in ret.popularity_half_lives(rec, not U.any(1).all()):  # serving's rule (Retrieval.candidates)
        parts.append(ret.by_popularity(rec, hl)[: n_rank + len(hist)])
    if rec.stage.tifu_w > 0 and rec.tifu is not None:
        t = rec.tifu.sparse_scores(u)
        for a, b in zip(t.indptr[:-1], t.indptr[1:]):
            parts.append(top_of(t.indices[a:b], t.data[a:b], n_rank))  # serving's rule (TIFU.top_items)
    cols = np.unique(np.concatenate(parts).astype(np.int64))
    st = rec.batch_state(u, cols)
    kept, rec.retrieval = rec.retrieval, ret
    try:
        score, z, rep, allowed = rec.stage1(st, now, model=model, cols=cols)
    finally:
        rec.retrieval = kept
    return cols, st, score, z, rep, allowed


def stage1_rows(rec: Recommender, u: np.ndarray, now: np.ndarray, n_rank: int, model: bool = False):
    """(columns or None, state, score, z, rep, allowed) of stage 1 for users `u`: over the catalogue, or above
    CANDIDATE_MIN_ITEMS over their candidates (`candidate_stage1`; `n_rank`: how many the ranking looks at)."""
    if uses_candidates(rec):
        return candidate_stage1(rec, u, now, n_rank, model)
    st = rec.batch_state(u)
    return (None, st, *rec.stage1(st, now, model=model))


def batch_size(rec: Recommender) -> int:
    """Users per batch of `stage1_rows`."""
    return CANDIDATE_BATCH if uses_candidates(rec) else batch_rows(len(rec.item_ids))


def top_k(score: np.ndarray, allowed: np.ndarray, k: int = K) -> list[np.ndarray]:
    score = np.where(allowed, score, -np.inf)
    top = np.argpartition(-score, k, axis=1)[:, :k]
    return list(np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1, kind="stable"), 1))


def topk_stage1(rec: Recommender, uidx: np.ndarray, now: np.ndarray, k: int = K, chunk: int | None = None,
                with_ranker: bool = True) -> list[np.ndarray]:
    """What serving ranks (stage 1, the LightGBM stage when kept, or buy-again when validation chose it)."""
    from omnidecide.models.recommender.ranker import N_CAND

    out = []
    ranker = with_ranker and rec.ranker is not None and rec.stage.serve == "model"
    chunk = chunk or batch_size(rec)
    for b in range(0, len(uidx), chunk):
        t = now[b: b + chunk]
        cols, st, score, z, rep, allowed = stage1_rows(rec, uidx[b: b + chunk], t, max(k, N_CAND) if ranker else k)
        if ranker:
            score = rec.ranker.rescore_batch(rec, score, z, rep, st, allowed, t, items=cols)
        top = top_k(score, allowed, k)
        out.extend(top if cols is None else [cols[j] for j in top])
    return out


def evaluate(rec: Recommender, test: pd.DataFrame, k: int = K) -> dict[str, float]:
    uidx, rel, now = relevant_sets(rec, test)
    return ranking_report(topk_stage1(rec, uidx, now, k), rel, k)


def baseline_topk(rec: Recommender, test: pd.DataFrame, kind: str, k: int = K) -> dict[str, float]:
    """popularity (allowed items by training popularity) or buy_again (personal purchase count, ties by popularity)."""
    uidx, rel, now = relevant_sets(rec, test)
    big = uses_candidates(rec)  # then each user's own items and the head of popularity, not the catalogue
    tops, chunk = [], CANDIDATE_BATCH if big else batch_rows(len(rec.item_ids))
    pop = rec.pop["global"]
    order = np.argsort(-pop, kind="stable") if big else None
    for b in range(0, len(uidx), chunk):
        u, cols = uidx[b: b + chunk], None
        if big:
            hist = np.unique(gather(rec.X, u)[1])
            cols = np.unique(np.concatenate([hist, order[: k + len(hist)]]).astype(np.int64))
        at = slice(None) if cols is None else cols
        st = rec.batch_state(u, cols, tifu=False)
        allowed = ~(st.cons & (rec.repeat.item_share[at][None, :] <= 0))
        if kind == "buy_again":
            score = buy_again_scores(st.nb, pop[at], float(pop.max()))
            allowed = np.ones_like(allowed)
        else:
            score = np.broadcast_to(pop[at], allowed.shape)
        top = top_k(score, allowed, k)
        tops.extend(top if cols is None else [cols[j] for j in top])
    return ranking_report(tops, rel, k)
