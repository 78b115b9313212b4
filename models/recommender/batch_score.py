"""Top-k rows for many customers at once (`recommend --all-users`, in one process or per Ray shard).

Why not `rules.recommend` once per customer: what does not depend on the customer was redone for each of them (the
in-stock mask over the catalogue, the no-consent list) and the index was searched one query at a time. Here they are
done once per job and the index is searched for a block of customers in one call (`Retrieval.nearest`); what
retrieval keeps per catalogue state (cold items by category, popularity orders, each sold-out item's substitutes) is
shared by every customer through its memos (models/recommender/memo.py).

What is not batched, on purpose: each customer's candidates are `Retrieval.candidates` given the block's search
result, and their exact stage-1 scores, rules, ranker and reasons are `rules.ranked`, the very code `/recommend` runs.
The rows are therefore the per-request rows, not an approximation of them (tests/test_ray_batch.py compares them for
every customer of a small world, with and without the retrieval index), and every speed-up of the per-request model
path reaches the batch job too.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from omnidecide.models.recommender import rules
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
        self.n_rank = max(5 * k, 50, N_CAND)  # as rules.recommend asks retrieval
        self.no_consent = rules.popular(rec, k, self.ok, channel, store_id, "personalisation off: ")

    # --- rows ----------------------------------------------------------------------------------------------
    def one(self, user_id: str, cols: np.ndarray | None) -> list[rules.Row]:
        """`rules.recommend` for a known, consenting customer over the candidate columns `cols` (None: all items)."""
        return rules.ranked(self.rec, user_id, self.k, None, cols, self.ok, self.channel, None, 0.0, None,
                            self.store_id, self.segment)

    def block(self, user_ids: Sequence[str]) -> list[list[rules.Row]]:
        """Rows for each of `user_ids`, in order."""
        rec = self.rec
        out: list[list[rules.Row] | None] = [None] * len(user_ids)
        todo = []  # (position, user index, history, its signal, query) of customers with a personal list
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
                rows = dense_rows(rec.X, np.array([uidx]), hist)
                todo.append((p, uidx, hist, rows, rec.retrieval.query(rec, rows, hist)))
        searched = [t for t in todo if t[4].any()]  # zero when the customer's items are all cold: popularity
        ann: dict[int, np.ndarray] = {}
        if searched:
            found = rec.retrieval.nearest(rec, np.vstack([t[4] for t in searched]), self.n_rank)
            ann = {t[0]: a for t, a in zip(searched, found)}
        for p, uidx, hist, rows, _ in todo:
            cols = rec.retrieval.candidates(rec, uidx, hist, rows, self.ok, self.n_rank, self.k, ann=ann.get(p))
            out[p] = self.one(user_ids[p], cols)
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
