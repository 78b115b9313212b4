"""Actuals and updating: what the elapsed periods of a horizon spent and earned, and how that updates the plan.

ACTUALS.csv (the `--actuals` flag): one row per elapsed period (in order; `period` 1..k or `date` to sort by), a
`spend_<channel>` column per channel (missing = 0), optional `revenue`, optional `revenue_<channel>` (the channel's
measured incremental revenue in that period, e.g. attributed). Measured channel revenue updates the planning
ensemble (Bayesian reweighting of its draws) and then rescales each channel's level (shrunk realised / expected).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.models.allocator.curves import Ensemble
from omnidecide.models.errors import InputError
from omnidecide.models.schema import MAX_NUMBER


@dataclass
class Updating:
    """Re-planning from measured channel revenue (`revenue_<channel>` in the actuals); see `draw_weights`.
    reweight: Bayesian update of the planning ensemble (draws reweighted by the likelihood of what was measured);
    rescale: then each channel's level multiplied by its shrunk realised / expected ratio (vs the updated ensemble)."""

    reweight: bool = True
    sigma: float = 0.15  # lognormal sd of a measured channel-period revenue around a draw's prediction
    ess_min: float = 0.5  # tempering: keep each channel's effective number of draws >= ess_min x K
    per_channel: bool = True  # weights per channel (the objective is separable) or one joint weight per draw
    rescale: bool = True
    prior_periods: float = 2.0  # shrinkage of the rescaling ratio


@dataclass
class Actuals:
    """The elapsed periods: spend (k, C), total revenue (k,) or None, measured channel revenue (k, C) (nan where
    not given) or None."""

    spend: np.ndarray
    revenue: np.ndarray | None = None
    channel_revenue: np.ndarray | None = None

    @property
    def k(self) -> int:
        return len(self.spend)

    @classmethod
    def none(cls, C: int) -> "Actuals":
        return cls(np.zeros((0, C)))


@dataclass
class DrawUpdate:
    """The Bayesian update of the planning ensemble: weights (K, C), each column summing to 1; each draw's expected
    channel revenue over the elapsed periods (K, k, C); the tempering power and effective number of draws per channel."""

    weights: np.ndarray
    expected: np.ndarray
    tempering: np.ndarray
    ess: np.ndarray


def _numbers(df: pd.DataFrame, col: str, source: str, nonneg: bool) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce")
    finite = np.isfinite(v.fillna(np.inf))
    absurd = finite & (v.abs() > MAX_NUMBER)  # e.g. 1e308: the re-plan's sums would overflow
    bad = ~finite | absurd | ((v < 0) if nonneg else False)
    if bad.any():
        at = int(np.flatnonzero(bad.to_numpy())[0])
        row = int(df.index[at]) + 1  # the file's data row (1 = first), not its place after sorting by period
        if pd.isna(df[col].iloc[at]):  # a blank cell: say so, not "got 'nan'" (pandas reads blank as NaN)
            raise InputError(f"{source}: row {row}: {col} is blank; write the period's figure"
                             + (" (0 where nothing was spent)" if col.startswith("spend_") else ""))
        why = (f"is beyond the cap of {MAX_NUMBER:g}" if absurd.iloc[at]
               else f"must be a finite number{' >= 0' if nonneg else ''}")
        raise InputError(f"{source}: row {row}: {col} {why}, got {str(df[col].iloc[at])!r}")
    return v.to_numpy(float)


def _check_periods(df: pd.DataFrame, source: str) -> None:
    """The actual rows are planned as periods 1..k: a `period` column must say exactly that, else a row meant as
    period 9 would silently be taken as period 1."""
    p = pd.to_numeric(df["period"], errors="coerce")
    want = np.arange(1, len(df) + 1)
    if p.isna().any() or not np.array_equal(np.sort(p.to_numpy(float)), want):
        raise InputError(f"{source}: period must be 1..{len(df)} (the elapsed periods, one row each), got "
                         f"{', '.join(map(str, df['period'].tolist()))}")


