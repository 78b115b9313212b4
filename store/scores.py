"""Customer scores kept by the service: what `predict churn --publish` wrote, looked up by customer id.

The bidder and CRM ask about a customer, not about an event history they do not hold. A published row is the
customer's churn probability, risk tier, RFM segment, expected spend and reason, with the model version and as-of
date it came from; publishing again replaces the row. Rows live in the shared database (`store.db`), so every
replica answers from the same scores. `stale` tells the monitor how old the newest publication is.
"""
from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd
from omnidecide.store import db as database
from omnidecide.store.settings import positive_days

FIELDS = ("churn_probability", "risk_tier", "segment", "expected_spend", "reason", "model", "as_of")
MAX_AGE_ENV = "OMNIDECIDE_SCORE_MAX_AGE_DAYS"


def max_age_days() -> float:
    """Scores older than this are flagged by `monitor` (`OMNIDECIDE_SCORE_MAX_AGE_DAYS`, default 2)."""
    return positive_days(MAX_AGE_ENV, 2)


def publish(table: pd.DataFrame, model: str, as_of: str, db: database.Database | None = None) -> int:
    """Upsert one row per customer of a `predict churn` table; returns how many rows were written."""
    db = db or database.connect()
    now = time.time()

    def num(v: Any) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    rows = [(str(r.user_id), float(r.churn_probability), str(r.risk_tier), str(getattr(r, "segment", "") or ""),
             num(getattr(r, "expected_spend", None)), str(getattr(r, "reason", "") or ""), model, as_of, now)
            for r in table.itertuples()]
    with db.transaction():
        db.executemany(
            "INSERT INTO customer_scores (user_id, churn_probability, risk_tier, segment, expected_spend, reason, "
            "model, as_of, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "churn_probability = excluded.churn_probability, risk_tier = excluded.risk_tier, "
            "segment = excluded.segment, expected_spend = excluded.expected_spend, reason = excluded.reason, "
            "model = excluded.model, as_of = excluded.as_of, published_at = excluded.published_at", rows)
    return len(rows)


def lookup(user_ids: list[str], db: database.Database | None = None) -> dict[str, dict[str, Any]]:
    """The stored score of each known id (unknown ids are absent), with its model, as-of date and publication time."""
    db = db or database.connect()
    out: dict[str, dict[str, Any]] = {}
    ids = [u for u in dict.fromkeys(user_ids) if database.storable(u)]  # no other id can have been stored
    for start in range(0, len(ids), 500):  # bounded statements on both databases
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.query(f"SELECT user_id, {', '.join(FIELDS)}, published_at FROM customer_scores "
                            f"WHERE user_id IN ({marks})", chunk):
            out[row[0]] = {**dict(zip(FIELDS, row[1:-1])), "published_at": row[-1]}
    return out


def forget(user_id: str, db: database.Database | None = None) -> int:
    db = db or database.connect()
    if not database.storable(user_id):
        return 0
    with db.transaction():
        return db.execute("DELETE FROM customer_scores WHERE user_id = ?", (user_id,))


def freshness(db: database.Database | None = None) -> dict[str, Any]:
    """How many scores are stored and how old the newest and oldest publications are (days), for the monitor."""
    db = db or database.connect()
    n, newest, oldest = db.query("SELECT COUNT(*), MAX(published_at), MIN(published_at) FROM customer_scores")[0]
    now = time.time()
    return {"scores": int(n), "newest_age_days": None if newest is None else (now - newest) / 86400,
            "oldest_age_days": None if oldest is None else (now - oldest) / 86400}
