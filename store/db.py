"""The database every process of a deployment shares: online store, decision log, stages, lifecycle log, scores.

`OMNIDECIDE_DATABASE_URL=postgresql://...` puts this state in PostgreSQL, so service replicas and the CLI on other
machines see one truth (an event posted to one replica is read by the next; a promotion reaches all of them).
Without it, SQLite in the model store's home (`omnidecide.sqlite3`) is the embedded default: the same schema and
the same SQL, written with `?` placeholders (turned into `%s` for psycopg). The schema grows by numbered
migrations (`MIGRATIONS`), applied once per database under a lock, recorded in `schema_migrations`.

Connections are per thread (and per process: a forked worker opens its own); `transaction()` groups statements,
`lock=True` serialises read-modify-write (promotions) across processes.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV_URL = "OMNIDECIDE_DATABASE_URL"

# Each migration: SQL statements with `{id}` (an auto-numbered primary key) and `{float}` filled per dialect.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "online store, idempotency keys, decision log, stages, lifecycle log", [
        "CREATE TABLE events (id {id}, user_id TEXT NOT NULL, item_id TEXT, event TEXT NOT NULL, "
        "ts {float} NOT NULL, channel TEXT, store_id TEXT, received {float} NOT NULL)",
        "CREATE INDEX events_user_ts ON events (user_id, ts)",
        "CREATE TABLE event_batches (key TEXT PRIMARY KEY, accepted INTEGER NOT NULL, received {float} NOT NULL)",
        "CREATE TABLE decisions (id {id}, at {float} NOT NULL, endpoint TEXT NOT NULL, model TEXT, subject TEXT, "
        "line TEXT NOT NULL)",
        "CREATE INDEX decisions_at ON decisions (at)",
        "CREATE INDEX decisions_subject ON decisions (subject)",
        "CREATE TABLE stages (name TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE lifecycle (id {id}, at TEXT NOT NULL, line TEXT NOT NULL)",
    ]),
    (2, "customer scores published by `predict churn --publish`", [
        "CREATE TABLE customer_scores (user_id TEXT PRIMARY KEY, churn_probability {float} NOT NULL, "
        "risk_tier TEXT, segment TEXT, expected_spend {float}, reason TEXT, model TEXT NOT NULL, as_of TEXT NOT NULL, "
        "published_at {float} NOT NULL)",
        "CREATE INDEX customer_scores_published ON customer_scores (published_at)",
    ]),
    # `IF NOT EXISTS`: databases made before this migration already hold these tables (the catalogue used to create
    # them itself on start), with their rows; they upgrade by recording the migration.
    (3, "live catalogue: items, per-store stock, catalogue version (POST /items)", [
        "CREATE TABLE IF NOT EXISTS catalogue_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
        "INSERT INTO catalogue_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        "CREATE TABLE IF NOT EXISTS catalogue_items (item_id TEXT PRIMARY KEY, category TEXT, price {float}, "
        "margin {float}, stock {float}, title TEXT, attrs TEXT, version INTEGER NOT NULL, updated {float} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS catalogue_items_version ON catalogue_items (version)",
        "CREATE TABLE IF NOT EXISTS catalogue_store_stock (store_id TEXT NOT NULL, item_id TEXT NOT NULL, "
        "stock {float} NOT NULL, version INTEGER NOT NULL, updated {float} NOT NULL, PRIMARY KEY (store_id, item_id))",
        "CREATE INDEX IF NOT EXISTS catalogue_store_stock_version ON catalogue_store_stock (version)",
    ]),
    (4, "online store keeps quantity and amount of events (churn scoring by customer id)", [
        "ALTER TABLE events ADD COLUMN quantity {float}",
        "ALTER TABLE events ADD COLUMN amount {float}",
    ]),
    (5, "customers deleted by /forget_user, by keyed hash (their rows in versions' history are not used)", [
        "CREATE TABLE forgotten (subject TEXT PRIMARY KEY, at {float} NOT NULL)",
    ]),
]
DIALECT = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "DOUBLE PRECISION"},
    "postgresql": {"id": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION"},
}


def storable(text: str) -> bool:
    """Text both databases can hold: valid UTF-8 (no lone surrogate, which JSON can carry) and no NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def default_url() -> str:
    """`OMNIDECIDE_DATABASE_URL`, else SQLite beside the model store."""
    from omnidecide.store import registry

    return os.environ.get(ENV_URL) or f"sqlite:///{registry.home() / 'omnidecide.sqlite3'}"


