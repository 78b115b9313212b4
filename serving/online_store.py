"""The online store: fresh events per user, written by storefronts seconds ago, read on the next page view.

Training sees events hours or days late; this store closes the gap. `POST /events` validates a batch whole
(the same schema as every loader) and commits it to the shared database (`omnidecide.store.db`: PostgreSQL, or
SQLite by default) before answering, so an acknowledged event survives a crash and every replica reads it.

What is acknowledged is kept: a read sees the user's newest `keep_per_user` events (the retention rule applied to
reads); only `purge` — run hourly by the service and by `omnidecide purge` — deletes, the events beyond that and
those received longer ago than the retention window, never the batch being acknowledged. The window counts from
receipt, not from the event's own timestamp: an event stamped months ago (a late upload, a device clock) is kept the
whole window like any other, where counting from its timestamp would have deleted it at the next purge, minutes after
its batch was acknowledged. A batch may carry an idempotency key:
a retry with the same key answers what the first call answered and stores nothing twice.

Concurrent batches are validated and committed together (group commit): one thread checks every batch waiting at
that moment and writes them in one transaction, then answers them all; a batch with a bad record is refused alone,
with its own record numbers. Batches of plain JSON events are checked record by record (`schema.quick_events`); any
other goes through the schema's frame-wide rules, in one pass for the group (their cost is mostly fixed per call).
Quantity and amount are kept: churn scoring by customer id reads them (`serving.churn_history`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from omnidecide.models.errors import InputError
from omnidecide.models.schema import EVENTS, quick_events, validate_records
from omnidecide.store import db as database
from omnidecide.store.db import storable

KEEP_PER_USER = 200  # fresh events a read sees per user (newest first); older ones wait for the purge
KEY_DAYS = 7  # how long an idempotency key is remembered
COLUMNS = ("user_id", "item_id", "event", "ts", "channel", "store_id", "quantity", "amount", "received")
INSERT = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


@dataclass
class _Batch:
    key: str | None
    records: list[dict]
    rows: list[tuple] = field(default_factory=list)
    accepted: int | None = None
    error: BaseException | None = None


def _answer(batch: _Batch) -> int:
    if batch.error is not None:
        raise batch.error
    return int(batch.accepted or 0)


class OnlineStore:
    def __init__(self, db: database.Database | None = None, *, keep_per_user: int = KEEP_PER_USER) -> None:
        self.db = db or database.connect()
        self.keep_per_user = keep_per_user
        self._group = database.GroupCommit(self._commit)

    def append(self, records: list[dict], idempotency_key: str | None = None) -> int:
        """Validate all, then commit all; a bad record refuses the batch (InputError naming each bad record).
        With `idempotency_key`, a batch already stored under that key is answered as it was the first time."""
        if idempotency_key is not None:
            if not idempotency_key.strip() or len(idempotency_key) > 200 or not storable(idempotency_key):
                raise InputError("idempotency_key: 1 to 200 characters, no NUL")
        for n, r in enumerate(records):
            for k, v in r.items():
                if isinstance(v, str) and not storable(v):
                    raise InputError(f"events[{n}].{k}: not storable text (a NUL character or a lone surrogate)")
        batch = _Batch(idempotency_key, records)
        self._group.submit(batch)
        return _answer(batch)

    def _first_answer(self, key: str) -> int | None:
        row = self.db.query("SELECT accepted FROM event_batches WHERE key = ?", (key,))
        return int(row[0][0]) if row else None

    def _validate(self, group: list[_Batch], received: float) -> None:
        """Rows for each batch, or its InputError. Plain batches take the per-record fast path (`quick_events`);
        the rest get one schema pass for the whole group and, when that finds a bad record, each batch again on its
        own, so each answer names its own records."""
        def rows(clean: pd.DataFrame) -> list[tuple]:
            clean = clean.assign(timestamp=clean["timestamp"].dt.tz_localize("UTC"))
            return [(r.user_id, _opt(r, "item_id"), r.event, r.timestamp.timestamp(), _opt(r, "channel"),
                     _opt(r, "store_id"), _num(r, "quantity"), _num(r, "amount"), received)
                    for r in clean.itertuples()]

        slow = []
        for b in group:
            quick = quick_events(b.records)
            if quick is None:
                slow.append(b)
            else:
                b.rows = [(*row, received) for row in quick]
        if len(slow) > 1:
            try:
                together = rows(validate_records([r for b in slow for r in b.records], EVENTS))
            except InputError:
                pass
            else:
                start = 0
                for b in slow:
                    b.rows, start = together[start:start + len(b.records)], start + len(b.records)
                return
        for b in slow:
            try:
                b.rows = rows(validate_records(b.records, EVENTS))
            except InputError as e:
                b.error = e

    def _commit(self, group: list[_Batch]) -> None:
        now = time.time()
        self._validate(group, now)
        group = [b for b in group if b.error is None]
        with self.db.transaction():
            claimed = self._claim([b for b in group if b.key is not None], now)
            rows = []
            for b in group:
                if b.key is not None and claimed.get(b.key) is not b:
                    b.accepted = self._first_answer(b.key)  # a retry: stored before, or by another batch with its key
                    continue
                b.accepted = len(b.rows)
                rows += b.rows
            if rows:
                self.db.executemany(INSERT, rows)

    def _claim(self, keyed: list[_Batch], now: float) -> dict[str, _Batch]:
        """Record the keys no batch has stored yet, in one statement per 300 keys; returns key -> the batch that
        claimed it (the first of the group with that key)."""
        first: dict[str, _Batch] = {}
        for b in keyed:
            first.setdefault(b.key, b)  # type: ignore[arg-type]
        batches, out = list(first.values()), {}
        for start in range(0, len(batches), 300):
            chunk = batches[start:start + 300]
            stored = self.db.query(
                f"INSERT INTO event_batches (key, accepted, received) VALUES {', '.join(['(?, ?, ?)'] * len(chunk))} "
                "ON CONFLICT DO NOTHING RETURNING key", [x for b in chunk for x in (b.key, len(b.rows), now)])
            out.update((r[0], first[r[0]]) for r in stored)
        return out

    def _latest(self, user_id: str, limit: int) -> list[tuple]:
        """(item_id, event, ts, channel, store_id) of the user's latest events, newest first: one read of the
        (user_id, ts) index."""
        if not storable(user_id):  # an id no event could be stored under has none
            return []
        return self.db.query("SELECT item_id, event, ts, channel, store_id FROM events WHERE user_id = ? "
                             "ORDER BY ts DESC, id DESC LIMIT ?", (user_id, min(limit, self.keep_per_user)))

    def recent_items(self, user_id: str, limit: int = 50) -> list[tuple[str, str, float]]:
        """What `/recommend` and `/bid` read: (item_id, event, ts seconds UTC) of those of the user's latest `limit`
        events that name an item, newest first, as plain tuples (a DataFrame here cost ~1 ms per request, most of
        the online-store read; the runtime builds one only when there are events)."""
        return [(r[0], r[1], float(r[2])) for r in self._latest(user_id, limit) if r[0] is not None]

    def recent(self, user_id: str, limit: int = 50) -> pd.DataFrame:
        """The user's latest events (newest first, at most `keep_per_user`), timestamps naive UTC."""
        rows = self._latest(user_id, limit)
        out = pd.DataFrame(rows, columns=["item_id", "event", "timestamp", "channel", "store_id"])
        out["timestamp"] = pd.to_datetime(out["timestamp"].astype(float), unit="s")
        return out

    def history(self, user_ids: list[str]) -> pd.DataFrame:
        """Every stored event of these customers, with quantity and amount (what churn scoring by id reads; the
        purge's limits apply), as a canonical events frame with naive UTC timestamps."""
        ids = [u for u in dict.fromkeys(user_ids) if storable(u)]
        rows: list[tuple] = []
        for start in range(0, len(ids), 500):  # bounded statements on both databases
            chunk = ids[start:start + 500]
            rows += self.db.query("SELECT user_id, ts, event, item_id, channel, store_id, quantity, amount FROM events "
                                  f"WHERE user_id IN ({', '.join('?' * len(chunk))})", chunk)
        out = pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "item_id", "channel", "store_id",
                                          "quantity", "amount"])
        out["timestamp"] = pd.to_datetime(out["timestamp"].astype(float), unit="s")
        for col in ("quantity", "amount"):
            out[col] = out[col].astype(float)
        return out

    def count(self, user_id: str) -> int:
        """Every stored event of the user, retained or waiting for the purge."""
        if not storable(user_id):
            return 0
        return int(self.db.query("SELECT COUNT(*) FROM events WHERE user_id = ?", (user_id,))[0][0])

    def forget(self, user_id: str) -> int:
        """Delete every stored event of a user; returns how many were deleted."""
        if not storable(user_id):
            return 0
        with self.db.transaction():
            return self.db.execute("DELETE FROM events WHERE user_id = ?", (user_id,))

    def purge(self, older_than_days: float = 90.0) -> int:
        """The retention rule applied to storage: drop events received longer ago than the window and, per user,
        those beyond the newest `keep_per_user` (which reads no longer see); forget idempotency keys after `KEY_DAYS`."""
        cutoff = time.time() - older_than_days * 86400
        with self.db.transaction():
            n = self.db.execute("DELETE FROM events WHERE received < ?", (cutoff,))
            n += self.db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id "
                "ORDER BY ts DESC, id DESC) AS n FROM events) ranked WHERE n > ?)", (self.keep_per_user,))
            self.db.execute("DELETE FROM event_batches WHERE received < ?", (time.time() - KEY_DAYS * 86400,))
        return n


def _opt(row, col: str) -> str | None:
    v = getattr(row, col, None)
    return None if v is None or pd.isna(v) else str(v)


def _num(row, col: str) -> float | None:
    v = getattr(row, col, None)
    return None if v is None or pd.isna(v) else float(v)
