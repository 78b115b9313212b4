"""Budget-allocation runtime: load a stored allocator once, then plan / re-plan per request (<= 100 ms)."""
from __future__ import annotations

import io
import time
from typing import Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.models.errors import InputError
from omnidecide.serving.limits import RequestModel
from omnidecide.store import loader


class PlanRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"budget": 1000000, "periods": 8, "reserve": 0.15}})

    budget: float = Field(..., ge=1, le=1e13, description="total budget B for the horizon (reserve included)")
    periods: int = Field(..., ge=1, le=156, description="number of periods T to plan")
    reserve: float = Field(0.15, ge=0, lt=1, description="strategic reserve, share of B held back")
    min: dict[str, float] = Field(default_factory=dict, max_length=100, description="channel -> minimum total spend over the horizon")
    max: dict[str, float] = Field(default_factory=dict, max_length=100, description="channel -> maximum total spend over the horizon")
    roi_floor: dict[str, float] = Field(default_factory=dict, max_length=100, description="channel -> minimum expected ROI")
    actuals_csv: Optional[str] = Field(None, description="ACTUALS.csv text: elapsed periods, spend_<channel>, revenue")


class PlanRow(BaseModel):
    period: int
    channel: str
    spend: float
    expected_revenue: float


class ChannelSummary(BaseModel):
    spend: float
    incremental_revenue: float
    roi: Optional[float]
    marginal_roi: float


class PlanResponse(BaseModel):
    model: str
    rows: list[PlanRow]
    expected_incremental_revenue: float
    planned_spend: float
    roi: Optional[float]
    reserve: float
    actual_periods: int
    per_channel: dict[str, ChannelSummary]
    latency_ms: float


def _num(v: float) -> Optional[float]:
    return None if v != v else float(v)  # NaN -> None


class AllocatorRuntime:
    """Plain runtime class: the constructor loads the version (promoted or latest unless a tag is given)."""

    def __init__(self, tag: str | None = None):
        v = loader.load("allocator", tag)
        self.tag, self.allocator = v.tag, v.model

    @property
    def channels(self) -> list[str]:
        return self.allocator.channels

    def plan(self, req: PlanRequest, actuals: pd.DataFrame | None = None):
        """Returns (PlanResponse, PlanResult)."""
        t0 = time.perf_counter()
        if actuals is None and req.actuals_csv:
            try:
                actuals = pd.read_csv(io.StringIO(req.actuals_csv))
            except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
                raise InputError(f"actuals_csv: not a readable CSV ({e})") from e
        res = self.allocator.plan(req.budget, req.periods, reserve=req.reserve, lo=req.min, hi=req.max,
                                  roi_floor=req.roi_floor, actuals=actuals)
        s = res.summary
        resp = PlanResponse(
            model=self.tag, rows=[PlanRow(**r) for r in res.table.to_dict("records")],
            expected_incremental_revenue=s["expected_incremental_revenue"], planned_spend=s["planned_spend"],
            roi=_num(s["roi"]), reserve=s["reserve"], actual_periods=s["actual_periods"],
            per_channel={c: ChannelSummary(spend=v["spend"], incremental_revenue=v["incremental_revenue"], roi=_num(v["roi"]),
                                           marginal_roi=v["marginal_roi"]) for c, v in s["per_channel"].items()},
            latency_ms=(time.perf_counter() - t0) * 1000)
        return resp, res

    # re-planning is the same call with actuals
    replan = plan
