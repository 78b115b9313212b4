"""A second family of marketing-mix worlds, made by a different process than `training.synth.make_marketing_mix`.

Why: the allocator's figures on worlds drawn from its own model's assumptions (geometric adstock, Hill curves, sale
peaks on 618 / Double 11 that its baseline knows) say little about a history made otherwise. This family is built
from published MMM facts, not from our model:
- *delayed-peak carry-over*: lag weights shaped like a gamma density (Jin et al. 2017, "Bayesian Methods for Media
  Mix Modeling with Carryover and Shape Effects", Google; Robyn's Weibull adstock): the effect of a week's spend
  peaks 0-3 weeks later and lasts up to 10 weeks;
- *other saturation shapes*: negative exponential, tanh, log and a logistic S-curve (not Hill);
- *multiplicative seasonality*: a yearly cycle with two sale peaks (mid-year, late November) that multiplies both
  the base and the media response (a sale week converts the same attention into more revenue);
- *spend co-moving with the season* (advertisers spend into peaks: the confounding MMM papers warn about), and
  *bursty channels* run in flights with many zero weeks;
- ~120 weekly rows (two years and a bit, the typical length MMM vendors ask for), 3% multiplicative noise, ROI at
  typical spend 0.8-4 and a media share of revenue around 10-30% (the ranges MMM case studies report).

`make_seasonal_world(seed)` -> (marketing_mix frame: date, revenue, spend_<channel>; truth), and
`world_response(truth, history_spend, T)` -> the TRUE response over the next T weeks, with the optimiser's interface
(T, C, revenue, value_grad), so the benchmark can play any plan on it and find its oracle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CHANNELS = ["tv", "search", "social", "display", "influencer"]
SHAPES = ("exp", "tanh", "log", "scurve")
N_LAGS = 10
START = pd.Timestamp("2023-01-02")  # a Monday


def season(dates: pd.DatetimeIndex) -> np.ndarray:
    """Multiplier of base and media: a yearly cycle (low in late winter) and two sale peaks (mid-year, late
    November), each a bump over about three weeks."""
    woy = pd.DatetimeIndex(dates).isocalendar().week.to_numpy().astype(float)
    bump = lambda wk, h: h * np.exp(-0.5 * ((woy - wk) / 1.2) ** 2)  # noqa: E731
    return 1 + 0.2 * np.sin(2 * np.pi * (woy - 20) / 52) + bump(26, 0.5) + bump(47, 0.9)


def lag_weights(peak: float, spread: float) -> np.ndarray:
    """Gamma-shaped weights over N_LAGS weeks with their mode at `peak` weeks, summing to 1."""
    lags = np.arange(N_LAGS, dtype=float)
    if peak <= 0:
        w = spread ** lags  # peak now: geometric decay
    else:
        k = 1 + peak / spread
        w = (lags + 1e-9) ** (k - 1) * np.exp(-lags / spread)
    return w / w.sum()


def saturation(shape: str, a: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """f(a) and f'(a) for adstock a >= 0 (f(0) = 0, increasing, saturating except `log`)."""
    u = np.maximum(a, 0.0) / kappa
    if shape == "exp":
        return 1 - np.exp(-u), np.exp(-u) / kappa
    if shape == "tanh":
        return np.tanh(u), (1 - np.tanh(u) ** 2) / kappa
    if shape == "log":
        return np.log1p(u), 1 / (1 + u) / kappa
    s0 = 1 / (1 + np.exp(2.0))  # scurve: a logistic in u centred at 1 (width 0.5), shifted to 0 at no spend
    s = 1 / (1 + np.exp(-(u - 1) / 0.5))
    return (s - s0) / (1 - s0), s * (1 - s) / 0.5 / kappa / (1 - s0)


