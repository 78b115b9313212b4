"""Planning a budget request as named steps, on a fitted allocator (models/allocator/artifact.py).

`plan(alloc, ...)`: validate the flags (constraints.request_constraints) -> read the actuals -> the state after
them -> update the planning ensemble from measured channel revenue -> the planner's full-horizon plan on the
ensemble, robust by default (models/allocator/robust.py: the expected-revenue optimum, channels the draws cannot
tell from zero held at their historical total, is served only where it beats last year's mix and the equal split in
90% of the draws (judged on the channels the history identifies), else the plan of highest expected revenue that
does among the penalised optimum (a short ascent from last year's mix), those two spreadsheet plans and blends) -> the agent's period-by-period correction (only where training let it serve) -> made exactly
feasible and rounded to cents -> the PLAN table (with each cell's 80% interval over the posterior draws and each
channel's identification) and its summary.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from omnidecide.models.allocator.actuals import Actuals, Updating, channel_ratio, draw_weights, parse_actuals
from omnidecide.models.allocator.constraints import (FLAGS, Constraints, Names, after_actuals, enforce_roi_floor,
                                                     project_plan, request_constraints)
from omnidecide.models.allocator.curves import Curves, Ensemble
from omnidecide.models.allocator.robust import (candidates, channel_uncertainty, choose, collinear, equal_plan,
                                                historical_plan, hold, identification, penalised_plan,
                                                pin_unidentified, trust_region)
from omnidecide.models.allocator.solvers import best_plan
from omnidecide.models.response import geometric_adstock

RESERVE = "reserve"


@dataclass
class PlanResult:
    table: pd.DataFrame  # period, channel, spend, expected_revenue
    spend: np.ndarray  # (T, C), including actual periods
    summary: dict
    n_actual: int = 0
    ensemble: Ensemble | None = None  # the planning ensemble over the planned periods (after any update)
    historical: np.ndarray | None = None  # last year's mix over the planned periods, at this budget
    identification: np.ndarray | None = None  # (C,)


@dataclass
class PlanSummary:
    incremental_revenue: float
    spend: float
    roi: float
    per_channel: dict = field(default_factory=dict)


@dataclass
class Updated:
    """The planning ensemble and point curves for the rest of the horizon after the actuals, and what changed them."""

    ens: Ensemble
    rest: Curves
    realised_ratio: float | None = None  # realised / expected media revenue (from total revenue), all channels
    channel_ratio: np.ndarray | None = None
    ess: np.ndarray | None = None


def summarise(x: np.ndarray, curves, channels: list[str]) -> PlanSummary:
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


def to_cents(x: np.ndarray) -> np.ndarray:
    """Cents, rounded down (the written plan never exceeds the budget), then each channel gets back the whole cents
    its cells lost, on the cells that lost most: no channel ends above its unrounded total (so --max, the budget and
    the ROI floor still hold) and the plan spends within a cent per channel of what was planned."""
    x = np.asarray(x, float)
    out = np.floor(x * 100) / 100
    lost = np.clip((x - out) * 100, 0.0, 1.0)  # per cell, in cents
    for c in range(x.shape[1]):
        k = int(np.floor(lost[:, c].sum() + 1e-9))
        if k:
            top = np.argsort(-lost[:, c], kind="stable")[:k]
            out[top, c] = np.round(out[top, c] + 0.01, 2)
    return out


def state_after(alloc, act: Actuals, periods: int, upd: Updating) -> Updated:
    """The rest of the horizon as the actuals left it: adstock carried through them (fitted decay for the point
    curves, each draw's own for the ensemble); with total revenue, the realised / expected media ratio; with measured
    channel revenue, the ensemble reweighted (Bayesian update) and each channel's level rescaled."""
    k = act.k
    stock0 = geometric_adstock(alloc.history.spend, alloc.params.decay)[-1]
    init = geometric_adstock(act.spend, alloc.params.decay, stock0)[-1] if k else stock0
    rest = alloc.curves(periods - k, start=k, init=init)
    ratio = None
    if k and act.revenue is not None:  # realised media / expected media over the actual periods
        h = alloc.history
        n = len(h.dates)
        base = alloc.params.baseline_at(h.future_dates(k), np.arange(n, n + k), h.step_days)
        exp_media = alloc.curves(k, init=stock0).media(act.spend).sum()
        if exp_media > 0:
            ratio = float(np.clip((act.revenue.sum() - base.sum()) / exp_media, 0.0, 3.0))
    out = Updated(alloc.ensemble(periods - k, start=k, actual_spend=act.spend), rest, ratio)
    if k and act.channel_revenue is not None:
        past = alloc.ensemble(k)
        expected = None
        if upd.reweight:
            du = draw_weights(past, act.spend, act.channel_revenue, upd)
            out.ens = out.ens.reweighted(du.weights)
            expected = np.einsum("kc,ktc->tc", du.weights, du.expected)
            out.ess = du.ess
        if upd.rescale:
            if expected is None:
                expected = past.revenue(act.spend)
            out.channel_ratio = channel_ratio(act.spend, act.channel_revenue, expected, upd.prior_periods)
            out.ens, out.rest = out.ens.scaled(out.channel_ratio), out.rest.scaled(out.channel_ratio)
    return out


def agent_corrected(alloc, upd: Updated, cons: Constraints, base_plan: np.ndarray, start: int) -> np.ndarray:
    """The residual agent played open loop over the rest of the horizon on the point curves (no measurement noise),
    starting from the realised ratio when total revenue was given."""
    env = alloc.env(upd.rest, cons, start=start, base=base_plan, base_source=upd.ens)
    env.ratio_noise = 0.0
    opts = {"budget_scale": 1.0}
    if upd.realised_ratio is not None:
        opts["ratio"] = np.full(len(alloc.channels), upd.realised_ratio)
    obs, _ = env.reset(options=opts)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(alloc.act(obs))
    return env.spend


COLUMNS = ["period", "channel", "spend", "expected_revenue", "revenue_p10", "revenue_p90", "identification"]


def plan_table(alloc, act: Actuals, x: np.ndarray, ens: Ensemble, periods: int, budget: float, reserve: float,
               ident: np.ndarray) -> tuple[pd.DataFrame, float]:
    """The PLAN rows: the actual periods (expected revenue on the plain ensemble), the planned ones, the reserve row;
    each with the 10th and 90th percentile of its revenue over the posterior draws and its channel's identification."""
    k = act.k
    rows = []
    parts = [(0, act.spend, alloc.ensemble(k))] if k else []
    for off, xs, e in parts + [(k, x, ens)]:
        rev, per = e.revenue(xs), e.per_world(xs)
        p10, p90 = np.percentile(per, 10, axis=0), np.percentile(per, 90, axis=0)
        for t in range(len(xs)):
            for j, c in enumerate(alloc.channels):
                rows.append((off + t + 1, c, float(xs[t, j]), round(float(rev[t, j]), 2), round(float(p10[t, j]), 2),
                             round(float(p90[t, j]), 2), round(float(ident[j]), 3)))
    res_amt = float(np.floor(budget * reserve * 100) / 100)
    if res_amt > 0:
        rows.append((1, RESERVE, res_amt, 0.0, 0.0, 0.0, float("nan")))
    table = pd.DataFrame(rows, columns=COLUMNS)
    if table["spend"].sum() > budget + 1e-6:  # cannot happen: projection + rounding down; a bug if it does
        raise RuntimeError(f"plan spends {table['spend'].sum():,.2f} > budget {budget:,.2f}")
    return table, res_amt


def plan(alloc, budget: float, periods: int, *, reserve: float = 0.15, lo: dict | None = None, hi: dict | None = None,
         roi_floor: dict | None = None, actuals: pd.DataFrame | None = None, use_agent: bool | None = None,
         updating: Updating | None = None, robust: bool = True, names: Names = FLAGS) -> PlanResult:
    """use_agent: None = as training decided (the agent is served only if it beat the planner on held-out worlds).
    updating: how measured channel revenue in the actuals updates the planning ensemble (default `Updating()`).
    robust: False = maximise the posterior's expected revenue alone (the planner before issue K; for comparison).
    The robust objective guards against what the *history* cannot identify; once actuals carry measured channel
    revenue, the ensemble has been updated on that evidence (reweighted and rescaled), and re-planning maximises its
    expected revenue as before (anchoring every weekly re-plan to last year's mix cost 0.16 of the oracle in the
    closed loop, docs/BENCHMARKS.md). names: what errors call the inputs (the CLI's flags, or /allocate's fields)."""
    channels = alloc.channels
    if use_agent is None:
        use_agent = bool(alloc.info.get("agent_enabled", True))
    use_agent = bool(use_agent and alloc.policy is not None)
    cons = request_constraints(channels, budget, periods, reserve, lo, hi, roi_floor, names)  # flags, then the file
    act = (parse_actuals(actuals, channels, periods, names.actuals, names.periods) if actuals is not None
           else Actuals.none(len(channels)))
    cons = after_actuals(cons, act.spend)
    upd = state_after(alloc, act, periods, updating or Updating())
    x_hist = historical_plan(alloc.history.spend, periods - act.k, act.k, cons.spendable)
    held = collinear(alloc.history.spend)  # their split is not in the history: identification 0, held where robust
    ident = np.where(held, 0.0, identification(upd.ens, x_hist))
    robust = robust and act.channel_revenue is None
    if robust:  # every candidate below, the spreadsheet plans included, keeps them at their historical totals
        cons = hold(cons, x_hist, held)
    x = best_plan(upd.ens, pin_unidentified(cons, x_hist, ident) if robust else cons, channels=channels)
    chosen = floor_gain = None
    if robust:  # a choice among the optimised plans, the spreadsheet plans and blends (robust.choose)
        anchors = {"historical mix": x_hist, "equal split": equal_plan(periods - act.k, len(channels), cons.spendable)}
        # under the request's rules, --roi-floor included: an anchor that spends on a channel its floor cuts would
        # out-earn every plan that obeys the floor, win the guard, and then lose that spend to the floor (unallocated)
        anchors = {k: project_plan(enforce_roi_floor(project_plan(v, cons), upd.ens, cons, channels), cons)
                   for k, v in anchors.items()}
        opt = {"expected-revenue optimum": x}
        chosen, scores = choose(upd.ens, candidates(opt, anchors), list(anchors), ident)
        if chosen != "expected-revenue optimum":  # it has the highest expected revenue: when it passes, it is served
            opt["penalised optimum"] = penalised_plan(upd.ens, x_hist, trust_region(cons, x_hist, ident), channels)
            plans = candidates(opt, anchors)
            chosen, scores = choose(upd.ens, plans, list(anchors), ident)
            x = plans[chosen]
        floor_gain = scores[chosen]["gain_q10"]
    if use_agent:
        x = agent_corrected(alloc, upd, cons, x, act.k)
    x = to_cents(project_plan(enforce_roi_floor(x, upd.ens, cons, channels), cons))
    unc = channel_uncertainty(upd.ens, x)
    table, res_amt = plan_table(alloc, act, x, upd.ens, periods, budget, reserve, ident)
    full_spend = np.vstack([act.spend, x])
    s = summarise(x, upd.ens, channels)
    hist_rev = upd.ens.revenue(x_hist).sum(0)
    for j, c in enumerate(channels):
        s.per_channel[c].update({"revenue_p10": float(unc["p10"][j]), "revenue_p90": float(unc["p90"][j]),
                                 "identification": float(ident[j]),
                                 "historical_spend": float(x_hist[:, j].sum()),
                                 "historical_revenue": float(hist_rev[j])})
    summary = {"budget": budget, "periods": periods, "reserve": res_amt, "actual_periods": act.k,
               "planned_spend": s.spend, "unallocated": max(budget - float(full_spend.sum()) - res_amt, 0.0),
               "expected_incremental_revenue": s.incremental_revenue, "roi": s.roi, "per_channel": s.per_channel,
               "agent": use_agent, "robust": robust, "plan_chosen": chosen,
               "plan_floor_gain_p10": floor_gain, "realised_ratio": upd.realised_ratio,
               "historical_mix_revenue": float(hist_rev.sum()),
               "channel_ratio": None if upd.channel_ratio is None else dict(zip(channels, upd.channel_ratio.round(4).tolist())),
               "draws_effective": None if upd.ess is None else dict(zip(channels, upd.ess.round(2).tolist()))}
    return PlanResult(table=table, spend=full_spend, summary=summary, n_actual=act.k, ensemble=upd.ens,
                      historical=x_hist, identification=ident)