def stripped_header(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Column names without surrounding spaces (a spreadsheet's `period, spend_search` header); a name that then
    appears twice is an InputError naming it."""
    names = [str(c).strip() for c in df.columns]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{source}: column(s) {', '.join(dup)} appear more than once in the header; keep one of each")
    return df.set_axis(names, axis=1)


def _dates(df: pd.DataFrame, source: str) -> np.ndarray:
    """The `date` column as dates (sorting its text put `2026-7-6` after `2026-07-13`); a cell that is not a date is
    an InputError naming its row."""
    d = pd.to_datetime(df["date"].astype(str).str.strip(), errors="coerce", format="mixed", utc=True)
    if d.isna().any():
        at = int(np.flatnonzero(d.isna().to_numpy())[0])
        cell = df["date"].iloc[at]
        raise InputError(f"{source}: row {at + 1}: date " + ("is blank" if pd.isna(cell) else f"{str(cell)!r} is not a "
                                                                 "date") + " (write e.g. 2026-07-06)")
    return d.to_numpy()


def parse_actuals(actuals: pd.DataFrame, channels: list[str], periods: int, source: str = "--actuals",
                  periods_name: str = "--periods") -> Actuals:
    """ACTUALS.csv (see the module docstring) -> Actuals; a bad column or value is an InputError naming it (`source`,
    `periods_name`: what the caller calls the file and the horizon, see constraints.Names)."""
    df = stripped_header(actuals.reset_index(drop=True), source)
    if df.empty:  # the flag was given: planning as if no period had elapsed would drop the file silently
        raise InputError(f"{source}: no rows (only a header); give one row per elapsed period, or plan without "
                         f"{source}")
    if "period" in df:
        _check_periods(df, source)
        df = df.sort_values("period", key=lambda s: pd.to_numeric(s, errors="coerce"))
    elif "date" in df:
        df = df.iloc[np.argsort(_dates(df, source), kind="stable")]
    unknown = [c for c in df.columns if c.startswith(("spend_", "revenue_")) and c.split("_", 1)[1] not in channels]
    if unknown:
        raise InputError(f"{source}: unknown channel column(s) {', '.join(unknown)}; the model knows {', '.join(channels)}")
    if not any(c.startswith("spend_") for c in df.columns):
        raise InputError(f"{source}: no spend_<channel> columns")
    if len(df) >= periods:
        raise InputError(f"{source}: {len(df)} periods of actuals but {periods_name} is {periods}; nothing left to plan")
    x = np.zeros((len(df), len(channels)))
    for j, c in enumerate(channels):
        if f"spend_{c}" in df:
            x[:, j] = _numbers(df, f"spend_{c}", source, nonneg=True)
    rev = _numbers(df, "revenue", source, nonneg=False) if "revenue" in df else None
    ch_rev = None
    if any(c.startswith("revenue_") for c in df.columns):
        ch_rev = np.full((len(df), len(channels)), np.nan)
        for j, c in enumerate(channels):
            if f"revenue_{c}" in df:
                ch_rev[:, j] = _numbers(df, f"revenue_{c}", source, nonneg=False)
    return Actuals(x, rev, ch_rev)


def channel_ratio(x_act: np.ndarray, ch_rev: np.ndarray, expected: np.ndarray, prior_periods: float = 2.0) -> np.ndarray:
    """Realised / expected incremental revenue per channel over the elapsed periods (where it spent and was
    measured), shrunk towards 1 as if `prior_periods` periods had matched the fit: exp(n / (n + n0) * log ratio),
    clipped to [1/3, 3]. Multiplies the channel's effect size when re-planning (the planner recalibrated to what
    was realised: the fit pins a channel's level worst, see BENCHMARKS). `expected` (k, C): the expectation to
    compare with (the planning ensemble's mean, or its reweighted mean)."""
    seen = np.isfinite(ch_rev) & (x_act > 0)
    num, den = np.where(seen, ch_rev, 0.0).sum(0), np.where(seen, expected, 0.0).sum(0)
    n = seen.sum(0)
    raw = np.clip(np.where(den > 0, num / np.maximum(den, 1e-12), 1.0), 1 / 3, 3)
    return np.exp(n / (n + prior_periods) * np.log(np.where(den > 0, raw, 1.0)))


def draw_weights(ens: Ensemble, x_act: np.ndarray, ch_rev: np.ndarray, upd: Updating) -> DrawUpdate:
    """Bayesian update of the planning ensemble `ens` (over the elapsed periods) from measured channel revenue.

    Each draw k predicts each channel's incremental revenue E[k, t, c] in the elapsed periods (its own adstock
    from the end of the history); the measurement is taken as lognormal around it with sd `upd.sigma`
    (attribution noise + per-period model error). Channels are separable in the plan's objective, so each
    channel gets its own weights over the draws (`per_channel`; else one joint weight per draw). The
    likelihood is tempered: raised to the largest power <= 1 that keeps the effective sample size
    >= `upd.ess_min` x K, so a few periods cannot collapse the ensemble onto one draw."""
    E = np.stack([w.revenue(x_act) for w in ens.worlds])  # (K, k, C)
    K, _, C = E.shape
    seen = np.isfinite(ch_rev) & (x_act > 0) & (np.nan_to_num(ch_rev) > 0)
    r = np.log(np.where(seen, np.nan_to_num(ch_rev), 1.0))[None] - np.log(np.where(seen[None], np.maximum(E, 1e-12), 1.0))
    ll = -0.5 * (np.where(seen[None], r, 0.0) / upd.sigma) ** 2
    ll = ll.sum(1)  # (K, C)
    if not upd.per_channel:
        ll = np.repeat(ll.sum(1, keepdims=True), C, axis=1)

    W, taus = np.full((K, C), 1.0 / K), np.zeros(C)
    for c in range(C):
        if seen[:, c].any():
            W[:, c], taus[c] = tempered_weights(ll[:, c], upd.ess_min)
    return DrawUpdate(weights=W, expected=E, tempering=taus, ess=1.0 / (W ** 2).sum(0))


def tempered_weights(ll: np.ndarray, ess_min: float) -> tuple[np.ndarray, float]:
    """(weights over draws, power): the draws' log likelihoods `ll` (K,) raised to the largest power <= 1 that keeps
    the effective number of draws >= `ess_min` x K, normalised. The ESS falls as the power grows: bisection."""
    def weights(tau: float) -> np.ndarray:
        z = tau * ll
        w = np.exp(z - z.max())
        return w / w.sum()

    def enough(tau: float) -> bool:
        return 1.0 / (weights(tau) ** 2).sum() >= ess_min * len(ll)

    if enough(1.0):
        return weights(1.0), 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if enough(mid) else (lo, mid)
    return weights(lo), lo
