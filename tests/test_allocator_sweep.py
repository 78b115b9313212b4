"""Faults an adversarial sweep of the budget allocator's user-facing surface found, each pinned by the input that
showed it (a planner's own, messy files and flags): the answer is a sensible plan or an InputError naming the
flag/field, row and reason, never a traceback (CLI) or a 5xx (HTTP).

Plan-level faults are checked on a small hand-built allocator (no fit: milliseconds); the history checks on frames.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.allocator.artifact import Allocator
from omnidecide.models.allocator.constraints import HTTP_FIELDS
from omnidecide.models.allocator.mmm import History, MMMParams
from omnidecide.models.errors import InputError

CH = ["a", "b", "c"]
N = 104


def allocator(spread: float = 0.05) -> Allocator:
    """Three channels with equal historical spend and draws that (nearly) agree on all of them."""
    rng = np.random.default_rng(0)
    dates = pd.date_range("2024-01-01", periods=N, freq="7D")
    spend = np.full((N, 3), 20_000.0) * np.exp(rng.normal(0, 0.1, (N, 3)))
    h = History(dates=dates, revenue=np.full(N, 1e6), spend=spend, channels=CH, controls=np.zeros((N, 0)),
                control_names=[], step_days=7)
    worlds = [MMMParams(channels=CH, decay=np.full(3, 0.3), half_saturation=np.full(3, 30_000.0), slope=np.full(3, 1.2),
                        beta=np.array([60_000.0, 50_000.0, 40_000.0]) * np.exp(rng.normal(0, spread, 3)),
                        media_peak_mult=0.0) for _ in range(16)]
    return Allocator(params=worlds[0], samples=worlds, history=h, worlds=worlds, info={"agent_enabled": False})


@pytest.fixture(scope="module")
def alloc() -> Allocator:
    return allocator()


def test_every_channel_capped_at_zero_is_a_plan_of_nothing_not_a_crash(alloc):
    """`--max CH=0` for every channel: a ZeroDivisionError in the capped solver (CLI traceback, HTTP 500) before."""
    for robust in (True, False):
        res = alloc.plan(10_000, 2, reserve=0.0, hi={c: 0.0 for c in CH}, robust=robust)
        assert res.table["spend"].sum() == 0.0
        assert res.summary["unallocated"] == pytest.approx(10_000)
    res = alloc.plan(10_000, 2, reserve=0.0, hi={"a": 0.0, "b": 0.0, "c": 5.0})
    assert res.spend[:, 2].sum() == pytest.approx(5.0) and res.spend[:, :2].sum() == 0.0
