"""Inference-time rules: cold start, stock, substitutes, exclusions, MMR diversity and a reason per row."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.models.recommender.core import Recommender, UserRows
from omnidecide.models.recommender.ranker import N_CAND
from omnidecide.models.recommender.repeat import DAY, personal_gap
from omnidecide.models.recommender.retrieval import similar_first

VERBS = {"purchase": "bought", "rating": "rated", "cart": "carted", "click": "clicked", "view": "viewed"}


@dataclass
class Row:
    item_id: str
    score: float
    reason: str
    source: str  # gnn (the graph filter; name kept for the API) | repeat | substitute | new_item | fallback


def in_stock_mask(rec: Recommender, store_stock: dict[str, float] | None = None) -> np.ndarray:
    """Global stock > 0 and, when a store's stock is given, stock > 0 at that store (unknown there = allowed)."""
    ok = ~(rec.stock <= 0)
    if store_stock:
        for item, s in store_stock.items():
            j = rec.item_index.get(str(item))
            if j is not None and s <= 0:
                ok[j] = False
    return ok


def top_stable(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, best first, ties in index order: `np.argsort(-values, kind="stable")[:n]`
    without sorting the whole catalogue."""
    if len(values) <= n:
        return np.argsort(-values, kind="stable")
    thr = np.partition(values, len(values) - n)[len(values) - n]
    idx = np.flatnonzero(values >= thr)
    return idx[np.argsort(-values[idx], kind="stable")][:n]


def mmr(cands: np.ndarray, rel: np.ndarray, emb: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Greedy maximal marginal relevance: (1-lam)*relevance - lam*max similarity to items already picked."""
    if lam <= 0 or len(cands) <= 1:
        return cands[:k]
    r = (rel - rel.min()) / max(rel.max() - rel.min(), 1e-12)
    E = emb[cands]
    picked: list[int] = []
    max_sim = np.full(len(cands), -1.0)
    free = np.ones(len(cands), bool)
    for _ in range(min(k, len(cands))):
        val = np.where(free, (1 - lam) * r - lam * np.maximum(max_sim, 0), -np.inf)
        b = int(np.argmax(val))
        picked.append(b)
        free[b] = False
        max_sim = np.maximum(max_sim, E @ E[b])
    return cands[np.array(picked)]


def popular(rec: Recommender, k: int, ok: np.ndarray, channel: str | None, store_id: str | None, why: str,
            segment: dict[str, str] | None = None) -> list[Row]:
    pop, label = rec.popularity(channel, store_id, segment)
    pop = np.where(ok, pop, -np.inf)
    top = top_stable(pop, k)
    top = top[np.isfinite(pop[top])]
    total = max(float(np.sum(pop[np.isfinite(pop)])), 1e-12)
    def where(j: int) -> str:
        cat = rec.categories[rec.item_cat[j]]
        return f"in {cat} {label}" if cat != "unknown" else label

    return [Row(str(rec.item_ids[j]), float(pop[j] / total), f"{why}popular {where(j)}", "fallback") for j in top]


def history(rec: Recommender, user_id: str, recent: pd.DataFrame | None) -> np.ndarray:
    """Sorted indices of the items the user has any state on: training events and fresh ones."""
    parts = [np.zeros(0, dtype=np.int64)]
    u = rec.user_index.get(user_id)
    if u is not None:
        parts.append(rec.X.indices[rec.X.indptr[u]: rec.X.indptr[u + 1]])
    if recent is not None and len(recent):
        parts.append(np.array([j for j in map(rec.item_index.get, recent["item_id"].astype(str)) if j is not None],
                              dtype=np.int64))
    elif len(parts) == 2 and rec.X.has_canonical_format:  # the stored row alone: sorted, each item once
        return parts[1].astype(np.int64)
    return np.unique(np.concatenate(parts).astype(np.int64))


def recommend(rec: Recommender, user_id: str, k: int = 20, *, recent: pd.DataFrame | None = None,
              channel: str | None = None, store_id: str | None = None, store_stock: dict[str, float] | None = None,
              exclude: list[str] | None = None, diversity: float = 0.0, now: float | None = None,
              personalized: bool = True, segment: dict[str, str] | None = None) -> list[Row]:
    """Top-k rows for one user. Unknown users with no fresh events get context popularity (source `fallback`): in
    their segment when `segment` (users.csv attributes, e.g. {"member_level": "gold"}) is given, else in the store or
    channel. So does a user who switched personalisation off (in users.csv, or `personalized=False` per request).

    A version with a retrieval index (big catalogues) scores only its candidates (`retrieval.Retrieval`): the same
    scores, rules and ranker, on a few hundred items instead of the catalogue."""
    ok = in_stock_mask(rec, store_stock)
    for x in exclude or []:
        j = rec.item_index.get(str(x))
        if j is not None:
            ok[j] = False
    if user_id in rec.no_consent or not personalized:
        return popular(rec, k, ok, channel, store_id, "personalisation off: ")  # no attributes: they personalise
    n_cand = max(5 * k, 50)
    cols = None
    if rec.retrieval is not None:
        hist = history(rec, user_id, recent)
        st, known = rec.user_state(user_id, recent, hist, tifu=False)
        if not known:
            return popular(rec, k, ok, channel, store_id, "new customer: ", segment)
        cols = rec.retrieval.candidates(rec, rec.user_index.get(user_id), hist, st.rows, ok, max(n_cand, N_CAND), k)
        return ranked(rec, user_id, k, recent, cols, ok, channel, exclude, diversity, now, store_id, segment,
                      state=(hist, st))
    return ranked(rec, user_id, k, recent, cols, ok, channel, exclude, diversity, now, store_id, segment)


def ranked(rec: Recommender, user_id: str, k: int, recent: pd.DataFrame | None, cols: np.ndarray | None,
           ok: np.ndarray, channel: str | None, exclude: list[str] | None, diversity: float, now: float | None,
           store_id: str | None, segment: dict[str, str] | None, state: tuple | None = None) -> list[Row]:
    """The personal list over the candidate columns `cols` (None: every item), for `recommend` and the batch job
    (batch_score): scored a second time when a sold-out item's substitute lies outside the candidates; a customer with
    nothing to score gets context popularity. `state`: (the user's items, their UserRows over them), already built
    by `recommend` for the query; the state over `cols` is widened from it instead of gathered again."""
    while True:  # at most twice: a sold-out item's substitute outside the candidates joins them
        out = _ranked(rec, user_id, k, recent, cols, ok, channel, exclude, diversity, now, state)
        if out is None:
            return popular(rec, k, ok, channel, store_id, "new customer: ", segment)
        rows, missing = out
        if not len(missing):
            return rows
        cols = np.union1d(cols, missing)


def _ranked(rec: Recommender, user_id: str, k: int, recent: pd.DataFrame | None, cols: np.ndarray | None,
            ok: np.ndarray, channel: str | None, exclude: list[str] | None, diversity: float,
            now: float | None, state: tuple | None = None) -> tuple[list[Row], np.ndarray] | None:
    """(rows, substitutes outside `cols` that must be scored too) for a known user over the items `cols` (all when
    None); None for an unknown user. Array positions are columns; `ids` maps them to catalogue items."""
    ranks = rec.ranker is not None and rec.stage.serve == "model"
    uidx = rec.user_index.get(user_id)
    # the TIFU score is only the ranker's feature when stage 1 does not weigh it in: then it is computed for the
    # ranker's ~50 candidates, not for every retrieved column (most of them the cold items of each category)
    lazy = ranks and cols is not None and rec.stage.tifu_w <= 0 and rec.tifu is not None and uidx is not None
    if state is not None and cols is not None:
        st, known = widen(rec, *state, cols, uidx, tifu=not lazy), True
    else:
        st, known = rec.user_state(user_id, recent, cols, tifu=not lazy)
    if not known:
        return None
    score, z, rep, allowed = rec.stage1(st, now, cols=cols)
    if ranks:
        tifu_at = (lambda cand: tifu_of(rec, uidx, cols, cand)) if lazy else None
        score = rec.ranker.rescore_batch(rec, score, z, rep, st, allowed, now, [channel], items=cols, tifu_at=tifu_at)
    score, z, rep, allowed = score[0], z[0], rep[0], allowed[0]
    row, nb, lb = st.rows[0], st.nb[0], st.lb[0]
    ids = np.arange(len(rec.item_ids)) if cols is None else cols
    emb = rec.embeddings()
    cold_all = rec.graph.d_item < 1e-6 if rec.retrieval is None else rec.retrieval.cold(rec)[0]
    cold, cat = cold_all[ids], rec.item_cat[ids]

    usable = allowed & ok[ids]
    base = np.where(usable, score, -np.inf)
    n_cand = max(5 * k, 50)
    cands = top_stable(base, n_cand)
    cands = cands[np.isfinite(base[cands])]
    # sold-out items the user would have got: push an in-stock substitute from the same category instead
    subs: dict[int, int] = {}
    missing: list[int] = []
    raw = np.where(allowed & ~ok[ids] & ~cold, score, -np.inf)
    cut = base[cands[min(k, len(cands)) - 1]] if len(cands) else -np.inf
    # those that would have made the list, at once: the few finite ones first (np.partition over a row of mostly
    # -inf was ~80 us)
    sold = np.flatnonzero((raw >= cut) & np.isfinite(raw))
    sold = sold[top_stable(raw[sold], k)]
    free = None  # usable and not already in the list: a mask, once (np.isin per sold-out item cost more)
    for j in sold:
        if exclude and str(rec.item_ids[ids[j]]) in exclude:
            continue
        if free is None:
            free = ok.copy()
            free[ids] &= allowed  # items outside `cols` carry no state of the user: allowed
            free[ids[cands[:k]]] = False
        if rec.retrieval is not None:  # the same order, kept per sold-out item (the whole category's product is
            # a scan of ~9,000 items per sold-out item at 200k items)
            same = rec.retrieval.substitutes(rec, int(ids[j]), free, 1)
        else:
            order = similar_first(rec, int(ids[j]), np.flatnonzero(rec.item_cat == cat[j]))
            same = order[free[order]][:1]
        if len(same):
            s = int(same[0])
            at = int(np.searchsorted(ids, s))
            if at >= len(ids) or ids[at] != s:
                missing.append(s)
                continue
            subs[at] = int(j)
            base[at] = max(base[at], raw[j] * 0.999)
    if missing:
        return [], np.array(missing, dtype=np.int64)
    if subs:
        cands = top_stable(base, n_cand)
        cands = cands[np.isfinite(base[cands])]
    picked = cands[:k]  # `mmr` without diversity, without gathering the candidates' embeddings
    if diversity > 0:
        picked = cands[mmr(np.arange(len(cands)), base[cands], emb[ids[cands]], k, diversity)]
    # per picked item, the customer's mean days between purchases (UserRows.personal_gap), for the re-buy reasons
    nbp = nb[picked]
    gap = personal_gap(nbp, lb[picked], st.fb[0, picked])

    hist = np.flatnonzero(row > 0)
    # per picked item, the history item that explains it best: the user's signal times embedding similarity
    near = row[hist][:, None] * (emb[ids[hist]] @ emb[ids[picked]].T)
    near[hist[:, None] == picked[None, :]] = -np.inf  # never explained by itself
    explains = hist[np.argmax(near, axis=0)] if len(hist) else np.zeros(len(picked), dtype=np.int64)
    explained = np.isfinite(near).any(axis=0)  # per picked item, at once: not two numpy calls per row
    pop_now = rec.pop_z() if rec.stage.pop_w > 0 else None
    out = []
    # the picked items' values as Python lists, once (numpy scalar reads per row and field added up)
    names = [str(x) for x in rec.item_ids[ids[picked]].tolist()]
    scores, bought, is_cold, has_expl = base[picked].tolist(), nbp.tolist(), cold[picked].tolist(), explained.tolist()
    for q, j in enumerate(picked.tolist()):
        if j in subs:
            why, src = f"in-stock substitute for {rec.item_label(ids[subs[j]])} (sold out)", "substitute"
        elif bought[q] > 0:  # a re-buy: never explained by another item
            why, src = rebuy_reason(rec, ids[j], bought[q], lb[j], gap[q], now), "repeat"
        elif is_cold[q]:
            why, src = f"new in {rec.categories[cat[j]]}, like items you liked", "new_item"
        else:
            src = "gnn"
            if pop_now is not None and rec.stage.pop_w * pop_now[ids[j]] > max(z[j], 0.0):  # popularity now wins
                why = f"popular right now (half-life {rec.stage.pop_hl:g} days)"
            elif has_expl[q]:
                b = explains[q]
                verb = ("bought" if nb[b] > 0 else "rated" if row[b] >= 1 else "added to cart" if row[b] >= 0.6
                        else "clicked" if row[b] >= 0.35 else "viewed")
                why = f"because you {verb} {rec.item_label(ids[b])}"
            else:
                why = f"popular with customers like you in {rec.categories[cat[j]]}"
        out.append(Row(names[q], scores[q], why, src))
    return out, np.zeros(0, dtype=np.int64)


def widen(rec: Recommender, hist: np.ndarray, st: UserRows, cols: np.ndarray, uidx: int | None,
          tifu: bool) -> UserRows:
    """A known user's state over the sorted columns `cols` from their state `st` over their own items `hist` (all
    in `cols`): elsewhere nothing is known (no signal, never bought), as `Recommender.user_state` would give."""
    at = np.searchsorted(cols, hist)

    def put(a: np.ndarray, empty) -> np.ndarray:
        out = np.full((1, len(cols)), empty, dtype=a.dtype)
        out[0, at] = a[0]
        return out

    t = (rec.tifu.scores(np.array([uidx]), cols) if tifu and rec.tifu is not None and uidx is not None
         else np.zeros((1, len(cols))))
    return UserRows(put(st.rows, 0.0), put(st.cons, False), put(st.nb, 0.0), put(st.lb, -1.0), put(st.fb, -1.0), t)


def tifu_of(rec: Recommender, uidx: int, cols: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The TIFU score of customer `uidx` at the candidate columns `cand` (1 x n positions in `cols`)."""
    items = cols[cand[0]]
    order = np.argsort(items)
    out = np.empty((1, len(items)))
    out[0, order] = rec.tifu.scores(np.array([uidx]), items[order])[0]
    return out


def rebuy_reason(rec: Recommender, j: int, n_bought: float, last: float, gap: float, now: float | None) -> str:
    """"you buy this about every N days (last: D days ago)" from the customer's own purchases when there are two or
    more; after one purchase, the interval customers in general re-buy it at, when the data has one."""
    ago = max(0.0, ((rec.t_end if now is None else now) - last) / DAY)
    if n_bought >= 2 and np.isfinite(gap):
        return f"you buy this about every {max(gap, 1):.0f} days (last: {ago:.0f} days ago)"
    cyc = rec.repeat.item_cycle[j] if len(rec.repeat.item_cycle) else np.nan
    if np.isfinite(cyc) and rec.repeat.item_share[j] > 0:
        return f"you bought this {ago:.0f} days ago; customers re-buy it about every {max(cyc, 1):.0f} days"
    return f"you bought this {ago:.0f} days ago"


def similar_items(rec: Recommender, item_id: str, k: int = 10, store_stock: dict[str, float] | None = None) -> list[Row]:
    """In-stock items close to `item_id`: chosen together (graph), embedding as tie-break. An item nobody has chosen
    yet (new through `/items`) is close only by its category: those rows say so, and items nothing links to are left
    out (they came back with score 0 and "often chosen with" it, which was not true)."""
    j = rec.item_index.get(str(item_id))
    if j is None:
        return []
    ok = np.flatnonzero(in_stock_mask(rec, store_stock))
    top, sim = rec.similar(j, k, candidates=ok)
    label = rec.item_label(j)
    if not is_new(rec, j):
        return [Row(str(rec.item_ids[t]), float(s), f"often chosen with {label}", "gnn") for t, s in zip(top, sim)]
    cat, name = rec.item_cat[j], rec.categories[rec.item_cat[j]]
    return [Row(str(rec.item_ids[t]), float(s), f"same category ({name}) as {label}" if rec.item_cat[t] == cat
                else f"like the {name} items", "gnn") for t, s in zip(top, sim) if s > 0]


def is_new(rec: Recommender, j: int) -> bool:
    """Nobody has chosen item j yet (a cold item, see models/recommender/extend.py)."""
    return bool(rec.graph.d_item[j] < 1e-6)


def nothing_similar(rec: Recommender, item_id: str) -> str:
    """Why `similar_items` found nothing for a known item, for the caller to show instead of an empty shelf."""
    j = rec.item_index[str(item_id)]
    if is_new(rec, j):
        return (f"{item_id} is new: nobody has chosen it yet and no other in-stock item is in its category "
                f"({rec.categories[rec.item_cat[j]]}), so nothing is known to be like it; it gets similar items once "
                "shoppers choose it and the model is retrained, or once an item of its category is in stock")
    return f"no in-stock item is close to {item_id} (at this store, when one was given)"
