"""Decision log: one line per answered request — which version decided what, for whom, and why.

Our users must be able to explain every algorithmic decision after the fact (which items a customer was shown and
why, which bid multiplier, which plan) and trace every query. Lines live in the shared database's `decisions`
table (`omnidecide.store.db`), one JSON document each, so every replica writes to one log and `report` / `monitor`
read it back as rows — never by splitting a text file, which broke on ids holding line separators (U+2028, \\x85).

Privacy: a line names its customer by a keyed hash, HMAC-SHA256 with the secret in `OMNIDECIDE_HASH_SECRET`
(`subject`), never by the raw id; without the variable, the embedded (SQLite) mode makes a random secret once in
`<model store>/hash_secret`, while PostgreSQL mode refuses to start, since every replica must hash alike. Lines older
than the retention period (`OMNIDECIDE_RETENTION_DAYS`, default 90) are purged; `forget` removes a customer's lines.

Every line of an answered request also carries `ms` (server time of the model call), and a model call that fails
unexpectedly leaves an `error` line with the failing version's tag, so `health` can tell a canary's error rate and
latency from production's without another monitoring system.

Lines are written behind the answer: `write` queues them and one background thread per process and database
(`_Writer`) inserts whatever is queued in one transaction every `FLUSH_S` seconds (sooner past `FLUSH_LINES`), instead
of one commit per request (about 0.5 ms of each `/recommend`, more when requests queue on the commit). Every read,
`forget` and `purge` of this process flushes first, so it sees its own lines; another process sees them within
`FLUSH_S`; a normal exit flushes. Loss bound: a process killed with SIGKILL (or a crash of the machine) loses the lines
of at most its last `FLUSH_S` seconds, never more than `FLUSH_LINES` + one batch; a database that refuses the insert
keeps the lines queued (up to `MAX_QUEUED`, then the oldest are dropped and counted in the server log). Decision
lines are the service's own record, not acknowledged client data: `/events` still commits before it answers.
"""
from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from omnidecide.models.errors import InputError
from omnidecide.store import db as database
from omnidecide.store import registry
from omnidecide.store.settings import positive_days

log = logging.getLogger(__name__)
SECRET_ENV = "OMNIDECIDE_HASH_SECRET"
RETENTION_ENV = "OMNIDECIDE_RETENTION_DAYS"
FLUSH_S = 0.2  # the most a line waits before its insert (and what a SIGKILL can lose)
FLUSH_LINES = 500  # a queue this long is written at once
MAX_QUEUED = 100_000  # lines kept while the database refuses them; beyond, the oldest go (logged)
FORGET_AGAIN_S = 5 * FLUSH_S  # `forget` deletes once more after this: lines other processes had queued
INSERT = "INSERT INTO decisions (at, endpoint, model, subject, line) VALUES (?, ?, ?, ?, ?)"


def retention_days() -> float:
    return positive_days(RETENTION_ENV, 90)


def hash_secret(db: database.Database) -> bytes:
    """The HMAC key: `OMNIDECIDE_HASH_SECRET`, else (embedded mode only) a random one kept in the model store."""
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV].encode()
    if db.kind != "sqlite":
        raise InputError(f"{SECRET_ENV} is not set: with a shared database every replica must hash customer ids "
                         "with the same secret (e.g. `export OMNIDECIDE_HASH_SECRET=$(openssl rand -hex 32)`)")
    f = registry.home() / "hash_secret"
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return f.read_text().strip().encode()


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


