"""Churn training at scale samples customers before building windows; a sample keeps each chosen customer whole."""
from __future__ import annotations

import numpy as np
import pandas as pd

from omnidecide.models.churn import features as F
from omnidecide.training.churn.pipeline import sample_customers


def test_sample_keeps_whole_customers():
    rng = np.random.default_rng(0)
    ev = pd.DataFrame({"user_id": [f"u{i % 50:02d}" for i in range(1000)],
                       "timestamp": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, 1000), unit="D"),
                       "event": rng.choice(["view", "purchase"], 1000), "amount": rng.uniform(1, 9, 1000)})
    prep = F.prepare(ev)
    assert sample_customers(prep, 50, rng) is prep
    sub = sample_customers(prep, 10, np.random.default_rng(1))
    assert len(sub.user_ids) == 10 and set(np.unique(sub.user)) == set(range(10))
    for code, uid in enumerate(sub.user_ids):
        mine = ev[ev["user_id"] == uid]
        assert (sub.user == code).sum() == len(mine)
        assert np.isclose(sub.value[sub.user == code].sum(), mine.loc[mine["event"] == "purchase", "amount"].sum())
    w = F.window(sub, sub.day("2025-09-01"))
    assert set(w.rfm["user_id"]) <= set(sub.user_ids)


def test_frame_sample_before_the_arrays_keeps_whole_customers_and_the_as_of():
    """`train churn` samples customers from the loaded frame (store.io compact categoricals) before `prepare`: the
    chosen customers keep all their events, and the default validation as-of stays the whole log's."""
    from omnidecide.training.churn import sample_frame
    from omnidecide.training.churn.pipeline import Config

    rng = np.random.default_rng(0)
    ev = pd.DataFrame({"user_id": pd.Categorical([f"u{i % 50:02d}" for i in range(1000)]),
                       "timestamp": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, 1000), unit="D"),
                       "event": rng.choice(["view", "purchase"], 1000), "amount": rng.uniform(1, 9, 1000)})
    last = ev["timestamp"].max().normalize()
    ev.loc[ev["timestamp"] == ev["timestamp"].max(), "user_id"] = "u00"  # one customer holds the last day
    same, as_of = sample_frame(ev, Config(max_customers=50), None)
    assert same is ev and as_of is None  # small logs: untouched, `fit` picks the as-of as before
    sub, as_of = sample_frame(ev, Config(max_customers=10, horizon_days=30), None)
    assert as_of == str((last + pd.Timedelta(days=1 - 30)).date())
    chosen = set(sub["user_id"].astype(str))
    assert len(chosen) == 10
    assert len(sub) == ev["user_id"].astype(str).isin(chosen).sum()
    assert sample_frame(ev, Config(max_customers=10, horizon_days=30), "2025-06-01")[1] == "2025-06-01"


def test_history_slices_compact_ids_by_text(tmp_path):
    """The compact loader keeps ids as categoricals in order of appearance; the version's history must still be sorted
    by the ids' text, or a customer's rows are not one slice for `History.of`."""
    import pandas as pd

    from omnidecide.store import history

    ids = ["u9", "u1", "u5", "u1", "u9", "u2"]
    ev = pd.DataFrame({"user_id": pd.Categorical(ids, categories=["u9", "u1", "u5", "u2"]),
                       "timestamp": pd.date_range("2026-01-01", periods=6, freq="D"),
                       "event": "purchase", "item_id": "i1", "channel": "app", "quantity": 1, "amount": 1.0})
    history.write(tmp_path, ev)
    h = history.History.read(tmp_path)
    assert h.of(["u1"])["timestamp"].tolist() == [pd.Timestamp("2026-01-02"), pd.Timestamp("2026-01-04")]
    assert len(h.of(["u9", "u2"])) == 3 and h.of(["nobody"]).empty
