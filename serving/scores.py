"""`/customer_scores` and the stored score `/bid` falls back on: churn figures looked up by customer id.

The bidder and CRM hold customer ids, not event histories; `predict churn --publish` keeps each customer's scores in
the shared database (`store.scores`). Lookups answer with each score's model version and as-of date and list
unknown ids as unknown, not as an error.
"""
from __future__ import annotations

import time
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from omnidecide.serving.bidder import BidRequest
from omnidecide.serving.limits import LIMITS, Id, RequestModel
from omnidecide.store import scores
from omnidecide.store.db import Database

MAX_IDS = LIMITS.user_ids  # per /customer_scores and /predict_churn call (README: OMNIDECIDE_MAX_USER_IDS)


class ScoresRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"user_ids": ["u0000001", "u0000002"]}})

    user_ids: list[Id] = Field(..., min_length=1, max_length=MAX_IDS,
                               description=f"customer ids, at most {MAX_IDS} per call")


class StoredScore(BaseModel):
    user_id: str
    churn_probability: float
    risk_tier: str
    segment: str
    expected_spend: Optional[float]
    reason: str
    model: str = Field(..., description="the churn version that scored this customer")
    as_of: str = Field(..., description="the date the score is as of")
    age_days: float = Field(..., description="days since the score was published")


class ScoresResponse(BaseModel):
    scores: list[StoredScore]
    unknown: list[str] = Field(..., description="ids with no stored score (`omnidecide predict churn --publish`)")


def lookup(user_ids: list[str], db: Database) -> ScoresResponse:
    found = scores.lookup(user_ids, db)
    now = time.time()
    return ScoresResponse(
        scores=[StoredScore(user_id=u, **{k: v for k, v in s.items() if k != "published_at"},
                            age_days=round((now - s["published_at"]) / 86400, 4)) for u, s in found.items()],
        unknown=[u for u in dict.fromkeys(user_ids) if u not in found])


def for_bid(request: BidRequest, db: Database) -> tuple[BidRequest, Literal["request", "stored", "none"]]:
    """The bid request with the customer's churn figures, and where they came from: the request's own, else the
    stored score (not for a customer who opted out of personalisation), else none (no retention credit)."""
    if request.churn_probability is not None or request.expected_spend is not None:
        return request, "request"
    if not request.personalized:
        return request, "none"
    stored = scores.lookup([request.user_id], db).get(request.user_id)
    if stored is None:
        return request, "none"
    return request.model_copy(update={"churn_probability": stored["churn_probability"],
                                      "expected_spend": stored["expected_spend"]}), "stored"
