"""The purge job: what the retention rules say may go, goes — on a timer in every service process, or on demand.

- decision-log lines older than the retention period (`OMNIDECIDE_RETENTION_DAYS`, default 90);
- online-store events received longer ago than that period (whatever their own timestamps), and per user those
  beyond the newest `KEEP_PER_USER` (reads stopped seeing them already); idempotency keys after 7 days.
Deleting is idempotent, so every replica may run it; `/events` never deletes.
"""
from __future__ import annotations

import logging
import threading

from omnidecide.serving.audit import DecisionLog, retention_days
from omnidecide.serving.online_store import OnlineStore

log = logging.getLogger(__name__)
EVERY_S = 3600.0


def purge(store: OnlineStore, decisions: DecisionLog) -> dict[str, int]:
    """Run every retention rule once; returns what each removed."""
    days = retention_days()
    return {"events": store.purge(older_than_days=days), "decision_lines": decisions.purge(days)}


def start(store: OnlineStore, decisions: DecisionLog, every_s: float = EVERY_S) -> threading.Thread:
    """Purge now and then every `every_s` seconds in a daemon thread (a failure is logged; the next run retries)."""
    def loop() -> None:
        while True:
            try:
                removed = purge(store, decisions)
                if any(removed.values()):
                    log.info("retention purge removed %s", removed)
            except Exception:  # a busy or unreachable database: serving goes on, the next run retries
                log.exception("retention purge failed")
            stop.wait(every_s)

    stop = threading.Event()
    t = threading.Thread(target=loop, name="omnidecide-purge", daemon=True)
    t.start()
    return t
