"""The synthetic omnichannel world: canonical files with planted, documented structure (docs/data.md).

Users are generated in blocks of `BLOCK` and appended to the CSVs, so memory stays bounded whatever N is;
each block has its own seed stream, so the files are identical for a seed. What is planted (and
written to truth.json / truth_users.csv for tests to check that models recover it):

- tastes: each user favours 3 categories (Dirichlet weights) and one brand per category (x4 weight);
- long-tail popularity: Zipf within each category;
- funnel: view -> click -> cart -> purchase with fixed conversion rates;
- repeats: consumable categories are re-bought every ~cycle_days (per user-item jitter); durables once;
- channel and store per event: a preferred channel per user, a home store for in-store events;
- stock-outs: some items sell out on a given day (no purchase after it; stock 0 in items.csv);
- churn: some users fade out (activity declines linearly over `fade_days`) and stop at `churn_date`;
- touchpoint journeys: per-channel conversion lift; truth gives each channel's removal-effect share;
- weekly marketing mix: adstock + Hill per channel, season and 618 / Double 11 peaks, confounded spend.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.response import media_revenue
from omnidecide.training import progress

BLOCK = 10_000
END = pd.Timestamp("2026-07-01")  # exclusive end of the event history; start = END - days
# name, consumable, re-buy cycle in days (None for durables), median price
CATEGORIES = [
    ("dairy", True, 7, 12), ("diapers", True, 12, 110), ("snacks", True, 10, 15), ("baby_formula", True, 14, 260),
    ("coffee_tea", True, 21, 45), ("pet_food", True, 30, 120), ("cleaning", True, 35, 30), ("shampoo", True, 40, 60),
    ("skincare", True, 45, 180), ("vitamins", True, 60, 150),
    ("phones", False, None, 3000), ("headphones", False, None, 600), ("small_appliances", False, None, 400),
    ("furniture", False, None, 1500), ("apparel", False, None, 250), ("shoes", False, None, 450),
    ("books", False, None, 50), ("toys", False, None, 150), ("sports", False, None, 300), ("luggage", False, None, 700),
]
EVENT_CHANNELS = ["app", "mini_program", "web", "store", "tmall", "douyin_shop"]
N_STORES = 20
BRANDS_PER_CATEGORY = 4
FUNNEL = {"view_to_click": 0.35, "click_to_cart": 0.4, "cart_to_purchase": 0.6}
REBUY_KEEP = 0.85  # chance a consumable re-buy happens at each cycle while the user is active
TOUCH_CHANNELS = ["xiaohongshu", "douyin", "kol_live", "wechat_moments", "tmall_ads", "search", "sms"]
TOUCH_LIFT = {"xiaohongshu": 0.08, "douyin": 0.10, "kol_live": 0.12, "wechat_moments": 0.05,
              "tmall_ads": 0.06, "search": 0.03, "sms": 0.01}
TOUCH_COST = {"xiaohongshu": 0.8, "douyin": 0.6, "kol_live": 1.5, "wechat_moments": 0.5, "tmall_ads": 0.7,
              "search": 1.2, "sms": 0.05}
TOUCH_BASE_RATE = 0.02
# Upper-funnel channels tend to come first in a journey, lower-funnel (search, sms) last.
TOUCH_POSITION = np.array([0.9, 0.8, 0.6, 0.5, 0.2, -0.6, -0.8])
MMM_CHANNELS = ["douyin", "wechat_moments", "tmall_ads", "search", "kol_live", "sms"]
PEAK_MEDIA_MULTIPLIER = 1.5


def is_peak(dates: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """Sale peaks: the 618 run-up (1-18 June) and Double 11 (1-11 November)."""
    d = pd.DatetimeIndex(dates)
    return ((d.month == 6) & (d.day <= 18)) | ((d.month == 11) & (d.day <= 11))


def _catalogue(rng: np.random.Generator, n_items: int) -> tuple[pd.DataFrame, np.ndarray]:
    n_cat = len(CATEGORIES)
    cat_of = np.sort(np.concatenate([np.arange(n_cat), rng.integers(0, n_cat, n_items - n_cat)]))
    rank = np.zeros(n_items, dtype=int)
    for c in range(n_cat):
        idx = np.flatnonzero(cat_of == c)
        rank[idx] = rng.permutation(len(idx))
    popularity = 1.0 / (rank + 1.0) ** 1.1  # Zipf within the category
    brand = rng.integers(0, BRANDS_PER_CATEGORY, n_items)
    median_price = np.array([CATEGORIES[c][3] for c in cat_of], dtype=float)
    price = np.round(median_price * rng.lognormal(0, 0.35, n_items), 2)
    items = pd.DataFrame({
        "item_id": [f"i{i:05d}" for i in range(n_items)],
        "category": [CATEGORIES[c][0] for c in cat_of],
        "brand": [f"{CATEGORIES[c][0]}_b{b}" for c, b in zip(cat_of, brand)],
        "price": price,
        "margin": np.round(rng.uniform(0.1, 0.45, n_items), 3),
    })
    return items, np.stack([cat_of, brand, popularity], axis=1)


def _item_samplers(meta: np.ndarray) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """For each (category, preferred brand): the category's items and their cumulative pick probabilities."""
    cat_of, brand, pop = meta[:, 0].astype(int), meta[:, 1].astype(int), meta[:, 2]
    out = {}
    for c in range(len(CATEGORIES)):
        idx = np.flatnonzero(cat_of == c)
        for b in range(BRANDS_PER_CATEGORY):
            w = pop[idx] * np.where(brand[idx] == b, 4.0, 1.0)
            out[(c, b)] = (idx, np.cumsum(w) / w.sum())
    return out


