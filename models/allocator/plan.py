"""Planning over a horizon: response curves over T periods, business constraints, optimisers and baselines.

Everything is per channel and separable given the curves: revenue = sum_c F_c(x_{.,c}) where F_c carries the
adstock over the periods. "Incremental revenue" of a plan = media revenue within the horizon with the plan
minus with zero spend (the carry-over already in the adstock at the start decays either way).
Constraint semantics (all enforced exactly):
- total: sum of all channel spend <= B * (1 - reserve); the reserve is held back (its own PLAN row);
- --min / --max CH=AMOUNT: that channel's total over the horizon;
- --roi-floor CH=X: that channel's expected incremental revenue / its spend >= X (else less or no spend).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from models.errors import InputError


@dataclass
class Curves:
    """Response curves for one planning horizon: per channel (C,) and per period (T,) season multiplier."""

    decay: np.ndarray
    half: np.ndarray
    slope: np.ndarray
    beta: np.ndarray
    mult: np.ndarray  # (T,) media multiplier per period (1 + m * peak), or (T, C)
    init: np.ndarray  # (C,) adstock at the start of the horizon

    @property
    def T(self) -> int:
        return len(self.mult)

    @property
    def C(self) -> int:
        return len(self.beta)

    @property
    def m2(self) -> np.ndarray:
        return self.mult if np.ndim(self.mult) == 2 else np.asarray(self.mult)[:, None]

    def tail(self, start: int, init: np.ndarray) -> "Curves":
        return Curves(self.decay, self.half, self.slope, self.beta, self.mult[start:], init)

    def _powers(self) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "_pw", None) is None or self._pw[0].shape[0] != self.T:
            lag = np.arange(self.T)[:, None] - np.arange(self.T)[None, :]
            D = np.where(lag[:, :, None] >= 0, self.decay[None, None, :] ** np.maximum(lag, 0)[:, :, None], 0.0)
            carry = self.decay[None, :] ** np.arange(1, self.T + 1)[:, None]
            self._pw = (D, carry)
        return self._pw

    def stock(self, x: np.ndarray) -> np.ndarray:
        D, carry = self._powers()
        return np.einsum("tsc,sc->tc", D, x) + carry * self.init

    def _h(self, a):
        a = np.maximum(a, 0.0)
        aks = (a / self.half) ** self.slope
        return aks / (1 + aks)

    def revenue(self, x: np.ndarray) -> np.ndarray:
        """(T, C) incremental revenue realised in each period from each channel."""
        x = np.asarray(x, float).reshape(self.T, self.C)
        zero = self.beta * self._h(self.stock(np.zeros_like(x))) * self.m2
        return self.beta * self._h(self.stock(x)) * self.m2 - zero

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.asarray(x, float).reshape(self.T, self.C)
        a = np.maximum(self.stock(x), 1e-12)
        r = a / self.half
        rs = r ** self.slope
        h = rs / (1 + rs)
        dh = self.slope * rs / (a * (1 + rs) ** 2)
        g = self.beta * dh * self.m2
        back = np.einsum("tsc,tc->sc", self._powers()[0], g)
        return float((self.beta * h * self.m2).sum() - self._zero()), back

    def _zero(self) -> float:
        """Revenue of the carry-over alone (no spend): a constant of the horizon, computed once."""
        if getattr(self, "_z", None) is None:
            D, carry = self._powers()
            self._z = float((self.beta * self._h(carry * self.init) * self.m2).sum())
        return self._z

    def end_stock(self, x: np.ndarray) -> np.ndarray:
        return self.stock(np.asarray(x, float).reshape(self.T, self.C))[-1] if self.T else self.init


class Ensemble:
    """K worlds (curves over the same T periods and C channels) planned as one: revenue = mean over worlds.
    Optimising it is planning for the expected revenue under the fit's uncertainty (sample average approximation)."""

    def __init__(self, worlds: list[Curves]):
        self.worlds = list(worlds)
        K = len(worlds)
        cat = lambda f: np.concatenate([getattr(w, f) for w in worlds])  # noqa: E731
        mult = np.concatenate([np.broadcast_to(w.m2, (w.T, w.C)) for w in worlds], axis=1)
        self.stack = Curves(cat("decay"), cat("half"), cat("slope"), cat("beta") / K, mult, cat("init"))
        self.K, self.T, self.C = K, worlds[0].T, worlds[0].C

    def revenue(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float).reshape(self.T, self.C)
        return self.stack.revenue(np.tile(x, (1, self.K))).reshape(self.T, self.K, self.C).sum(1)

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.asarray(x, float).reshape(self.T, self.C)
        v, g = self.stack.value_grad(np.tile(x, (1, self.K)))
        return v, g.reshape(self.T, self.K, self.C).sum(1)


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


