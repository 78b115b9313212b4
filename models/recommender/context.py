"""Context built from items.csv and users.csv for the recommender: side-information nodes (category, genres) for the
graph, and popularity per customer segment for the cold start of a new customer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omnidecide.models.recommender.repeat import DAY

# users.csv attributes that define segments for cold-start popularity, with the reason wording of each
SEGMENTS = {"member_level": "with {} members", "age_band": "with customers aged {}", "gender": "with {} customers",
            "city": "with customers in {}"}
MIN_SEGMENT_USERS = 10  # a segment popularity needs this many training users behind it
POP_HALF_LIFE_DAYS = 30.0  # popularity of every context, the fallbacks and the ranker's features
# half-lives (days) of the recent popularity stage 1 may add (`pop_hl`, chosen on validation): under a global time cut
# what is popular *now* decides much of the next window (issue 13), and how fast "now" moves differs by data set
POP_HALF_LIVES = (1.0, 3.0, 10.0, 30.0, 100.0)


def side_nodes(it: pd.DataFrame) -> sp.csr_matrix:
    """Side-information nodes x items: one node per value of `category` and per token of an optional pipe-separated
    `genres` column (one namespace: a genre equal to the category is the same node). Rows of `it` are aligned to the
    catalogue. The graph model links items of the same genre through these nodes."""
    tokens = [set() for _ in range(len(it))]
    for col in ("category", "genres"):
        if col in it.columns:
            vals = it[col].astype(object).where(it[col].notna(), "").astype(str).to_numpy()
            for ts, v in zip(tokens, vals):
                ts.update(t.strip() for t in v.split("|") if t.strip())
    index = {t: n for n, t in enumerate(sorted(set().union(*tokens)))}
    r = [index[t] for ts in tokens for t in sorted(ts)]
    c = [j for j, ts in enumerate(tokens) for _ in ts]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(index), len(it)))


def segment_popularity(user: np.ndarray, item: np.ndarray, weight: np.ndarray, n_items: int,
                       users: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """"segment:<column>=<value>" -> item popularity among the training users with that users.csv attribute, for the
    cold start of a new customer whose attributes are known (member level, age band, gender, city)."""
    out: dict[str, np.ndarray] = {}
    if users is None or "user_id" not in users.columns:
        return out
    us = users.drop_duplicates("user_id")
    us = us.set_index(us["user_id"].astype(str))
    uid = pd.Series(user).astype(str)
    for col in SEGMENTS:
        if col not in us.columns:
            continue
        vals = uid.map(us[col].astype(object).where(us[col].notna(), "").astype(str)).fillna("").to_numpy()
        for v in pd.unique(vals[vals != ""]):
            m = vals == v
            if len(pd.unique(user[m])) >= MIN_SEGMENT_USERS:
                out[f"segment:{col}={v}"] = np.bincount(item[m], weights=weight[m], minlength=n_items)
    return out


def context_popularity(ev: pd.DataFrame, item: np.ndarray, t: np.ndarray, weight: np.ndarray, n_items: int,
                       users: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Item popularity by context, recency-weighted: "global" and every channel / store / users.csv segment at the
    30-day half-life, plus "recent:<days>" at each other half-life tuning may choose for stage 1 (the saved model
    keeps only the chosen one). `item`, `t` (seconds) and `weight` are aligned with the rows of `ev`."""
    decay = 0.5 ** ((t.max() - t) / DAY / POP_HALF_LIFE_DAYS) if len(t) else np.zeros(0)
    pw = weight * decay
    pop = {"global": np.bincount(item, weights=pw, minlength=n_items)}
    for hl in POP_HALF_LIVES:
        if hl != POP_HALF_LIFE_DAYS and len(t):
            pop[f"recent:{hl:g}"] = np.bincount(item, weights=weight * 0.5 ** ((t.max() - t) / DAY / hl),
                                                minlength=n_items)
    for col, prefix in (("channel", "channel:"), ("store_id", "store:")):
        if col in ev.columns:
            # one pass over the events (codes of the distinct values, first-seen order), not one per value
            code, uniq = value_codes(ev[col])
            per = np.bincount(code * n_items + item, weights=pw, minlength=len(uniq) * n_items).reshape(len(uniq),
                                                                                                         n_items)
            for c, v in enumerate(uniq):
                if v != "":
                    pop[prefix + str(v)] = per[c]
    if users is not None:  # (a 50M-row object array of customer ids otherwise made for nothing)
        pop.update(segment_popularity(ev["user_id"].to_numpy(), item, pw, n_items, users))
    return pop


def value_codes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, distinct values as strings in first-seen order; a missing value is ""), as `pd.factorize` of
    the column as strings. A categorical column (compact frames) is coded from its category codes: turning 48.9M
    rows into strings first took ~5 GB for a moment, the peak of the 1M build (12.42 GB)."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        return pd.factorize(col.astype(object).where(col.notna(), "").astype(str))
    names = np.append(np.asarray(col.cat.categories.astype(str), dtype=object), "")  # code -1 (missing): ""
    codes = col.cat.codes.to_numpy()
    values: list = []
    first: dict = {}
    remap = np.zeros(len(names), dtype=np.int64)
    for c in pd.unique(codes):  # first-seen order, as factorize's
        v = names[c]
        remap[c] = first.setdefault(v, len(values))
        if remap[c] == len(values):
            values.append(v)
    return remap[codes], np.array(values, dtype=object)

