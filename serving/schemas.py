"""Request models shared by more than one endpoint (per-model requests live beside their runtime)."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from omnidecide.serving.limits import Id, MaybeId, Money, RequestModel, Text, TimestampOrText, limited


class Event(RequestModel):
    """One canonical event (docs/data.md). Checked by `models.schema.validate_records`, the rules every loader
    uses, so an unknown event type or an impossible timestamp is refused with the record's index."""

    user_id: Id
    timestamp: TimestampOrText
    event: str = Field(..., max_length=32)
    item_id: Optional[MaybeId] = None
    quantity: Optional[float] = None
    amount: Optional[Money] = None
    channel: Optional[MaybeId] = None
    store_id: Optional[MaybeId] = None
    # the events file's other id columns (docs/data.md): a feed that sends them is not refused; the online store keeps
    # the columns above only (what /recommend reads), as the README's /events row says
    order_id: Optional[MaybeId] = None
    session_id: Optional[MaybeId] = None
    event_id: Optional[MaybeId] = None


class EventsRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"events": [
        {"user_id": "u0000001", "timestamp": "2026-06-01T10:00:00+08:00", "event": "cart", "item_id": "i00001",
         "channel": "app"}]}})

    events: list[Event] = Field(..., min_length=1, **limited("events", "storefront events"))
    idempotency_key: Optional[Text] = Field(None, min_length=1, max_length=200, description=(
        "Names this batch: a retry with the same key answers what the first call answered and stores nothing twice "
        "(keys are remembered 7 days)"))


class EventsResponse(BaseModel):
    accepted: int


class ForgetRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"user_id": "u0000001"}})

    user_id: Id


class ForgetResponse(BaseModel):
    user_id: str
    deleted_events: int
    deleted_log_lines: int
    deleted_scores: int = 0
    note: str = ("deleted from the online store, the decision log and the stored scores (the deletion itself is logged "
                 "under a hash); the user's rows in trained versions' history are no longer used, and versions forget "
                 "the user at their next retrain")