class Database:
    """One database by URL (`postgresql://...` or `sqlite:///path`), with per-thread connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            self.kind = "postgresql"
        elif url.startswith("sqlite:///"):
            self.kind = "sqlite"
            self.path = Path(url[len("sqlite:///"):])
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            from omnidecide.models.errors import InputError
            raise InputError(f"{ENV_URL}={url!r}: expected postgresql://... (or sqlite:///PATH)")
        self._local = threading.local()
        self.migrate()

    def __repr__(self) -> str:
        return f"Database({self.describe()})"

    def describe(self) -> str:
        """Where the state lives, without the password."""
        if self.kind == "sqlite":
            return f"SQLite {self.path}"
        from urllib.parse import urlsplit
        u = urlsplit(self.url)
        return f"PostgreSQL {u.hostname}:{u.port or 5432}{u.path}"

    # --- connections ----------------------------------------------------------------------------

    def _conn(self) -> Any:
        c = getattr(self._local, "conn", None)
        if c is not None and self._local.pid == os.getpid() and not getattr(c, "broken", False):
            return c  # (a PostgreSQL connection broken by a server restart is replaced on the next call)
        if self.kind == "sqlite":
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives the process being killed
            c.execute("PRAGMA busy_timeout=30000")
        else:
            import psycopg
            c = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        self._local.conn, self._local.pid, self._local.depth = c, os.getpid(), 0
        return c

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the rows it changed."""
        return self._conn().execute(self._sql(sql), tuple(params)).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        c = self._conn()
        if self.kind == "sqlite":
            c.executemany(sql, rows)
        else:
            with c.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._conn().execute(self._sql(sql), tuple(params)).fetchall()

    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator["Database"]:
        """All statements inside commit together or not at all. `lock`: one such transaction at a time across every
        process on the database (SQLite: an immediate write lock; PostgreSQL: a transaction advisory lock)."""
        c = self._conn()
        if self._local.depth:  # nested: part of the outer transaction
            self._local.depth += 1
            try:
                yield self
            finally:
                self._local.depth -= 1
            return
        self._local.depth = 1
        try:
            if self.kind == "sqlite":
                c.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
                try:
                    yield self
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            else:
                with c.transaction():
                    if lock:
                        c.execute("SELECT pg_advisory_xact_lock(%s)", (0x0D15EC1DE,))
                    yield self
        finally:
            self._local.depth = 0

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # --- schema -------------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, in order; returns their numbers. Safe with several processes
        starting at once (one applies, the others wait on the lock and find them applied)."""
        applied = []
        with self.transaction(lock=True):
            self.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            have = {r[0] for r in self.query("SELECT version FROM schema_migrations")}
            for number, name, statements in MIGRATIONS:
                if number in have:
                    continue
                for sql in statements:
                    self.execute(sql.format(**DIALECT[self.kind]))
                self.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                             (number, name, time.time()))
                applied.append(number)
        return applied


class GroupCommit:
    """Leader-follower group commit: a thread that finds no commit running writes every job waiting at that moment
    (`commit(jobs)`, one transaction), then answers them all; the others wait for that. Under concurrency one
    commit's cost (an fsync on PostgreSQL, the WAL append on SQLite) is shared by many requests instead of paid by
    each; alone, a job commits at once. A failed commit raises in every thread whose job it held."""

    def __init__(self, commit: Callable[[list[Any]], None]) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._queue: list[list[Any]] = []  # [job, done, error]
        self._writing = False

    def submit(self, job: Any) -> None:
        slot = [job, False, None]
        with self._cond:
            self._queue.append(slot)
            while not slot[1] and self._writing:
                self._cond.wait()
            if not slot[1]:
                self._writing, group, self._queue = True, self._queue, []
        if not slot[1]:
            try:
                self._commit([s[0] for s in group])
            except BaseException as e:  # none of the group was stored
                for s in group:
                    s[2] = e
            with self._cond:
                for s in group:
                    s[1] = True
                self._writing = False
                self._cond.notify_all()
        if slot[2] is not None:
            raise slot[2]


_open: dict[tuple[int, str], Database] = {}
_open_lock = threading.Lock()


def connect(url: str | None = None) -> Database:
    """The process's Database for `url` (default: `default_url()`), migrated on first use."""
    url = url or default_url()
    key = (os.getpid(), url)
    with _open_lock:
        if key not in _open:
            _open[key] = Database(url)
        return _open[key]