def check_constraints(cons: Constraints, channels: list[str]) -> None:
    """Infeasible or malformed rules -> InputError naming the flag."""
    if not np.isfinite(cons.budget) or cons.budget <= 0:
        raise InputError(f"--budget must be a positive amount, got {cons.budget}")
    if not 0 <= cons.reserve < 1:
        raise InputError(f"--reserve must be a share in [0, 1), got {cons.reserve}")
    C = len(channels)
    lo, hi, fl = cons.arrays(C)
    if np.any(lo > hi + 1e-9):
        bad = [channels[j] for j in np.flatnonzero(lo > hi + 1e-9)]
        raise InputError(f"--min is above --max for {', '.join(bad)}")
    if lo.sum() > cons.spendable + 1e-6:
        raise InputError(f"--min amounts add up to {lo.sum():,.2f}, more than the spendable budget "
                         f"{cons.spendable:,.2f} (--budget {cons.budget:,.2f} less --reserve {cons.reserve:.0%})")
    if np.any(fl[np.isfinite(fl)] < 0):
        raise InputError("--roi-floor must be >= 0")


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
    room = cap_total - need.sum() - (0 if last else 0.0)
    if above.sum() > room:
        x = base + above * (max(room, 0.0) / above.sum())
    return np.maximum(x, 0.0)


def project_plan(x: np.ndarray, cons: Constraints) -> np.ndarray:
    """Whole plan made feasible period by period (what the env does, in one pass)."""
    x = np.asarray(x, float).copy()
    T, C = x.shape
    lo, hi, _ = cons.arrays(C)
    left, lo_left, hi_left = cons.spendable, lo.copy(), hi.copy()
    for t in range(T):
        x[t] = project_period(x[t], left, hi_left, lo_left, t == T - 1)
        left -= x[t].sum()
        lo_left = np.maximum(lo_left - x[t], 0)
        hi_left = np.maximum(hi_left - x[t], 0)
    return x


def enforce_roi_floor(x: np.ndarray, curves: Curves, cons: Constraints, channels: list[str]) -> np.ndarray:
    """Scale down channels whose expected ROI is below their floor (exact on `curves`); a channel whose --min forces
    spend below its floor is an InputError."""
    lo, _, fl = cons.arrays(curves.C)
    x = np.asarray(x, float).copy()
    for c in np.flatnonzero(np.isfinite(fl)):
        def roi(s):
            y = x.copy()
            y[:, c] *= s
            sp = y[:, c].sum()
            return curves.revenue(y)[:, c].sum() / sp if sp > 0 else np.inf
        if roi(1.0) >= fl[c] - 1e-9:
            continue
        grid = np.linspace(1.0, 0.0, 41)[1:-1]
        ok = [s for s in grid if roi(s) >= fl[c] and x[:, c].sum() * s >= lo[c] - 1e-6]
        s = ok[0] if ok else 0.0
        if s == 0.0 and lo[c] > 0:
            raise InputError(f"--roi-floor {channels[c]}={fl[c]:g} cannot be met together with --min {channels[c]}="
                             f"{lo[c]:,.2f} (expected ROI at that spend is {roi(lo[c] / max(x[:, c].sum(), 1e-9)):.2f})")
        x[:, c] *= s
    return x


