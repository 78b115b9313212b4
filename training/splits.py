"""Train/test splitters shared by every pipeline and benchmark (events frames in the canonical schema)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def per_user_random(events: pd.DataFrame, test_frac: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's rows shuffled; round(test_frac * n) go to test. Users with one row stay in train only."""
    rng = np.random.default_rng(seed)
    key = pd.Series(rng.random(len(events)), index=events.index)
    rank = key.groupby(events["user_id"]).rank(method="first")
    size = events.groupby("user_id")["user_id"].transform("size")
    n_test = np.where(size >= 2, np.maximum(1, np.round(test_frac * size)), 0)
    test = rank <= n_test
    return events[~test], events[test]


def per_user_temporal(events: pd.DataFrame, test_frac: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest round(test_frac * n) rows go to test (ties broken by file order)."""
    order = events.sort_values("timestamp", kind="stable")
    rank_from_end = order.groupby("user_id").cumcount(ascending=False)
    size = order.groupby("user_id")["user_id"].transform("size")
    n_test = np.where(size >= 2, np.maximum(1, np.round(test_frac * size)), 0)
    test = rank_from_end < n_test
    return order[~test].sort_index(), order[test].sort_index()


def last_basket(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test = each user's last purchase basket (same order_id, else same calendar day); train = all before it.

    Users with a single basket keep it in train (nothing earlier to learn from). Later non-purchase
    events of a user are dropped from both sides: they happen after the moment we predict for.
    """
    buys = events[events["event"] == "purchase"]
    if "order_id" in buys.columns and buys["order_id"].notna().any():
        basket = buys["order_id"].fillna(buys["timestamp"].dt.strftime("day-%Y%m%d"))
    else:
        basket = buys["timestamp"].dt.strftime("day-%Y%m%d")
    start = buys.groupby(basket)["timestamp"].transform("min")
    last_start = start.groupby(buys["user_id"]).transform("max")
    n_baskets = basket.groupby(buys["user_id"]).transform("nunique")
    in_test = (start == last_start) & (n_baskets >= 2)
    test = buys[in_test]
    if test.empty:  # no user has two baskets: everything trains (mapping an empty cutoff would lose its dtype)
        return events, test
    cutoff = test.groupby("user_id")["timestamp"].min()
    user_cut = events["user_id"].map(cutoff)
    train = events[user_cut.isna() | (events["timestamp"] < user_cut)]
    return train, test


def global_time(events: pd.DataFrame, cutoff: pd.Timestamp | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train strictly before `cutoff`, test at or after it."""
    cutoff = pd.Timestamp(cutoff)
    before = events["timestamp"] < cutoff
    return events[before], events[~before]


def global_time_share(events: pd.DataFrame, test_share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A global cutoff: the latest `test_share` of the rows (by time) are the test window, everything before it
    trains. What production faces: only the past predicts the next window, for every user at once."""
    cutoff = events["timestamp"].quantile(1.0 - test_share, interpolation="higher")
    return global_time(events, cutoff)
