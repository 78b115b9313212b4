"""Churn scoring at runtime: load a stored version once, score customers from their events.

`ChurnService(tag=None)` loads the promoted (else latest) churn version in its constructor; `score`
takes a request (events as records, as-of date) and answers one row per customer with any event before
as-of. The same code path as `omnidecide predict churn`.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.models.churn.model import ChurnModel
from omnidecide.models.errors import InputError
from omnidecide.models.schema import EVENTS, validate_records
from omnidecide.serving.limits import Day, Id, RequestModel, limited
from omnidecide.serving.scores import MAX_IDS
from omnidecide.serving.schemas import Event
from omnidecide.store import history, loader, registry


class ChurnRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"as_of": "2026-03-01", "events": [
        {"user_id": "u0000001", "timestamp": "2026-01-10T12:00:00", "event": "purchase", "amount": 20.0}]}})

    events: Optional[list[Event]] = Field(None, min_length=1, **limited("churn_events", "the customers' events"))
    user_ids: Optional[list[Id]] = Field(None, min_length=1, max_length=MAX_IDS, description=(
        f"instead of events: customers by id, at most {MAX_IDS}; each answered from a fresh stored score, else "
        "scored from the events the service holds (the version's training history and the online store)"))
    as_of: Optional[Day] = Field(None, description="required with events; with user_ids, default tomorrow (UTC), so "
                                                   "every event held counts")
    horizon_days: Optional[int] = Field(None, ge=1, le=3650, description="must match the model's horizon when given")


class ChurnScore(BaseModel):
    user_id: str
    churn_probability: float
    risk_tier: str
    segment: str
    expected_spend: Optional[float]
    reason: str
    source: Literal["scored", "stored"] = Field("scored", description=(
        "scored now (from the request's events, or from the events the service holds), or a stored score"))
    model: Optional[str] = Field(None, description="the churn version that made this score")
    as_of: Optional[date] = None
    age_days: Optional[float] = Field(None, description="a stored score: days since it was published")


class ChurnResponse(BaseModel):
    model: str
    as_of: date
    horizon_days: int
    customers: list[ChurnScore]
    unknown: list[str] = Field(default_factory=list, description=(
        "with user_ids: ids with neither a stored score nor any event held before as_of"))


def resolve_tag(tag: str | None, horizon_days: int | None) -> str:
    """The requested tag; else the promoted/latest version, or the newest one trained for `horizon_days`."""
    if tag:
        return str(registry.get("churn", tag).tag)
    default = registry.get("churn")
    if horizon_days is None or int(default.info.metadata.get("params", {}).get("horizon_days", -1)) == horizon_days:
        return str(default.tag)
    for v in registry.versions("churn"):
        if int(v["metadata"].get("params", {}).get("horizon_days", -1)) == horizon_days:
            return v["tag"]
    raise InputError(f"no churn model trained for --horizon-days {horizon_days}; "
                     f"train one with `omnidecide train churn --horizon-days {horizon_days}`")


class ChurnService:
    """Plain runtime class: load in the constructor, score from events."""

    def __init__(self, tag: str | None = None, horizon_days: int | None = None):
        self.tag = resolve_tag(tag, horizon_days)
        self.model: ChurnModel = loader.load("churn", self.tag).model
        stored = registry.get("churn", self.tag)
        self.folder, self.trained_at = Path(stored.path), stored.info.creation_time.timestamp()
        self._history: history.History | None | bool = False  # read on the first scoring by id

    def history(self) -> history.History | None:
        """The version's training events (None for a version trained before versions carried them)."""
        if self._history is False:
            self._history = history.History.read(self.folder)
        return self._history  # type: ignore[return-value]

    @property
    def horizon_days(self) -> int:
        return self.model.horizon_days

    def check_horizon(self, horizon_days: int | None, name: str = "--horizon-days") -> None:
        """`name`: what the caller calls it, the CLI's flag or the HTTP body's `horizon_days`."""
        if horizon_days is not None and horizon_days != self.model.horizon_days:
            raise InputError(f"{name} {horizon_days}: model {self.tag} was trained for {self.model.horizon_days} days; "
                             f"train one with `omnidecide train churn --horizon-days {horizon_days}`")

    def score_frame(self, events: pd.DataFrame, as_of: str | date | pd.Timestamp, horizon_days: int | None = None) -> pd.DataFrame:
        """Validated canonical events -> the CRM table (user_id, churn_probability, risk_tier, segment, expected_spend, reason)."""
        self.check_horizon(horizon_days)
        as_of = pd.Timestamp(as_of)
        mask = (events["timestamp"] < as_of).to_numpy()
        before = events if mask.all() else events[mask]  # no copy when the caller loaded only these
        if not len(before):
            raise InputError(f"no events before as-of {as_of.date()}")
        return self.model.score(before, as_of)

    def score(self, request: ChurnRequest) -> ChurnResponse:
        """The event-history form: score the customers in the request's events."""
        if (request.events is None) == (request.user_ids is None):
            raise InputError("events: send exactly one of events (with as_of) or user_ids")
        if request.as_of is None:
            raise InputError("as_of: required with events")
        self.check_horizon(request.horizon_days, "horizon_days")
        events = validate_records([e.model_dump() for e in request.events], EVENTS)
        if not (events["timestamp"] < pd.Timestamp(request.as_of)).any():  # named by its body field (a 400 with none)
            raise InputError(f"as_of {request.as_of}: no events before it (the earliest is "
                             f"{events['timestamp'].min()}); every event scored must come before as_of")
        table = self.score_frame(events, request.as_of)
        return ChurnResponse(model=self.tag, as_of=request.as_of, horizon_days=self.horizon_days,
                             customers=[ChurnScore(**r, model=self.tag, as_of=request.as_of)
                                        for r in table.to_dict("records")])
