"""Decision log: one JSON line per answered request — which version decided what, for whom, and why.

Our users must be able to explain every algorithmic decision after the fact (which items a customer was shown and
why, which bid multiplier, which plan) and trace every query. Lines go to `<model store>/decisions/YYYY-MM-DD.jsonl`
(`OMNIDECIDE_DECISION_LOG` overrides the folder). A line holds ids, the version, and the decision with its reasons —
never the request's raw behaviour beyond what was decided on. `purge` drops days older than the retention window.

Every line of an answered request also carries `ms` (server time of the model call), and a model call that fails
unexpectedly leaves an `error` line with the failing version's tag, so `health` can tell a canary's error rate and
latency from production's without another monitoring system.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from omnidecide.store import registry


def _utc(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def default_folder() -> Path:
    return Path(os.environ.get("OMNIDECIDE_DECISION_LOG") or registry.home() / "decisions")


class DecisionLog:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder or default_folder())
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, endpoint: str, model: str | None, subject: str | None, decision: dict[str, Any],
              ms: float | None = None) -> None:
        self.write_many(endpoint, model, [(subject, decision)], ms=ms)

    def write_many(self, endpoint: str, model: str | None, rows: list[tuple[str | None, dict[str, Any]]],
                   ms: float | None = None) -> None:
        """One line per (subject, decision): a batch about many customers stays deletable customer by customer.

        The lines of one batch share a `batch` id, so `health` counts the request once."""
        now = datetime.now(timezone.utc)
        head: dict[str, Any] = {"at": now.isoformat(timespec="milliseconds"), "endpoint": endpoint, "model": model}
        tail: dict[str, Any] = {} if ms is None else {"ms": round(ms, 3)}
        if len(rows) > 1:
            tail["batch"] = uuid.uuid4().hex[:12]
        text = "".join(json.dumps({**head, "subject": subject, **decision, **tail}, ensure_ascii=False, default=str)
                       + "\n" for subject, decision in rows)
        with self._lock, open(self.folder / f"{now:%Y-%m-%d}.jsonl", "a", encoding="utf-8") as f:
            f.write(text)

    def error(self, endpoint: str, model: str | None, exc: BaseException, ms: float) -> None:
        """A model call that failed unexpectedly (the client got a 500): which version, what, after how long."""
        self.write(endpoint, model, None, {"error": f"{type(exc).__name__}: {exc}"}, ms=ms)

    def read(self, day: str | None = None) -> list[dict]:
        """Every line of one day (default today, UTC)."""
        day = day or f"{datetime.now(timezone.utc):%Y-%m-%d}"
        path = self.folder / f"{day}.jsonl"
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def forget(self, subject: str) -> int:
        """Remove every line about `subject` (a deletion request); returns how many lines were removed."""
        removed = 0
        with self._lock:
            for path in sorted(self.folder.glob("*.jsonl")):
                lines = path.read_text(encoding="utf-8").splitlines()
                keep = [x for x in lines if json.loads(x).get("subject") != subject]
                if len(keep) < len(lines):
                    removed += len(lines) - len(keep)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
                    tmp.replace(path)
        return removed

    def purge(self, older_than_days: int) -> int:
        """Delete day files older than the retention window; returns how many."""
        cutoff = (datetime.now(timezone.utc) - timedelta(days=older_than_days)).strftime("%Y-%m-%d")
        gone = [p for p in self.folder.glob("*.jsonl") if p.stem < cutoff]
        for p in gone:
            p.unlink()
        return len(gone)

    def health(self, since: datetime) -> dict[str, dict[str, Any]]:
        """Per model version since `since`: requests, errors, error rate, p50/p95 latency (ms, answered requests).

        What a canary is judged on beside quality. Lines without a model (`/events`, `/forget_user`) are not counted;
        lines from before `ms` was logged count as requests only."""
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        first_day = f"{since.astimezone(timezone.utc):%Y-%m-%d}"
        requests: dict[str, dict[Any, tuple[bool, Any]]] = {}  # tag -> request -> (failed, ms)
        for path in sorted(self.folder.glob("*.jsonl")):
            if path.stem < first_day:
                continue
            for n, text in enumerate(path.read_text(encoding="utf-8").splitlines()):
                line = json.loads(text)
                if line.get("model") and _utc(line["at"]) >= since:
                    key = line.get("batch") or (path.stem, n)  # a batch's lines are one request
                    requests.setdefault(line["model"], {})[key] = ("error" in line, line.get("ms"))
        out = {}
        for tag, reqs in requests.items():
            errors = sum(failed for failed, _ in reqs.values())
            ms = [m for failed, m in reqs.values() if not failed and isinstance(m, (int, float))]
            p50, p95 = (float(x) for x in np.percentile(ms, [50, 95])) if ms else (None, None)
            out[tag] = {"requests": len(reqs), "errors": errors, "error_rate": errors / len(reqs),
                        "p50_ms": p50, "p95_ms": p95}
        return out