class _Writer:
    """The queue of one process's decision lines for one database and the daemon thread that inserts them in batches
    (see the module docstring). `flush` writes what is queued now, in order: the insert runs under `_flushing`, so a
    reader that flushes waits for a batch the thread has taken but not committed yet."""

    def __init__(self, db: database.Database) -> None:
        self.db = db
        self._lines: list[tuple] = []
        self._lock = threading.Lock()  # guards _lines
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, lines: list[tuple]) -> None:
        with self._lock:
            self._lines += lines
            queued = len(self._lines)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="omnidecide-decision-log", daemon=True)
                self._thread.start()
        if queued >= FLUSH_LINES:
            self._wake.set()

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                lines, self._lines = self._lines, []
            if not lines:
                return
            try:
                # the read comes before the insert's transaction, not inside it: in SQLite's WAL a transaction that
                # reads and then writes fails at once ("database is locked", whatever the busy timeout) when another
                # connection committed in between; a deletion recorded in that gap is caught by forget's second pass
                lines = _not_forgotten(lines, self.db)
                if lines:
                    with self.db.transaction():
                        self.db.executemany(INSERT, lines)
            except BaseException:
                with self._lock:  # kept for the next flush, oldest first, bounded
                    self._lines = lines + self._lines
                    if len(self._lines) > MAX_QUEUED:
                        log.error("decision log: %d lines dropped, the database refuses inserts",
                                  len(self._lines) - MAX_QUEUED)
                        del self._lines[:len(self._lines) - MAX_QUEUED]
                raise

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - an unreachable database: lines stay queued, the next round retries
                log.exception("decision log: insert failed; %d lines queued", len(self._lines))


def _not_forgotten(lines: list[tuple], db: database.Database) -> list[tuple]:
    """The lines not about a customer deleted after the line's request (the `forgotten` table, written by
    `/forget_user` before it deletes): a line queued in another process when the customer was forgotten must not be
    inserted afterwards. A customer who comes back after the deletion is logged again (their lines are newer)."""
    from omnidecide.store import history

    gone = history.forgotten(sorted({line[3] for line in lines if line[3] is not None}), db)
    if not gone:
        return lines
    return [line for line in lines if line[3] not in gone or line[0] > gone[line[3]]]


_writers: dict[tuple[int, str], _Writer] = {}
_writers_lock = threading.Lock()


def _writer(db: database.Database) -> _Writer:
    """The process's writer for this database (one per process and URL, so every DecisionLog of a process flushes the
    lines of all of them: a test's or CLI's own DecisionLog sees what the service wrote)."""
    key = (os.getpid(), db.url)
    with _writers_lock:
        if key not in _writers:
            _writers[key] = _Writer(db)
        return _writers[key]


@atexit.register
def flush_all() -> None:
    """Write every queued line of this process (at a normal exit; a SIGKILL skips it: see the loss bound)."""
    for (pid, _), w in list(_writers.items()):
        if pid == os.getpid():
            try:
                w.flush()
            except Exception:  # noqa: BLE001 - at exit there is no one left to tell but the log
                log.exception("decision log: final flush failed")


