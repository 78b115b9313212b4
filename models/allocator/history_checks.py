"""Checks on a marketing-mix history's calendar and columns before the fit (`mmm.history_from_frame`).

Why here: the fit carries each period's spend into the next ones (adstock) and reads the season off the dates, so a
history with a hole, too short a span, or a channel it cannot name would be fitted quietly and wrongly. Each check is
an InputError naming the file, the column or dates, and the reason.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from omnidecide.models.errors import InputError

RESERVE = "reserve"  # = planning.RESERVE (not imported: planning imports the model that imports this)
MIN_PERIODS = 52  # a year of weeks: season and media cannot be told apart on less
YEAR_DAYS = 364  # ... and whatever the period, the history must span a year of the calendar


def check_columns(spend_cols: list[str], source: str) -> None:
    """A `spend_` column with nothing after the prefix has no channel name a flag or a lift test could use."""
    blank = [c for c in spend_cols if not c[len("spend_"):].strip()]
    if blank:
        raise InputError(f"{source}: column {blank[0]!r} has no channel name after spend_ (write e.g. spend_search)")
    for c in spend_cols:
        name = c[len("spend_"):]
        if name == RESERVE:  # the plan's own row for the held-back budget: the two would be summed as one channel
            raise InputError(f"{source}: column {c!r}: {RESERVE!r} is the plan's row for the held-back budget "
                             "(--reserve); rename the channel")
        if "=" in name:  # --min/--max/--roi-floor CH=AMOUNT could never name it
            raise InputError(f"{source}: column {c!r}: a channel name cannot contain '='; rename the channel")


def check_calendar(dates: pd.Series, source: str) -> int:
    """dates (sorted) -> the period in days (the median step); InputError on too few periods, too short a span, or
    a gap (a step over 1.5 periods: missing rows) or two rows closer than half a period (a week written twice)."""
    n = len(dates)
    if n < MIN_PERIODS:
        raise InputError(f"{source}: {n} periods; at least {MIN_PERIODS} (a year) are needed to separate season from "
                         "media")
    d = pd.DatetimeIndex(dates)
    diff = np.diff(d.to_numpy()).astype("timedelta64[D]").astype(float)
    step = max(int(round(float(np.median(diff)))), 1)
    if n * step < YEAR_DAYS:
        raise InputError(f"{source}: {n} periods of {step} day(s) cover {n * step} days; at least a year of history "
                         f"is needed to separate season from media ({-(-YEAR_DAYS // step)} periods of {step} day(s))")
    for i in np.flatnonzero((diff > 1.5 * step) | (diff < 0.5 * step))[:1]:
        a, b, days = d[i].date(), d[i + 1].date(), int(diff[i])
        what = (f"{int(round(days / step)) - 1} period(s) missing" if days > step else
                "two rows for one period")
        raise InputError(f"{source}: dates jump from {a} to {b} ({days} days; the history's period is {step} days): "
                         f"{what}. Every period is needed (its spend carries into the next ones): add the missing "
                         "rows (0 where nothing was spent)" if days > step else
                         f"{source}: dates {a} and {b} are {days} day(s) apart but the history's period is {step} "
                         f"days: {what}; keep one row per period")
    return step
