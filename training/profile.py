"""Data profile and drift: a few named figures of a canonical frame, and which of them moved.

Each trained version keeps the profile of its training data (`extra["profile"]` in its metadata), so the monitor
can compare fresh data with what the serving model learnt from and alert when an attribute moves more than ±15%
(the ML engineers' drift rule). Pure functions: frames in, plain dicts out (JSON-able, stored as metadata).

Names are stable strings: `events_per_active_user_week`, `share_event.purchase`, `share_channel.douyin`,
`mean_spend.wechat`, `share_spend.wechat`, ... Attributes named `share*` are shares in [0, 1].
"""
from __future__ import annotations

from typing import Any, Literal

import pandas as pd

from omnidecide.models.errors import InputError

EVENTS_WINDOW_DAYS = 28  # four weeks: long enough to smooth a weekday pattern, short enough to be "now"
MIX_WINDOW_ROWS = 13  # a quarter of weekly marketing-mix rows
TINY_SHARE = 0.01  # below this, a share's relative change is noise (0.001 -> 0.002 is +100% of nothing)


def profile(kind: Literal["events", "marketing_mix"], frame: pd.DataFrame) -> dict[str, float]:
    """The recent figures of a canonical frame (see the module docstring for names) as plain floats."""
    if kind == "events":
        return _events(frame)
    if kind == "marketing_mix":
        return _marketing_mix(frame)
    raise InputError(f"profile: unknown kind {kind!r}; expected 'events' or 'marketing_mix'")


def data_end(frame: pd.DataFrame, column: str) -> str:
    """The last timestamp (a `date` column: the last date) as an ISO string: how fresh a version's training data was,
    where the monitor's next window starts."""
    last = pd.to_datetime(frame[column]).max()
    if pd.isna(last):
        raise InputError(f"data_end: no {column} values")
    return last.date().isoformat() if column == "date" else last.isoformat()


def _events(ev: pd.DataFrame) -> dict[str, float]:
    """Last 28 days: activity, event mix, purchases, channels, items, new users.

    `share_new_users` counts users whose first event in the frame is in the window, so pass the frame with its
    history (a bare 4-week extract would make everyone new)."""
    if ev.empty:
        raise InputError("profile: no events to profile")
    ts = pd.to_datetime(ev["timestamp"])
    end = ts.max()
    recent = ts > end - pd.Timedelta(days=EVENTS_WINDOW_DAYS)
    w = ev.loc[recent]
    week = ((end - ts[recent]) // pd.Timedelta(days=7)).astype(int)
    weekly_users = w.groupby(week.to_numpy())["user_id"].nunique()  # weeks with events only
    out = {
        "active_users_per_week": float(weekly_users.mean()),
        "events_per_active_user_week": float(len(w) / weekly_users.sum()),
        "share_with_item": float(w["item_id"].notna().mean()),
    }
    first_seen = ts.groupby(ev["user_id"]).min()
    users = w["user_id"].unique()
    out["share_new_users"] = float((first_seen.loc[users] > end - pd.Timedelta(days=EVENTS_WINDOW_DAYS)).mean())
    for event, share in w["event"].value_counts(normalize=True).items():
        out[f"share_event.{event}"] = float(share)
    buys = w[w["event"] == "purchase"]
    if len(buys):
        out["purchases_per_buyer"] = float(len(buys) / buys["user_id"].nunique())
        if "amount" in buys and buys["amount"].notna().any():
            out["mean_purchase_amount"] = float(buys["amount"].mean())
    if "channel" in w and w["channel"].notna().any():
        for channel, share in w["channel"].value_counts(normalize=True).items():  # among events with a channel
            out[f"share_channel.{channel}"] = float(share)
    return dict(sorted(out.items()))


def _marketing_mix(mix: pd.DataFrame) -> dict[str, float]:
    """Last 13 weeks: revenue, spend per channel and each channel's share of spend."""
    if mix.empty:
        raise InputError("profile: no marketing-mix rows to profile")
    last = mix.sort_values("date").tail(MIX_WINDOW_ROWS)
    spend = last[[c for c in last.columns if c.startswith("spend_")]].fillna(0.0)
    out = {"mean_weekly_revenue": float(last["revenue"].mean())}
    total = float(spend.to_numpy().sum())
    for col in spend.columns:
        channel = col.removeprefix("spend_")
        out[f"mean_spend.{channel}"] = float(spend[col].mean())
        out[f"share_spend.{channel}"] = float(spend[col].sum() / total) if total > 0 else 0.0
    return dict(sorted(out.items()))


def _is_tiny(attribute: str, value: float | None) -> bool:
    return value is None or value == 0 or (attribute.split(".")[0].startswith("share") and abs(value) < TINY_SHARE)


def drift(reference: dict[str, float], current: dict[str, float], threshold: float = 0.15) -> list[dict[str, Any]]:
    """Compare two profiles attribute by attribute, sorted by name; one row per attribute.

    Row: {attribute, reference, current, change, alert, status}. `change` is relative, (current - reference) /
    |reference| (None when the reference is 0 or one side is missing). Rule: `alert` when |change| > threshold and
    the attribute is not tiny on both sides — a share (name starting `share`) below 0.01 on both sides never alerts,
    so 0.001 -> 0.002 is noise, not +100%. From 0 to a non-tiny value alerts. `status` is "new" or "gone" for an
    attribute present on one side only (a channel or event type that appeared or vanished); it alerts when the
    value it has is not tiny.
    """
    rows = []
    for name in sorted(set(reference) | set(current)):
        ref, cur = reference.get(name), current.get(name)
        status = "new" if ref is None else "gone" if cur is None else "compared"
        tiny = _is_tiny(name, ref) and _is_tiny(name, cur)
        if status != "compared":
            change, alert = None, not tiny
        elif ref == 0:
            change, alert = (0.0 if cur == 0 else None), not tiny
        else:
            change = (cur - ref) / abs(ref)
            alert = abs(change) > threshold and not tiny
        rows.append({"attribute": name, "reference": ref, "current": cur, "change": change, "alert": bool(alert),
                     "status": status})
    return rows
