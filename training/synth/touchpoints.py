"""Ad journeys (touchpoints.csv) with a planted per-channel conversion lift; a converting journey ends in a
purchase, returned to the events aspect as explicit conversions, and each channel's removal effect is the truth
attribution models are checked against."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.training.synth.catalogue import Samplers, choice_rows, pick_items
from omnidecide.training.synth.users import Users
from omnidecide.training.synth.world import (TOUCH_BASE_RATE, TOUCH_CHANNELS, TOUCH_COST, TOUCH_LIFT,
                                             TOUCH_POSITION, user_ids)


@dataclass
class Journeys:
    touchpoints: pd.DataFrame   # touchpoints.csv rows
    conversions: pd.DataFrame   # u (row in the block), i (item index), t (seconds from start): the purchases
    removal: np.ndarray         # per channel: expected conversions lost without it
    n_journeys: int
    n_converted: int


def journeys_block(rng: np.random.Generator, users: Users, days: int, start: pd.Timestamp,
                   samplers: Samplers) -> Journeys:
    n = len(users)
    per_user = rng.poisson(2.0 * days / 365, n)
    j_user = np.repeat(np.arange(n), per_user)
    lo = users.active_start[j_user]
    hi = np.minimum(users.churn_day[j_user], days - 15)
    ok = hi > lo
    j_user, lo, hi = j_user[ok], lo[ok], hi[ok]
    j_start = lo + rng.random(len(j_user)) * (hi - lo)
    n_touch = rng.integers(1, 6, len(j_user))
    t_j = np.repeat(np.arange(len(j_user)), n_touch)
    pos = (np.arange(len(t_j)) - np.repeat(np.cumsum(n_touch) - n_touch, n_touch)) / np.maximum(np.repeat(n_touch, n_touch) - 1, 1)
    # position in [0, 1]: early touches favour upper-funnel channels
    logits = np.outer(1 - 2 * pos, TOUCH_POSITION) * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ch = (rng.random(len(t_j))[:, None] > np.cumsum(probs, 1)).sum(1)
    ch = np.minimum(ch, len(TOUCH_CHANNELS) - 1)
    t_time = (j_start[t_j] * 86400 + pos * rng.uniform(1, 14, len(t_j)) * 86400).astype(np.int64)
    lift = np.array([TOUCH_LIFT[c] for c in TOUCH_CHANNELS])
    touched = np.zeros((len(j_user), len(TOUCH_CHANNELS)), dtype=bool)
    touched[t_j, ch] = True
    miss = np.where(touched, 1 - lift[None, :], 1.0)
    p_conv = 1 - (1 - TOUCH_BASE_RATE) * miss.prod(1)
    converts = rng.random(len(j_user)) < p_conv
    removal = np.zeros(len(TOUCH_CHANNELS))
    for c in range(len(TOUCH_CHANNELS)):
        m = miss.copy()
        m[:, c] = 1.0
        removal[c] = (p_conv - (1 - (1 - TOUCH_BASE_RATE) * m.prod(1))).sum()
    last_t = pd.Series(t_time).groupby(t_j).max().reindex(range(len(j_user))).to_numpy()
    cj = np.flatnonzero(converts)
    cat = choice_rows(rng, users.taste, j_user[cj])
    item = pick_items(rng, cat, users.brand_pref[j_user[cj], cat], samplers)
    conv_t = last_t[cj] + rng.integers(3600, 2 * 86400, len(cj))
    touch = pd.DataFrame({
        "user_id": user_ids(users.uidx[j_user[t_j]]),
        "timestamp": (start + pd.to_timedelta(t_time, unit="s")).strftime("%Y-%m-%dT%H:%M:%S"),
        "channel": np.array(TOUCH_CHANNELS)[ch],
        "campaign": [f"{TOUCH_CHANNELS[c]}_c{int(j % 3)}" for c, j in zip(ch, t_j)],
        "cost": np.array([TOUCH_COST[c] for c in TOUCH_CHANNELS])[ch],
    })
    conv = pd.DataFrame({"u": j_user[cj], "i": item, "t": conv_t})
    return Journeys(touch, conv, removal, len(j_user), int(converts.sum()))