def _simplex(v: np.ndarray, s: float) -> np.ndarray:
    """Euclidean projection onto {x >= 0, sum x = s}."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - s
    k = np.flatnonzero(u - css / np.arange(1, len(u) + 1) > 0)[-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)


def _ascent(curves: Curves, S: float, x0: np.ndarray, iters: int = 400, tol: float = 2e-5) -> np.ndarray:
    """Spectral projected-gradient ascent on {x >= 0, sum x = S} (more spend never lowers revenue). Stops when the
    Frank-Wolfe gap (S * max marginal ROI - marginal ROI . x; 0 at a KKT point) is below tol x revenue."""
    T, C = curves.T, curves.C
    scale = S / (T * C)
    z = _simplex((x0 / scale).ravel(), T * C)
    v, g = curves.value_grad(z.reshape(T, C) * scale)
    g = g.ravel() * scale
    step = 1.0 / max(np.abs(g).max(), 1e-12)
    for _ in range(iters):
        if T * C * g.max() - g @ z <= tol * max(abs(v), 1e-9):
            break
        while True:
            zn = _simplex(z + step * g, T * C)
            vn, gn = curves.value_grad(zn.reshape(T, C) * scale)
            if vn >= v + 1e-4 * g @ (zn - z) or step < 1e-12:
                break
            step *= 0.3
        gn = gn.ravel() * scale
        dz, dg = zn - z, gn - g
        z, v, g = zn, vn, gn
        curv = -(dz @ dg)
        step = (dz @ dz) / curv if curv > 1e-18 else step * 2
    return z.reshape(T, C) * scale


def _lbfgs(curves: Curves, S: float, x0: np.ndarray, iters: int = 150, m: int = 8, tol: float = 1e-10) -> np.ndarray:
    """L-BFGS (two-loop, Armijo backtracking) on a softmax parameterisation x = S softmax(u): every iterate spends
    exactly S and stays >= 0. Plain numpy: scipy's L-BFGS-B thrashes BLAS threads on a busy 2-core machine."""
    T, C = curves.T, curves.C
    norm = max(curves.value_grad(np.asarray(x0, float))[0], 1.0)

    def f(u):
        e = np.exp(u - u.max())
        p = e / e.sum()
        v, g = curves.value_grad((p * S).reshape(T, C))
        g = g.ravel() * S
        return -v / norm, -(p * (g - p @ g)) / norm

    u = np.log(np.maximum(np.asarray(x0, float).ravel() / S, 1e-12))
    fu, gu = f(u)
    hist_s, hist_y = [], []
    for _ in range(iters):
        q = gu.copy()
        alphas = []
        for s_, y_ in reversed(list(zip(hist_s, hist_y))):
            a = (s_ @ q) / (y_ @ s_)
            alphas.append(a)
            q -= a * y_
        if hist_s:
            q *= (hist_s[-1] @ hist_y[-1]) / (hist_y[-1] @ hist_y[-1])
        else:
            q /= max(np.abs(q).max(), 1e-12)
        for (s_, y_), a in zip(zip(hist_s, hist_y), reversed(alphas)):
            q += s_ * (a - (y_ @ q) / (y_ @ s_))
        d = -q
        slope = gu @ d
        if slope >= 0:  # not a descent direction: restart from the gradient
            hist_s, hist_y = [], []
            d = -gu / max(np.abs(gu).max(), 1e-12)
            slope = gu @ d
        step = 1.0
        while True:
            un = u + step * d
            fn, gn = f(un)
            if fn <= fu + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_, y_ = un - u, gn - gu
        if y_ @ s_ > 1e-12:
            hist_s.append(s_), hist_y.append(y_)
            if len(hist_s) > m:
                hist_s.pop(0), hist_y.pop(0)
        done = abs(fu - fn) <= tol * max(abs(fu), 1e-12)
        u, fu, gu = un, fn, gn
        if done:
            break
    e = np.exp(u - u.max())
    return (e / e.sum() * S).reshape(T, C)


