"""Robust planning: move budget away from the historical mix only as far as the posterior backs the move.

A marketing-mix history often cannot identify what a channel would return at spend levels it never saw (habitual
spend, spend that co-moves with the season, flights). Maximising the posterior's *expected* revenue then still moves
budget on the strength of draws that disagree. The planner instead maximises

    E_k[R_k(x)] - LAMBDA * sd_k[R_k(x) - R_k(x_hist)]

over the posterior draws k (the planning ensemble): the expected revenue less a penalty on the spread of the gain
over the historical mix `x_hist` (last year's same weeks, scaled to the budget). Where the draws agree that a move
gains, the penalty is small and the plan moves freely; where they disagree (a channel the history does not
identify) moving costs more than it is expected to bring, so the plan stays near history. At x_hist the objective
is the historical mix's expected revenue, so the optimum's expected gain over history is at least LAMBDA standard
deviations of that gain (with LAMBDA = 1 the gain is positive in about 84% of the draws under a normal spread).
LAMBDA is fixed a priori at one standard deviation; it is not tuned to any benchmark family.

Which plan is served is then a decision among candidates (`choose`): the expected-revenue optimum, the penalised
one (`penalised_plan`: a short projected-gradient ascent from last year's mix inside the trust region, 15-30 ms; the
full solve from the even split took 120-320 ms and was the plan's slow path), the two plans a planner would otherwise
run (last year's mix and the equal split) and blends between them. A
spreadsheet plan is the floor the served plan must clear, so the choice is a chance-constrained one: the candidate
with the highest expected revenue among those whose revenue beats the better of the two spreadsheet plans in at least
FLOOR_PROB of the draws (the same 10th percentile the 80% intervals report); if none does, the one that comes
closest (highest 10th percentile of that gain). The draws come from every model form the history supports
(models/allocator/forms.py), so a move that depends on which form is right does not pass. The gains are judged on the
channels the history identifies: what the draws credit to a channel they cannot tell from zero comes from its prior
and the model form, so it may not decide which plan clears the floor (`choose`).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from omnidecide.models.allocator.constraints import Constraints, enforce_roi_floor, project_plan
from omnidecide.models.allocator.curves import Ensemble
from omnidecide.models.allocator.solvers import capped_ascent
from omnidecide.models.response import hill_and_derivative

LAMBDA = 1.0
FLOOR_PROB = 0.9  # the served plan must beat both spreadsheet plans in this share of the draws (their 10th percentile)
BLENDS = (0.25, 0.5, 0.75)  # candidate steps from a spreadsheet plan towards an optimised one
TRUST = np.log(2.0)  # a channel the draws fully agree on may double or halve its historical total; 0 = stays put
PEN_ITERS = 30  # projected-gradient steps of the penalised optimum from last year's mix (each ~0.1 ms x 2 to 3)
IDENT_MIN = 0.1  # below: the draws cannot tell the channel's revenue from zero (10th pct < ~5% of the 90th)
COLLINEAR_R2 = 0.9  # at or above: the other channels' spend explains this one's (variance inflation factor >= 10)


def _zero_col(ens: Ensemble) -> np.ndarray:
    """(K * C,) each draw's and channel's revenue from the carry-over alone (no spend) over the horizon."""
    st = ens.stack
    carry = st.decay[None, :] ** np.arange(1, ens.T + 1)[:, None]
    return (st.beta * st.h(carry * st.init) * st.m2).sum(0)


def _per_draw(ens: Ensemble, x: np.ndarray, zero: np.ndarray, grad: bool = False, by_channel: bool = False):
    """Each draw's incremental revenue of plan x (K,) (by_channel: (K, C)), and with grad its gradient (K, T, C): the
    ensemble's stacked curves evaluated once (no per-draw loop)."""
    st, K, C, T = ens.stack, ens.K, ens.C, ens.T
    xt = np.tile(np.asarray(x, float).reshape(T, C).T, (K, 1))
    h, dh = hill_and_derivative(st._stock_cm(xt), np.asarray(st.half, float)[:, None],
                                np.asarray(st.slope, float)[:, None])
    v = K * ((st._bm * h).sum(1) - zero).reshape(K, C)
    v = v if by_channel else v.sum(1)
    if not grad:
        return v
    return v, K * st._back_cm(st._bm * dh).reshape(K, C, T).transpose(0, 2, 1)


