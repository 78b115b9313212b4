"""A second journey generator for attribution checks, built from published facts rather than from our model.

`training/synth.py` places the highest-lift channels first in every journey, so first-click looks good there. Here
the roles follow what incrementality studies and channel practice report instead:

- **Broad-reach awareness comes first and does little per touch** (WeChat Moments feed ads, SMS blasts): display
  effects per impression are small (Lewis & Rao 2015, "The Unfavorable Economics of Measuring the Returns to
  Advertising", QJE).
- **Seeding channels carry the lift, with delay** (Douyin short video, Xiaohongshu notes, KOL livestreams): seeding
  on one channel converts on another days later, short video with about a 7-day seeding-to-conversion lag
  (/work/shared/domain.md); livestreams convert within a day or two.
- **Retargeting and brand search come last and add little** (Tmall ads retargeting the engaged, brand search by
  people who already decided): brand-keyword search ads had near-zero incremental effect in eBay's experiments
  (Blake, Nosko & Tadelis 2015, Econometrica); retargeting lift is small next to the selection that makes it look
  good (Johnson, Lewis & Nubbemeyer 2017, "Ghost Ads", JMR); last-click over-credits search (Li & Kannan 2014, JMR).
- **Organic purchases swamp ad conversions**: each customer buys on their own at a gamma-distributed rate
  (the NBD purchase-frequency model, Ehrenberg 1959), journeys or not; some customers are never exposed.

Process per user: up to `SLOTS` campaign episodes a year (each present with p 0.3). An episode opens with 1-3
awareness touches; with p 0.65 one or two seeding touches follow 1-5 days later; engaged users (a seeding touch)
are then retargeted (Tmall ads, Poisson 0.3/day for 12 days) and some search the brand. Each touch adds
`MASS[c]` to the episode's cumulative ad-conversion hazard, spread over time by a gamma kernel with mean `LAG[c]`
days; the conversion time comes from inverting that hazard, and touches after an ad conversion are not shown
(purchasers leave the retargeting audience).

Planted contribution (truth): channel c's removal effect = expected ad conversions lost when c's touches are
removed and the episode is re-simulated with the same random numbers (retargeting is triggered by the first
remaining seeding touch, so removing a seeding channel also removes the retargeting it triggered), normalised.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import gamma

CHANNELS = ["xiaohongshu", "douyin", "kol_live", "wechat_moments", "tmall_ads", "search", "sms"]
AWARENESS, SEEDING = ["wechat_moments", "sms"], ["douyin", "xiaohongshu", "kol_live"]
# cumulative conversion hazard one touch adds (assumed magnitudes; the ordering follows the studies above)
MASS = {"xiaohongshu": 0.10, "douyin": 0.09, "kol_live": 0.13, "wechat_moments": 0.008, "tmall_ads": 0.003,
        "search": 0.01, "sms": 0.004}
LAG = {"xiaohongshu": 5.0, "douyin": 7.0, "kol_live": 1.0, "wechat_moments": 3.0, "tmall_ads": 1.0, "search": 0.5,
       "sms": 1.0}  # mean days from touch to its conversions (gamma, shape 2)
COST = {"xiaohongshu": 0.8, "douyin": 0.6, "kol_live": 1.5, "wechat_moments": 0.5, "tmall_ads": 0.7, "search": 1.2,
        "sms": 0.05}
SLOTS, SLOT_DAYS, HORIZON_DAYS = 10, 36, 40  # episodes start in 36-day slots and run for at most 40 days
STEP = 0.25  # days per simulation step
START = pd.Timestamp("2026-01-01")


def _schedule(rng: np.random.Generator, n: int) -> list[tuple[int, float, int, int]]:
    """Touches as (episode, day within episode, channel index, trigger) rows; trigger 1 = retargeting/search."""
    rows: list[tuple[int, float, int, int]] = []
    ci = {c: i for i, c in enumerate(CHANNELS)}
    for e in range(n):
        t = 0.0
        for _ in range(rng.integers(1, 4)):
            rows.append((e, t, ci[AWARENESS[rng.integers(2)]], 0))
            t += rng.uniform(0.2, 1.5)
        if rng.random() < 0.65:
            s = t + rng.uniform(1, 5)
            for _ in range(1 + (rng.random() < 0.35)):
                rows.append((e, s, ci[SEEDING[rng.choice(3, p=[0.4, 0.4, 0.2])]], 0))
                s += rng.uniform(1, 6)
        # retargeting and search offsets, relative to the first seeding touch (drawn whether or not one exists,
        # so the counterfactual without a seeding channel reuses the same random numbers)
        for d in np.cumsum(rng.exponential(1 / 0.3, 6)):
            if d <= 12:
                rows.append((e, float(d), ci["tmall_ads"], 1))
        if rng.random() < 0.5:
            rows.append((e, float(rng.gamma(2, 2.5)), ci["search"], 1))
    return rows


def _hazard(ep: np.ndarray, day: np.ndarray, ch: np.ndarray, n: int, grid: np.ndarray) -> np.ndarray:
    """Cumulative ad-conversion hazard of each episode at each grid time."""
    mass = np.array([MASS[c] for c in CHANNELS])[ch]
    scale = np.array([LAG[c] / 2 for c in CHANNELS])[ch]
    H = np.zeros((n, len(grid)))
    np.add.at(H, ep, mass[:, None] * gamma.cdf(grid[None, :] - day[:, None], 2, scale=scale[:, None]))
    return H


def _resolve(sched: np.ndarray, n: int, drop: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Touch times with channel `drop` removed: retargeting/search move with the first remaining seeding touch."""
    ep, day, ch, trig = sched[:, 0].astype(int), sched[:, 1], sched[:, 2].astype(int), sched[:, 3].astype(int)
    keep = ch != drop if drop is not None else np.ones(len(ch), bool)
    seeding = np.isin(ch, [CHANNELS.index(c) for c in SEEDING]) & keep & (trig == 0)
    first_seed = np.full(n, np.inf)
    np.minimum.at(first_seed, ep[seeding], day[seeding])
    when = np.where(trig == 1, first_seed[ep] + day, day)
    keep &= np.isfinite(when) & (when < HORIZON_DAYS)
    return ep[keep], when[keep], ch[keep]


