"""Budget-allocation runtime: load a stored allocator once, then plan / re-plan per request (<= 100 ms)."""
from __future__ import annotations

import io
import time
from typing import Annotated, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.models.allocator.constraints import FLAGS, Names
from omnidecide.models.errors import InputError
from omnidecide.serving.limits import Money, RequestModel
from omnidecide.store import loader


class PlanRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"budget": 1000000, "periods": 8, "reserve": 0.15}})

    budget: Annotated[Money, Field(ge=1)] = Field(..., description="total budget B for the horizon (reserve included)")
    periods: int = Field(..., ge=1, le=156, description="number of periods T to plan")
    reserve: float = Field(0.15, ge=0, lt=1, description="strategic reserve, share of B held back")
    min: dict[str, Money] = Field(default_factory=dict, max_length=100, description="channel -> minimum total spend over the horizon")
    max: dict[str, Money] = Field(default_factory=dict, max_length=100, description="channel -> maximum total spend over the horizon")
    roi_floor: dict[str, float] = Field(default_factory=dict, max_length=100, description="channel -> minimum expected ROI")
    actuals_csv: Optional[str] = Field(None, description="ACTUALS.csv text: elapsed periods, spend_<channel>, revenue")


class PlanRow(BaseModel):
    period: int
    channel: str
    spend: float
    expected_revenue: float
    revenue_p10: Optional[float] = Field(None, description="10th percentile of the cell's revenue over the posterior draws")
    revenue_p90: Optional[float] = Field(None, description="90th percentile of the cell's revenue over the posterior draws")
    identification: Optional[float] = Field(None, description="how well the history identifies the channel, 0-1")


class ChannelSummary(BaseModel):
    spend: float
    incremental_revenue: float
    roi: Optional[float]
    marginal_roi: float
    revenue_p10: Optional[float] = Field(None, description="80% interval of the channel's incremental revenue: low end")
    revenue_p90: Optional[float] = Field(None, description="80% interval of the channel's incremental revenue: high end")
    identification: Optional[float] = Field(None, description="0-1: 1 = the posterior draws agree on what the channel "
                                            "returns at its historical spend; 0 = the history cannot tell")
    historical_spend: Optional[float] = Field(None, description="the channel's total under last year's mix, this budget")


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

    def plan(self, req: PlanRequest, actuals: pd.DataFrame | None = None, names: Names = FLAGS):
        """Returns (PlanResponse, PlanResult). `names`: what errors call the inputs, the CLI's flags (`--min`) unless
        the HTTP endpoint passes `constraints.HTTP_FIELDS` (`min`)."""
        t0 = time.perf_counter()
        if actuals is None and req.actuals_csv:
            try:
                actuals = pd.read_csv(io.StringIO(req.actuals_csv))
            except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
                raise InputError(f"{names.actuals}: not a readable CSV ({e})") from e
        res = self.allocator.plan(req.budget, req.periods, reserve=req.reserve, lo=req.min, hi=req.max,
                                  roi_floor=req.roi_floor, actuals=actuals, names=names)
        s = res.summary
        resp = PlanResponse(
            model=self.tag, rows=[PlanRow(**{k: _num(v) if isinstance(v, float) else v for k, v in r.items()})
                                  for r in res.table.to_dict("records")],
            expected_incremental_revenue=s["expected_incremental_revenue"], planned_spend=s["planned_spend"],
            roi=_num(s["roi"]), reserve=s["reserve"], actual_periods=s["actual_periods"],
            per_channel={c: ChannelSummary(spend=v["spend"], incremental_revenue=v["incremental_revenue"], roi=_num(v["roi"]),
                                           marginal_roi=v["marginal_roi"], revenue_p10=v["revenue_p10"],
                                           revenue_p90=v["revenue_p90"], identification=v["identification"],
                                           historical_spend=v["historical_spend"])
                         for c, v in s["per_channel"].items()},
            latency_ms=(time.perf_counter() - t0) * 1000)
        return resp, res

    # re-planning is the same call with actuals
    replan = plan
