"""events.csv for one block of users, built in named steps: sessions, the view -> click -> cart -> purchase funnel,
purchases (funnel buys, ad conversions, durables bought once, consumables re-bought on a cycle), then quantities,
amounts, returns and coupon claims, and finally the canonical columns.

Every row keeps where it came from in `origin` (a session, a cycle re-buy or an ad journey) instead of a magic
session id; `s` is the session number and means something only for session rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.training.synth.catalogue import Catalogue, Samplers, choice_rows, pick_items
from omnidecide.training.synth.touchpoints import Journeys
from omnidecide.training.synth.users import Users
from omnidecide.training.synth.world import (CATEGORIES, EVENT_CHANNELS, FUNNEL, REBUY_KEEP, activity, is_peak,
                                             user_ids)

SESSION, REBUY, AD = 0, 1, 2  # origin of an event row
CONSUMABLE = np.array([c[1] for c in CATEGORIES])
CYCLE = np.array([c[2] or 0 for c in CATEGORIES], dtype=float)


@dataclass
class Sessions:
    user: np.ndarray      # row in the block
    day: np.ndarray
    category: np.ndarray  # the one category browsed
    channel: np.ndarray   # event channel index
    time: np.ndarray      # seconds from start

    def __len__(self) -> int:
        return len(self.user)


def sessions(rng: np.random.Generator, users: Users, days: int, start: pd.Timestamp) -> Sessions:
    """Poisson sessions per day at the user's rate x activity (fade, churn) x sale-peak season."""
    day = np.arange(days)
    season = 1.0 + 1.5 * is_peak(start + pd.to_timedelta(day, unit="D"))
    act = activity(day[None, :], users.churn_day[:, None], users.fade_days[:, None])
    act *= day[None, :] >= users.active_start[:, None]
    counts = rng.poisson(users.rate[:, None] / 7.0 * act * season[None, :])
    u_row, s_day = np.nonzero(counts)
    reps = counts[u_row, s_day]
    u_row, s_day = np.repeat(u_row, reps), np.repeat(s_day, reps)
    n = len(u_row)
    s_cat = choice_rows(rng, users.taste, u_row)
    s_channel = np.where(rng.random(n) < 0.6, users.channel[u_row], rng.integers(0, len(EVENT_CHANNELS), n))
    s_time = s_day * 86400 + rng.integers(8 * 3600, 23 * 3600, n)
    return Sessions(u_row, s_day, s_cat, s_channel, s_time)


