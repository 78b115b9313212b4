"""Optimisers of a plan on response curves (or an ensemble of them) under the constraints.

`best_plan` is the entry point: `optimise` from the even split and any extra starts (Hill curves with slope > 1 are
not concave), the best feasible plan kept. Budget only: L-BFGS on a softmax parameterisation (every iterate spends
exactly S) + projected-gradient polish. With --min/--max: an active-set L-BFGS, polished by projected gradient with
an exact projection onto the capped set. --roi-floor: caps on the floored channels' totals (`_roi_cap`).
"""
from __future__ import annotations

import numpy as np

from omnidecide.models.allocator.constraints import (Constraints, _simplex, enforce_roi_floor, project_capped,
                                                     project_plan)
from omnidecide.models.allocator.curves import Curves


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



def capped_ascent(curves: Curves, S: float, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray, iters: int = 20,
                  tol: float = 2e-5) -> np.ndarray:
    """Spectral projected-gradient ascent on {x >= 0, lo <= channel totals <= hi, sum x = S} (exact projection)."""
    T, C = curves.T, curves.C
    if S <= 0:  # nothing may be spent (every channel held at 0 by --max or its ROI floor): the only plan is none
        return np.zeros((T, C))
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
    pinned = lo >= hi - 1e-9 * max(S, 1.0)
    if pinned.any():
        # a channel held at its total (min == max: the robust plan's pinned channels, the loop's unchecked ones): the
        # budget-only solve would spend on it as if free and the active set then move it back, so the free channels
        # share what the pinned ones leave (the pinned keep their totals, their time profiles are optimised)
        x = _lbfgs(curves, S, np.asarray(x0, float), iters, fixed=np.where(pinned, lo, np.nan))
    else:
        x = _lbfgs(curves, S, np.asarray(x0, float), iters)
        x = _ascent(curves, S, x, 20, tol)  # short projected-gradient polish: lets cells reach exactly zero
    if not ((lo > 0).any() or np.isfinite(hi).any() or np.isfinite(fl).any()):
        return x
    cap = hi.copy()
    for _ in range(max(min(maxiter, 4), 1)):
        x = _active_set(curves, S, lo, cap, x, iters)
        x = capped_ascent(curves, min(S, float(cap.sum())), lo, cap, x, 20, tol)
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
        v = curves.value_grad(x)[0]  # the objective itself (expected revenue, or its robust form)
        if v > best_v:
            best, best_v = x, v
    return best


