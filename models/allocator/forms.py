"""Model-form uncertainty: which form of the response model does the history support, judged on weeks it has not seen.

A posterior is only as good as the model it is a posterior of. The default form explains the season with a trend,
one yearly harmonic and the sale peaks of a fixed event calendar (618, Double 11); when a history's season has other
peaks, and spend rises into them, the unexplained season is credited to the channels that spend most in it, and the
bootstrap draws agree on that wrong credit (they resample noise, not the model's form). The second form gives the
baseline a free effect per week of the year, so it needs no event calendar, at the price of 52 parameters.

Neither form is right by assumption: each is refitted on the history without its last HOLDOUT weeks and predicts
them, and the forms are weighted by stacking (Yao et al. 2018, "Using stacking to average Bayesian predictive
distributions"; Wolpert 1992): the weights on the simplex whose mixture of the forms' predictions has the smallest
held-out error (on log revenue, so the score does not depend on the currency). Unlike weighting each form by its own
score (pseudo-BMA), which piles every weight on the better of two wrong forms, stacking keeps a form that predicts what
the other misses. The planning ensemble draws its worlds from the forms in those proportions, so a channel the forms
disagree on is uncertain in the plan as well (robust.choose then does not bet on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from omnidecide.models.allocator.mmm import History, fit

HOLDOUT = 26  # weeks held out: half a year, the horizon the planner is asked for most
FORMS = {"calendar": False, "calendar + week-of-year effects": True}  # name -> week_effects


@dataclass
class FormScore:
    name: str
    week_effects: bool
    holdout_rmse: float  # on log revenue, over the last HOLDOUT weeks, from a fit without them
    weight: float = 0.0


def _head(h: History, n: int) -> History:
    rep = None if h.reported is None else h.reported[:n]
    return History(h.dates[:n], h.revenue[:n], h.spend[:n], h.channels, h.controls[:n], h.control_names,
                   h.step_days, rep)


def holdout_prediction(h: History, week_effects: bool, H: int = HOLDOUT, seed: int = 0) -> np.ndarray:
    """The form's revenue predictions for the last H weeks, fitted on the weeks before them (the media of those
    weeks from their actual spend, the adstock carried in from the fitted weeks)."""
    n = len(h.revenue) - H
    p = fit(_head(h, n), n_starts=2, n_boot=0, seed=seed, week_effects=week_effects).params
    base = p.baseline_at(h.dates[n:], np.arange(n, n + H), h.step_days)
    if len(p.gamma):
        base = base + h.controls[n:] @ p.gamma
    return np.maximum(base + p.media(h.spend, h.peaks.max(1))[n:].sum(1), 1e-9)


def _log_rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log(np.maximum(y, 1e-9)) - np.log(np.maximum(pred, 1e-9))) ** 2)))


def stacking_weights(y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """(F,) simplex weights minimising the log-RMSE of preds (H, F) @ w against y (SLSQP from equal weights)."""
    F = preds.shape[1]
    w0 = np.full(F, 1.0 / F)
    scale = max(_log_rmse(y, preds @ w0) ** 2, 1e-300)  # (unscaled, the squared error is below SLSQP's tolerance)
    res = minimize(lambda w: _log_rmse(y, preds @ w) ** 2 / scale, w0, method="SLSQP", bounds=[(0.0, 1.0)] * F,
                   constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0}, options={"ftol": 1e-10})
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def score_forms(h: History, seed: int = 0) -> list[FormScore]:
    """Each form's held-out error and its stacking weight. Histories too short to hold out HOLDOUT weeks and still
    fit on a year and a half (every week of the year seen at least once) keep the calendar form alone."""
    if len(h.revenue) - HOLDOUT < 78:
        return [FormScore("calendar", False, float("nan"), 1.0)]
    y = h.revenue[-HOLDOUT:]
    preds = np.stack([holdout_prediction(h, wk, seed=seed) for wk in FORMS.values()], 1)
    w = stacking_weights(y, preds)
    return [FormScore(name, wk, _log_rmse(y, preds[:, i]), float(w[i])) for i, (name, wk) in enumerate(FORMS.items())]


def draws_per_form(weights: list[float], n: int) -> list[int]:
    """n planning draws split by weight (largest remainders)."""
    w = np.asarray(weights, float)
    k = np.floor(w * n).astype(int)
    for i in np.argsort(-(w * n - k))[: n - k.sum()]:
        k[i] += 1
    return k.tolist()
