"""An experiment plan (`allocate --explore`): which channels to vary, when, by how much, at what expected cost, and
how much narrower each channel's interval is expected to get.

Preposterior analysis with the product's own update rule: for each posterior draw taken as the truth, the channel
revenue that re-planning would measure (lognormal noise `Updating.sigma`) is simulated over the experiment's weeks
and the planning ensemble reweighted exactly as `allocate --actuals` would (actuals.draw_weights). The channel's 80%
interval of revenue over the rest of the plan, averaged over those simulated truths, is compared with its interval
now and with what the plan alone (no experiment) would teach in the same weeks. The experiment: the channel's spend
alternates +amplitude / -amplitude every two weeks over the first `weeks` weeks (budget-neutral within the channel;
a channel the plan leaves at zero is pulsed at its historical level, paid from the others pro rata).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from omnidecide.models.allocator.actuals import Updating, draw_weights
from omnidecide.models.allocator.curves import Curves, Ensemble


def _wquantile(v: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    return float(v[order][min(np.searchsorted(cw, q * cw[-1]), len(v) - 1)])


def _width(ens: Ensemble, x: np.ndarray, c: int, W: int, upd: Updating, rng: np.random.Generator) -> tuple[float, float]:
    """(80% interval width of channel c's revenue in weeks W.. now, expected width after measuring weeks 0..W-1)."""
    per = ens.per_world(x)  # (K, T, C)
    later = per[:, W:, c].sum(1)
    now = float(np.percentile(later, 90) - np.percentile(later, 10))
    first = _first(ens, W)  # the same draws over the experiment's weeks
    E = per[:, :W]
    widths = []
    for j in range(ens.K):
        meas = E[j] * np.exp(rng.normal(0, upd.sigma, E[j].shape))
        wts = draw_weights(first, x[:W], meas, upd).weights[:, c]
        widths.append(_wquantile(later, wts, 0.9) - _wquantile(later, wts, 0.1))
    return now, float(np.mean(widths))


def _first(ens: Ensemble, W: int) -> Ensemble:
    return Ensemble([Curves(w.decay, w.half, w.slope, w.beta, w.mult[:W], w.init) for w in ens.worlds])


def pulsed(x: np.ndarray, c: int, weeks: int, amplitude: float, hist_level: float) -> np.ndarray:
    """The plan with channel c alternating +/- amplitude every two weeks over the first `weeks` weeks."""
    xe = np.asarray(x, float).copy()
    sign = np.where((np.arange(weeks) // 2) % 2 == 0, 1.0, -1.0)
    if xe[:weeks, c].sum() > 0:
        xe[:weeks, c] *= 1 + amplitude * sign
    else:  # funded from the other channels, pro rata, week by week
        add = hist_level * (1 + amplitude * sign)
        others = xe[:weeks].sum(1)
        xe[:weeks] *= np.maximum(1 - add / np.maximum(others, 1e-9), 0.0)[:, None]
        xe[:weeks, c] = add
    return xe


def experiment_plan(ens: Ensemble, x: np.ndarray, channels: list[str], ident: np.ndarray, hist_spend: np.ndarray,
                    weeks: int = 8, amplitude: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """One proposed experiment per channel, least identified first (see the module docstring)."""
    T = ens.T
    W = int(min(weeks, max(T - 1, 1)))
    upd = Updating()
    base_rev = ens.revenue(x).sum()
    rows = []
    for c in np.argsort(ident):
        xe = pulsed(x, c, W, amplitude, float(hist_spend[:W, c].mean()) if len(hist_spend) else 0.0)
        now, passive = _width(ens, x, c, W, upd, np.random.default_rng(seed + int(c)))
        _, after = _width(ens, xe, c, W, upd, np.random.default_rng(seed + int(c)))
        rows.append({"channel": channels[c], "identification": round(float(ident[c]), 3), "weeks": f"1-{W}",
                     "change": f"+{amplitude:.0%} / -{amplitude:.0%} of planned spend, alternating every 2 weeks",
                     "spend_moved": round(float(np.abs(xe - x)[:W].sum() / 2), 2),
                     "expected_revenue_cost": round(float(base_rev - ens.revenue(xe).sum()), 2),
                     "interval_width_now": round(now, 2), "interval_width_plan_alone": round(passive, 2),
                     "interval_width_with_experiment": round(after, 2),
                     "expected_narrowing": round(1 - after / now, 4) if now > 0 else 0.0,
                     "narrowing_beyond_plan_alone": round((passive - after) / now, 4) if now > 0 else 0.0})
    return pd.DataFrame(rows)
