"""Heuristic plans the benchmarks (and the planner's tests) compare against; the product never serves them."""
from __future__ import annotations

import numpy as np

from omnidecide.models.allocator.constraints import Constraints, project_period, project_plan
from omnidecide.models.allocator.curves import Curves
from omnidecide.models.allocator.solvers import optimise


def myopic(curves: Curves, cons: Constraints) -> np.ndarray:
    """Each period gets an equal share of what is left and is split to maximise that period's revenue only."""
    T, C = curves.T, curves.C
    lo, hi, _ = cons.arrays(C)
    x = np.zeros((T, C))
    state = curves.init.copy()
    left, lo_left, hi_left = cons.spendable, lo.copy(), hi.copy()
    for t in range(T):
        one = Curves(curves.decay, curves.half, curves.slope, curves.beta, curves.mult[t:t + 1], state)
        share = left / (T - t)
        sub = Constraints(budget=share, reserve=0.0, lo=lo_left / (T - t), hi=hi_left)
        xt = optimise(one, sub, np.full((1, C), share / C))[0]
        xt = project_period(xt, left, hi_left, lo_left, t == T - 1)
        x[t] = xt
        state = xt + curves.decay * state
        left -= xt.sum()
        lo_left, hi_left = np.maximum(lo_left - xt, 0), np.maximum(hi_left - xt, 0)
    return x


def spread(shares: np.ndarray, T: int, cons: Constraints, timing: np.ndarray | None = None) -> np.ndarray:
    """A heuristic plan: channel shares (C,), optional timing weights (T,), scaled to the spendable budget."""
    timing = np.ones(T) if timing is None else np.asarray(timing, float)
    x = np.outer(timing / timing.sum(), shares / shares.sum()) * cons.spendable
    return project_plan(x, cons)


