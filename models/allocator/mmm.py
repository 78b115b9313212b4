"""Marketing-mix response model: per-channel geometric adstock + Hill saturation + effect size, on top of a
baseline with trend, yearly seasonality and the sale peaks (618, Double 11), which lift both the baseline and
the media response. Fitted by nonlinear least squares; uncertainty by a moving-block residual bootstrap.

Revenue_t = baseline_t + sum_c beta_c * hill(adstock_c,t; half_c, slope_c) * (1 + m * peak_t)
baseline_t = level * (1 + trend * t) * (1 + sum_k a_k sin(2 pi k w/52) + b_k cos(2 pi k w/52))
             * (1 + lift_618 * peak618_t + lift_d11 * peakd11_t) + sum_j gamma_j * control_j,t

Season is explained by the baseline terms (calendar features), so media only gets credit for what spend
varies *within* the season: the confounding of spend with peaks does not leak into beta.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from omnidecide.models.allocator.curves import Curves
from omnidecide.models.allocator.history_checks import check_calendar, check_columns
from omnidecide.models.errors import InputError
from omnidecide.models.response import geometric_adstock, hill

N_FOURIER = 1
# Weakly informative priors (MAP), as Bayesian MMMs use: 156 weekly points pin the response near the spend
# actually seen but not the Hill shape far from it. (mean, sd); log_half_rel = log(half / steady-state adstock
# at mean spend).
PRIOR = {"decay": (0.4, 0.25), "log_half_rel": (np.log(1.3), 0.4), "slope": (1.6, 0.4), "media_peak_mult": (0.3, 0.4)}
DECAY_MAX = 0.9
SLOPE_RANGE = (0.7, 3.5)


def peak_flags(dates: pd.DatetimeIndex, days: int = 7) -> np.ndarray:
    """(n, 2) 0/1: does the period [date, date+days) touch the 618 run-up (1-18 June) / Double 11 (1-11 Nov)?"""
    d = pd.DatetimeIndex(dates)
    out = np.zeros((len(d), 2))
    for k in range(max(days, 1)):
        dk = d + pd.Timedelta(days=k)
        out[:, 0] = np.maximum(out[:, 0], (dk.month == 6) & (dk.day <= 18))
        out[:, 1] = np.maximum(out[:, 1], (dk.month == 11) & (dk.day <= 11))
    return out


@dataclass
class MMMParams:
    """One set of response-model parameters (the point fit or one bootstrap draw); money in original units."""

    channels: list[str]
    decay: np.ndarray
    half_saturation: np.ndarray
    slope: np.ndarray
    beta: np.ndarray
    media_peak_mult: float  # media response x (1 + m) in peak periods
    base_coef: np.ndarray = field(default_factory=lambda: np.zeros(0))  # baseline_basis coefficients (all columns)
    n_history: int = 0
    controls: list[str] = field(default_factory=list)
    gamma: np.ndarray = field(default_factory=lambda: np.zeros(0))
    week_effects: bool = False  # the baseline has a free effect per week of the year (see baseline_basis)
    # (52,) season index by week of year when media x (1 + m (index - 1)) (forms.season_index); empty: x (1 + m peak)
    media_season: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MMMParams":
        arr = {k: np.asarray(d.get(k, []), dtype=float)
               for k in ("decay", "half_saturation", "slope", "beta", "base_coef", "gamma", "media_season")}
        return cls(channels=list(d["channels"]), controls=list(d.get("controls", [])), n_history=int(d.get("n_history", 0)),
                   media_peak_mult=float(d["media_peak_mult"]), week_effects=bool(d.get("week_effects", False)), **arr)

    def baseline_at(self, dates: pd.DatetimeIndex, index: np.ndarray, step_days: int = 7) -> np.ndarray:
        """Expected baseline (no media, controls at 0) for dates at period `index` (0 = first history period)."""
        X = baseline_basis(pd.DatetimeIndex(dates).isocalendar().week.to_numpy().astype(float),
                           np.asarray(index, float) / max(self.n_history, 1), peak_flags(dates, step_days),
                           self.week_effects, self.media_season if self.media_season.size else None)
        return X @ self.base_coef if len(self.base_coef) else np.zeros(len(dates))

    def driver(self, peak_any: np.ndarray, woy: np.ndarray | None = None) -> np.ndarray:
        """(n,) what the media multiplier m scales: the calendar peaks, or (season form) the season index - 1."""
        if not self.media_season.size:
            return np.asarray(peak_any, float)
        return self.media_season[np.clip(np.asarray(woy, int), 1, 52) - 1] - 1.0

    def media(self, spend: np.ndarray, peak_any: np.ndarray, initial: np.ndarray | float = 0.0,
              woy: np.ndarray | None = None) -> np.ndarray:
        """(n, C) incremental revenue per period and channel (from the adstock of this spend plus `initial`)."""
        stock = geometric_adstock(spend, self.decay, initial)
        return self.beta * hill(stock, self.half_saturation, self.slope) * (1 + self.media_peak_mult * self.driver(peak_any, woy))[:, None]


@dataclass
class History:
    """A marketing-mix history ready for fitting."""

    dates: pd.DatetimeIndex
    revenue: np.ndarray
    spend: np.ndarray  # (n, C)
    channels: list[str]
    controls: np.ndarray  # (n, K)
    control_names: list[str]
    step_days: int
    # (n, C) platform-reported revenue per channel (`revenue_<channel>` columns), NaN where a channel has none; None
    # when the history carries no reports. Trusted for each channel's shape over time only (see _Problem).
    reported: np.ndarray | None = None

    @property
    def peaks(self) -> np.ndarray:
        return peak_flags(self.dates, self.step_days)

    @property
    def woy(self) -> np.ndarray:
        return self.dates.isocalendar().week.to_numpy().astype(float)

    def future_dates(self, periods: int, start: int = 0) -> pd.DatetimeIndex:
        return self.dates[-1] + pd.to_timedelta(self.step_days * (start + np.arange(1, periods + 1)), unit="D")


def history_from_frame(df: pd.DataFrame, source: str = "history") -> History:
    """marketing_mix.csv (already validated) -> History. Controls: every non-spend numeric column besides date/revenue
    and `revenue_<channel>` (a channel's platform-reported revenue, carried as History.reported instead)."""
    spend_cols = [c for c in df.columns if c.startswith("spend_")]
    if not spend_cols:
        raise InputError(f"{source}: no spend_<channel> columns")
    check_columns(spend_cols, source)
    df = df.assign(date=pd.to_datetime(df["date"])).sort_values("date").reset_index(drop=True)
    step = check_calendar(df["date"], source)  # a year, no gap; the period in days
    ctrl = []
    for c in df.columns:
        if c in ("date", "revenue") or c in spend_cols or c.startswith("revenue_"):
            continue
        v = pd.to_numeric(df[c], errors="coerce")
        if v.notna().all() and v.std() > 0:
            ctrl.append(c)
        else:  # said, not dropped in silence (a `promo` written yes/no)
            why = "is constant" if v.notna().all() else f"has {int(v.isna().sum())} non-numeric or empty cell(s)"
            logging.getLogger(__name__).warning(f"{source}: column {c!r} {why}: not used as a control")
    if np.isnan(spend := df[spend_cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)).any():  # not 0: missing
        raise InputError(f"{source}: blank spend in {[c for c, b in zip(spend_cols, np.isnan(spend).any(0)) if b]}")
    channels = [c[len("spend_"):] for c in spend_cols]
    orphans = [c for c in df.columns if c.startswith("revenue_") and c[len("revenue_"):] not in channels]
    if orphans:
        raise InputError(f"{source}: {', '.join(orphans)}: platform-reported revenue needs its channel's spend_ column "
                         f"(channels: {', '.join(channels)}); rename a control that is not a channel's revenue")
    reported = None
    if any(f"revenue_{c}" in df.columns for c in channels):
        reported = np.column_stack([pd.to_numeric(df[f"revenue_{c}"], errors="coerce").to_numpy(float)
                                    if f"revenue_{c}" in df.columns else np.full(len(df), np.nan) for c in channels])
    return History(dates=pd.DatetimeIndex(df["date"]), revenue=pd.to_numeric(df["revenue"]).to_numpy(float), spend=spend,
                   channels=channels,
                   controls=df[ctrl].apply(pd.to_numeric).to_numpy(float) if ctrl else np.zeros((len(df), 0)),
                   control_names=ctrl, step_days=max(step, 1), reported=reported)


def baseline_basis(woy: np.ndarray, t_scaled: np.ndarray, peaks: np.ndarray, week_effects: bool = False,
                   season: np.ndarray | None = None) -> np.ndarray:
    """level*(1+trend t)*(1+fourier)*(1+peak lifts) expanded into {1,t} x {1,sin,cos..} x {1,618,d11} columns.
    week_effects: plus one 0/1 column per week of the year (53 -> 52), a calendar of its own that needs no event
    dates: season and sale peaks the calendar above does not know stop leaking into media credit (a second model
    form; models/allocator/forms.py weighs the two by held-out fit)."""
    n = len(woy)
    four = [np.ones(n)]
    for k in range(N_FOURIER):
        ang = 2 * np.pi * (k + 1) * np.asarray(woy, float) / 52.0
        four += [np.sin(ang), np.cos(ang)]
    cols = [a * f * p for a in (np.ones(n), t_scaled) for f in four for p in (np.ones(n), peaks[:, 0], peaks[:, 1])]
    w = np.clip(np.asarray(woy, int), 1, 52) - 1
    if week_effects:
        cols += list(np.eye(52)[w].T)
    if season is not None:  # the season form: the baseline (level and trend) scales with the season index too
        dev = np.asarray(season, float)[w] - 1.0
        cols += [dev, t_scaled * dev]
    return np.stack(cols, 1)


# --- fitting --------------------------------------------------------------------------------------

class _Problem:
    """Variable projection. Nonlinear: decay, log half, slope per channel and the media peak multiplier m.
    Linear (solved exactly for each nonlinear guess): beta per channel, the baseline as the expansion of
    level*(1+trend t)*(1+fourier)*(1+peak lifts) into {1,t} x {1,sin,cos,...} x {1,618,d11} terms, and controls.
    Revenue is scaled by its mean, spend by each channel's mean.

    Platform-reported channel revenue (h.reported), when present, adds one residual per channel and reported week:
    log(reported) - log(k_c * hill(adstock) * peak mult), weighted as lognormal noise of sd `report_sigma` against the
    revenue rows' noise. k_c is free per channel (profiled out: the mean log ratio), so the platforms' multiplicative
    over-claiming never reaches beta: the reports only pin each channel's shape over time (decay, saturation, peak
    lift), which 156 weeks of total revenue under habitual spend cannot; beta stays the total-revenue regression's.
    Weeks with a zero or missing report are skipped."""

    def __init__(self, h: History, prior: dict | None = None, report_sigma: float = 0.2, lift: list | None = None,
                 week_effects: bool = False, season: np.ndarray | None = None):
        self.h, self.week_effects, self.season = h, week_effects, season
        self.lift = list(lift or [])  # models/allocator/lift.py LiftTests: extra rows of the linear fit
        self.prior = PRIOR if prior is None else {**PRIOR, **prior}
        self.C, self.K = len(h.channels), h.controls.shape[1]
        self.ys = float(h.revenue.mean())
        self.xs = np.maximum(h.spend.mean(0), 1e-9)
        self.x = h.spend / self.xs
        n = len(h.revenue)
        self.t = np.arange(n, dtype=float) / n
        self.peaks = h.peaks
        self.peak_any = self.peaks.max(1)
        self.driver = self.peak_any if season is None else np.asarray(season)[np.clip(h.woy.astype(int), 1, 52) - 1] - 1
        self.y = h.revenue / self.ys
        self.base_full = baseline_basis(h.woy, self.t, self.peaks, week_effects, season)
        keep = self.base_full.std(0) > 0
        keep[0] = True
        self.keep = keep
        self.base = self.base_full[:, keep]
        self.cs = np.maximum(np.abs(h.controls).max(0), 1e-9) if self.K else np.zeros(0)
        self.ctrl = h.controls / self.cs if self.K else np.zeros((n, 0))
        self.prior_scale = 0.0
        self.report_sigma = report_sigma
        self.rep_log = None
        if h.reported is not None:
            r = np.asarray(h.reported, float)
            ok = np.isfinite(r) & (r > 0)
            if ok.sum(0).max() >= 2:
                self.rep_ok = ok
                self.rep_log = np.log(np.where(ok, r, 1.0))
                self.rep_n = np.maximum(ok.sum(0), 1)
        C = self.C
        # theta = [decay C | log half C | slope C | m]
        self.bounds = (np.concatenate([np.zeros(C), np.full(C, np.log(0.1)), np.full(C, SLOPE_RANGE[0]), [-0.5]]),
                       np.concatenate([np.full(C, DECAY_MAX), np.full(C, np.log(30.0)), np.full(C, SLOPE_RANGE[1]), [3.0]]))

    def _design(self, th: np.ndarray) -> np.ndarray:
        C = self.C
        decay, half, slope, m = th[:C], np.exp(th[C:2 * C]), th[2 * C:3 * C], th[3 * C]
        media = hill(geometric_adstock(self.x, decay), half, slope) * (1 + m * self.driver)[:, None]
        return np.concatenate([media, self.base, self.ctrl], axis=1)

    def _lift_rows(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """One row per lift test: the channel's media column summed over the test's weeks = the measured revenue,
        weighted as (its sd) against the revenue rows' noise (prior_scale); none before the noise is estimated."""
        if not self.lift or self.prior_scale <= 0:
            return None
        A, b = np.zeros((len(self.lift), X.shape[1])), np.zeros(len(self.lift))
        for i, lt in enumerate(self.lift):
            w = self.prior_scale * self.ys / lt.sd
            A[i, lt.channel] = w * X[lt.weeks, lt.channel].sum()
            b[i] = w * lt.incremental_revenue / self.ys
        return A, b

    def linear(self, th: np.ndarray, y: np.ndarray) -> np.ndarray:
        X = self._design(th)
        rows = self._lift_rows(X)
        if rows is not None:
            X, y = np.vstack([X, rows[0]]), np.concatenate([y, rows[1]])
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        neg = coef[:self.C] < 0
        if neg.any():  # effect sizes are non-negative: drop the channels that came out negative and refit
            Xk = X.copy()
            Xk[:, :self.C][:, neg] = 0.0
            coef = np.linalg.lstsq(Xk, y, rcond=None)[0]
            coef[:self.C][neg] = 0.0
        return coef

    def residual(self, th: np.ndarray, y: np.ndarray) -> np.ndarray:
        X = self._design(th)
        coef = self.linear(th, y)
        r = X @ coef - y
        if self.prior_scale <= 0:
            return r
        rows = self._lift_rows(X)
        if rows is not None:
            r = np.concatenate([r, rows[0] @ coef - rows[1]])
        C = self.C
        if self.rep_log is not None:
            r = np.concatenate([r, (self.prior_scale / self.report_sigma) * self.report_residual(th, X)])
        decay, log_half, slope = th[:C], th[C:2 * C], th[2 * C:3 * C]
        P = self.prior
        z = np.concatenate([(decay - P["decay"][0]) / P["decay"][1],
                            (log_half + np.log(1 - decay) - P["log_half_rel"][0]) / P["log_half_rel"][1],
                            (slope - P["slope"][0]) / P["slope"][1],
                            [(th[3 * C] - P["media_peak_mult"][0]) / P["media_peak_mult"][1]]])
        return np.concatenate([r, self.prior_scale * z])

    def report_residual(self, th: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        """Shape rows, unweighted: log report - log curve per reported week, each channel's level k_c profiled out."""
        X = self._design(th) if X is None else X
        d = np.where(self.rep_ok, self.rep_log - np.log(np.maximum(X[:, :self.C], 1e-12)), 0.0)
        return (d - d.sum(0) / self.rep_n)[self.rep_ok]

    def start(self, rng: np.random.Generator, jitter: bool) -> np.ndarray:
        C = self.C
        decay = rng.uniform(0.1, 0.7, C) if jitter else np.full(C, 0.4)
        half = np.log((1.0 / (1 - decay)) * (rng.uniform(0.7, 2.5, C) if jitter else 1.3))
        slope = rng.uniform(1.0, 2.8, C) if jitter else np.full(C, 1.8)
        m = rng.uniform(0.0, 1.0) if jitter else 0.3
        th = np.concatenate([decay, half, slope, [m]])
        return np.clip(th, self.bounds[0] + 1e-6, self.bounds[1] - 1e-6)

    def solve(self, y: np.ndarray, th0: np.ndarray, max_nfev: int = 200) -> tuple[np.ndarray, float]:
        r = least_squares(self.residual, th0, bounds=self.bounds, method="trf", x_scale="jac", max_nfev=max_nfev, args=(y,))
        return r.x, float(2 * r.cost)

    def predict_scaled(self, th: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self._design(th) @ self.linear(th, self.y if y is None else y)

    def unpack(self, th: np.ndarray, y: np.ndarray | None = None) -> MMMParams:
        C = self.C
        coef = self.linear(th, self.y if y is None else y)
        base_coef = np.zeros(self.base_full.shape[1])
        base_coef[self.keep] = coef[C:C + self.base.shape[1]] * self.ys
        return MMMParams(n_history=len(self.y), channels=self.h.channels, decay=th[:C].copy(), half_saturation=np.exp(th[C:2 * C]) * self.xs,
                         slope=th[2 * C:3 * C].copy(), beta=coef[:C] * self.ys, media_peak_mult=float(th[3 * C]),
                         base_coef=base_coef, controls=self.h.control_names, week_effects=self.week_effects,
                         media_season=np.zeros(0) if self.season is None else np.asarray(self.season, float),
                         gamma=coef[C + self.base.shape[1]:] * self.ys / self.cs if self.K else np.zeros(0))


@dataclass
class FitResult:
    params: MMMParams
    samples: list[MMMParams]
    history: History
    diagnostics: dict


def fit(h: History, *, n_starts: int = 4, n_boot: int = 20, seed: int = 0, block: int = 8,
        prior: dict | None = None, report_sigma: float | None = None, lift: list | None = None,
        week_effects: bool = False, season: np.ndarray | None = None) -> FitResult:
    """Point fit (best of several starts) and `n_boot` moving-block residual-bootstrap refits. `prior`: entries that
    replace PRIOR's (e.g. another Hill-slope prior, for planning over more than one prior). With reported channel
    revenue in `h`, `report_sigma` is its lognormal noise; None = estimated from the fit's report residuals (start at
    0.2, two refits; noisier platforms then weigh less). `lift`: lift tests (models/allocator/lift.py), rows of the
    fit weighted by their intervals. The bootstrap resamples the revenue residuals only; reports and lift tests stay
    as measured. week_effects: the second model form (baseline_basis); season: the third (season_index)."""
    prob = _Problem(h, prior, 0.2 if report_sigma is None else report_sigma, lift, week_effects, season)
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    th0, cost0 = prob.solve(prob.y, prob.start(rng, jitter=False))
    n_lin = prob.C + prob.base.shape[1] + prob.K
    prob.prior_scale = float(np.sqrt(cost0 / max(len(prob.y) - len(th0) - n_lin, 1)))  # noise sd estimate
    for s in range(n_starts):
        th, cost = prob.solve(prob.y, prob.start(rng, jitter=s > 0))
        if cost < best_cost:
            best, best_cost = th, cost
    if prob.rep_log is not None and report_sigma is None:
        for _ in range(2):
            d = prob.report_residual(best)
            dof = max(len(d) - int(prob.rep_ok.any(0).sum()), 1)  # one level k_c per reported channel
            prob.report_sigma = float(np.clip(np.sqrt((d ** 2).sum() / dof), 0.05, 1.0))
            best, _ = prob.solve(prob.y, best)
    fitted = prob.predict_scaled(best)
    resid = prob.y - fitted
    n = len(resid)
    samples = []
    for _ in range(n_boot):
        starts = rng.integers(0, n - block + 1, n // block + 1)
        rb = np.concatenate([resid[s:s + block] for s in starts])[:n]
        rb = rb - rb.mean()
        th, _ = prob.solve(fitted + rb, best, max_nfev=100)
        samples.append(prob.unpack(th, fitted + rb))
    params = prob.unpack(best)
    media = params.media(h.spend, prob.peak_any, woy=h.woy)
    ss_res = float(((h.revenue - fitted * prob.ys) ** 2).sum())
    ss_tot = float(((h.revenue - h.revenue.mean()) ** 2).sum())
    log_res = np.log(np.maximum(prob.y, 1e-12) / np.maximum(fitted, 1e-12))
    diag = {  # log_noise_sd: in-sample noise of log revenue, corrected for the parameters fitted (forms.FormScore.tau)
        "r2": 1 - ss_res / ss_tot, "mape": float(np.mean(np.abs(resid / prob.y))),
        "log_noise_sd": float(np.sqrt((log_res ** 2).sum() / max(n - len(best) - n_lin, 1))),
        "media_share": float(media.sum() / h.revenue.sum()),
        "media_share_per_channel": dict(zip(h.channels, (media.sum(0) / h.revenue.sum()).round(5).tolist())),
        "historical_roi": dict(zip(h.channels, (media.sum(0) / np.maximum(h.spend.sum(0), 1e-9)).round(4).tolist())),
        "n_periods": n, "n_boot": n_boot,
        **({"report_sigma": prob.report_sigma, "reported_channels": int(prob.rep_ok.any(0).sum())}
           if prob.rep_log is not None else {}),
        "decay_sd": dict(zip(h.channels, np.std([s.decay for s in samples], 0).round(4).tolist())) if samples else {},
    }
    return FitResult(params=params, samples=samples, history=h, diagnostics=diag)


def horizon_curves(params: MMMParams, h: History, periods: int, start: int = 0, init: np.ndarray | None = None,
                   peak_any: np.ndarray | None = None, woy: np.ndarray | None = None) -> Curves:
    """Curves for periods start+1 .. start+periods after the history end (season from the calendar)."""
    if peak_any is None:
        peak_any = peak_flags(h.future_dates(periods, start), h.step_days).max(1)
    if woy is None and params.media_season.size:
        woy = h.future_dates(periods, start).isocalendar().week.to_numpy().astype(float)
    if init is None:
        init = geometric_adstock(h.spend, params.decay)[-1]
    return Curves(decay=np.asarray(params.decay, float), half=np.asarray(params.half_saturation, float),
                  slope=np.asarray(params.slope, float), beta=np.asarray(params.beta, float),
                  mult=1 + params.media_peak_mult * params.driver(peak_any, woy), init=np.asarray(init, float))


def truth_params(truth: dict, channels: list[str]) -> MMMParams:
    """The planted curves of a synthetic world (truth.json's marketing_mix block) as MMMParams."""
    mm = truth.get("marketing_mix", truth)
    ch = mm["channels"]
    return MMMParams(channels=channels, decay=np.array([ch[c]["decay"] for c in channels]),
                     half_saturation=np.array([ch[c]["half_saturation"] for c in channels]),
                     slope=np.array([ch[c]["slope"] for c in channels]), beta=np.array([ch[c]["beta"] for c in channels]),
                     media_peak_mult=float(mm.get("peak_media_multiplier", 1.0)) - 1.0)
