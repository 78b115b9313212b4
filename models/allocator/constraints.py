"""Business rules of one plan and the projections that enforce them exactly.

Constraint semantics (all enforced exactly):
- total: sum of all channel spend <= B * (1 - reserve); the reserve is held back (its own PLAN row);
- --min / --max CH=AMOUNT: that channel's total over the horizon;
- --roi-floor CH=X: that channel's expected incremental revenue / its spend >= X (else less or no spend).
`request_constraints` is the one place the allocator's flags are validated (CLI, HTTP and Python callers all reach
it through `Allocator.plan`); every error names its input as the caller calls it (`Names`: `--min` on the command
line, `min` in an /allocate body).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from omnidecide.models.allocator.curves import Curves
from omnidecide.models.errors import InputError


@dataclass(frozen=True)
class Names:
    """What the caller calls each plan input in error messages. Why: one validation serves the CLI and HTTP, and an
    /allocate caller has no `--min` flag to fix; the default is the CLI's flags."""

    budget: str = "--budget"
    periods: str = "--periods"
    reserve: str = "--reserve"
    min: str = "--min"
    max: str = "--max"
    roi_floor: str = "--roi-floor"
    actuals: str = "--actuals"


FLAGS = Names()
HTTP_FIELDS = Names("budget", "periods", "reserve", "min", "max", "roi_floor", "actuals_csv")  # /allocate's body


