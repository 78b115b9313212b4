"""Lift tests: measured incremental revenue of one channel over a date range (a geo or holdout experiment).

lift.csv columns (docs/data.md): channel, start, end, incremental_revenue, ci_low, ci_high. The fit reads each row
as a measurement of the channel's modelled contribution summed over the history weeks whose start date lies in
[start, end], with Gaussian error whose 95% interval is [ci_low, ci_high] (sd = (ci_high - ci_low) / 3.92). That is
how Meridian's ROI priors and PyMC-Marketing's lift-test likelihood use experiments: they pin a channel's level (and,
at the spend tested, its curve) where habitual spend in the history cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.models.allocator.actuals import stripped_header
from omnidecide.models.allocator.mmm import History, MMMParams
from omnidecide.models.errors import InputError
from omnidecide.models.schema import MAX_NUMBER, parse_timestamps

COLUMNS = ("channel", "start", "end", "incremental_revenue", "ci_low", "ci_high")


@dataclass
class LiftTest:
    channel: int  # index into the history's channels
    weeks: np.ndarray  # (n,) bool: history periods inside [start, end]
    incremental_revenue: float
    sd: float


def parse_lift_tests(df: pd.DataFrame, channels: list[str], dates: pd.DatetimeIndex, source: str = "--lift-tests"
                     ) -> list[LiftTest]:
    """lift.csv -> LiftTests; any bad row is an InputError naming its row (1 = first data row) and field."""
    df = stripped_header(df, source)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    if df.empty:  # --lift-tests was given: training without any of its rows would drop them silently
        raise InputError(f"{source}: no lift test rows (only a header); remove --lift-tests or add the experiments")
    out = []
    dates = pd.DatetimeIndex(dates)
    step = int(round(float(np.median(np.diff(dates.to_numpy()).astype("timedelta64[D]").astype(float))))) if len(dates) > 1 else 7
    last_day = dates[-1] + pd.Timedelta(days=max(step, 1)) - pd.Timedelta(seconds=1)  # the last period's own days
    for i, r in enumerate(df.to_dict("records"), start=1):
        where = f"{source}: row {i}"
        ch = str(r["channel"]).strip()
        if not ch:
            raise InputError(f"{where}: channel is empty (channels: {', '.join(channels)})")
        if ch not in channels:
            raise InputError(f"{where}: channel {ch!r} is not in the history (channels: {', '.join(channels)})")
        day = {}
        for f in ("start", "end"):  # the documented forms (ISO date or datetime, unix seconds), never a guess
            d = parse_timestamps(pd.Series([r[f]], dtype=object)).iloc[0]
            if pd.isna(d):
                raise InputError(f"{where}: {f} {r[f]!r} is not a date (ISO-8601, e.g. 2024-02-01, or unix seconds)")
            day[f] = d.normalize() if f == "start" else d
        if day["end"] < day["start"]:
            raise InputError(f"{where}: end {day['end'].date()} is before start {day['start'].date()}")
        num = {}
        for f in ("incremental_revenue", "ci_low", "ci_high"):
            v = pd.to_numeric(pd.Series([r[f]]), errors="coerce").iloc[0]
            if pd.isna(v) or not np.isfinite(v):
                raise InputError(f"{where}: {f} {r[f]!r} is not a number")
            if abs(v) > MAX_NUMBER:  # finite but absurd: its square in the fit's likelihood would overflow
                raise InputError(f"{where}: {f} {r[f]!r} is beyond the cap of {MAX_NUMBER:g} (docs/data.md)")
            num[f] = float(v)
        if not num["ci_low"] <= num["incremental_revenue"] <= num["ci_high"] or num["ci_high"] <= num["ci_low"]:
            raise InputError(f"{where}: need ci_low < ci_high and incremental_revenue inside [ci_low, ci_high], got "
                             f"{num['incremental_revenue']:g} in [{num['ci_low']:g}, {num['ci_high']:g}]")
        if day["start"] < dates[0] or day["end"] > last_day:  # its revenue covers days the fit has no week for
            raise InputError(f"{where}: the test runs {day['start'].date()} to {day['end'].date()}, "
                             + (f"past the history's last period (ending {last_day.date()})" if day["end"] > last_day
                                else f"before the history's first period ({dates[0].date()})")
                             + "; its revenue would be matched to fewer weeks than it was measured over")
        weeks = np.asarray((dates >= day["start"]) & (dates <= day["end"]))
        if not weeks.any():
            raise InputError(f"{where}: no history period starts between {day['start'].date()} and {day['end'].date()} "
                             f"(history {dates[0].date()} to {dates[-1].date()})")
        out.append(LiftTest(channels.index(ch), weeks, num["incremental_revenue"], (num["ci_high"] - num["ci_low"]) / 3.92))
    return out


def anchored(worlds: list[MMMParams], h: History, lift: list[LiftTest], rng: np.random.Generator) -> list[MMMParams]:
    """The planning draws with each tested channel's effect size rescaled so that, in every draw, its revenue over
    the test weeks is a draw from the test's own interval (N(incremental_revenue, sd), floored at 0).

    Why: the draws are widened after the fit for what the history cannot tell (pipeline.tempered / widened_worlds)
    and a quarter of them are time-fold refits made without the tests, so without this a channel a test measured to
    +-10% would plan as if it were known to +-50%, and the robust choice would hedge toward the equal split against
    doubt the test already removed. Only the level is re-anchored: the curve's shape (half-saturation, slope, decay)
    keeps its width, since one test at one spend level pins one point of the curve. Several tests of one channel
    are pooled (measured sum over modelled sum). A draw in which the channel earns nothing is left as is."""
    if not lift:
        return list(worlds)
    peak_any = h.peaks.max(1)
    out = []
    for w in worlds:
        modelled = w.media(h.spend, peak_any, woy=h.woy)
        num, den = np.zeros(len(w.beta)), np.zeros(len(w.beta))
        for lt in lift:
            num[lt.channel] += max(rng.normal(lt.incremental_revenue, lt.sd), 0.0)
            den[lt.channel] += modelled[lt.weeks, lt.channel].sum()
        scale = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
        d = w.to_dict()
        d["beta"] = (np.asarray(w.beta) * scale).tolist()
        out.append(MMMParams.from_dict(d))
    return out
