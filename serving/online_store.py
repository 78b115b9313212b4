"""The online store: fresh events per user, written by storefronts seconds ago, read on the next page view.

Training sees events hours or days late; this store closes the gap. `POST /events` validates a batch whole
(the same schema as every loader) and commits it to SQLite before answering, so an acknowledged event survives a
restart; `/recommend` merges the user's stored events with those in the request (the recommender infers the
user's embedding from them, no retraining). `forget` really deletes a user's events (PIPL/GDPR deletion entry
point); `purge` drops events older than the retention window.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd

from omnidecide.models.schema import EVENTS, validate_records
from omnidecide.store import registry

COLUMNS = ("user_id", "item_id", "event", "timestamp", "channel", "store_id", "received")


def default_path() -> Path:
    """`OMNIDECIDE_ONLINE_STORE`, else `online_store.sqlite3` in the model store's home (one place per deployment)."""
    return Path(os.environ.get("OMNIDECIDE_ONLINE_STORE") or registry.home() / "online_store.sqlite3")


class OnlineStore:
    """SQLite in WAL mode: one writer at a time, readers never blocked; a connection per thread."""

    def __init__(self, path: Path | None = None, *, keep_per_user: int = 200) -> None:
        self.path = Path(path or default_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_per_user = keep_per_user
        self._local = threading.local()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS events (user_id TEXT NOT NULL, item_id TEXT, event TEXT NOT NULL, "
                       "timestamp REAL NOT NULL, channel TEXT, store_id TEXT, received REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS events_user ON events (user_id, timestamp)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        return db

    def append(self, records: list[dict]) -> int:
        """Validate all, then commit all; a bad record refuses the batch (InputError naming each bad record)."""
        clean = validate_records(records, EVENTS)
        if not len(clean):
            return 0
        received = time.time()
        rows = [(r.user_id, _opt(r, "item_id"), r.event, r.timestamp.timestamp(), _opt(r, "channel"),
                 _opt(r, "store_id"), received)
                for r in clean.assign(timestamp=clean["timestamp"].dt.tz_localize("UTC")).itertuples()]
        with self._db() as db:  # one transaction: all rows or none
            db.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            users = sorted({r[0] for r in rows})
            db.executemany("DELETE FROM events WHERE user_id = ? AND rowid NOT IN (SELECT rowid FROM events "
                           "WHERE user_id = ? ORDER BY timestamp DESC LIMIT ?)",
                           [(u, u, self.keep_per_user) for u in users])
        return len(rows)

    def recent(self, user_id: str, limit: int = 50) -> pd.DataFrame:
        """The user's latest events (newest first) as canonical columns, timestamps naive UTC."""
        cur = self._db().execute("SELECT item_id, event, timestamp, channel, store_id FROM events WHERE user_id = ? "
                                 "ORDER BY timestamp DESC LIMIT ?", (user_id, limit))
        out = pd.DataFrame(cur.fetchall(), columns=["item_id", "event", "timestamp", "channel", "store_id"])
        out["timestamp"] = pd.to_datetime(out["timestamp"], unit="s")
        return out

    def forget(self, user_id: str) -> int:
        """Delete every stored event of a user; returns how many were deleted."""
        with self._db() as db:
            return db.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount

    def purge(self, older_than_days: float) -> int:
        cutoff = time.time() - older_than_days * 86400
        with self._db() as db:
            return db.execute("DELETE FROM events WHERE timestamp < ?", (cutoff,)).rowcount


def _opt(row, col: str) -> str | None:
    v = getattr(row, col, None)
    return None if v is None or pd.isna(v) else str(v)
