"""The events a churn version was trained on, kept inside the version (`history.parquet`), for scoring by id.

The bidder and CRM ask about customers by id; the service can only score a customer from events it holds. The
online store holds what `/events` received (recent, at most 200 per customer); the rest of a customer's history is
in the training data, which is gone once the version leaves the machine it was trained on. So a churn version
carries the columns its features read (user, time, event, item, channel, quantity, amount) as Parquet, sorted by
customer so one customer's rows are one slice. It is read when a version first scores by id, not at load.

A customer deleted by `/forget_user` is remembered by keyed hash (`forgotten`), and their rows in the history of
every version trained before the deletion are no longer used; a retrain then drops them for good.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.store import db as database

FILE = "history.parquet"
COLUMNS = ("user_id", "timestamp", "event", "item_id", "channel", "quantity", "amount")


def write(version_folder: Path, events: pd.DataFrame) -> None:
    """The churn columns of validated training events, customer by customer."""
    keep = events[[c for c in COLUMNS if c in events.columns]]
    if isinstance(keep["user_id"].dtype, pd.CategoricalDtype):  # the compact loader's ids: sort by text, not by code
        ids = keep["user_id"].cat
        keep = keep.assign(user_id=ids.reorder_categories(sorted(ids.categories, key=str)))
    keep = keep.sort_values(["user_id", "timestamp"], kind="stable")
    keep.to_parquet(Path(version_folder) / FILE, index=False, compression="zstd")


class History:
    """One version's training events, sliced by customer id."""

    def __init__(self, events: pd.DataFrame) -> None:
        self.events = events.reset_index(drop=True)
        self._ids = self.events["user_id"].to_numpy(dtype=object).astype(str)

    @classmethod
    def read(cls, version_folder: Path) -> "History | None":
        """None for a version trained before versions carried their history."""
        f = Path(version_folder) / FILE
        return cls(pd.read_parquet(f)) if f.exists() else None

    def of(self, user_ids: list[str]) -> pd.DataFrame:
        """The rows of these customers (none for an id the history does not hold)."""
        wanted = np.asarray(sorted(set(user_ids)), dtype=str)
        lo = np.searchsorted(self._ids, wanted, side="left")
        hi = np.searchsorted(self._ids, wanted, side="right")
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] or [np.zeros(0, dtype=int)])
        return self.events.iloc[rows]


def mark_forgotten(key: str, db: database.Database | None = None) -> None:
    """Remember a deleted customer by keyed hash (the decision log's `key`), never by id."""
    db = db or database.connect()
    with db.transaction():
        db.execute("INSERT INTO forgotten (subject, at) VALUES (?, ?) ON CONFLICT (subject) DO UPDATE SET "
                   "at = excluded.at", (key, time.time()))


def forgotten(keys: list[str], db: database.Database | None = None) -> dict[str, float]:
    """Which of these keyed hashes belong to deleted customers, with when they were deleted (unix seconds)."""
    db = db or database.connect()
    out: dict[str, float] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        out.update(db.query(f"SELECT subject, at FROM forgotten WHERE subject IN ({', '.join('?' * len(chunk))})",
                            chunk))
    return out
