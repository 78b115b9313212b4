"""Export audit: every bulk export of customer-level results is logged, and unusual ones raise an alarm.

Our users' privacy practice (PIPL): every query and export is traceable, and a bulk export at odd hours raises an
alarm. The CLI commands that write one row per customer (`recommend`, `predict churn`) call `record` after writing;
the line says who (OS user, host), when, what (command, file, rows, customers, model) and which alarms it raised:
- *odd hours*: local time inside the quiet hours (default 22:00–06:00; env `OMNIDECIDE_QUIET_HOURS=22-6`);
- *unusual size*: at least `MIN_ROWS_FOR_SIZE_ALARM` rows and `SIZE_FACTOR` times the median of the last 20 exports.
Lines go to `<model store>/audit/exports.jsonl`; `omnidecide monitor` repeats the alarms since its last run and
`omnidecide report` lists recent exports.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

from omnidecide.models.errors import InputError
from omnidecide.store import registry

SIZE_FACTOR = 3.0
MIN_ROWS_FOR_SIZE_ALARM = 1000
HISTORY = 20
LOG_NAME = "<model store>/audit/exports.jsonl"


def _file() -> Path:
    return registry.home() / "audit" / "exports.jsonl"


def quiet_hours() -> tuple[int, int]:
    raw = os.environ.get("OMNIDECIDE_QUIET_HOURS", "22-6")
    try:
        start, end = (int(x) for x in raw.split("-"))
        if not (0 <= start < 24 and 0 <= end < 24):
            raise ValueError
    except ValueError as e:
        raise InputError(f"OMNIDECIDE_QUIET_HOURS={raw!r}: expected START-END hours, e.g. 22-6") from e
    return start, end


def _in_quiet_hours(hour: int, start: int, end: int) -> bool:
    return start <= hour < end if start <= end else hour >= start or hour < end


def read(since: datetime | None = None) -> list[dict[str, Any]]:
    """Export lines, oldest first (only those at or after `since` when given)."""
    f = _file()
    # split on "\n" only: str.splitlines() also splits on U+2028, \x85, \x1c..., which a path may hold
    rows = [json.loads(x) for x in f.read_text(encoding="utf-8").split("\n") if x.strip()] if f.exists() else []
    if since is not None:
        rows = [r for r in rows if datetime.fromisoformat(r["at"]) >= since]
    return rows


def record(command: str, output: Path, rows: int, customers: int, model: str | None,
           now: datetime | None = None) -> list[str]:
    """Log one export; returns the alarms it raised (they are in the line too)."""
    now = now or datetime.now(timezone.utc)
    local = now.astimezone()
    alarms = []
    start, end = quiet_hours()
    if _in_quiet_hours(local.hour, start, end):
        alarms.append(f"export at {local:%H:%M} local time, inside the quiet hours {start:02d}:00–{end:02d}:00")
    past = [r["rows"] for r in read()[-HISTORY:]]
    if past and rows >= MIN_ROWS_FOR_SIZE_ALARM and rows >= SIZE_FACTOR * median(past):
        alarms.append(f"{rows} rows: {rows / median(past):.1f}x the median of the last {len(past)} exports")
    line = {"at": now.isoformat(timespec="seconds"), "local_time": local.isoformat(timespec="seconds"),
            "user": getpass.getuser(), "host": socket.gethostname(), "command": command, "output": str(output),
            "rows": int(rows), "customers": int(customers), "model": model, "alarms": alarms}
    f = _file()
    f.parent.mkdir(parents=True, exist_ok=True)
    with open(f, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")  # ASCII: no raw line separator ever inside a line
    return alarms
