"""Context built from items.csv and users.csv for the recommender: side-information nodes (category, genres) for the
graph, and popularity per customer segment for the cold start of a new customer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

# users.csv attributes that define segments for cold-start popularity, with the reason wording of each
SEGMENTS = {"member_level": "with {} members", "age_band": "with customers aged {}", "gender": "with {} customers",
            "city": "with customers in {}"}
MIN_SEGMENT_USERS = 10  # a segment popularity needs this many training users behind it


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