def _pick_items(rng, cats: np.ndarray, brands: np.ndarray, samplers) -> np.ndarray:
    out = np.empty(len(cats), dtype=int)
    u = rng.random(len(cats))
    key = cats * BRANDS_PER_CATEGORY + brands
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        idx, cdf = samplers[(k // BRANDS_PER_CATEGORY, k % BRANDS_PER_CATEGORY)]
        out[rows] = idx[np.minimum(np.searchsorted(cdf, u[rows]), len(idx) - 1)]
    return out


def _choice_rows(rng, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row from weights[rows] (each row's weights sum to 1)."""
    cdf = np.cumsum(weights[rows], axis=1)
    return np.minimum((rng.random(len(rows))[:, None] > cdf).sum(1), weights.shape[1] - 1)


def _users_block(rng, first: int, n: int, days: int) -> pd.DataFrame:
    """Per-user latent truth for one block."""
    n_cat = len(CATEGORIES)
    fav = np.argsort(rng.random((n, n_cat)), axis=1)[:, :3]
    taste = np.full((n, n_cat), 0.12 / n_cat)
    np.put_along_axis(taste, fav, 0.88 * rng.dirichlet(np.ones(3) * 1.5, n), axis=1)
    taste /= taste.sum(1, keepdims=True)
    signup = rng.integers(-500, int(days * 0.8), n)
    active_start = np.maximum(signup, 0)
    churner = rng.random(n) < 0.4
    churn_day = np.where(churner, active_start + 45 + rng.exponential(days * 0.6, n), np.inf)
    return pd.DataFrame({
        "uidx": np.arange(first, first + n),
        "signup": signup, "active_start": active_start,
        "churn_day": churn_day, "fade_days": rng.uniform(21, 60, n),
        "rate": rng.lognormal(np.log(1.4), 0.6, n),  # sessions per week
        "channel": rng.integers(0, len(EVENT_CHANNELS), n),
        "store": rng.integers(0, N_STORES, n),
        "taste": list(taste), "fav": list(fav),
        "brand_pref": list(rng.integers(0, BRANDS_PER_CATEGORY, (n, n_cat))),
    })


def activity(day: np.ndarray, churn_day: np.ndarray, fade_days: np.ndarray) -> np.ndarray:
    """1 while healthy, falling linearly to 0.15 over the fade, 0 from the churn day on."""
    into_fade = (day - (churn_day - fade_days)) / fade_days
    level = np.clip(1.0 - 0.85 * into_fade, 0.15, 1.0)
    return np.where(day >= churn_day, 0.0, level)


def _events_block(rng, users: pd.DataFrame, days: int, start: pd.Timestamp, meta: np.ndarray, samplers,
                  stockout_day: np.ndarray, price: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    cat_of = meta[:, 0].astype(int)
    consumable = np.array([c[1] for c in CATEGORIES])
    cycle = np.array([c[2] or 0 for c in CATEGORIES], dtype=float)
    day = np.arange(days)
    dates = start + pd.to_timedelta(day, unit="D")
    season = 1.0 + 1.5 * is_peak(dates)
    act = activity(day[None, :], users["churn_day"].to_numpy()[:, None], users["fade_days"].to_numpy()[:, None])
    act *= day[None, :] >= users["active_start"].to_numpy()[:, None]
    lam = users["rate"].to_numpy()[:, None] / 7.0 * act * season[None, :]
    counts = rng.poisson(lam)
    u_row, s_day = np.nonzero(counts)
    reps = counts[u_row, s_day]
    u_row, s_day = np.repeat(u_row, reps), np.repeat(s_day, reps)
    n_sess = len(u_row)
    taste = np.stack(users["taste"].to_numpy())
    brand_pref = np.stack(users["brand_pref"].to_numpy())
    pref_channel = users["channel"].to_numpy()
    s_cat = _choice_rows(rng, taste, u_row)
    s_channel = np.where(rng.random(n_sess) < 0.6, pref_channel[u_row], rng.integers(0, len(EVENT_CHANNELS), n_sess))
    s_time = s_day * 86400 + rng.integers(8 * 3600, 23 * 3600, n_sess)
    s_id = np.arange(n_sess)

    # views: 1 + geometric extra per session, all in the session's category
    n_views = 1 + rng.geometric(0.5, n_sess) - 1
    v_sess = np.repeat(s_id, n_views)
    v_user = u_row[v_sess]
    v_item = _pick_items(rng, s_cat[v_sess], brand_pref[v_user, s_cat[v_sess]], samplers)
    v_time = s_time[v_sess] + np.arange(len(v_sess)) % 7 * 40
    click = rng.random(len(v_sess)) < FUNNEL["view_to_click"]
    cart = click & (rng.random(len(v_sess)) < FUNNEL["click_to_cart"])
    buy = cart & (rng.random(len(v_sess)) < FUNNEL["cart_to_purchase"])
    buy &= s_day[v_sess] < stockout_day[v_item]  # sold-out items cannot be bought
    parts = [
        (v_user, v_item, v_time, "view", v_sess),
        (v_user[click], v_item[click], v_time[click] + 20, "click", v_sess[click]),
        (v_user[cart], v_item[cart], v_time[cart] + 60, "cart", v_sess[cart]),
    ]
    # ad journeys: a converting journey ends in a purchase (session -2 marks it: channel tmall, order "tp...")
    tp = _touchpoints_block(rng, users, days, start, taste, samplers, brand_pref)
    conv = tp.attrs["conversions"]
    conv = conv[(conv["t"] < days * 86400) & (conv["t"] // 86400 < stockout_day[conv["i"]])]
    # durables are bought once per user: later funnel purchases of the same item stop at the cart
    buys = pd.DataFrame({"u": v_user[buy], "i": v_item[buy], "t": v_time[buy] + 120, "s": v_sess[buy]})
    buys = pd.concat([buys, conv.assign(s=-2)], ignore_index=True)
    buys = buys.sort_values("t", kind="stable")
    buys = buys[consumable[cat_of[buys["i"]]] | ~buys.duplicated(["u", "i"])]

    # consumables: re-buys every ~cycle days (user-item jitter) while the user is active
    first = buys[consumable[cat_of[buys["i"]]]].drop_duplicates(["u", "i"])
    ucycle = cycle[cat_of[first["i"]]] * rng.lognormal(0, 0.15, len(first))
    k_max = int(days / cycle[consumable].min()) + 1
    t_re = first["t"].to_numpy()[:, None] + (np.arange(1, k_max + 1)[None, :] * ucycle[:, None] * 86400).astype(np.int64)
    d_re = t_re // 86400
    fu = first["u"].to_numpy()
    alive = activity(d_re, users["churn_day"].to_numpy()[fu][:, None], users["fade_days"].to_numpy()[fu][:, None])
    keep = (d_re < days) & (rng.random(d_re.shape) < REBUY_KEEP * alive)
    keep &= d_re < stockout_day[first["i"].to_numpy()][:, None]
    keep = np.cumprod(keep, axis=1).astype(bool)  # a skipped cycle ends the habit
    r_row, r_k = np.nonzero(keep)
    rebuys = pd.DataFrame({"u": fu[r_row], "i": first["i"].to_numpy()[r_row], "t": t_re[r_row, r_k], "s": -1})
    purchases = pd.concat([buys, rebuys], ignore_index=True)

    frames = [pd.DataFrame({"u": u, "i": i, "t": t, "event": ev, "s": s}) for u, i, t, ev, s in parts]
    pq = purchases.assign(event="purchase")
    frames.append(pq)
    ev = pd.concat(frames, ignore_index=True)
    ev["channel"] = np.where(ev["s"] >= 0, s_channel[np.maximum(ev["s"], 0)],
                             np.where(ev["s"] == -2, EVENT_CHANNELS.index("tmall"), pref_channel[ev["u"]]))
    is_buy = (ev["event"] == "purchase").to_numpy()
    qty = np.where(is_buy, 1 + rng.poisson(0.3, len(ev)), np.nan)
    peak_discount = np.where(is_peak(start + pd.to_timedelta(ev["t"] // 86400, unit="D")), 0.9, 1.0)
    ev["quantity"] = qty
    ev["amount"] = np.round(qty * price[ev["i"]] * peak_discount, 2)

    # returns of some durable purchases, a few days later
    dur_buy = is_buy & ~consumable[cat_of[ev["i"]]]
    ret = dur_buy & (rng.random(len(ev)) < 0.04)
    returns = ev[ret].assign(event="return", t=lambda d: d["t"] + rng.integers(3, 11, ret.sum()) * 86400)
    returns = returns[returns["t"] < days * 86400]
    ev = pd.concat([ev, returns], ignore_index=True)
    ev["amount"] = np.where(ev["event"].isin(["purchase", "return"]), ev["amount"], np.nan)
    ev["quantity"] = np.where(ev["event"].isin(["purchase", "return"]), ev["quantity"], np.nan)

    # coupons: claimed in some sessions
    claim = rng.random(n_sess) < 0.03
    coupons = pd.DataFrame({"u": u_row[claim], "i": -1, "t": s_time[claim] + 5, "event": "coupon_claim",
                            "s": s_id[claim], "channel": s_channel[claim]})
    ev = pd.concat([ev, coupons], ignore_index=True)

    uid = users["uidx"].to_numpy()
    out = pd.DataFrame({
        "user_id": [f"u{x:07d}" for x in uid[ev["u"]]],
        "item_id": np.where(ev["i"] >= 0, pd.Series(ev["i"]).map(lambda x: f"i{x:05d}"), ""),
        "timestamp": (start + pd.to_timedelta(ev["t"], unit="s")).dt.strftime("%Y-%m-%dT%H:%M:%S"),
        "event": ev["event"],
        "quantity": ev["quantity"],
        "amount": ev["amount"],
        "channel": np.array(EVENT_CHANNELS)[ev["channel"]],
        "store_id": "",
        "order_id": "",
        "session_id": np.where(ev["s"] >= 0, [f"s{uid[0]:07d}_{x}" for x in ev["s"]], ""),
    })
    in_store = out["channel"] == "store"
    out.loc[in_store, "store_id"] = [f"st{x:02d}" for x in users["store"].to_numpy()[ev["u"][in_store]]]
    buy_rows = out["event"] == "purchase"
    out.loc[buy_rows, "order_id"] = "o" + out.loc[buy_rows, "user_id"].str[1:] + "_" + out.loc[buy_rows, "timestamp"].str[:10]
    from_ad = buy_rows & (ev["s"] == -2).to_numpy()
    out.loc[from_ad, "order_id"] = "tp" + out.loc[from_ad, "user_id"].str[1:] + "_" + ev["t"][from_ad].astype(str)
    out["_t"] = ev["t"].to_numpy()
    out = out.sort_values(["user_id", "_t"], kind="stable").drop(columns="_t")
    return out, tp


def _touchpoints_block(rng, users, days, start, taste, samplers, brand_pref):
    """Journeys of ad touches; a converting journey ends in a purchase (written as an event with order_id tp...)."""
    n = len(users)
    per_user = rng.poisson(2.0 * days / 365, n)
    j_user = np.repeat(np.arange(n), per_user)
    lo = users["active_start"].to_numpy()[j_user]
    hi = np.minimum(users["churn_day"].to_numpy()[j_user], days - 15)
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
    # removal effect per channel: expected conversions lost without it (the planted contribution)
    removal = np.zeros(len(TOUCH_CHANNELS))
    for c in range(len(TOUCH_CHANNELS)):
        m = miss.copy()
        m[:, c] = 1.0
        removal[c] = (p_conv - (1 - (1 - TOUCH_BASE_RATE) * m.prod(1))).sum()
    last_t = pd.Series(t_time).groupby(t_j).max().reindex(range(len(j_user))).to_numpy()
    cj = np.flatnonzero(converts)
    cat = _choice_rows(rng, taste, j_user[cj])
    item = _pick_items(rng, cat, brand_pref[j_user[cj], cat], samplers)
    conv_t = last_t[cj] + rng.integers(3600, 2 * 86400, len(cj))
    uid = users["uidx"].to_numpy()
    touch = pd.DataFrame({
        "user_id": [f"u{x:07d}" for x in uid[j_user[t_j]]],
        "timestamp": (start + pd.to_timedelta(t_time, unit="s")).strftime("%Y-%m-%dT%H:%M:%S"),
        "channel": np.array(TOUCH_CHANNELS)[ch],
        "campaign": [f"{TOUCH_CHANNELS[c]}_c{int(j % 3)}" for c, j in zip(ch, t_j)],
        "cost": np.array([TOUCH_COST[c] for c in TOUCH_CHANNELS])[ch],
    })
    conv = pd.DataFrame({"u": j_user[cj], "i": item, "t": conv_t})
    touch.attrs["conversions"] = conv
    touch.attrs["removal"] = removal
    touch.attrs["journeys"] = (len(j_user), int(converts.sum()))
    return touch


def make_marketing_mix(seed: int, channels: list[str] | None = None, weeks: int = 156,
                       end: pd.Timestamp = END, reported: bool = False,
                       reported_bias: tuple[float, float] = (0.8, 1.6), reported_noise: float = 0.2) -> tuple[pd.DataFrame, dict]:
    """Weekly revenue = baseline(trend, season, peaks, promo) + sum of per-channel adstock/Hill media effects.

    Spend is confounded on purpose: marketers spend more in peak weeks, when the baseline is high too.
    reported (opt-in; off leaves every column and the truth unchanged): also write `revenue_<channel>`, the
    platform-reported revenue a marketer gets from Douyin / Tmall / WeChat: bias_c x the channel's true incremental
    revenue that week x lognormal(0, reported_noise), bias_c ~ U(reported_bias) per channel (platforms over-claim),
    drawn from its own generator so the other columns do not move.
    """
    rng = np.random.default_rng([seed, 7])
    channels = channels or MMM_CHANNELS
    weeks_idx = pd.date_range(end=end - pd.Timedelta(days=1), periods=weeks, freq="W-MON")
    peak = is_peak(weeks_idx) | is_peak(weeks_idx + pd.Timedelta(days=6))
    t = np.arange(weeks)
    woy = weeks_idx.isocalendar().week.to_numpy().astype(float)
    level, trend, amp, phase = 6_000_000.0, 0.002, 0.12, rng.uniform(0, 2 * np.pi)
    peak_lift, promo_lift, noise_sd = 0.8, 0.06, 0.02
    promo = (rng.random(weeks) < 0.1).astype(int)
    seasonal = np.sin(2 * np.pi * woy / 52 + phase)
    baseline = level * (1 + trend * t) * (1 + amp * seasonal) * (1 + peak_lift * peak) + promo_lift * level * promo
    params = {}
    spend = np.zeros((weeks, len(channels)))
    for j, ch in enumerate(channels):
        typical = rng.uniform(20_000, 150_000)
        decay = rng.uniform(0.1, 0.7)
        half = typical / (1 - decay) * rng.uniform(0.8, 2.0)
        slope = rng.uniform(1.0, 2.5)
        roi = rng.uniform(1.5, 7.0)  # ROI at typical spend, steady state
        steady = typical / (1 - decay)
        beta = roi * typical / (steady**slope / (steady**slope + half**slope))
        spend[:, j] = typical * (1 + 0.7 * peak + 0.25 * seasonal) * rng.lognormal(0, 0.3, weeks)
        params[ch] = {"decay": decay, "half_saturation": half, "slope": slope, "beta": beta,
                      "typical_spend": typical, "roi_at_typical": roi}
    spend = np.round(spend, 2)
    mult = 1 + (PEAK_MEDIA_MULTIPLIER - 1) * peak
    media = media_revenue(spend, [params[c]["decay"] for c in channels], [params[c]["half_saturation"] for c in channels],
                          [params[c]["slope"] for c in channels], [params[c]["beta"] for c in channels], multiplier=mult)
    revenue = baseline + media.sum(1) + rng.normal(0, noise_sd * level, weeks)
    df = pd.DataFrame({"date": weeks_idx.strftime("%Y-%m-%d"), "revenue": np.round(revenue, 2)})
    for j, ch in enumerate(channels):
        df[f"spend_{ch}"] = spend[:, j]
    df["promo"] = promo
    if reported:
        rrng = np.random.default_rng([seed, 7, 1])
        bias = rrng.uniform(*reported_bias, len(channels))
        rep = media * bias * rrng.lognormal(0, reported_noise, media.shape)
        for j, ch in enumerate(channels):
            df[f"revenue_{ch}"] = np.round(rep[:, j], 2)
            params[ch]["reported_bias"] = float(bias[j])
    truth = {
        "channels": params,
        "baseline": {"level": level, "trend_per_week": trend, "season_amplitude": amp, "season_phase": phase,
                     "peak_lift": peak_lift, "promo_lift": promo_lift, "noise_sd_share": noise_sd,
                     "formula": "level*(1+trend*t)*(1+amp*sin(2*pi*isoweek/52+phase))*(1+peak_lift*peak)+promo_lift*level*promo"},
        "peak_media_multiplier": PEAK_MEDIA_MULTIPLIER,
        "peak_weeks": list(df["date"][peak]),
        "media_formula": "beta*hill(geometric_adstock(spend,decay),half_saturation,slope)*(1+(mult-1)*peak) (models/response.py)",
        "media_revenue_share": float(media.sum() / revenue.sum()),
    }
    return df, truth


CORRUPTIONS = [  # (column, bad value, reason exactly as models/schema.validate words it)
    ("user_id", "", "missing user_id"),
    ("timestamp", "not-a-time", "unparsable timestamp"),
    ("timestamp", "1970-01-02T00:00:00", "impossible timestamp"),
    ("event", "teleport", "unknown event"),
    ("quantity", "-1", "negative quantity"),
    ("amount", "-5.00", "negative amount"),
    ("item_id", "", "missing item_id"),  # only on view/click/cart rows (purchases, coupons may be item-less)
]


def _corrupt(rng, events: pd.DataFrame, share: float, counts: dict[str, int]) -> pd.DataFrame:
    n_bad = int(round(share * len(events)))
    if not n_bad:
        return events
    events = events.astype({"quantity": object, "amount": object})
    candidates = np.flatnonzero(events["event"].isin(["view", "click", "cart"]).to_numpy())
    rows = rng.choice(candidates, size=min(n_bad, len(candidates)), replace=False)
    for k, r in enumerate(rows):
        col, value, reason = CORRUPTIONS[k % len(CORRUPTIONS)]
        events.iat[r, events.columns.get_loc(col)] = value
        counts[reason] = counts.get(reason, 0) + 1
    return events


def generate(out: str | Path, n_users: int = 1000, seed: int = 0, n_items: int = 400, days: int = 365,
             corrupt: float = 0.0) -> dict:
    """Write events, items, store_stock, users, touchpoints, marketing_mix, truth.json and truth_users.csv to `out`."""
    with progress.task("synth", -(-n_users // BLOCK) + 1):
        return _generate(Path(out), n_users, seed, n_items, days, corrupt)


def _generate(out: Path, n_users: int, seed: int, n_items: int, days: int, corrupt: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = END - pd.Timedelta(days=days)
    rng = np.random.default_rng([seed, 0])
    items, meta = _catalogue(rng, n_items)
    samplers = _item_samplers(meta)
    stockout_day = np.where(rng.random(n_items) < 0.05, rng.integers(days // 3, days, n_items), np.iinfo(np.int64).max)
    sold_out = stockout_day < days
    items["stock"] = np.where(sold_out, 0, rng.integers(5, 500, n_items))
    items.to_csv(out / "items.csv", index=False)
    store_stock = pd.DataFrame([(f"st{s:02d}", items["item_id"][i], 0 if sold_out[i] or rng.random() < 0.1 else int(rng.integers(1, 40)))
                                for s in range(N_STORES) for i in range(n_items)], columns=["store_id", "item_id", "stock"])
    store_stock.to_csv(out / "store_stock.csv", index=False)

    paths = {name: out / f"{name}.csv" for name in ("events", "users", "touchpoints", "truth_users")}
    for p in paths.values():
        p.unlink(missing_ok=True)
    bad_counts: dict[str, int] = {}
    removal = np.zeros(len(TOUCH_CHANNELS))
    n_events = n_touch = n_journeys = n_conv = 0
    blocks = list(enumerate(range(0, n_users, BLOCK)))
    for b, first in blocks:
        progress.step(f"users {first + 1:,}-{min(first + BLOCK, n_users):,} of {n_users:,}")
        brng = np.random.default_rng([seed, 1, b])
        users = _users_block(brng, first, min(BLOCK, n_users - first), days)
        events, touch = _events_block(brng, users, days, start, meta, samplers, stockout_day, items["price"].to_numpy())
        events = _corrupt(brng, events, corrupt, bad_counts)
        header = b == 0
        events.to_csv(paths["events"], mode="a", header=header, index=False)
        touch.to_csv(paths["touchpoints"], mode="a", header=header, index=False)
        removal += touch.attrs["removal"]
        n_events, n_touch = n_events + len(events), n_touch + len(touch)
        n_journeys, n_conv = n_journeys + touch.attrs["journeys"][0], n_conv + touch.attrs["journeys"][1]
        _users_csv(brng, users, start).to_csv(paths["users"], mode="a", header=header, index=False)
        _truth_users(users, start, days).to_csv(paths["truth_users"], mode="a", header=header, index=False)

    progress.step("marketing mix")
    mmm, mmm_truth = make_marketing_mix(seed)
    mmm.to_csv(out / "marketing_mix.csv", index=False)
    truth = {
        "seed": seed, "n_users": n_users, "n_items": n_items, "days": days,
        "start": str(start.date()), "end_exclusive": str(END.date()),
        "counts": {"events": n_events, "touchpoints": n_touch, "items": n_items, "users": n_users, "marketing_mix_weeks": len(mmm)},
        "categories": {name: {"consumable": cons, "cycle_days": cyc, "median_price": price} for name, cons, cyc, price in CATEGORIES},
        "consumable_categories": [c[0] for c in CATEGORIES if c[1]],
        "funnel": FUNNEL, "rebuy_keep_probability": REBUY_KEEP,
        "stockouts": {"sold_out_items": list(items["item_id"][sold_out]),
                      "sold_out_day": {items["item_id"][i]: str((start + pd.Timedelta(days=int(stockout_day[i]))).date()) for i in np.flatnonzero(sold_out)}},
        "event_channels": EVENT_CHANNELS,
        "churn": {"share_of_churners": 0.4, "definition": "no activity from churn_date on; activity fades linearly to 15% over fade_days before it",
                  "per_user": "truth_users.csv"},
        "attribution": {
            "channels": TOUCH_CHANNELS, "lift": TOUCH_LIFT, "base_rate": TOUCH_BASE_RATE,
            "contribution_share": dict(zip(TOUCH_CHANNELS, (removal / removal.sum()).round(6).tolist())),
            "journeys": n_journeys, "converted": n_conv, "conversion_event": "purchase with order_id starting 'tp'",
            "window_days": 16,
        },
        "marketing_mix": mmm_truth,
        "bad_rows": {"events": bad_counts},
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2, default=float))
    return truth


def _users_csv(rng, users: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    n = len(users)
    return pd.DataFrame({
        "user_id": [f"u{x:07d}" for x in users["uidx"]],
        "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55+"], n, p=[0.2, 0.35, 0.25, 0.12, 0.08]),
        "gender": rng.choice(["F", "M"], n, p=[0.6, 0.4]),
        "city": rng.choice(["Shanghai", "Beijing", "Hangzhou", "Chengdu", "Shenzhen", "Wuhan"], n),
        "member_level": rng.choice(["basic", "silver", "gold", "platinum"], n, p=[0.5, 0.3, 0.15, 0.05]),
        "signup_date": (start + pd.to_timedelta(users["signup"], unit="D")).dt.strftime("%Y-%m-%d"),
        "consent_personalization": np.where(rng.random(n) < 0.92, "true", "false"),
    })


def _truth_users(users: pd.DataFrame, start: pd.Timestamp, days: int) -> pd.DataFrame:
    churn_day = users["churn_day"].to_numpy()
    finite = np.isfinite(churn_day)
    to_date = lambda d: (start + pd.to_timedelta(np.where(finite, d, 0), unit="D")).strftime("%Y-%m-%d")  # noqa: E731
    return pd.DataFrame({
        "user_id": [f"u{x:07d}" for x in users["uidx"]],
        "top_categories": [";".join(CATEGORIES[c][0] for c in fav) for fav in users["fav"]],
        "preferred_channel": np.array(EVENT_CHANNELS)[users["channel"]],
        "home_store": [f"st{x:02d}" for x in users["store"]],
        "sessions_per_week": users["rate"].round(3),
        "churn_date": np.where(finite, to_date(churn_day), ""),
        "fade_start": np.where(finite, to_date(churn_day - users["fade_days"].to_numpy()), ""),
        "churned_within_data": finite & (churn_day < days),
    })