class DecisionLog:
    def __init__(self, db: database.Database | None = None) -> None:
        self.db = db or database.connect()
        self._secret = hash_secret(self.db)
        self._mac = hmac.new(self._secret, digestmod=hashlib.sha256)  # keyed once; `key` copies it
        self._writer = _writer(self.db)

    def key(self, subject: str | None) -> str | None:
        """What the log stores for a customer id: its HMAC, hex."""
        if subject is None:
            return None
        mac = self._mac.copy()
        mac.update(subject.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    def write(self, endpoint: str, model: str | None, subject: str | None, decision: dict[str, Any],
              ms: float | None = None) -> None:
        self.write_many(endpoint, model, [(subject, decision)], ms=ms)

    def write_many(self, endpoint: str, model: str | None, rows: list[tuple[str | None, dict[str, Any]]],
                   ms: float | None = None, at: datetime | None = None) -> None:
        """One line per (subject, decision): a batch about many customers stays deletable customer by customer.

        The lines of one batch share a `batch` id, so `health` counts the request once. Queued, written within
        `FLUSH_S` (module docstring)."""
        now = _utc(at or datetime.now(timezone.utc))
        head: dict[str, Any] = {"at": now.isoformat(timespec="milliseconds"), "endpoint": endpoint, "model": model}
        tail: dict[str, Any] = {} if ms is None else {"ms": round(ms, 3)}
        if len(rows) > 1:
            tail["batch"] = uuid.uuid4().hex[:12]
        lines = []
        for subject, decision in rows:
            key = self.key(subject)
            lines.append((now.timestamp(), endpoint, model, key,
                          json.dumps({**head, "subject": key, **decision, **tail}, default=str)))
        self._writer.add(lines)

    def flush(self) -> None:
        """Insert the lines this process has queued (every read does this first)."""
        self._writer.flush()

    def error(self, endpoint: str, model: str | None, exc: BaseException, ms: float) -> None:
        """A model call that failed unexpectedly (the client got a 500): which version, what, after how long."""
        self.write(endpoint, model, None, {"error": f"{type(exc).__name__}: {exc}"}, ms=ms)

    def read(self, day: str | None = None) -> list[dict]:
        """Every line of one day (default today, UTC), oldest first."""
        start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc) if day else \
            datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        self.flush()
        rows = self.db.query("SELECT line FROM decisions WHERE at >= ? AND at < ? ORDER BY id",
                             (start.timestamp(), (start + timedelta(days=1)).timestamp()))
        return [json.loads(r[0]) for r in rows]

    def about(self, subject: str) -> list[dict]:
        """Every line about one customer, oldest first (what an access request is answered with)."""
        self.flush()
        return [json.loads(r[0]) for r in
                self.db.query("SELECT line FROM decisions WHERE subject = ? ORDER BY id", (self.key(subject),))]

    def forget(self, subject: str) -> int:
        """Remove every line about `subject` (a deletion request); returns how many lines were removed.

        Other processes (workers, replicas) write their queued lines up to `FLUSH_S` later: their writers skip lines
        of customers forgotten after the line's request (`_not_forgotten`, once `/forget_user` has recorded the
        deletion), and lines that were already being inserted when the deletion was recorded are deleted once more
        `FORGET_AGAIN_S` later, in the background (lines newer than this call are kept: the customer came back)."""
        self.flush()  # queued lines about them too
        key, now = self.key(subject), datetime.now(timezone.utc).timestamp()
        with self.db.transaction():
            n = self.db.execute("DELETE FROM decisions WHERE subject = ?", (key,))
        timer = threading.Timer(FORGET_AGAIN_S, self._forget_again, (key, now))
        timer.daemon = True
        timer.start()
        return n

    def _forget_again(self, key: str, before: float) -> None:
        try:
            with self.db.transaction():
                self.db.execute("DELETE FROM decisions WHERE subject = ? AND at <= ?", (key, before))
        except Exception:  # noqa: BLE001 - a background pass: the writers' check still holds
            log.exception("decision log: second deletion pass failed")

    def purge(self, older_than_days: float | None = None) -> int:
        """Delete lines older than the retention period; returns how many."""
        days = retention_days() if older_than_days is None else older_than_days
        cutoff = datetime.now(timezone.utc) - timedelta(days=days)
        self.flush()
        with self.db.transaction():
            return self.db.execute("DELETE FROM decisions WHERE at < ?", (cutoff.timestamp(),))

    def health(self, since: datetime) -> dict[str, dict[str, Any]]:
        """Per model version since `since`: requests, errors, error rate, p50/p95 latency (ms, answered requests).

        What a canary is judged on beside quality. Lines without a model (`/events`, `/forget_user`) are not counted;
        lines from before `ms` was logged count as requests only."""
        requests: dict[str, dict[Any, tuple[bool, Any]]] = {}  # tag -> request -> (failed, ms)
        self.flush()
        for n, model, text in self.db.query("SELECT id, model, line FROM decisions WHERE at >= ? AND model IS NOT "
                                            "NULL ORDER BY id", (_utc(since).timestamp(),)):
            line = json.loads(text)
            key = line.get("batch") or n  # a batch's lines are one request
            requests.setdefault(model, {})[key] = ("error" in line, line.get("ms"))
        out = {}
        for tag, reqs in requests.items():
            errors = sum(failed for failed, _ in reqs.values())
            ms = [m for failed, m in reqs.values() if not failed and isinstance(m, (int, float))]
            p50, p95 = (float(x) for x in np.percentile(ms, [50, 95])) if ms else (None, None)
            out[tag] = {"requests": len(reqs), "errors": errors, "error_rate": errors / len(reqs),
                        "p50_ms": p50, "p95_ms": p95}
        return out
