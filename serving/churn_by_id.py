"""`/predict_churn {"user_ids": [...]}`: churn figures for customers named by id, from what the service holds.

The bidder and CRM hold ids, not event histories. Per id, in this order:
- `stored`: a score published by `predict churn --publish` that is fresh enough — no older than the monitor's limit
  (`OMNIDECIDE_SCORE_MAX_AGE_DAYS`, default 2 days) and, when the request names `as_of`, as of that day;
- `scored`: else the serving version scores the customer now from the events the service holds: the version's
  training history (store/history.py; a deleted customer's rows excluded) plus the online store (what `/events`
  received, quantity and amount included; an event found in both counts once);
- else the id is listed in `unknown` (no fresh score and no event before as-of), not an error. A stale stored score
  is not returned here; `/customer_scores` shows it with its age.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import pandas as pd

from omnidecide.models.errors import InputError
from omnidecide.serving.churn import ChurnRequest, ChurnResponse, ChurnScore, ChurnService
from omnidecide.serving.online_store import OnlineStore
from omnidecide.store import history
from omnidecide.store import scores as stored_scores

SAME_EVENT = ["user_id", "timestamp", "event", "item_id"]


def held_events(rt: ChurnService, user_ids: list[str], store: OnlineStore, key: Callable[[str], str]) -> pd.DataFrame:
    """The customers' events from the version's training history and the online store, as one canonical frame."""
    trained = rt.history()
    old = trained.of(user_ids) if trained is not None else pd.DataFrame(columns=history.COLUMNS)
    keys = {u: key(u) for u in user_ids}
    gone = history.forgotten(list(keys.values()), store.db)
    gone_ids = [u for u, k in keys.items() if gone.get(k, 0.0) > rt.trained_at]  # deleted after the version was made
    if gone_ids:
        old = old[~old["user_id"].isin(gone_ids)]
    new = store.history(user_ids)
    frames = [f.assign(timestamp=pd.to_datetime(f["timestamp"]).astype("datetime64[ns]"))
              for f in (old, new) if len(f)]
    if len(frames) == 2:  # an event both exported for training and posted to /events counts once
        seen = _same(frames[0]).drop_duplicates()
        both = _same(frames[1]).merge(seen, how="left", indicator=True)["_merge"].eq("both")
        frames[1] = frames[1][~both.to_numpy()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=history.COLUMNS)


def _same(events: pd.DataFrame) -> pd.DataFrame:
    """What makes two rows one event, as plain text (a missing item is empty in both sources)."""
    return pd.DataFrame({"user_id": events["user_id"].astype(str), "at": events["timestamp"].astype("int64"),
                         "event": events["event"].astype(str),
                         "item_id": events["item_id"].astype(object).where(events["item_id"].notna(), "").astype(str)})


def score_ids(rt: ChurnService, request: ChurnRequest, store: OnlineStore, key: Callable[[str], str]) -> ChurnResponse:
    """One answer per distinct id: stored, scored, or listed as unknown (see the module docstring)."""
    if request.events is not None:
        raise InputError("user_ids: send exactly one of events (with as_of) or user_ids")
    rt.check_horizon(request.horizon_days, "horizon_days")
    ids = list(dict.fromkeys(request.user_ids or []))
    as_of = request.as_of or datetime.now(timezone.utc).date() + timedelta(days=1)
    now, limit = time.time(), stored_scores.max_age_days()
    out: dict[str, ChurnScore] = {}
    for u, s in stored_scores.lookup(ids, store.db).items():
        age = (now - s["published_at"]) / 86400
        if age <= limit and (request.as_of is None or s["as_of"] == str(request.as_of)):
            out[u] = ChurnScore(user_id=u, source="stored", age_days=round(age, 4),
                                **{k: v for k, v in s.items() if k != "published_at"})
    rest = [u for u in ids if u not in out]
    if rest:
        events = held_events(rt, rest, store, key)
        before = events[events["timestamp"] < pd.Timestamp(as_of)] if len(events) else events
        if len(before):
            for r in rt.model.score(before, as_of).to_dict("records"):
                out[str(r["user_id"])] = ChurnScore(**r, model=rt.tag, as_of=as_of)
    return ChurnResponse(model=rt.tag, as_of=as_of, horizon_days=rt.horizon_days,
                         customers=[out[u] for u in ids if u in out], unknown=[u for u in ids if u not in out])
