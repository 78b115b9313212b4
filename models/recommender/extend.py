"""A fitted recommender's catalogue grown by items that arrived after training (live catalogue, `POST /items`).

A new item has no interactions, so the graph model holds nothing about it: it is added as a cold item (zero degree,
zero columns in every user x item matrix, no popularity, no re-buy history). Stage 1 already scores cold items by
content: the mean score of the warm items of their category, less a novelty penalty (`Recommender.stage1`); its
embedding (for similar items, substitutes and diversity) is the mean embedding of those warm items. So an item
posted with a category can be recommended on the next request, without retraining. Pure model code.
"""
from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp

from omnidecide.models.recommender.baskets import TIFU
from omnidecide.models.recommender.core import Recommender
from omnidecide.models.recommender.repeat import RepeatModel

COLD_DEGREE = 1e-9  # below Recommender.stage1's cold threshold (1e-6)


def _pad_cols(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], m.shape[1] + n))


def _pad(a: np.ndarray, n: int, fill: float) -> np.ndarray:
    return np.concatenate([np.asarray(a), np.full(n, fill, dtype=np.asarray(a).dtype if a.dtype.kind != "i" else float)])


def _tifu_with_items(tifu: TIFU | None, n: int) -> TIFU | None:
    """The fitted TIFU-KNN state over a catalogue grown by n items nobody has bought (zero columns)."""
    if tifu is None:
        return None
    out = copy.copy(tifu)
    out.V = _pad_cols(sp.csr_matrix(tifu.V), n)
    return out


def category_embeddings(rec: Recommender, emb: np.ndarray) -> np.ndarray:
    """Per category, the mean embedding of its warm items (zero for a category without any)."""
    warm = rec.graph.d_item >= 1e-6
    n_cat = len(rec.categories)
    out = np.zeros((n_cat, emb.shape[1]))
    cnt = np.bincount(rec.item_cat[warm], minlength=n_cat)
    np.add.at(out, rec.item_cat[warm], emb[warm])
    return out / np.maximum(cnt, 1)[:, None]


def with_items(rec: Recommender, item_ids: list[str], categories: list[str | None],
               price: list[float | None] | None = None, stock: list[float | None] | None = None,
               titles: list[str | None] | None = None) -> Recommender:
    """A copy of `rec` that also holds `item_ids` (not already in it) as cold items; `rec` is left as it was."""
    n = len(item_ids)
    if n == 0:
        return rec
    if set(map(str, item_ids)) & rec.item_index.keys():
        raise ValueError("with_items: some items are already in the catalogue")
    names = [str(c) if c else "unknown" for c in categories]
    cat_names = list(map(str, rec.categories))
    cat_names += [c for c in dict.fromkeys(names) if c not in cat_names]
    cat_index = {c: k for k, c in enumerate(cat_names)}
    item_cat = np.concatenate([rec.item_cat, [cat_index[c] for c in names]]).astype(rec.item_cat.dtype)

    g = copy.copy(rec.graph)
    g.n_items = rec.graph.n_items + n
    g.d_item = _pad(rec.graph.d_item, n, COLD_DEGREE)
    g.d_graph = _pad(rec.graph.d_graph, n, COLD_DEGREE)
    g.R_norm = _pad_cols(rec.graph.R_norm, n)
    g.V = np.hstack([rec.graph.V, np.zeros((rec.graph.V.shape[0], n))])
    if rec.graph.Q is not None:
        g.Q = np.vstack([rec.graph.Q, np.zeros((n, rec.graph.Q.shape[1]))])
    g._bases = None  # the filter's cached components belong to the smaller catalogue
    g._graph()  # propagation graph and item-item operator over the grown catalogue

    price_arr = None
    if rec.price is not None or (price and any(p is not None for p in price)):
        old = rec.price if rec.price is not None else np.full(len(rec.item_ids), np.nan)
        price_arr = np.concatenate([old, [np.nan if p is None else float(p) for p in (price or [None] * n)]])
    titles_arr = None
    if rec.titles is not None or (titles and any(titles)):
        old = rec.titles if rec.titles is not None else np.array([""] * len(rec.item_ids))
        titles_arr = np.concatenate([old.astype(str), [t or "" for t in (titles or [None] * n)]]).astype(str)
    stock_new = [np.inf if s is None else float(s) for s in (stock or [None] * n)]

    out = Recommender(
        user_ids=rec.user_ids, item_ids=np.concatenate([rec.item_ids.astype(str), np.asarray(item_ids, dtype=str)]),
        X=_pad_cols(rec.X, n), consumed=_pad_cols(rec.consumed, n), n_buy=_pad_cols(rec.n_buy, n),
        last_buy=_pad_cols(rec.last_buy, n), first_buy=_pad_cols(rec.first_buy, n), t0=rec.t0, t_end=rec.t_end,
        graph=g, tifu=_tifu_with_items(rec.tifu, n),
        repeat=RepeatModel(item_share=_pad(rec.repeat.item_share, n, 0.0), item_cycle=_pad(rec.repeat.item_cycle, n, np.nan),
                           global_share=rec.repeat.global_share),
        item_cat=item_cat, categories=np.array(cat_names), stock=np.concatenate([rec.stock, stock_new]),
        pop={k: _pad(v, n, 0.0) for k, v in rec.pop.items()}, stage=rec.stage, titles=titles_arr, price=price_arr,
        no_consent=rec.no_consent, ranker=rec.ranker, retrieval=rec.retrieval, side=None,
        ease=rec.ease)  # kept at the trained size: a new item has no EASE weights (Recommender.ease_z)
    emb = rec.embeddings()
    out._emb = np.vstack([emb, category_embeddings(out, np.vstack([emb, np.zeros((n, emb.shape[1]))]))[item_cat[-n:]]])
    return out