def channel_media(p: dict, spend: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """A channel's TRUE media revenue each week of `spend` (from week 0, no earlier carry-over), from its truth `p`:
    beta x saturation(lag-weighted spend) x the season multiplier `mult`."""
    a = np.convolve(spend, np.asarray(p["lag_weights"]))[:len(spend)]
    return p["beta"] * saturation(p["shape"], a, p["kappa"])[0] * mult


def make_seasonal_world(seed: int, n_weeks: int = 122, channels: list[str] | None = None,
                        noise: float = 0.03) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(10_000 + seed)
    ch = list(channels or CHANNELS)
    C = len(ch)
    dates = pd.date_range(START, periods=n_weeks, freq="7D")
    s = season(dates)
    t = np.arange(n_weeks) / 52.0
    growth = rng.uniform(-0.05, 0.15)  # per year
    base = 1e6 * (1 + growth * t)
    typical = rng.uniform(10_000, 60_000, C)
    bursty = np.zeros(C, bool)
    bursty[rng.choice(C, int(rng.integers(1, 3)), replace=False)] = True
    spend = np.zeros((n_weeks, C))
    for j in range(C):
        level = typical[j] * s ** rng.uniform(0.5, 1.5) * np.exp(rng.normal(0, 0.25, n_weeks))
        if bursty[j]:  # flights: on/off weeks (Markov), more per on-week
            on, flags = bool(rng.random() < 0.5), []
            for _ in range(n_weeks):
                on = rng.random() < (0.7 if on else 0.3)
                flags.append(on)
            flags = np.array(flags)
            level = np.where(flags, level / max(flags.mean(), 0.2), 0.0)
        spend[:, j] = level
    chans = {}
    media = np.zeros((n_weeks, C))
    for j, c in enumerate(ch):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        peak = float(rng.choice([0, 1, 2, 3]))
        spread = float(rng.uniform(0.4, 0.7)) if peak == 0 else float(rng.uniform(0.8, 1.6))
        w = lag_weights(peak, spread)
        kappa = typical[j] * float(rng.uniform(0.6, 2.0))  # adstock ~ typical spend at steady state (weights sum 1)
        roi = float(rng.uniform(0.8, 4.0))
        f_typ = saturation(shape, np.array([typical[j]]), kappa)[0][0]
        beta = roi * typical[j] / f_typ  # revenue per week at typical spend (season 1) = roi x typical spend
        chans[c] = {"shape": shape, "lag_weights": w.tolist(), "kappa": kappa, "beta": beta, "roi_at_typical": roi,
                    "typical_spend": float(typical[j]), "bursty": bool(bursty[j]), "peak_lag": peak,
                    "zero_weeks": int((spend[:, j] == 0).sum())}
        media[:, j] = channel_media(chans[c], spend[:, j], s)
    revenue = (base * s + media.sum(1)) * np.exp(rng.normal(0, noise, n_weeks))
    df = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "revenue": revenue.round(2),
                       **{f"spend_{c}": spend[:, j].round(2) for j, c in enumerate(ch)}})
    truth = {"family": "seasonal", "seed": seed, "channels": chans, "noise": noise, "base_level": 1e6,
             "base_growth_per_year": float(growth), "n_weeks": n_weeks,
             "media_revenue_share": float(media.sum() / revenue.sum()), "start": str(dates[0].date())}
    return df, truth


@dataclass
class WorldResponse:
    """The TRUE incremental revenue of a plan x (T, C) over the T weeks after the history: the carry-over the
    history leaves is counted in both the plan and the no-spend counterfactual, so it cancels."""

    W: np.ndarray  # (C, T, T) lag-weight (Toeplitz) matrices
    carry: np.ndarray  # (T, C) adstock the history leaves in each future week
    beta: np.ndarray
    kappa: np.ndarray
    shapes: list[str]
    mult: np.ndarray  # (T,) season

    @property
    def T(self) -> int:
        return len(self.mult)

    @property
    def C(self) -> int:
        return len(self.beta)

    def _stock(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("cts,sc->tc", self.W, np.asarray(x, float).reshape(self.T, self.C)) + self.carry

    def _f(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = [saturation(sh, a[:, j], k) for j, (sh, k) in enumerate(zip(self.shapes, self.kappa))]
        return np.stack([o[0] for o in out], 1), np.stack([o[1] for o in out], 1)

    def revenue(self, x: np.ndarray) -> np.ndarray:
        f, _ = self._f(self._stock(x))
        f0, _ = self._f(self.carry)
        return self.beta * (f - f0) * self.mult[:, None]

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, df = self._f(self._stock(x))
        f0, _ = self._f(self.carry)
        g = self.beta * df * self.mult[:, None]
        return float((self.beta * (f - f0) * self.mult[:, None]).sum()), np.einsum("cts,tc->sc", self.W, g)


def world_response(truth: dict, history_spend: np.ndarray, T: int, channels: list[str]) -> WorldResponse:
    n = len(history_spend)
    dates = pd.Timestamp(truth["start"]) + pd.to_timedelta(7 * np.arange(n, n + T), unit="D")
    C = len(channels)
    W = np.zeros((C, T, T))
    carry = np.zeros((T, C))
    for j, c in enumerate(channels):
        w = np.asarray(truth["channels"][c]["lag_weights"])
        for lag in range(min(len(w), T)):
            W[j] += np.eye(T, k=-lag) * w[lag]
        full = np.convolve(np.concatenate([history_spend[:, j], np.zeros(T)]), w)[:n + T]
        carry[:, j] = full[n:]
    ch = truth["channels"]
    return WorldResponse(W, carry, np.array([ch[c]["beta"] for c in channels]), np.array([ch[c]["kappa"] for c in channels]),
                         [ch[c]["shape"] for c in channels], season(dates))
