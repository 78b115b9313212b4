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