def make_journeys(seed: int, n_users: int = 20_000, days: int = 365, exposed: float = 0.8,
                  organic_rate: float = 0.03) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(touchpoints, purchases, truth). touchpoints: user_id, timestamp, channel, campaign, cost (canonical columns);
    purchases: user_id, timestamp, order_id (event rows for `purchase`); truth: planted contribution_share etc."""
    rng = np.random.default_rng([seed, 18])
    users = np.arange(n_users)
    is_exposed = rng.random(n_users) < exposed
    slot = rng.random((n_users, SLOTS)) < 0.3
    slot &= is_exposed[:, None]
    e_user, e_slot = np.nonzero(slot)
    n = len(e_user)
    e_start = e_slot * SLOT_DAYS + rng.uniform(0, SLOT_DAYS - HORIZON_DAYS / 4, n)
    sched = np.array(_schedule(rng, n), dtype=float).reshape(-1, 4)
    grid = np.arange(0, HORIZON_DAYS + STEP, STEP)

    ep, day, ch = _resolve(sched, n, None)
    H = _hazard(ep, day, ch, n, grid)
    expected = 1 - np.exp(-H[:, -1])
    removal = np.zeros(len(CHANNELS))
    for c in range(len(CHANNELS)):
        ep_c, day_c, ch_c = _resolve(sched, n, c)
        removal[c] = (expected - (1 - np.exp(-_hazard(ep_c, day_c, ch_c, n, grid[-1:])[:, 0]))).sum()

    # realised ad conversions: invert the cumulative hazard with an Exp(1) draw; later touches are not shown
    draw = rng.exponential(1.0, n)
    converts = draw < H[:, -1]
    t_conv = np.full(n, np.inf)
    idx = np.flatnonzero(converts)
    t_conv[idx] = grid[np.argmax(H[idx] >= draw[idx, None], axis=1)] + rng.uniform(-STEP, 0, len(idx))
    t_conv[idx] = np.maximum(t_conv[idx], 0.01)
    shown = day < t_conv[ep]
    abs_touch = e_start[ep[shown]] + day[shown]
    ok = abs_touch < days
    touch = pd.DataFrame({"u": e_user[ep[shown]][ok], "t": abs_touch[ok], "c": ch[shown][ok], "e": ep[shown][ok]})
    ad_t = e_start[idx] + t_conv[idx]
    ad = pd.DataFrame({"u": e_user[idx], "t": ad_t, "ad": True})[ad_t < days]

    # organic purchases: a gamma-distributed rate per user (NBD), Poisson in time
    rate = rng.gamma(0.8, organic_rate / 0.8, n_users)
    k = rng.poisson(rate * days)
    org = pd.DataFrame({"u": np.repeat(users, k), "t": rng.uniform(0, days, k.sum()), "ad": False})
    buys = pd.concat([ad, org], ignore_index=True).sort_values(["u", "t"], kind="stable")

    def stamp(t: np.ndarray) -> pd.Series:
        return (START + pd.to_timedelta(np.round(t * 86400), unit="s")).strftime("%Y-%m-%dT%H:%M:%S")

    touch = touch.sort_values(["u", "t"], kind="stable")
    names = np.array(CHANNELS)
    tp = pd.DataFrame({"user_id": [f"j{u:07d}" for u in touch["u"]], "timestamp": stamp(touch["t"].to_numpy()),
                       "channel": names[touch["c"]], "campaign": [f"{names[c]}_e{e % 4}" for c, e in zip(touch["c"], touch["e"])],
                       "cost": np.array([COST[c] for c in CHANNELS])[touch["c"]]})
    purchases = pd.DataFrame({"user_id": [f"j{u:07d}" for u in buys["u"]], "timestamp": stamp(buys["t"].to_numpy()),
                              "order_id": [f"{'ad' if a else 'o'}{i}" for i, a in enumerate(buys["ad"])]})
    truth = {"channels": CHANNELS, "mass": MASS, "lag_days": LAG, "episodes": int(n),
             "expected_ad_conversions": float(expected.sum()), "ad_conversions": int(len(ad)),
             "organic_purchases": int(len(org)),
             "contribution_share": dict(zip(CHANNELS, (removal / removal.sum()).round(6).tolist()))}
    return tp.reset_index(drop=True), purchases.reset_index(drop=True), truth


def events_frame(purchases: pd.DataFrame) -> pd.DataFrame:
    """Purchases as canonical events rows (for writing an events.csv the CLI reads)."""
    return purchases.assign(item_id="", event="purchase", quantity=1, amount=10.0,
                            channel="tmall")[["user_id", "item_id", "timestamp", "event", "quantity", "amount",
                                              "channel", "order_id"]]
