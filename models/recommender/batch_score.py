"""Top-k rows for many customers at once (`recommend --all-users`, in one process or per Ray shard).

Why not `rules.recommend` once per customer: what does not depend on the customer was redone for each of them (the
in-stock mask over the catalogue, the cold items of each category, the popularity order, the no-consent list), the
index was searched one query at a time, and the in-stock substitutes of a sold-out item near the top (a search over
its whole category, ~4 ms at 200k items) were found again for every customer whose neighbours hold that item.
Here they are done once per job (the substitutes once per item) and the index is searched for a block of customers in
one call.

What is not batched, on purpose: each customer's exact stage-1 scores, rules, ranker and reasons over their own
candidates are `rules._ranked`, the very code `/recommend` runs, on the very candidate set it builds. The rows are
therefore the per-request rows, not an approximation of them (tests/test_ray_batch.py compares them for every
customer of a small world, with and without the retrieval index), and every speed-up of the per-request model path
reaches the batch job too. `candidates` below mirrors `retrieval.Retrieval.candidates` part for part; that test
fails if the two drift apart.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from omnidecide.models.recommender import retrieval, rules
from omnidecide.models.recommender.core import Recommender
from omnidecide.models.recommender.ranker import N_CAND
from omnidecide.models.recommender.rows import dense_rows

BLOCK = 256  # customers per index search: one faiss call, a 256 x dims query matrix


class Job:
    """What a batch of `recommend` calls with the same context (k, store, channel, segment) shares."""

    def __init__(self, rec: Recommender, k: int, *, channel: str | None = None, store_id: str | None = None,
                 store_stock: dict[str, float] | None = None, segment: dict[str, str] | None = None) -> None:
        self.rec, self.k, self.channel, self.store_id, self.segment = rec, k, channel, store_id, segment
        self.store_stock = store_stock
        self.ok = rules.in_stock_mask(rec, store_stock)  # `usable` of the request path: no exclusions in a batch
        self.n_cand = max(5 * k, 50)
        self.n_rank = max(self.n_cand, N_CAND)
        self.no_consent = rules.popular(rec, k, self.ok, channel, store_id, "personalisation off: ")
        self._subs: dict[int, np.ndarray] = {}
        self._common: np.ndarray | None = None
        self._by_pop: np.ndarray | None = None

    # --- the candidate parts that do not depend on the customer -----------------------------------------
    def common(self) -> np.ndarray:
        """The first cold items of each category (any stock and usable ones): `Retrieval.candidates`' tie parts."""
        if self._common is None:
            _, _, cold_by_cat = self.rec.retrieval.cold(self.rec)
            n, ok = self.n_rank, self.ok
            parts = [c[:n] for c in cold_by_cat] + [c[ok[c]][:n] for c in cold_by_cat]
            self._common = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return self._common

    def by_popularity(self) -> np.ndarray:
        if self._by_pop is None:
            order = self.rec.retrieval.by_popularity(self.rec)
            self._by_pop = np.concatenate([order[: self.n_rank], order[self.ok[order]][: self.n_rank]])
        return self._by_pop

    def substitutes(self, j: int) -> np.ndarray:
        """`Retrieval.substitutes` of item j, found once per job (it depends on the item and the stock only)."""
        s = self._subs.get(j)
        if s is None:
            s = self._subs[j] = self.rec.retrieval.substitutes(self.rec, j, self.ok, self.k + 1)
        return s

    def candidates(self, uidx: int, hist: np.ndarray, u: np.ndarray, ann: np.ndarray | None) -> np.ndarray:
        """`Retrieval.candidates` for one customer, from the query `u` and its index neighbours `ann`."""
        rec, usable, k, n_rank = self.rec, self.ok, self.k, self.n_rank
        parts = [hist]
        if ann is not None:
            parts.append(ann)
            top = ann[: 2 * k]
            parts += [self.substitutes(int(j)) for j in top[~usable[top]]]
        parts.append(self.common())
        if rec.stage.pop_w > 0 or rec.stage.serve == "buy_again" or not u.any():
            parts.append(self.by_popularity())
        if rec.stage.tifu_w > 0 and rec.tifu is not None:
            t = rec.tifu.sparse_scores(np.array([uidx]))  # one customer at a time: its ties stay in /recommend's order
            parts.append(t.indices[np.argsort(-t.data, kind="stable")[:n_rank]])
        return np.unique(np.concatenate(parts).astype(np.int64))

    # --- rows ----------------------------------------------------------------------------------------------
    def one(self, user_id: str, cols: np.ndarray | None) -> list[rules.Row]:
        """`rules.recommend` for a known, consenting customer over the candidate columns `cols` (None: all items)."""
        while True:  # at most twice: a sold-out item's substitute outside the candidates joins them
            out = rules._ranked(self.rec, user_id, self.k, None, cols, self.ok, self.channel, None, 0.0, None)
            if out is None:
                return rules.popular(self.rec, self.k, self.ok, self.channel, self.store_id, "new customer: ",
                                     self.segment)
            rows, missing = out
            if not len(missing):
                return rows
            cols = np.union1d(cols, missing)

    def block(self, user_ids: Sequence[str]) -> list[list[rules.Row]]:
        """Rows for each of `user_ids`, in order."""
        rec = self.rec
        out: list[list[rules.Row] | None] = [None] * len(user_ids)
        todo = []  # (position, user index, history, query) of customers with a personal list
        for p, uid in enumerate(user_ids):
            uidx = rec.user_index.get(uid)
            if uid in rec.no_consent:
                out[p] = self.no_consent
            elif uidx is None:  # not in the model: the request path's new-customer answer
                out[p] = rules.recommend(rec, uid, self.k, channel=self.channel, store_id=self.store_id,
                                         store_stock=self.store_stock, segment=self.segment)
            elif rec.retrieval is None:
                out[p] = self.one(uid, None)
            else:
                hist = rules.history(rec, uid, None)
                todo.append((p, uidx, hist, rec.retrieval.query(rec, dense_rows(rec.X, np.array([uidx]), hist), hist)))
        searched = [t for t in todo if t[3].any()]  # zero when the customer's items are all cold: popularity
        ann: dict[int, np.ndarray] = {}
        if searched:
            _, idx = rec.retrieval.items.search(np.vstack([t[3] for t in searched]),
                                                max(retrieval.N_ANN, 2 * self.n_rank), retrieval.EF_SEARCH)
            ann = {t[0]: row[row >= 0] for t, row in zip(searched, idx)}
        for p, uidx, hist, u in todo:
            out[p] = self.one(user_ids[p], self.candidates(uidx, hist, u, ann.get(p)))
        return out  # type: ignore[return-value]

    def rows(self, user_ids: Sequence[str], on_user: Callable[[str], None] | None = None) -> list[list[rules.Row]]:
        """Rows for each of `user_ids`, in order, `BLOCK` customers per index search."""
        out: list[list[rules.Row]] = []
        for s in range(0, len(user_ids), BLOCK):
            out += self.block(user_ids[s: s + BLOCK])
            if on_user:
                for uid in user_ids[s: s + BLOCK]:
                    on_user(uid)
        return out


def stored_user_ids(folder) -> list[str]:
    """The customers of a saved version (Recommender.save's folder), read without loading the model: a Ray driver
    only hands out ids, while each worker loads the version itself (~4.8 GB at 1M customers x 200k items)."""
    from pathlib import Path

    with np.load(Path(folder) / "recommender.npz", allow_pickle=False) as z:
        return z["user_ids"].astype(str).tolist()
