"""Churn features from a canonical events frame: time bins (default 14 days) per customer plus static RFM statistics.

Pure functions (frames and arrays in, arrays out). Leakage is impossible by construction: `window`
slices the time-sorted events to those strictly before `as_of` before computing anything, and only
`labels` looks at `[as_of, as_of + horizon)`.

Works on any events log in the canonical schema: rich omnichannel logs (views, clicks, carts, coupons,
channels) and purchase-only order logs with empty item ids (timestamp, quantity, amount).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.models.errors import InputError

# Event types counted per bin (besides the target events, which get their own purchase/amount columns).
COUNTED = ("view", "click", "cart", "purchase", "rating", "return", "coupon_claim", "coupon_redeem")
SEQ_FEATURES = (
    "target_n", "spend", "quantity", "distinct_items",
    *(f"n_{e}" for e in COUNTED), "distinct_channels", "active",
    "days_since_target", "days_since_any", "bins_before_as_of",
)
STATIC_FEATURES = (
    "log_tenure", "log_recency", "log_recency_any", "log_frequency", "log_monetary", "log_avg_spend",
    "log_mean_gap", "log_std_gap", "log_last_gap", "log_recency_over_gap", "has_target", "repeat_buyer",
    "log_n_30", "log_n_90", "log_n_prev_90", "log_any_30", "log_spend_90", "log_events_total", "log_n_days_active",
)
DAY = 86400.0
# the events columns the features read: loaders read only these (store.io.load(columns=...))
COLUMNS = ("user_id", "timestamp", "event", "amount", "quantity", "item_id", "channel")


@dataclass
class Prepared:
    """A validated events frame as sorted numpy columns (times in days from `origin`)."""

    user_ids: np.ndarray          # unique user ids (str), index = user code
    user: np.ndarray              # user code per event
    t: np.ndarray                 # days since origin (float), sorted ascending
    kind: np.ndarray              # index into COUNTED per event
    target: np.ndarray            # bool: the event counts as a "purchase" for the churn definition
    value: np.ndarray             # spend of target events (amount, else quantity, else 1), 0 otherwise
    quantity: np.ndarray
    item: np.ndarray              # item code, -1 when empty
    channel: np.ndarray           # channel code, -1 when empty
    origin: pd.Timestamp
    target_events: tuple[str, ...]
    spend_unit: str               # "amount" | "quantity" | "count"

    @property
    def first_day(self) -> float:
        return float(np.floor(self.t[0])) if len(self.t) else 0.0

    @property
    def last_day(self) -> float:
        return float(np.floor(self.t[-1])) if len(self.t) else 0.0

    def day(self, when: str | pd.Timestamp) -> float:
        return (pd.Timestamp(when).normalize() - self.origin) / pd.Timedelta(days=1)

    def date(self, day: float) -> pd.Timestamp:
        return self.origin + pd.Timedelta(days=float(day))


def prepare(events: pd.DataFrame, target_events: tuple[str, ...] | None = None) -> Prepared:
    """Canonical events (as `omnidecide.store.io.load` returns them) -> sorted arrays.

    `target_events`: which events count as a purchase. Default: `purchase` when the log has any,
    else every event (an activity log such as ML-100K ratings: churn = no activity in the horizon).
    """
    if not len(events):
        raise InputError("events: no rows to learn from")
    for col in ("user_id", "timestamp", "event"):
        if col not in events.columns:
            raise InputError(f"events: missing required column {col!r}")
    ok = (events["user_id"].notna() & events["timestamp"].notna()).to_numpy()
    ev = events if ok.all() else events[ok]
    ns = pd.to_datetime(ev["timestamp"]).to_numpy().astype("datetime64[ns]").astype(np.int64)
    # columns are turned into compact arrays first and put in time order one at a time (at 50M events every
    # full-length temporary is 200-400 MB)
    order = np.argsort(ns)  # ties (same second) may come in any order: no feature depends on it
    origin = pd.Timestamp(int(ns[order[0]])).normalize()
    t = (ns[order] - origin.value).astype(np.float64) / 1e9 / DAY
    del ns
    ev_codes, ev_names = pd.factorize(ev["event"])
    ev_codes = ev_codes.astype(np.int32)
    ev_names = np.array([str(x).lower() for x in ev_names], dtype=object)
    event_of = lambda names: np.isin(ev_codes, np.flatnonzero(np.isin(ev_names, list(names))))  # noqa: E731
    present = set(ev_names)
    if target_events is None:
        target_events = ("purchase",) if "purchase" in present else tuple(sorted(present))
    target = event_of(target_events)
    kind_of_name = np.array([COUNTED.index(x) if x in COUNTED else -1 for x in ev_names], dtype=np.int16)
    kind = kind_of_name[ev_codes][order]
    del ev_codes
    u_codes, u_names = pd.factorize(ev["user_id"])
    u_names = np.asarray(u_names, dtype=str)
    sorter = np.argsort(u_names, kind="stable")
    rank = np.empty(len(sorter), dtype=np.int32 if len(sorter) < 2**31 else np.int64)
    rank[sorter] = np.arange(len(sorter))
    user_ids, user = u_names[sorter].astype(object), rank[u_codes[order]]
    del u_codes

    def num(col: str) -> np.ndarray:
        if col not in ev.columns:
            return np.full(len(ev), np.nan)
        return pd.to_numeric(ev[col], errors="coerce").to_numpy(dtype=np.float64)

    amount = num("amount")
    if np.isfinite(amount[target]).any():
        value, unit = amount, "amount"
    else:
        qty = num("quantity")
        if np.isfinite(qty[target]).any():
            value, unit = qty, "quantity"
        else:
            value, unit = np.ones(len(ev)), "count"
    value = np.where(target, np.nan_to_num(value, nan=0.0), 0.0)[order]
    del amount
    quantity = (np.nan_to_num(num("quantity"), nan=0.0) * target)[order]

    def codes(col: str) -> np.ndarray:
        if col not in ev.columns:
            return np.full(len(ev), -1, dtype=np.int32)
        c, names = pd.factorize(ev[col], use_na_sentinel=True)
        blank = np.flatnonzero(np.asarray(names, dtype=object) == "")
        c = c.astype(np.int32 if len(names) < 2**31 else np.int64)
        if len(blank):
            c[np.isin(c, blank)] = -1
        return c[order]

    return Prepared(
        user_ids=user_ids, user=user, t=t, kind=kind, target=target[order], value=value, quantity=quantity,
        item=codes("item_id"), channel=codes("channel"), origin=origin, target_events=tuple(target_events),
        spend_unit=unit,
    )


def restrict(prep: Prepared, chosen: np.ndarray) -> Prepared:
    """`prep` restricted to the customers marked in `chosen` (a bool per user code), codes renumbered in order: a
    customer's features do not depend on who else is in the log, so scoring or training on a part is exact."""
    keep = chosen[prep.user]
    code = np.cumsum(chosen) - 1
    cols = {f: getattr(prep, f)[keep] for f in ("t", "kind", "target", "value", "quantity", "item", "channel")}
    return Prepared(user_ids=prep.user_ids[chosen], user=code[prep.user[keep]], origin=prep.origin,
                    target_events=prep.target_events, spend_unit=prep.spend_unit, **cols)


