"""Customer scores by id ([N]): published rows, lookup of known and unknown ids, replacement, deletion, staleness."""
from __future__ import annotations

import pandas as pd
import pytest

from omnidecide.store import scores
from omnidecide.store.db import Database


@pytest.fixture
def db(tmp_path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'state.sqlite3'}")


def table(p: float) -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["a", "b"], "churn_probability": [p, 0.2], "risk_tier": ["high", "low"],
                         "segment": ["at risk", "loyal"], "expected_spend": [12.5, float("nan")],
                         "reason": ["no visit in 40 days", "regular"]})


def test_published_scores_are_looked_up_by_id_replaced_and_forgotten(db):
    assert scores.publish(table(0.8), "churn:v1", "2026-06-30", db) == 2
    found = scores.lookup(["a", "nobody", "b", "a", "\ud800"], db)
    assert set(found) == {"a", "b"}
    assert found["a"]["churn_probability"] == 0.8 and found["a"]["model"] == "churn:v1"
    assert found["a"]["as_of"] == "2026-06-30" and found["b"]["expected_spend"] is None
    scores.publish(table(0.6).iloc[:1], "churn:v2", "2026-07-01", db)  # a newer run replaces the customer's row
    assert scores.lookup(["a"], db)["a"]["model"] == "churn:v2" and scores.lookup(["b"], db)["b"]["model"] == "churn:v1"
    assert scores.forget("a", db) == 1 and scores.lookup(["a"], db) == {} and scores.forget("\ud800", db) == 0
    assert len(scores.lookup([f"x{i}" for i in range(1200)] + ["b"], db)) == 1  # chunked statements


def test_scores_older_than_the_limit_are_flagged(db, monkeypatch):
    from omnidecide.store import db as database
    from omnidecide.training import lifecycle

    monkeypatch.setattr(database, "default_url", lambda: db.url)
    assert lifecycle.stale_scores_alert() is None  # nothing published: nothing to flag
    scores.publish(table(0.8), "churn:v1", "2026-06-30", db)
    assert lifecycle.stale_scores_alert() is None
    db.execute("UPDATE customer_scores SET published_at = published_at - ?", (3 * 86400,))
    assert "3.0 days old (limit 2;" in lifecycle.stale_scores_alert()
    monkeypatch.setenv("OMNIDECIDE_SCORE_MAX_AGE_DAYS", "5")
    assert lifecycle.stale_scores_alert() is None
