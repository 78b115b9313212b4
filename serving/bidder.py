"""Ad-bidder runtime: a value and a bid multiplier per candidate item for one user on one ad channel.

Built on the recommender version that serves the user (its LightGBM second stage gives the calibrated purchase
probability per (user, item, channel)) and on the caller's churn figures for the user (from `predict churn` /
`/predict_churn`: CRM keeps them per customer). Item value is price × margin where the catalogue has a margin, else
price. The reference value — what multiplier 1.0 means — is the caller's target if given, else the average value of
an impression of the top-20 recommendations to a fixed sample of training users on that channel, computed once per
(version, channel) and cached. A sold-out candidate (item-level stock 0, live from `/items`) is not bid on: it is
listed in `out_of_stock_items`, as unknown ids are in `unknown_items`.
"""
from __future__ import annotations

import threading
from typing import Annotated, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.models.bidding import BidPolicy, impression_value, multiplier
from omnidecide.models.errors import InputError
from omnidecide.models.recommender.rules import in_stock_mask
from omnidecide.serving.limits import Id, Money, RequestModel, limited
from omnidecide.serving.recommender import RecommenderRuntime, RecommendRequest

REFERENCE_USERS = 32
REFERENCE_K = 20


class BidRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "user_id": "u0000001", "channel": "douyin", "candidates": ["i00001", "i00002"], "churn_probability": 0.4}})

    user_id: Id
    channel: Id = Field(..., description="ad channel of the auction, e.g. douyin, wechat_moments, tmall_ads, search")
    candidates: list[Id] = Field(..., min_length=1, **limited("candidates", "item ids the ad could show"))
    churn_probability: Optional[float] = Field(None, ge=0, le=1, description="from /predict_churn for this user")
    expected_spend: Optional[Money] = Field(None, description="from /predict_churn for this user")
    reference_value: Optional[Annotated[Money, Field(gt=0)]] = Field(None, description="value that means multiplier 1.0")
    retention_weight: float = Field(BidPolicy.retention_weight, ge=0, le=1)
    personalized: bool = Field(True, description="false: the user opted out of personalised ads; no history is used")


class BidCandidate(BaseModel):
    item_id: str
    purchase_probability: float
    item_value: float
    value: float
    bid_multiplier: float


class BidResponse(BaseModel):
    user_id: str
    channel: str
    model: str
    reference_value: float
    value_unit: str
    personalized: bool
    candidates: list[BidCandidate]
    unknown_items: list[str]
    out_of_stock_items: list[str] = Field(default_factory=list, description=(
        "candidates sold out (item-level stock 0, from `/items` or the version's catalogue): not bid on, as "
        "`/recommend` does not show them; /bid has no store, so one store's stock does not count"))
    churn_source: str = Field("none", description="where the churn figures of the retention credit came from: "
                              "request, stored (published by `predict churn --publish`) or none")


class Bidder:
    """Per-recommender-version helper; the service keeps one per loaded version."""

    def __init__(self, runtime: RecommenderRuntime) -> None:
        self.rt = runtime
        rec = runtime.rec
        self._reference: dict[str, float] = {}
        self._lock = threading.Lock()
        step = max(1, len(rec.user_ids) // REFERENCE_USERS)
        self._sample = list(rec.user_ids[::step][:REFERENCE_USERS])

    def reference(self, channel: str) -> float:
        """Mean value of an impression of a top-20 recommendation on `channel`, over the fixed user sample."""
        with self._lock:
            if channel not in self._reference:
                values = []
                for user in self._sample:
                    items = [r.item_id for r in self.rt.recommend(RecommendRequest(user_id=user, k=REFERENCE_K)).items]
                    p = np.asarray(self.rt.purchase_probability(user, items, channel))
                    values.append(impression_value(p, self._values(items)))
                v = float(np.nanmean(np.concatenate(values))) if values else float("nan")
                self._reference[channel] = v if v > 0 else 1e-9
            return self._reference[channel]

    def _values(self, items: list[str]) -> np.ndarray:
        return _item_values(self.rt, [self.rt.rec.item_index[i] for i in items])[0]

    @property
    def unit(self) -> str:
        return _item_values(self.rt, [])[1]

    def bid(self, req: BidRequest, stored: Sequence[tuple[str, str, float]] = ()) -> BidResponse:
        """`stored`: the user's online-store events, so a cart on the app minutes ago raises the bid on that item."""
        self.rt.sync()
        if self.rt.rec.ranker is None:
            # "retrain it" sent the caller to retrain on the same data, which gives the same version: say what it lacks
            info = self.rt.metadata.get("metrics", {}).get("second_stage", "no second stage")
            raise InputError(f"{self.rt.tag} has no calibrated purchase probability ({info}): /bid needs a version "
                             "trained on a log with more customers and purchases (see `omnidecide models show`)")
        index, ids = self.rt.rec.item_index, list(dict.fromkeys(req.candidates))
        unknown = [i for i in ids if i not in index]
        # the rule of /recommend without a store: an ad for a sold-out item buys a click that cannot convert, so it is
        # not bid on; stock unknown (NaN) is not sold out
        in_stock = in_stock_mask(self.rt.rec)
        sold_out = [i for i in ids if i in index and not in_stock[index[i]]]
        known = [i for i in ids if i in index and in_stock[index[i]]]
        policy = BidPolicy(retention_weight=req.retention_weight)
        reference = req.reference_value or self.reference(req.channel)
        personal = self.rt.personalized(req.user_id, req.personalized)
        p = (np.asarray(self.rt.purchase_probability(req.user_id, known, req.channel, personal, stored)) if known
             else np.zeros(0))
        item_value = self._values(known)
        churn, spend = (req.churn_probability or 0.0, req.expected_spend or 0.0) if personal else (0.0, 0.0)
        value = impression_value(p, item_value, churn, spend, policy.retention_weight)
        mult = multiplier(value, reference, policy)
        rows = [BidCandidate(item_id=i, purchase_probability=float(pi), item_value=float(vi), value=float(v),
                             bid_multiplier=float(m)) for i, pi, vi, v, m in zip(known, p, item_value, value, mult)]
        return BidResponse(user_id=req.user_id, channel=req.channel, model=self.rt.tag, reference_value=reference,
                           value_unit=self.unit, personalized=personal, candidates=rows, unknown_items=unknown,
                           out_of_stock_items=sold_out)


def _item_values(runtime: RecommenderRuntime, idx: list[int]) -> tuple[np.ndarray, str]:
    """Per item index: price × margin where the catalogue (version snapshot + live updates) has a margin, else price,
    else 1 (value in purchases); and the unit of the whole catalogue."""
    rec = runtime.rec
    if rec.price is None:
        return np.ones(len(idx)), "purchases"
    value = np.nan_to_num(np.asarray(rec.price[idx], float), nan=0.0)
    margin = runtime.margin[idx]
    if np.isfinite(runtime.margin).any():
        return np.where(np.isfinite(margin), value * margin, value), "margin"
    return value, "revenue"
