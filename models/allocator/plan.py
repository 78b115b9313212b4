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

from omnidecide.models.errors import InputError


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

    FULL_T = 48  # up to this horizon: dense T x T adstock matrices per channel; longer: blocks (below)
    BLOCK = 8  # block length for longer horizons (cost ~ T * BLOCK instead of T^2 per channel)

    def _fast(self) -> tuple:
        """Channel-major constants for stock / value_grad: batched (T x T) matmuls per channel are ~5x faster than
        the equivalent einsum at T = 26."""
        if getattr(self, "_fc", None) is None or self._fc[3].shape[1] != self.T:
            full = (None, None, None)
            if self.T <= self.FULL_T:  # (longer horizons use _blocks, never the T x T matrices)
                D, carry = self._powers()
                full = (np.ascontiguousarray(D.transpose(2, 0, 1)), np.ascontiguousarray(D.transpose(2, 1, 0)),
                        np.ascontiguousarray((carry * self.init).T))
            self._fc = (*full, np.ascontiguousarray((self.beta * np.broadcast_to(self.m2, (self.T, self.C))).T),
                        np.asarray(self.half, float)[:, None], np.asarray(self.slope, float)[:, None])
        return self._fc

    def _blocks(self) -> tuple:
        """Constants of the blocked adstock: within-block decay matrices Dl (C, L, L) and the block-to-block carry
        M (C, nb, nb), M[b, j] = decay^(L * (b - 1 - j)) for j < b, so that the whole recursion is two batched
        matmuls (no Python loop over blocks: ~1.7x faster than a loop at T = 104)."""
        if getattr(self, "_bk", None) is None or self._bk[0] != self.T:
            L = self.BLOCK
            nb = -(-self.T // L)
            d = np.asarray(self.decay, float)[:, None]
            lag = np.arange(L)[:, None] - np.arange(L)[None, :]
            Dl = np.where(lag[None] >= 0, d[:, :, None] ** np.maximum(lag, 0)[None], 0.0)  # (C, L, L)
            dL = d[:, 0] ** L
            bl = np.arange(nb)[:, None] - np.arange(nb)[None, :] - 1
            M = np.where(bl[None] >= 0, dL[:, None, None] ** np.maximum(bl, 0)[None], 0.0)  # (C, nb, nb)
            c0 = dL[:, None] ** np.arange(nb)[None] * np.asarray(self.init, float)[:, None]  # init carried to block b
            self._bk = (self.T, L, nb, Dl, np.ascontiguousarray(Dl.transpose(0, 2, 1)), M,
                        np.ascontiguousarray(M.transpose(0, 2, 1)), (d ** np.arange(1, L + 1))[:, :, None],
                        (d ** np.arange(L, 0, -1))[:, :, None], c0)
        return self._bk

    def _by_block(self, a: np.ndarray) -> np.ndarray:
        """(C, T) -> (C, L, nb): column b is block b (zero-padded at the end)."""
        T, L, nb = self._bk[:3]
        C = a.shape[0]
        if nb * L == T:
            return a.reshape(C, nb, L).transpose(0, 2, 1)
        ap = np.zeros((C, nb, L))
        ap.reshape(C, nb * L)[:, :T] = a
        return ap.transpose(0, 2, 1)

    def _stock_cm(self, xt: np.ndarray) -> np.ndarray:
        """Adstock (C, T) of channel-major spend xt (C, T), the carry-over of init included."""
        if self.T <= self.FULL_T:
            Dt, _, c0 = self._fast()[:3]
            return np.matmul(Dt, xt[:, :, None])[:, :, 0] + c0
        T, L, nb, Dl, _, M, _, pw, _, c0 = self._blocks()
        loc = np.matmul(Dl, self._by_block(xt))  # within-block adstock (C, L, nb)
        enter = np.matmul(M, loc[:, -1, :, None])[..., 0] + c0  # stock carried into each block (C, nb)
        return (loc + pw * enter[:, None, :]).transpose(0, 2, 1).reshape(xt.shape[0], nb * L)[:, :T]

    def _back_cm(self, g: np.ndarray) -> np.ndarray:
        """Adjoint of _stock_cm: back[c, s] = sum_{t >= s} decay^(t - s) g[c, t]."""
        if self.T <= self.FULL_T:
            return np.matmul(self._fast()[1], g[:, :, None])[:, :, 0]
        T, L, nb, _, DlT, _, MT, _, pwb, _ = self._blocks()
        lb = np.matmul(DlT, self._by_block(g))  # within-block (C, L, nb)
        later = np.matmul(MT, lb[:, 0, :, None])[..., 0]  # what the blocks after b send back (C, nb)
        return (lb + pwb * later[:, None, :]).transpose(0, 2, 1).reshape(g.shape[0], nb * L)[:, :T]

    def stock(self, x: np.ndarray) -> np.ndarray:
        return self._stock_cm(np.ascontiguousarray(np.asarray(x, float).reshape(self.T, self.C).T)).T

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
        v, back = self._value_grad_cm(np.asarray(x, float).reshape(self.T, self.C).T)
        return v, back.T

    def _value_grad_cm(self, xt: np.ndarray) -> tuple[float, np.ndarray]:
        """value_grad on channel-major spend xt (C, T); the gradient comes back channel-major too."""
        bm, half, slope = self._fast()[3:]
        a = np.maximum(self._stock_cm(xt), 1e-12)
        rs = np.exp(slope * np.log(a / half))
        inv = 1.0 / (1.0 + rs)
        h = rs * inv
        g = bm * slope * h * inv / a  # d revenue / d adstock
        return float((bm * h).sum() - self._zero()), self._back_cm(g)

    def _zero(self) -> float:
        """Revenue of the carry-over alone (no spend): a constant of the horizon, computed once."""
        if getattr(self, "_z", None) is None:
            carry = self.decay[None, :] ** np.arange(1, self.T + 1)[:, None]
            self._z = float((self.beta * self._h(carry * self.init) * self.m2).sum())
        return self._z

    def channel_revenue(self, c: int, X: np.ndarray) -> np.ndarray:
        """Channel c's total incremental revenue over the horizon for each of G spend profiles X (T, G): (G,)."""
        X = np.asarray(X, float).reshape(self.T, -1)
        return self.channel(c).replicate(X.shape[1]).revenue(X).sum(0)

    def scaled(self, ratio: np.ndarray) -> "Curves":
        """Each channel's effect size multiplied by ratio (C,): curves recalibrated to realised ROI."""
        return Curves(self.decay, self.half, self.slope, self.beta * np.asarray(ratio, float), self.mult, self.init)

    def channel(self, c: int) -> "Curves":
        """Channel c alone (channels are separable)."""
        mult = self.mult[:, [c]] if np.ndim(self.mult) == 2 else self.mult
        return Curves(self.decay[[c]], self.half[[c]], self.slope[[c]], self.beta[[c]], mult, self.init[[c]])

    def replicate(self, n: int) -> "Curves":
        """Every channel repeated n times (channel-major): n independent copies to optimise side by side."""
        mult = np.repeat(self.mult, n, axis=1) if np.ndim(self.mult) == 2 else self.mult
        rep = lambda a: np.repeat(np.asarray(a, float), n)  # noqa: E731
        return Curves(rep(self.decay), rep(self.half), rep(self.slope), rep(self.beta), mult, rep(self.init))

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
        xt = np.asarray(x, float).reshape(self.T, self.C).T
        v, g = self.stack._value_grad_cm(np.tile(xt, (self.K, 1)))  # stack columns are world-major: k * C + c
        return v, g.reshape(self.K, self.C, self.T).sum(0).T

    def channel(self, c: int) -> "Ensemble":
        return Ensemble([w.channel(c) for w in self.worlds])

    def scaled(self, ratio: np.ndarray) -> "Ensemble":
        return Ensemble([w.scaled(ratio) for w in self.worlds])

    def reweighted(self, weights: np.ndarray) -> "Ensemble":
        """Expected revenue under weights over the worlds instead of the plain mean: (K,) or (K, C) (per channel),
        each column summing to 1. World k's channel c is scaled by K * w[k, c] (the stack divides by K); worlds with
        no weight left on any channel are dropped."""
        w = np.asarray(weights, float)
        w = np.broadcast_to(w[:, None] if w.ndim == 1 else w, (self.K, self.C))
        keep = np.flatnonzero(w.max(1) > 1e-6 * w.max())
        K = len(keep)
        return Ensemble([self.worlds[k].scaled(K * w[k] / w[keep].sum(0).clip(1e-300)) for k in keep])

    def replicate(self, n: int) -> "Ensemble":
        return Ensemble([w.replicate(n) for w in self.worlds])

    def channel_revenue(self, c: int, X: np.ndarray) -> np.ndarray:
        """Expected (mean over worlds) incremental revenue of channel c for each spend profile X (T, G): (G,)."""
        X = np.asarray(X, float).reshape(self.T, -1)
        return self.channel(c).replicate(X.shape[1]).revenue(X).sum(0)


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
            raise InputError(f"--roi-floor {channels[c]}={fl[c]:g} cannot be met together with --min {channels[c]}="
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


def _lbfgs(curves: Curves, S: float, x0: np.ndarray, iters: int = 150, m: int = 8, tol: float = 1e-10,
           fixed: np.ndarray | None = None) -> np.ndarray:
    """L-BFGS (two-loop, Armijo backtracking) on a softmax parameterisation: every iterate spends exactly S and stays
    >= 0. `fixed` (C,) channel totals (nan = free): a fixed channel is its own softmax over its T periods scaled to
    its total (its time profile is optimised, its total is exact); the free channels share one softmax scaled to S
    less the fixed totals. Plain numpy: scipy's L-BFGS-B thrashes BLAS threads on a busy 2-core machine."""
    T, C = curves.T, curves.C
    fx = np.zeros(C, bool) if fixed is None else np.isfinite(fixed)
    fr = ~fx
    tot = np.where(fx, np.nan_to_num(fixed if fixed is not None else np.zeros(C)), 0.0)
    tot[fr] = max(S - tot[fx].sum(), 0.0)
    x0 = np.asarray(x0, float).reshape(T, C)
    norm = max(curves.value_grad(x0)[0], 1.0)

    def probs(u):
        if not fx.any():  # budget only: one softmax over every cell
            e = np.exp(u - u.max())
            return e / e.sum()
        if not fr.any():
            e = np.exp(u - u.max(0))
            return e / e.sum(0)
        p = np.empty_like(u)
        if fx.any():
            e = np.exp(u[:, fx] - u[:, fx].max(0))
            p[:, fx] = e / e.sum(0)
        if fr.any():
            e = np.exp(u[:, fr] - u[:, fr].max())
            p[:, fr] = e / e.sum()
        return p

    def f(u):
        u = u.reshape(T, C)
        p = probs(u)
        v, g = curves.value_grad(p * tot)
        gx = g * tot
        pg = p * gx
        mean = pg.sum() if not fx.any() else np.where(fx, pg.sum(0), pg[:, fr].sum() if fr.any() else 0.0)
        return -v / norm, (-(pg - p * mean) / norm).ravel()

    share = np.where(tot > 0, x0 / np.where(tot > 0, tot, 1.0), 0.0)
    u = np.log(np.maximum(share, 1e-12)).ravel()
    fu, gu = f(u)
    hist = []  # (s, y, 1 / y.s)
    for _ in range(iters):
        q = gu.copy()
        alphas = []
        for s_, y_, r_ in reversed(hist):
            a = r_ * (s_ @ q)
            alphas.append(a)
            q -= a * y_
        if hist:
            q *= 1.0 / (hist[-1][2] * (hist[-1][1] @ hist[-1][1]))
        else:
            q /= max(np.abs(q).max(), 1e-12)
        for (s_, y_, r_), a in zip(hist, reversed(alphas)):
            q += s_ * (a - r_ * (y_ @ q))
        d = -q
        slope = gu @ d
        if slope >= 0:  # not a descent direction: restart from the gradient
            hist = []
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
        ys = y_ @ s_
        if ys > 1e-12:
            hist.append((s_, y_, 1.0 / ys))
            if len(hist) > m:
                hist.pop(0)
        done = abs(fu - fn) <= tol * max(abs(fu), 1e-12)
        u, fu, gu = un, fn, gn
        if done:
            break
    return probs(u.reshape(T, C)) * tot


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


def _capped_ascent(curves: Curves, S: float, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray, iters: int = 20,
                   tol: float = 2e-5) -> np.ndarray:
    """Spectral projected-gradient ascent on {x >= 0, lo <= channel totals <= hi, sum x = S} (exact projection)."""
    T, C = curves.T, curves.C
    scale = S / (T * C)
    Sz, loz, hiz = S / scale, lo / scale, hi / scale
    z = project_capped(np.asarray(x0, float) / scale, Sz, loz, hiz)
    v, g = curves.value_grad(z * scale)
    g = g * scale
    step = 1.0 / max(np.abs(g).max(), 1e-12)
    for _ in range(iters):
        # Frank-Wolfe gap: the best feasible plan for the linearised revenue minus the current one (0 at a KKT point)
        best = g.max(0)
        y, left = loz.copy(), min(Sz, hiz.sum()) - loz.sum()
        for c in np.argsort(-best):
            add = min(hiz[c] - loz[c], left)
            y[c], left = y[c] + add, left - add
        if best @ y - (g * z).sum() <= tol * max(abs(v), 1e-9):
            break
        while True:
            zn = project_capped(z + step * g, Sz, loz, hiz)
            vn, gn = curves.value_grad(zn * scale)
            if vn >= v + 1e-4 * (g * (zn - z)).sum() or step < 1e-12:
                break
            step *= 0.3
        gn = gn * scale
        dz, dg = zn - z, gn - g
        z, v, g = zn, vn, gn
        curv = -(dz * dg).sum()
        step = (dz * dz).sum() / curv if curv > 1e-18 else step * 2
    return z * scale


def _active_set(curves: Curves, S: float, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray, iters: int) -> np.ndarray:
    """Maximise revenue s.t. sum x = S, lo <= channel totals <= hi: L-BFGS with the channels at a bound held at it
    exactly (their own softmax) and the rest sharing what is left; a channel leaves its bound when its marginal ROI
    says it wants to (at its max but below the free channels' marginal ROI, or at its min but above it), a free
    channel that crosses a bound is held at it. Starts from the bounds x0 violates."""
    C = curves.C
    S = min(S, float(hi.sum()))
    eps = 1e-9 * max(S, 1.0)
    y0 = np.asarray(x0, float).sum(0)
    fixed = np.full(C, np.nan)
    fixed[y0 >= hi - eps] = hi[y0 >= hi - eps]
    low = (lo > 0) & (y0 <= lo + eps)
    fixed[low] = lo[low]
    x = project_capped(x0, S, lo, hi)
    pinned = lo >= hi - eps  # min == max: never released
    for _ in range(2 * C + 2):
        fr = ~np.isfinite(fixed)
        if not fr.any() and abs(fixed.sum() - S) > eps:  # every channel held but the totals miss S: free one
            j = int(np.argmax(np.where(~pinned & (fixed < hi - eps), 1.0, 0.0)))
            fixed[j], fr[j] = np.nan, True
        x = _lbfgs(curves, S, x, iters, fixed=fixed)
        _, g = curves.value_grad(x)
        y = x.sum(0)
        marg = np.where(y > eps, (x * g).sum(0) / np.maximum(y, 1e-300), g.max(0))
        fr = ~np.isfinite(fixed)
        lam = (x[:, fr] * g[:, fr]).sum() / x[:, fr].sum() if fr.any() and x[:, fr].sum() > eps else (
            g[:, fr].max() if fr.any() else np.median(marg))
        over, under = fr & (y > hi + eps), fr & (y < lo - eps)
        if over.any() or under.any():
            fixed[over], fixed[under] = hi[over], lo[under]
            continue
        held = np.isfinite(fixed) & ~pinned
        viol = np.where(held & (fixed >= hi - eps), lam - marg, 0.0) + np.where(held & (fixed <= lo + eps) & (fixed < hi - eps),
                                                                                  marg - lam, 0.0)
        if viol.max() <= 1e-6 * max(abs(lam), 1e-12):
            break
        fixed[int(np.argmax(viol))] = np.nan
    return x


def _roi_cap(curves: Curves, c: int, xc: np.ndarray, floor: float, rtol: float = 1e-4, levels: int = 24) -> float:
    """The largest total for channel c whose best expected ROI meets `floor` (0 if none is found), searched below the
    channel's current total sum(xc), where it fails. Channels are separable, and at a given total the time profile
    that maximises the channel's revenue also maximises its ROI, so `ROI >= floor` is `total <= this cap`.
    f(y) = V(y) - floor * y, V(y) = the channel's best revenue at total y (its own T-cell time profile re-optimised),
    f'(y) = its marginal ROI - floor. Safeguarded Newton aiming a little past the root (below it from a failing
    total, above it from a passing one), so that each step lands on the other side and the bracket closes in a step
    or two once Newton is close (aiming below from both sides left a passing total that Newton could not move, and
    bisection took ~5 more profile solves); if that finds no passing total (an S-shaped curve, whose ROI first rises,
    can pass only on a narrow interval or nowhere), `levels` totals down to 1/300 of the start are solved side by side
    and Newton/bisection refines between the largest passing one and the next failing one. `xc`: the channel's best
    known time profile at its current total (a converged one makes the first profile solve nearly free)."""
    sub = curves.channel(c)
    y0 = float(np.sum(xc))

    def f(y, prof):
        x = _lbfgs(sub, y, np.maximum(prof, 1e-12) * y, 60, tol=1e-10)
        v, g = sub.value_grad(x)
        return v - floor * y, float((x * g).sum() / y) - floor, x / y

    def refine(good, bad, y, fy, dy, prof):
        for _ in range(20):
            if good > 0 and bad - good <= rtol * bad:
                break
            yn = (y - fy / dy) * (1 - 0.5 * rtol if fy < 0 else 1 + 0.5 * rtol) if dy < 0 else np.nan
            if not good < yn < bad:
                if good <= 0:
                    return 0.0
                yn = 0.5 * (good + bad)
            y = yn
            fy, dy, prof = f(y, prof)
            good, bad = (y, bad) if fy >= 0 else (good, y)
        return good

    prof0 = np.asarray(xc, float).reshape(-1, 1) / max(y0, 1e-300)
    fy, dy, prof = f(y0, prof0)
    if fy >= 0:
        return y0
    good = refine(0.0, y0, y0, fy, dy, prof)
    if good > 0:
        return good
    ys = np.geomspace(y0, y0 / 300, levels + 1)[1:]
    many = sub.replicate(levels)
    x = _lbfgs(many, float(ys.sum()), np.maximum(prof0, 1e-12) * ys, 100, tol=1e-10, fixed=ys)
    ok = many.revenue(x).sum(0) >= floor * ys
    if not ok.any():
        return 0.0
    i = int(np.argmax(ok))
    if i == 0:
        bad, bprof = y0, prof0
    else:
        bad, bprof = ys[i - 1], x[:, [i - 1]] / ys[i - 1]
    fy, dy, prof = f(bad, bprof)
    return max(refine(ys[i], bad, bad, fy, dy, prof), ys[i])


NEAR_FLOOR = 0.01  # a channel this close below its ROI floor gets its time profile re-optimised before it is capped:
# the polished joint plan's profiles are (near) optimal for their totals, so a re-optimised profile lifts the ROI by far
# less than this and a channel further below cannot pass by it (its cap search re-optimises the profile anyway)


def optimise(curves: Curves, cons: Constraints, x0: np.ndarray | None = None, maxiter: int = 40, iters: int = 100,
             tol: float = 2e-5) -> np.ndarray:
    """Full-horizon nonlinear optimiser. Budget only: L-BFGS on the softmax parameterisation + projected-gradient
    polish. With --min/--max: an active-set L-BFGS from the budget-only solution (channels at a bound held there
    exactly), polished by projected gradient with an exact projection onto the capped set. --roi-floor: caps on the
    floored channels' totals (see _roi_cap), re-solved until they settle (`maxiter` bounds the rounds). Then made
    exactly feasible."""
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
    cap = hi.copy()
    for _ in range(max(min(maxiter, 4), 1)):
        x = _active_set(curves, S, lo, cap, x, iters)
        x = _capped_ascent(curves, min(S, float(cap.sum())), lo, cap, x, 20, tol)
        y = x.sum(0)
        rev = curves.revenue(x).sum(0)
        low = np.isfinite(fl) & (y > 0) & (rev < fl * y)
        prof = x.copy()  # each channel's best time profile at its total, where _roi_cap starts
        for c in np.flatnonzero(low & (rev >= (1 - NEAR_FLOOR) * fl * y)):
            sub = curves.channel(c)  # first its own time profile re-optimised at its total (same total: feasible)
            xc = _lbfgs(sub, y[c], x[:, [c]], 150, tol=1e-12)
            if sub.revenue(xc).sum() >= fl[c] * y[c]:
                x[:, c], low[c] = xc[:, 0], False
            prof[:, c] = xc[:, 0]
        if not low.any():
            break
        for c in np.flatnonzero(low):
            cap[c] = min(max(_roi_cap(curves, c, prof[:, c], fl[c] * (1 + 1e-6)), lo[c]), cap[c])
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