def draw_revenue(ens: Ensemble, x: np.ndarray) -> np.ndarray:
    """(K,) incremental revenue of plan x in each draw."""
    return _per_draw(ens, x, _zero_col(ens))


class RobustObjective:
    """The penalised objective with the optimiser's interface (T, C, value_grad, revenue, channel, ...); revenue
    and the per-channel views stay the plain expectation (ROI floors and reports are on expected revenue)."""

    def __init__(self, ens: Ensemble, x_ref: np.ndarray, lam: float = LAMBDA):
        self.ens, self.lam = ens, float(lam)
        self.T, self.C, self.K = ens.T, ens.C, ens.K
        self._zero_col = _zero_col(ens)
        self.ref = self.per_world(np.asarray(x_ref, float))[0]
        self.eps = 1e-3 * max(abs(self.ref.mean()), 1.0)  # smooths the sd at x_ref (a kink there otherwise)

    def per_world(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each draw's incremental revenue of plan x (K,) and its gradient (K, T, C)."""
        return _per_draw(self.ens, x, self._zero_col, grad=True)

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = self.per_world(x)
        d = v - self.ref
        dc = d - d.mean()
        sd = np.sqrt((dc ** 2).mean() + self.eps ** 2)
        gbar = g.mean(0)
        gsd = np.einsum("k,ktc->tc", dc, g - gbar) / (self.K * sd)
        return float(v.mean() - self.lam * sd), gbar - self.lam * gsd

    def revenue(self, x: np.ndarray) -> np.ndarray:
        return self.ens.revenue(x)

    def channel(self, c: int) -> Ensemble:
        return self.ens.channel(c)

    def channel_revenue(self, c: int, X: np.ndarray) -> np.ndarray:
        return self.ens.channel_revenue(c, X)


def penalised_plan(ens: Ensemble, x_hist: np.ndarray, cons: Constraints, channels: list[str]) -> np.ndarray:
    """The penalised optimum, approximately: PEN_ITERS steps of projected-gradient ascent on RobustObjective from
    last year's mix (the objective's anchor, where it equals that mix's expected revenue, so each step can only add a
    move the draws back), inside `cons` (the trust region). It is one candidate of `choose`, which checks it on every
    draw, so an unconverged ascent costs expected revenue, never the floor; a full solve from the even split took
    120-320 ms CPU on the seasonal worlds (docs/BENCHMARKS.md) against the plan's 100 ms target."""
    obj = RobustObjective(ens, x_hist)
    lo, hi, _ = cons.arrays(ens.C)
    x0 = project_plan(np.asarray(x_hist, float), cons)
    x = capped_ascent(obj, min(cons.spendable, float(hi.sum())), lo, hi, x0, PEN_ITERS, 2e-5)
    return project_plan(enforce_roi_floor(x, obj, cons, channels), cons)


def historical_plan(history_spend: np.ndarray, periods: int, start: int, spendable: float) -> np.ndarray:
    """Last year's spend in the same weeks (periods start .. start+periods-1 after the history), scaled to the
    spendable budget: the mix and timing the business already runs. An empty last year gives the even split."""
    n, C = history_spend.shape
    rows = []
    for t in range(start, start + periods):
        i = n - 52 + t
        while i >= n:
            i -= 52
        rows.append(history_spend[max(i, 0)])
    x = np.array(rows, float).reshape(periods, C)
    tot = x.sum()
    if tot <= 0:
        return np.full((periods, C), spendable / max(periods * C, 1))
    return x * (spendable / tot)


def identification(ens: Ensemble, x_ref: np.ndarray) -> np.ndarray:
    """(C,) in [0, 1]: 1 - (q90 - q10) / (q90 + q10) of each channel's revenue over the posterior draws under the
    historical mix (1 = the draws agree on what the channel returns at the spend the history saw; 0 = its 10th
    percentile is 0)."""
    ref = ens.per_world(x_ref).sum(1)
    q10, q90 = np.percentile(ref, [10, 90], axis=0)
    return np.clip(np.where(q90 + q10 > 0, 1 - (q90 - q10) / np.maximum(q90 + q10, 1e-12), 0.0), 0.0, 1.0)


def trust_region(cons: Constraints, x_ref: np.ndarray, ident: np.ndarray) -> Constraints:
    """The request's rules tightened to a trust region around the historical mix that widens with identification:
    channel c's total within y_c * exp(-/+ TRUST * ident_c) (y = its historical total at this budget). The user's own
    --min / --max win where they conflict; a region the rules make infeasible is dropped (the penalty still holds).
    A channel with a --roi-floor keeps the user's lower bound: the floor may cut it to no spend ("else less or no
    spend"), and the region's lower edge, enforced as if it were a --min, made such a request fail naming a --min
    nobody had set."""
    lo_u, hi_u, fl = cons.arrays(len(ident))
    y = np.asarray(x_ref, float).sum(0)
    lo = np.where(np.isfinite(fl), lo_u, np.minimum(np.maximum(lo_u, y * np.exp(-TRUST * ident)), hi_u))
    hi = np.maximum(np.minimum(hi_u, y * np.exp(TRUST * ident)), lo_u)
    return _tightened(cons, lo, hi)


def _tightened(cons: Constraints, lo: np.ndarray, hi: np.ndarray) -> Constraints:
    """`cons` with channel totals over the periods still to plan within [lo, hi] (what earlier periods spent is added
    back); `cons` itself when no plan could spend the budget within them."""
    if lo.sum() > cons.spendable + 1e-6 or hi.sum() < cons.spendable - 1e-6:
        return cons
    done = np.zeros(len(lo)) if cons.spent_per_channel is None else np.asarray(cons.spent_per_channel, float)
    return replace(cons, lo=lo + done, hi=hi + done)


def collinear(spend: np.ndarray, flat: float = 1e-3) -> np.ndarray:
    """(C,) bool: channels whose weekly spend the other channels' spend explains (R^2 >= COLLINEAR_R2 in a linear fit
    with an intercept; the textbook variance-inflation cut of 10), or that never varied. A history whose budget was
    split by a fixed rule every week shows what the channels return together, not how to split them: two worlds
    that credit the channels differently write the same file (bench/allocator_floor.py). A channel that never varied
    (coefficient of variation below `flat`: a fixed fee every week, or nothing ever spent) is collinear with the
    baseline's level. The draws of such fits can still agree with each other (every bootstrap fit settles on what
    the priors favour), so the draws' `identification` does not see it; the history's own design does."""
    S = np.asarray(spend, float)
    out = S.std(0) <= flat * np.maximum(np.abs(S.mean(0)), 1e-9)
    for c in np.flatnonzero(~out):
        y = S[:, c]
        X = np.column_stack([np.ones(len(S)), np.delete(S, c, axis=1)])
        resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
        out[c] = 1.0 - resid.var() / y.var() >= COLLINEAR_R2
    return out


def hold(cons: Constraints, x_ref: np.ndarray, held: np.ndarray) -> Constraints:
    """The request's rules with each `held` channel at its total in `x_ref` (its historical total at this budget).
    The user's --min / --max win; an infeasible hold is dropped. A held channel with a --roi-floor is held at most at
    that total: its floor may cut it (see `trust_region`)."""
    held = np.asarray(held, bool)
    if not held.any():
        return cons
    lo_u, hi_u, fl = cons.arrays(len(held))
    y = np.asarray(x_ref, float).sum(0)
    lo = np.where(held & ~np.isfinite(fl), np.clip(y, lo_u, hi_u), lo_u)
    hi = np.where(held, np.clip(y, lo_u, hi_u), hi_u)
    return _tightened(cons, lo, hi)


def pin_unidentified(cons: Constraints, x_ref: np.ndarray, ident: np.ndarray) -> Constraints:
    """The request's rules with every channel the history does not identify (identification < IDENT_MIN) held at its
    historical total: a fit that credits a channel with nothing, in every draw, has usually absorbed its effect into
    something else (the season, another channel that co-moves), and cutting it on that evidence is the bet the issue
    forbids; raising it is no better backed."""
    return hold(cons, x_ref, np.asarray(ident) < IDENT_MIN)


def channel_uncertainty(ens: Ensemble, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel over the posterior draws: expected revenue of plan x and its 80% interval (10th-90th pct)."""
    per = ens.per_world(x).sum(1)  # (K, C)
    return {"mean": per.mean(0), "p10": np.percentile(per, 10, axis=0), "p90": np.percentile(per, 90, axis=0)}


def equal_plan(T: int, C: int, spendable: float) -> np.ndarray:
    """The spreadsheet plan: the budget split evenly over channels and periods."""
    return np.full((T, C), spendable / max(T * C, 1))


def candidates(optimised: dict[str, np.ndarray], anchors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The optimised plans, the anchors, each optimised plan blended with each anchor at BLENDS, and the anchors
    blended with each other at BLENDS. The last are the fallback where the draws cannot rank the spreadsheet plans
    (some favour the equal split, some last year's mix): a blend's worst-draw loss to the better anchor is then about
    half the two plans' gap less what mixing gains on a concave response, an anchor's the whole gap, so `choose`
    (highest 10th percentile when nothing passes) serves the blend. What that guarantees on the true response, if it
    is concave in the plan: at least the blend-weighted mean of the two spreadsheet plans -- never below the worse,
    but not the better one; an S-curve channel can break even that (docs/BENCHMARKS.md)."""
    out = {**optimised, **anchors}
    for on, xo in optimised.items():
        for an, xa in anchors.items():
            for t in BLENDS:
                out[f"{t:.2f} {on} + {1 - t:.2f} {an}"] = t * xo + (1 - t) * xa
    names = list(anchors)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for t in BLENDS:
                out[f"{t:.2f} {a} + {1 - t:.2f} {b}"] = t * anchors[a] + (1 - t) * anchors[b]
    return out


def choose(ens: Ensemble, plans: dict[str, np.ndarray], anchors: list[str],
           ident: np.ndarray | None = None) -> tuple[str, dict]:
    """The chance-constrained choice (module docstring): per draw k, each plan's gain over the better anchor
    max_a R_k(a); serve the plan of highest mean revenue whose gain is >= 0 at the (1 - FLOOR_PROB) quantile, else
    the plan whose quantile is highest. Returns its name and, per plan, the mean revenue and the gain's quantile.

    ident (C,): the gains are then judged on the channels the history identifies (identification >= IDENT_MIN) only.
    Why: a channel the draws cannot tell from zero has the revenue its prior and model form give it, not what the
    history shows -- on the seasonal family such channels (spend that follows the season, flights) were credited 3.6x
    to 36x their true revenue, and an anchor that moved budget into them (the equal split) won the guard on that
    credit alone (docs/BENCHMARKS.md). The optimised plans already hold them at their historical totals
    (`pin_unidentified`); here their revenue stops deciding which plan clears the floor. A change in such a
    channel's spend then counts as neither gain nor loss. With no identified channel there is no such evidence and the
    whole revenue is judged, as without ident. The mean revenue that ranks the passing plans stays the whole
    revenue."""
    names = list(plans)
    zero = _zero_col(ens)
    per = np.stack([_per_draw(ens, plans[n], zero, by_channel=True) for n in names], 1)  # (K, P, C)
    R = per.sum(2)
    keep = None if ident is None else np.asarray(ident) >= IDENT_MIN
    G = R if keep is None or not keep.any() else (per * keep).sum(2)
    floor = G[:, [names.index(a) for a in anchors]].max(1)
    q = np.percentile(G - floor[:, None], 100 * (1 - FLOOR_PROB), axis=0)
    mean = R.mean(0)
    ok = q >= 0
    best = int(np.argmax(np.where(ok, mean, -np.inf))) if ok.any() else int(np.argmax(q))
    return names[best], {n: {"expected_revenue": float(m), "gain_q10": float(g)} for n, m, g in zip(names, mean, q)}