def funnel(rng: np.random.Generator, ses: Sessions, users: Users, samplers: Samplers,
           stockout_day: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Views (1 + geometric extra per session, in the session's category) and the click/cart/purchase steps.
    Returns (view/click/cart rows, funnel purchases); sold-out items cannot be bought."""
    n_views = rng.geometric(0.5, len(ses))
    v_sess = np.repeat(np.arange(len(ses)), n_views)
    v_user = ses.user[v_sess]
    v_item = pick_items(rng, ses.category[v_sess], users.brand_pref[v_user, ses.category[v_sess]], samplers)
    nth = np.arange(len(v_sess)) - np.repeat(np.cumsum(n_views) - n_views, n_views)  # 0, 1, ... within its session
    v_time = ses.time[v_sess] + nth * 40
    click = rng.random(len(v_sess)) < FUNNEL["view_to_click"]
    cart = click & (rng.random(len(v_sess)) < FUNNEL["click_to_cart"])
    buy = cart & (rng.random(len(v_sess)) < FUNNEL["cart_to_purchase"])
    buy &= ses.day[v_sess] < stockout_day[v_item]
    steps = pd.concat([
        pd.DataFrame({"u": v_user[m], "i": v_item[m], "t": v_time[m] + dt, "event": ev, "s": v_sess[m], "origin": SESSION})
        for m, dt, ev in ((np.ones(len(v_sess), bool), 0, "view"), (click, 20, "click"), (cart, 60, "cart"))
    ], ignore_index=True)
    buys = pd.DataFrame({"u": v_user[buy], "i": v_item[buy], "t": v_time[buy] + 120, "s": v_sess[buy], "origin": SESSION})
    return steps, buys


def purchases(rng: np.random.Generator, funnel_buys: pd.DataFrame, journeys: Journeys, users: Users, cat_of: np.ndarray,
              days: int, stockout_day: np.ndarray) -> pd.DataFrame:
    """Funnel buys and ad conversions; a durable is bought once per user (later buys stop at the cart); a consumable
    is re-bought every ~cycle days (user-item jitter) while the user is active, until a cycle is skipped."""
    conv = journeys.conversions
    conv = conv[(conv["t"] < days * 86400) & (conv["t"] // 86400 < stockout_day[conv["i"]])]
    buys = pd.concat([funnel_buys, conv.assign(s=0, origin=AD)], ignore_index=True)
    buys = buys.sort_values("t", kind="stable")
    consumable = CONSUMABLE[cat_of[buys["i"]]]
    buys = buys[consumable | ~buys.duplicated(["u", "i"])]

    first = buys[CONSUMABLE[cat_of[buys["i"]]]].drop_duplicates(["u", "i"])
    ucycle = CYCLE[cat_of[first["i"]]] * rng.lognormal(0, 0.15, len(first))
    k_max = int(days / CYCLE[CONSUMABLE].min()) + 1
    t_re = first["t"].to_numpy()[:, None] + (np.arange(1, k_max + 1)[None, :] * ucycle[:, None] * 86400).astype(np.int64)
    d_re = t_re // 86400
    fu = first["u"].to_numpy()
    alive = activity(d_re, users.churn_day[fu][:, None], users.fade_days[fu][:, None])
    keep = (d_re < days) & (rng.random(d_re.shape) < REBUY_KEEP * alive)
    keep &= d_re < stockout_day[first["i"].to_numpy()][:, None]
    keep = np.cumprod(keep, axis=1).astype(bool)  # a skipped cycle ends the habit
    r_row, r_k = np.nonzero(keep)
    rebuys = pd.DataFrame({"u": fu[r_row], "i": first["i"].to_numpy()[r_row], "t": t_re[r_row, r_k], "s": 0,
                           "origin": REBUY})
    return pd.concat([buys, rebuys], ignore_index=True).assign(event="purchase")


def money_returns_coupons(rng: np.random.Generator, ev: pd.DataFrame, ses: Sessions, users: Users, cat_of: np.ndarray,
                          price: np.ndarray, days: int, start: pd.Timestamp) -> pd.DataFrame:
    """Channel, quantity and amount per row (10% off in sale peaks); 4% of durable purchases returned 3-10 days
    later; coupon claims in 3% of sessions."""
    ev["channel"] = np.where(ev["origin"] == SESSION, ses.channel[ev["s"]],
                             np.where(ev["origin"] == AD, EVENT_CHANNELS.index("tmall"), users.channel[ev["u"]]))
    is_buy = (ev["event"] == "purchase").to_numpy()
    qty = np.where(is_buy, 1 + rng.poisson(0.3, len(ev)), np.nan)
    peak_discount = np.where(is_peak(start + pd.to_timedelta(ev["t"] // 86400, unit="D")), 0.9, 1.0)
    ev["quantity"] = qty
    ev["amount"] = np.round(qty * price[ev["i"]] * peak_discount, 2)

    ret = is_buy & ~CONSUMABLE[cat_of[ev["i"]]] & (rng.random(len(ev)) < 0.04)
    returns = ev[ret].assign(event="return", t=lambda d: d["t"] + rng.integers(3, 11, ret.sum()) * 86400)
    returns = returns[returns["t"] < days * 86400]
    ev = pd.concat([ev, returns], ignore_index=True)
    money = ev["event"].isin(["purchase", "return"])
    ev["amount"] = np.where(money, ev["amount"], np.nan)
    ev["quantity"] = np.where(money, ev["quantity"], np.nan)

    claim = rng.random(len(ses)) < 0.03
    coupons = pd.DataFrame({"u": ses.user[claim], "i": -1, "t": ses.time[claim] + 5, "event": "coupon_claim",
                            "s": np.flatnonzero(claim), "origin": SESSION, "channel": ses.channel[claim]})
    return pd.concat([ev, coupons], ignore_index=True)


def canonical(ev: pd.DataFrame, users: Users, start: pd.Timestamp) -> pd.DataFrame:
    """The events.csv columns, sorted by user then time. Orders: o<user>_<day>; ad conversions tp<user>_<seconds>."""
    uid = users.uidx
    session = (ev["origin"] == SESSION).to_numpy()
    out = pd.DataFrame({
        "user_id": user_ids(uid[ev["u"]]),
        "item_id": np.where(ev["i"] >= 0, pd.Series(ev["i"]).map(lambda x: f"i{x:05d}"), ""),
        "timestamp": (start + pd.to_timedelta(ev["t"], unit="s")).dt.strftime("%Y-%m-%dT%H:%M:%S"),
        "event": ev["event"],
        "quantity": ev["quantity"],
        "amount": ev["amount"],
        "channel": np.array(EVENT_CHANNELS)[ev["channel"]],
        "store_id": "",
        "order_id": "",
        "session_id": np.where(session, [f"s{uid[0]:07d}_{x}" for x in ev["s"]], ""),
    })
    in_store = out["channel"] == "store"
    out.loc[in_store, "store_id"] = [f"st{x:02d}" for x in users.store[ev["u"][in_store]]]
    buy_rows = out["event"] == "purchase"
    out.loc[buy_rows, "order_id"] = "o" + out.loc[buy_rows, "user_id"].str[1:] + "_" + out.loc[buy_rows, "timestamp"].str[:10]
    from_ad = buy_rows & (ev["origin"] == AD).to_numpy()
    out.loc[from_ad, "order_id"] = "tp" + out.loc[from_ad, "user_id"].str[1:] + "_" + ev["t"][from_ad].astype(str)
    out["_t"] = ev["t"].to_numpy()
    return out.sort_values(["user_id", "_t"], kind="stable").drop(columns="_t")


def events_block(rng: np.random.Generator, users: Users, days: int, start: pd.Timestamp, cat: Catalogue,
                 samplers: Samplers, stockout_day: np.ndarray, journeys_of) -> tuple[pd.DataFrame, Journeys]:
    """events.csv rows of one block and its ad journeys (`journeys_of(rng)` draws them between the funnel and the
    re-buys, so one seed stream gives the same files as before the split)."""
    ses = sessions(rng, users, days, start)
    steps, funnel_buys = funnel(rng, ses, users, samplers, stockout_day)
    journeys = journeys_of(rng)
    buys = purchases(rng, funnel_buys, journeys, users, cat.cat_of, days, stockout_day)
    ev = pd.concat([steps, buys], ignore_index=True)
    ev = money_returns_coupons(rng, ev, ses, users, cat.cat_of, cat.items["price"].to_numpy(), days, start)
    return canonical(ev, users, start), journeys
