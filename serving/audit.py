"""Decision log: one JSON line per answered request — which version decided what, for whom, and why.

Our users must be able to explain every algorithmic decision after the fact (which items a customer was shown and
why, which bid multiplier, which plan) and trace every query. Lines go to `<model store>/decisions/YYYY-MM-DD.jsonl`
(`OMNIDECIDE_DECISION_LOG` overrides the folder). A line holds ids, the version, and the decision with its reasons —
never the request's raw behaviour beyond what was decided on. `purge` drops days older than the retention window.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from training import registry


def default_folder() -> Path:
    return Path(os.environ.get("OMNIDECIDE_DECISION_LOG") or registry.home() / "decisions")


class DecisionLog:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder or default_folder())
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, endpoint: str, model: str | None, subject: str | None, decision: dict[str, Any]) -> None:
        self.write_many(endpoint, model, [(subject, decision)])

    def write_many(self, endpoint: str, model: str | None, rows: list[tuple[str | None, dict[str, Any]]]) -> None:
        """One line per (subject, decision): a batch about many customers stays deletable customer by customer."""
        now = datetime.now(timezone.utc)
        at = now.isoformat(timespec="milliseconds")
        text = "".join(json.dumps({"at": at, "endpoint": endpoint, "model": model, "subject": subject, **decision},
                                  ensure_ascii=False, default=str) + "\n" for subject, decision in rows)
        with self._lock, open(self.folder / f"{now:%Y-%m-%d}.jsonl", "a", encoding="utf-8") as f:
            f.write(text)

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
