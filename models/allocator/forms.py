"""Model-form uncertainty: which form of the response model does the history support, judged on weeks it has not seen.

A posterior is only as good as the model it is a posterior of. The default form explains the season with a trend,
one yearly harmonic and the sale peaks of a fixed event calendar (618, Double 11); when a history's season has other
peaks, and spend rises into them, the unexplained season is credited to the channels that spend most in it, and the
bootstrap draws agree on that wrong credit (they resample noise, not the model's form). The second form gives the
baseline a free effect per week of the year, so it needs no event calendar, at the price of 52 parameters. The third
lets media (and the baseline) scale with the history's own season index (`season_index`), as multiplicative MMMs do.

Neither form is right by assumption: each is refitted on the history without its last HOLDOUT weeks and predicts
them, and the forms are weighted by stacking (Yao et al. 2018, "Using stacking to average Bayesian predictive
distributions"; Wolpert 1992): the weights on the simplex whose mixture of the forms' predictions has the smallest
held-out error (on log revenue, so the score does not depend on the currency). Unlike weighting each form by its own
score (pseudo-BMA), which piles every weight on the better of two wrong forms, stacking keeps a form that predicts what
the other misses. The planning ensemble draws its worlds from the forms in those proportions, so a channel the forms
disagree on is uncertain in the plan as well (robust.choose then does not bet on it). A form whose held-out error is
well above the history's noise is misspecified in ways its bootstrap cannot see: its draws are widened by that ratio
(FormScore.tau, training/allocator/pipeline.py `tempered`), and part of them is its refit without the held-out weeks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from omnidecide.models.allocator.mmm import FitResult, History, MMMParams, fit

HOLDOUT = 26  # weeks held out: half a year, the horizon the planner is asked for most
# name -> (week_effects, season): the calendar form; a free baseline effect per week of the year; media (and the
# baseline) scaling with the history's own season index
FORMS = {"calendar": (False, False), "calendar + week-of-year effects": (True, False),
         "season x media": (False, True)}


TAU_MAX = 4.0  # the most a form's draws are widened (a held-out error 4x its noise or more: 4x)


@dataclass
class FormScore:
    name: str
    week_effects: bool
    season: bool
    holdout_rmse: float  # on log revenue, over the last HOLDOUT weeks, from a fit without them
    weight: float = 0.0
    noise: float = float("nan")  # the history's noise sd of log revenue (score_forms)
    fold: MMMParams | None = None  # the form refitted without the last HOLDOUT weeks (a time-fold refit)

    @property
    def tau(self) -> float:
        """How much wider than the bootstrap the form's draws must be for its predictions to be as uncertain as its
        held-out error says: held-out log error / in-sample noise, in [1, TAU_MAX] (1 when nothing was held out).
        A tempered likelihood (power 1 / tau^2) widens the posterior by tau: a form the weeks it did not see
        contradict is planned as one whose curves are that much less certain, so its draws disagree on what it
        cannot know (robust.choose then keeps the plan near the spreadsheet plans)."""
        if not (np.isfinite(self.holdout_rmse) and np.isfinite(self.noise) and self.noise > 0):
            return 1.0
        return float(np.clip(self.holdout_rmse / self.noise, 1.0, TAU_MAX))


def _head(h: History, n: int) -> History:
    rep = None if h.reported is None else h.reported[:n]
    return History(h.dates[:n], h.revenue[:n], h.spend[:n], h.channels, h.controls[:n], h.control_names,
                   h.step_days, rep)


def season_index(h: History) -> np.ndarray:
    """(52,) how strong each week of the year is in this history: log revenue less its linear trend, averaged per
    week of the year, smoothed over neighbouring weeks (1-2-1, circular), exp, mean 1 (weeks never seen: 1). The
    third model form lets media scale with it (a sale week turns the same attention into more revenue), as
    multiplicative MMMs do; the data decide how much (the peak multiplier m, under PRIOR), and the form's weight."""
    y = np.log(np.maximum(h.revenue, 1e-9))
    t = np.arange(len(y), dtype=float)
    A = np.stack([np.ones_like(t), t], 1)
    r = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
    w = np.clip(h.woy.astype(int), 1, 52) - 1
    tot, cnt = np.bincount(w, r, 52), np.bincount(w, minlength=52).astype(float)
    tot, cnt = (np.roll(v, 1) + 2 * v + np.roll(v, -1) for v in (tot, cnt))
    idx = np.exp(np.where(cnt > 0, tot / np.maximum(cnt, 1e-12), 0.0))
    return idx / idx.mean()

def fit_form(h: History, week_effects: bool, season: bool, **kw) -> FitResult:
    """mmm.fit of one form (the season form's index from this history alone)."""
    return fit(h, week_effects=week_effects, season=season_index(h) if season else None, **kw)


def holdout_prediction(h: History, week_effects: bool, season: bool = False, H: int = HOLDOUT,
                       seed: int = 0) -> tuple[np.ndarray, float, MMMParams]:
    """The form's revenue predictions for the last H weeks, fitted on the weeks before them (the media of those
    weeks from their actual spend, the adstock carried in from the fitted weeks), that fit's in-sample noise and
    its parameters."""
    n = len(h.revenue) - H
    r = fit_form(_head(h, n), week_effects, season, n_starts=2, n_boot=0, seed=seed)
    p = r.params
    base = p.baseline_at(h.dates[n:], np.arange(n, n + H), h.step_days)
    if len(p.gamma):
        base = base + h.controls[n:] @ p.gamma
    media = p.media(h.spend, h.peaks.max(1), woy=h.woy)[n:].sum(1)
    return np.maximum(base + media, 1e-9), r.diagnostics["log_noise_sd"], p


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
        return [FormScore("calendar", False, False, float("nan"), 1.0)]
    y = h.revenue[-HOLDOUT:]
    out = [holdout_prediction(h, wk, se, seed=seed) for wk, se in FORMS.values()]
    preds = np.stack([o[0] for o in out], 1)
    w = stacking_weights(y, preds)
    # the noise of the data: the smallest in-sample noise of the forms with few parameters (the week-of-year form
    # spends most of its degrees of freedom on the weeks it saw, so its own estimate is unreliable)
    noise = min(o[1] for o, (wk, _) in zip(out, FORMS.values()) if not wk)
    return [FormScore(name, wk, se, _log_rmse(y, preds[:, i]), float(w[i]), noise, out[i][2])
            for i, (name, (wk, se)) in enumerate(FORMS.items())]


def draws_per_form(weights: list[float], n: int) -> list[int]:
    """n planning draws split by weight (largest remainders)."""
    w = np.asarray(weights, float)
    k = np.floor(w * n).astype(int)
    for i in np.argsort(-(w * n - k))[: n - k.sum()]:
        k[i] += 1
    return k.tolist()
