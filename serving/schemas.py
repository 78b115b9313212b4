"""Request models shared by more than one endpoint (per-model requests live beside their runtime)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """One canonical event (docs/data.md). Checked by `models.schema.validate_records`, the rules every loader
    uses, so an unknown event type or an impossible timestamp is refused with the record's index."""

    user_id: str
    timestamp: datetime | str
    event: str
    item_id: Optional[str] = None
    quantity: Optional[float] = None
    amount: Optional[float] = None
    channel: Optional[str] = None
    store_id: Optional[str] = None


class EventsRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"events": [
        {"user_id": "u0000001", "timestamp": "2026-06-01T10:00:00+08:00", "event": "cart", "item_id": "i00001",
         "channel": "app"}]}})

    events: list[Event] = Field(..., min_length=1, max_length=10_000)


class EventsResponse(BaseModel):
    accepted: int


class ForgetRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"user_id": "u0000001"}})

    user_id: str = Field(..., min_length=1)


class ForgetResponse(BaseModel):
    user_id: str
    deleted_events: int
    deleted_log_lines: int
    note: str = ("deleted from the online store and the decision log (the deletion itself is logged under a hash); "
                 "trained model versions forget the user at their next retrain")