@dataclass
class Constraints:
    """Business rules for one plan, in money; channel-indexed arrays (C,)."""

    budget: float
    reserve: float = 0.15
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    roi_floor: np.ndarray | None = None  # nan = none
    spent: float = 0.0  # already spent (re-planning): counts against the budget
    spent_per_channel: np.ndarray | None = None
    names: Names = FLAGS  # how errors about these rules name their inputs

    def arrays(self, C: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo = np.zeros(C) if self.lo is None else np.asarray(self.lo, float)
        hi = np.full(C, np.inf) if self.hi is None else np.asarray(self.hi, float)
        fl = np.full(C, np.nan) if self.roi_floor is None else np.asarray(self.roi_floor, float)
        done = np.zeros(C) if self.spent_per_channel is None else np.asarray(self.spent_per_channel, float)
        return np.maximum(lo - done, 0.0), np.maximum(hi - done, 0.0), fl

    @property
    def spendable(self) -> float:
        """What channels may still get: B * (1 - reserve) minus what was already spent."""
        return max(self.budget * (1 - self.reserve) - self.spent, 0.0)


def channel_amounts(values: dict | None, channels: list[str], flag: str, fill: float) -> np.ndarray:
    """{channel: amount} from a flag -> (C,) array (`fill` where not given); unknown channels and negative or
    non-finite amounts are InputErrors naming the flag."""
    out = np.full(len(channels), fill, float)
    for k, v in (values or {}).items():
        if k not in channels:
            raise InputError(f"{flag} {k}={v}: unknown channel; the model knows {', '.join(channels)}")
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{flag} {k}={v}: must be a number >= 0")
        out[channels.index(k)] = v
    return out


def check_request(budget: float, periods: int, reserve: float, names: Names = FLAGS) -> None:
    """The scalar flags, checked before anything is loaded or computed."""
    if not np.isfinite(budget) or budget <= 0:
        raise InputError(f"{names.budget} must be a positive amount, got {budget}")
    if not 0 <= reserve < 1:
        raise InputError(f"{names.reserve} must be a share in [0, 1), got {reserve}")
    if periods < 1:
        raise InputError(f"{names.periods} must be at least 1, got {periods}")


def request_constraints(channels: list[str], budget: float, periods: int, reserve: float, lo: dict | None,
                        hi: dict | None, roi_floor: dict | None, names: Names = FLAGS) -> Constraints:
    """A plan request's flags -> Constraints, or an InputError naming the flag: the one validation of the
    allocator's flags (`after_actuals` then adds what the elapsed periods already spent)."""
    check_request(budget, periods, reserve, names)
    cons = Constraints(budget=budget, reserve=reserve, lo=channel_amounts(lo, channels, names.min, 0.0),
                       hi=channel_amounts(hi, channels, names.max, np.inf),
                       roi_floor=channel_amounts(roi_floor, channels, names.roi_floor, np.nan), names=names)
    check_rules(cons, channels)
    return cons


def after_actuals(cons: Constraints, actual_spend: np.ndarray) -> Constraints:
    """The rules for the rest of the horizon once `actual_spend` (k, C) went out; over-spent budget or minimums that
    no longer fit are InputErrors naming the flag."""
    x, n = np.asarray(actual_spend, float), cons.names
    if x.sum() > cons.budget * (1 - cons.reserve) + 1e-6:
        raise InputError(f"{n.actuals}: {x.sum():,.2f} already spent, more than {n.budget} {cons.budget:,.2f} less "
                         f"{n.reserve} {cons.reserve:.0%}; raise {n.budget} or lower {n.reserve}")
    done = x.sum(0)
    out = replace(cons, spent=float(x.sum()), spent_per_channel=done)
    need = np.maximum(cons.lo - done, 0).sum()
    if need > out.spendable + 1e-6:
        raise InputError(f"{n.min}: the minimums still needed ({need:,.2f}) exceed the budget left ({out.spendable:,.2f})")
    return out


def check_rules(cons: Constraints, channels: list[str]) -> None:
    """Infeasible or malformed --min / --max / --roi-floor (against the whole budget) -> InputError naming the flag."""
    C, n = len(channels), cons.names
    lo, hi, fl = cons.arrays(C)
    if np.any(lo > hi + 1e-9):
        bad = [channels[j] for j in np.flatnonzero(lo > hi + 1e-9)]
        raise InputError(f"{n.min} is above {n.max} for {', '.join(bad)}")
    if lo.sum() > cons.spendable + 1e-6:
        raise InputError(f"{n.min} amounts add up to {lo.sum():,.2f}, more than the spendable budget "
                         f"{cons.spendable:,.2f} ({n.budget} {cons.budget:,.2f} less {n.reserve} {cons.reserve:.0%})")
    if np.any(fl[np.isfinite(fl)] < 0):
        raise InputError(f"{n.roi_floor} must be >= 0")


def project_period(x: np.ndarray, cap_total: float, hi_left: np.ndarray, lo_left: np.ndarray, last: bool) -> np.ndarray:
    """One period's spend made feasible: 0 <= x <= what each channel may still take; on the last period at least
    what each channel's minimum still needs; and sum(max(x, still-needed minimum)) <= budget left, so the
    minimums of later periods stay affordable."""
    x = np.clip(np.nan_to_num(np.asarray(x, float)), 0.0, hi_left)
    need = np.minimum(lo_left, hi_left)
    if last:
        x = np.maximum(x, need)
    above = np.maximum(x - need, 0.0)
    base = np.minimum(x, need)
    room = cap_total - need.sum()
    if above.sum() > room:  # (room may be a rounding error below 0 with nothing above the minimums)
        x = base + above * (max(room, 0.0) / above.sum() if above.sum() > 0 else 0.0)
    return np.maximum(x, 0.0)


def project_plan(x: np.ndarray, cons: Constraints) -> np.ndarray:
    """Whole plan made feasible period by period (what the env does, in one pass). A plan that already is (every
    cell >= 0, channel totals within --min/--max, total within the spendable budget) comes back unchanged without the
    per-period pass: each period's spend then fits what is left and covers the minimums still needed, so the pass
    would not move it (the optimiser's plans are feasible; the pass costs ~1.4 ms at T = 104)."""
    x = np.asarray(x, float).copy()
    T, C = x.shape
    lo, hi, _ = cons.arrays(C)
    y = x.sum(0)
    if (np.all(np.isfinite(x)) and x.min(initial=0.0) >= 0 and np.all(y >= lo) and np.all(y <= hi)
            and y.sum() <= cons.spendable):
        return x
    left, lo_left, hi_left = cons.spendable, lo.copy(), hi.copy()
    for t in range(T):
        x[t] = project_period(x[t], left, hi_left, lo_left, t == T - 1)
        left -= x[t].sum()
        lo_left = np.maximum(lo_left - x[t], 0)
        hi_left = np.maximum(hi_left - x[t], 0)
    return x


def enforce_roi_floor(x: np.ndarray, curves: Curves, cons: Constraints, channels: list[str]) -> np.ndarray:
    """Scale down channels whose expected ROI is below their floor (exact on `curves`): the largest scale of the
    channel's spend that meets the floor (grid, then bisection); a channel whose --min forces spend below its floor is
    an InputError."""
    lo, _, fl = cons.arrays(curves.C)
    x = np.asarray(x, float).copy()
    for c in np.flatnonzero(np.isfinite(fl)):
        sp = x[:, c].sum()
        if sp <= 0:
            continue

        def roi(s, c=c, sp=sp):
            s = np.atleast_1d(np.asarray(s, float))
            return curves.channel_revenue(c, np.outer(x[:, c], s)) / (sp * s)
        if roi(1.0)[0] >= fl[c]:
            continue
        s_min = min(lo[c] / sp, 1.0)
        grid = np.linspace(1.0, max(s_min, 1.0 / 256), 129)[1:]
        ok = roi(grid) >= fl[c]
        if ok.any():
            i = int(np.argmax(ok))
            good, bad = grid[i], grid[i - 1] if i > 0 else 1.0
            for _ in range(30):
                mid = 0.5 * (good + bad)
                good, bad = (mid, bad) if roi(mid)[0] >= fl[c] else (good, mid)
            s = good
        elif lo[c] > 0:
            raise InputError(f"{cons.names.roi_floor} {channels[c]}={fl[c]:g} cannot be met together with "
                             f"{cons.names.min} {channels[c]}="
                             f"{lo[c]:,.2f} (expected ROI at that spend is {roi(max(s_min, 1e-9))[0]:.2f})")
        else:
            s = 0.0
        x[:, c] *= s
    return x


def _simplex(v: np.ndarray, s: float) -> np.ndarray:
    """Euclidean projection onto {x >= 0, sum x = s}."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - s
    k = np.flatnonzero(u - css / np.arange(1, len(u) + 1) > 0)[-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)




def _thresholds(vs: np.ndarray, css: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column c: theta with sum_t max(v[t, c] - theta, 0) = y[c] > 0 (vs: v sorted descending per column, css: its
    cumulative sum)."""
    k = np.arange(1, vs.shape[0] + 1)[:, None]
    kk = np.maximum((vs - (css - y) / k > 0).sum(0), 1)
    return (css[kk - 1, np.arange(vs.shape[1])] - y) / kk


def project_capped(v: np.ndarray, S: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Exact Euclidean projection of v (T, C) onto {x >= 0, lo_c <= sum_t x[t, c] <= hi_c, sum x = min(S, sum hi)}
    (needs sum lo <= S). KKT: x = max(v - lam - mu_c, 0); channel totals clip(g_c(lam), lo_c, hi_c) with
    g_c(theta) = sum_t max(v[t, c] - theta, 0) are piecewise linear in lam: solved exactly over the breakpoints."""
    v = np.asarray(v, float)
    T, C = v.shape
    S = min(S, float(hi.sum()))
    vs = -np.sort(-v, axis=0)
    css = np.cumsum(vs, axis=0)
    va = vs[::-1]
    fin = np.isfinite(hi)
    th_hi = _thresholds(vs, css, np.where(fin, np.maximum(hi, 1e-300), 1.0))[fin]
    th_lo = np.where(lo > 0, _thresholds(vs, css, np.maximum(lo, 1e-300)), vs[0])
    bp = np.unique(np.concatenate([v.ravel(), th_hi, th_lo]))
    Phi = np.zeros(len(bp))
    for c in range(C):
        kc = T - np.searchsorted(va[:, c], bp, side="right")  # cells of channel c above each breakpoint
        Phi += np.clip(np.where(kc > 0, css[np.maximum(kc - 1, 0), c] - kc * bp, 0.0), lo[c], hi[c])
    i = int(np.searchsorted(-Phi, -S, side="left"))  # Phi is nonincreasing: first breakpoint with Phi <= S
    if i == 0:  # below every breakpoint: channels with a --max sit at it, the others grow with slope T
        nfree = int((~fin).sum())
        lam = bp[0] - (S - Phi[0]) / (T * nfree) if nfree and S > Phi[0] else bp[0]
    elif i >= len(bp):
        lam = bp[-1]
    else:
        a, b, fa, fb = bp[i - 1], bp[i], Phi[i - 1], Phi[i]
        lam = b if fa == fb else a + (fa - S) * (b - a) / (fa - fb)
    y = np.clip(np.maximum(v - lam, 0).sum(0), lo, hi)
    th = np.where(y > 0, _thresholds(vs, css, np.maximum(y, 1e-300)), np.inf)
    return np.maximum(v - th, 0.0)