def optimise(curves: Curves, cons: Constraints, x0: np.ndarray | None = None, maxiter: int = 40, iters: int = 100,
             tol: float = 2e-5) -> np.ndarray:
    """Full-horizon nonlinear optimiser. Budget only: L-BFGS on the softmax parameterisation + projected-gradient
    polish (fast). With --min/--max/--roi-floor:
    polished by SLSQP (analytic gradients) under every constraint, then made exactly feasible."""
    T, C = curves.T, curves.C
    S = cons.spendable
    lo, hi, fl = cons.arrays(C)
    if S <= 0 or T == 0:
        return np.zeros((T, C))
    if x0 is None:
        x0 = np.full((T, C), S / (T * C))
    x = _lbfgs(curves, S, np.asarray(x0, float), iters)
    x = _ascent(curves, S, x, 20, tol)  # short projected-gradient polish: lets cells reach exactly zero
    if not ((lo > 0).any() or np.isfinite(hi).any() or np.isfinite(fl).any()):
        return x
    scale = S / (T * C)
    x0 = project_plan(x, cons) / scale
    norm = max(curves.value_grad(np.full((T, C), scale))[0], 1.0)

    def f(z):
        v, g = curves.value_grad(z.reshape(T, C) * scale)
        return -v / norm, -g.ravel() * scale / norm

    cons_list = [{"type": "ineq", "fun": lambda z: S / scale - z.sum(), "jac": lambda z: -np.ones_like(z)}]
    E = np.zeros((C, T * C))
    for c in range(C):
        E[c, c::C] = 1.0
    fin_hi = np.isfinite(hi)
    if fin_hi.any():
        cons_list.append({"type": "ineq", "fun": lambda z: (hi / scale - E @ z)[fin_hi], "jac": lambda z: -E[fin_hi]})
    if (lo > 0).any():
        cons_list.append({"type": "ineq", "fun": lambda z: (E @ z - lo / scale)[lo > 0], "jac": lambda z: E[lo > 0]})
    for c in np.flatnonzero(np.isfinite(fl)):
        def roi_con(z, c=c):
            return curves.revenue(z.reshape(T, C) * scale)[:, c].sum() / norm - fl[c] * (E[c] @ z) * scale / norm

        def roi_jac(z, c=c):  # channels are separable: d(total)/dx[:, c] is channel c's own gradient
            g = curves.value_grad(z.reshape(T, C) * scale)[1]
            J = np.zeros((T, C))
            J[:, c] = (g[:, c] - fl[c]) * scale / norm
            return J.ravel()
        cons_list.append({"type": "ineq", "fun": roi_con, "jac": roi_jac})
    res = minimize(f, x0.ravel(), jac=True, method="SLSQP", bounds=[(0, None)] * (T * C), constraints=cons_list,
                   options={"maxiter": maxiter, "ftol": 1e-7})
    x = np.maximum(res.x.reshape(T, C) * scale, 0.0)
    return project_plan(x, cons)


def best_plan(curves: Curves, cons: Constraints, starts: list[np.ndarray] | None = None, channels: list[str] | None = None,
              iters: int = 100, tol: float = 2e-5) -> np.ndarray:
    """Optimise from the even split and any extra starts (Hill curves with slope > 1 are not concave); keep the best
    feasible plan."""
    T, C = curves.T, curves.C
    S = cons.spendable
    starts = [np.full((T, C), S / max(T * C, 1))] + list(starts or [])
    best, best_v = None, -np.inf
    for s in starts:
        x = optimise(curves, cons, s, iters=iters, tol=tol)
        if channels is not None:
            x = project_plan(enforce_roi_floor(x, curves, cons, channels), cons)
        v = curves.revenue(x).sum()
        if v > best_v:
            best, best_v = x, v
    return best


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


@dataclass
class PlanSummary:
    incremental_revenue: float
    spend: float
    roi: float
    per_channel: dict = field(default_factory=dict)


def summarise(x: np.ndarray, curves: Curves, channels: list[str]) -> PlanSummary:
    rev = curves.revenue(x)
    _, grad = curves.value_grad(x)
    per = {}
    for c, ch in enumerate(channels):
        sp = float(x[:, c].sum())
        w = x[:, c] / sp if sp > 0 else np.full(len(x), 1.0 / max(len(x), 1))
        per[ch] = {"spend": sp, "incremental_revenue": float(rev[:, c].sum()),
                   "roi": float(rev[:, c].sum() / sp) if sp > 0 else float("nan"),
                   "marginal_roi": float((grad[:, c] * w).sum())}
    total = float(x.sum())
    inc = float(rev.sum())
    return PlanSummary(incremental_revenue=inc, spend=total, roi=inc / total if total > 0 else float("nan"), per_channel=per)