def shards(prep: Prepared, size: int):
    """`prep` in consecutive parts of at most `size` customers (in user id order): a million customers' windows at
    once would take several GB (26 bins x 18 features x 4 bytes each, plus the temporaries that build them)."""
    n = len(prep.user_ids)
    if n <= size:
        yield prep
        return
    for lo in range(0, n, size):
        chosen = np.zeros(n, dtype=bool)
        chosen[lo:lo + size] = True
        yield restrict(prep, chosen)


@dataclass
class Window:
    """Features of every customer with any event before `as_of` (rows aligned with `user_codes`)."""

    as_of: float
    user_codes: np.ndarray
    seq: np.ndarray        # (N, T, F) float32, left-aligned: row i holds lengths[i] real bins ending at as_of
    lengths: np.ndarray    # (N,) int64, >= 1
    static: np.ndarray     # (N, S) float32
    rfm: pd.DataFrame      # raw, human-scale statistics (for segments, reasons, baselines)


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values by sort + compare (numpy 2's hash-based np.unique is ~10x slower on 10^7 ints)."""
    s = np.sort(x)
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def _before(prep: Prepared, as_of: float) -> slice:
    return slice(0, int(np.searchsorted(prep.t, as_of, side="left")))


def _gap_stats(user: np.ndarray, day: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per user over distinct target days: number of active days, mean, std and last inter-purchase gap."""
    pairs = _unique(user * 1_000_000 + day.astype(np.int64))
    u, d = pairs // 1_000_000, pairs % 1_000_000
    n_days = np.bincount(u, minlength=n_users).astype(float)
    if not len(pairs):  # nobody has bought yet (e.g. a batch of browsers only)
        return n_days, *(np.full(n_users, np.nan) for _ in range(3))
    same = np.r_[False, u[1:] == u[:-1]]
    gap = np.r_[0.0, np.diff(d).astype(float)]
    gu, gg = u[same], gap[same]
    cnt = np.bincount(gu, minlength=n_users).astype(float)
    s1 = np.bincount(gu, weights=gg, minlength=n_users)
    s2 = np.bincount(gu, weights=gg ** 2, minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
        std = np.where(cnt > 1, np.sqrt(np.maximum(s2 / np.maximum(cnt, 1) - mean ** 2, 0)), np.nan)
    last = np.full(n_users, np.nan)
    last_idx = np.flatnonzero(same & np.r_[u[1:] != u[:-1], True])
    last[u[last_idx]] = gap[last_idx]
    return n_days, mean, std, last


def window(prep: Prepared, as_of: float, *, n_bins: int = 26, bin_days: int = 14) -> Window:
    """Features at `as_of` (a day number, see `Prepared.day`) from events strictly before it."""
    sl = _before(prep, as_of)
    user, t, kind, target, value = prep.user[sl], prep.t[sl], prep.kind[sl], prep.target[sl], prep.value[sl]
    qty, item, channel = prep.quantity[sl], prep.item[sl], prep.channel[sl]
    if not len(user):
        raise InputError(f"no events before as-of {prep.date(as_of).date()}")
    present = np.bincount(user, minlength=len(prep.user_ids)) > 0
    codes = np.flatnonzero(present)
    remap = np.cumsum(present) - 1
    pos = remap[user]
    n, T = len(codes), n_bins

    # --- static RFM statistics over the whole history before as_of -------------------------------------
    first_any = np.full(n, np.inf)
    np.minimum.at(first_any, pos, t)
    last_any = np.full(n, -np.inf)
    np.maximum.at(last_any, pos, t)
    tp, tt, tv = pos[target], t[target], value[target]
    freq_events = np.bincount(tp, minlength=n).astype(float)
    monetary = np.bincount(tp, weights=tv, minlength=n)
    last_t = np.full(n, -np.inf)
    np.maximum.at(last_t, tp, tt)
    n_days, mean_gap, std_gap, last_gap = _gap_stats(tp, np.floor(tt), n)
    has = n_days > 0
    tenure = as_of - first_any
    recency_any = as_of - last_any
    recency = np.where(has, as_of - last_t, tenure)
    ago = as_of - tt
    n30 = np.bincount(tp[ago <= 30], minlength=n).astype(float)
    n90 = np.bincount(tp[ago <= 90], minlength=n).astype(float)
    nprev90 = np.bincount(tp[(ago > 90) & (ago <= 180)], minlength=n).astype(float)
    s90 = np.bincount(tp[ago <= 90], weights=tv[ago <= 90], minlength=n)
    any30 = np.bincount(pos[(as_of - t) <= 30], minlength=n).astype(float)
    events_total = np.bincount(pos, minlength=n).astype(float)
    visits30 = np.bincount(pos[((as_of - t) <= 30) & np.isin(kind, [0, 1, 2])], minlength=n).astype(float)
    ref_gap = np.where(np.isfinite(mean_gap), mean_gap, np.nan)
    l = np.log1p
    static = np.stack([
        l(tenure), l(recency), l(recency_any), l(n_days), l(monetary), l(monetary / np.maximum(n_days, 1)),
        l(np.nan_to_num(mean_gap, nan=0)), l(np.nan_to_num(std_gap, nan=0)), l(np.nan_to_num(last_gap, nan=0)),
        np.log(np.where(np.isfinite(ref_gap), (recency + 1) / (ref_gap + 1), 1.0)),
        has.astype(float), (n_days >= 2).astype(float),
        l(n30), l(n90), l(nprev90), l(any30), l(s90), l(events_total), l(n_days),
    ], axis=1).astype(np.float32)

    rfm = pd.DataFrame({
        "user_id": prep.user_ids[codes], "recency_days": recency, "recency_any_days": recency_any,
        "frequency": n_days, "monetary": monetary, "tenure_days": tenure, "mean_gap_days": mean_gap,
        "std_gap_days": std_gap, "last_gap_days": last_gap, "n_30": n30, "n_90": n90, "n_prev_90": nprev90,
        "spend_90": s90, "visits_30": visits30, "events_30": any30, "n_events": freq_events,
    })

    # --- time bins (default two weeks) over the last T * bin_days days, ending at as_of ------------------------------------
    start = as_of - T * bin_days
    inwin = t >= start
    b = np.minimum(((t[inwin] - start) // bin_days).astype(np.int64), T - 1)
    key = pos[inwin] * T + b
    size = n * T
    F = len(SEQ_FEATURES)
    seq = np.zeros((size, F), dtype=np.float32)
    tw = target[inwin]
    t_in = t[inwin]
    col = {name: i for i, name in enumerate(SEQ_FEATURES)}
    seq[:, col["target_n"]] = np.log1p(np.bincount(key[tw], minlength=size))
    seq[:, col["spend"]] = np.log1p(np.bincount(key[tw], weights=value[inwin][tw], minlength=size))
    seq[:, col["quantity"]] = np.log1p(np.bincount(key[tw], weights=qty[inwin][tw], minlength=size))
    it = item[inwin]
    has_item = it >= 0
    if has_item.any():
        pairs = _unique(key[has_item] * (int(it.max()) + 1) + it[has_item])
        seq[:, col["distinct_items"]] = np.log1p(np.bincount(pairs // (int(it.max()) + 1), minlength=size))
    kw = kind[inwin].astype(np.int64)
    known = kw >= 0
    per_kind = np.bincount(key[known] * len(COUNTED) + kw[known], minlength=size * len(COUNTED)).reshape(size, len(COUNTED))
    first_kind = col[f"n_{COUNTED[0]}"]
    seq[:, first_kind:first_kind + len(COUNTED)] = np.log1p(per_kind)
    ch = channel[inwin]
    has_ch = ch >= 0
    if has_ch.any():
        pairs = _unique(key[has_ch] * (int(ch.max()) + 1) + ch[has_ch])
        seq[:, col["distinct_channels"]] = np.bincount(pairs // (int(ch.max()) + 1), minlength=size)
    seq[:, col["active"]] = np.bincount(key, minlength=size) > 0
    seq = seq.reshape(n, T, F)

    # days since the last target / any event at the end of each bin (forward-filled maxima)
    bin_end = start + (np.arange(T) + 1) * bin_days
    for name, mask, prior_mask in (("days_since_target", tw, target), ("days_since_any", np.ones_like(tw), None)):
        last_in = np.full(size, -np.inf)
        np.maximum.at(last_in, key[mask], t_in[mask])
        last_in = last_in.reshape(n, T)
        pm = ~inwin if prior_mask is None else (~inwin & prior_mask)
        prior = np.full(n, -np.inf)
        np.maximum.at(prior, pos[pm], t[pm])
        last_in[:, 0] = np.maximum(last_in[:, 0], prior)
        last_in = np.maximum.accumulate(last_in, axis=1)
        since = np.where(np.isfinite(last_in), bin_end[None, :] - last_in, 400.0)
        seq[:, :, col[name]] = np.log1p(np.minimum(since, 400.0)) / 6.0
    seq[:, :, col["bins_before_as_of"]] = (T - 1 - np.arange(T))[None, :] / T

    # left-align: each customer's sequence starts at the bin of their first event
    first_bin = np.clip(((first_any - start) // bin_days).astype(np.int64), 0, T - 1)
    lengths = T - first_bin
    idx = np.minimum(first_bin[:, None] + np.arange(T)[None, :], T - 1)
    seq = seq[np.arange(n)[:, None], idx]
    seq[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    return Window(as_of=as_of, user_codes=codes, seq=seq, lengths=lengths, static=static, rfm=rfm)


def labels(prep: Prepared, as_of: float, horizon: int, user_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(churned, spend) per customer: churned = no target event in [as_of, as_of + horizon)."""
    lo = int(np.searchsorted(prep.t, as_of, side="left"))
    hi = int(np.searchsorted(prep.t, as_of + horizon, side="left"))
    m = prep.target[lo:hi]
    u, v = prep.user[lo:hi][m], prep.value[lo:hi][m]
    n_all = len(prep.user_ids)
    bought = np.bincount(u, minlength=n_all)[user_codes] > 0
    spend = np.bincount(u, weights=v, minlength=n_all)[user_codes]
    return ~bought, spend


def default_as_of(prep: Prepared, horizon: int) -> float:
    """The latest as-of whose label window [as_of, as_of + horizon) lies fully inside the events."""
    as_of = prep.last_day + 1 - horizon
    if as_of <= prep.first_day:
        raise InputError(f"events span {int(prep.last_day - prep.first_day) + 1} days: too short for a "
                         f"{horizon}-day label window plus some history; use a shorter --horizon-days")
    return as_of
