"""Multi-touch attribution: first-order Markov chain with removal effects, beside last-click and first-click.

Paths: per user, touches in time order; a conversion closes the open path as converted when it comes within
`window_days` of the path's last touch; a touch more than `window_days` after the previous one closes the open
path as not converted. Markov: transitions start -> channel -> ... -> (conversion | null); a channel's removal
effect is the share of conversion probability lost when every transition into it goes to null instead; shares
are removal effects normalised to 1. Upper-funnel channels that seed journeys and rarely close them get credit
that last-click gives to whichever channel happened to come last.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def build_paths(touch: pd.DataFrame, conv: pd.DataFrame, window_days: float = 16.0) -> tuple[list[list[str]], list[bool]]:
    """touch: user_id, ts (datetime64), channel; conv: user_id, ts. Returns (paths, converted)."""
    t = pd.DataFrame({"user_id": touch["user_id"].to_numpy(), "ts": touch["ts"].to_numpy(), "channel": touch["channel"].to_numpy(), "kind": 0})
    c = pd.DataFrame({"user_id": conv["user_id"].to_numpy(), "ts": conv["ts"].to_numpy(), "channel": "", "kind": 1})
    c = c[c["user_id"].isin(set(t["user_id"]))]
    allr = pd.concat([t, c], ignore_index=True).sort_values(["user_id", "ts", "kind"], kind="stable")
    win = np.timedelta64(int(window_days * 86400), "s")
    paths, converted = [], []
    users = allr["user_id"].to_numpy()
    ts = allr["ts"].to_numpy()
    ch = allr["channel"].to_numpy()
    kind = allr["kind"].to_numpy()
    cur: list[str] = []
    last = None
    for i in range(len(allr)):
        if i and users[i] != users[i - 1]:
            if cur:
                paths.append(cur), converted.append(False)
            cur, last = [], None
        if kind[i] == 0:
            if cur and last is not None and ts[i] - last > win:
                paths.append(cur), converted.append(False)
                cur = []
            cur.append(ch[i])
            last = ts[i]
        elif cur and ts[i] - last <= win:
            paths.append(cur), converted.append(True)
            cur, last = [], None
    if cur:
        paths.append(cur), converted.append(False)
    return paths, converted


def markov_removal(paths: list[list[str]], converted: list[bool], channels: list[str]) -> tuple[np.ndarray, float]:
    """Removal effect per channel and the chain's conversion probability."""
    C = len(channels)
    idx = {c: i + 1 for i, c in enumerate(channels)}  # 0 = start
    n = C + 1
    counts = np.zeros((n, n + 2))  # columns: states, then conversion (n), null (n+1)
    for p, conv in zip(paths, converted):
        prev = 0
        for c in p:
            counts[prev, idx[c]] += 1
            prev = idx[c]
        counts[prev, n if conv else n + 1] += 1
    rows = counts.sum(1, keepdims=True)
    P = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    Q, r = P[:, :n], P[:, n]

    def p_conv(Qm: np.ndarray) -> float:
        return float(np.linalg.solve(np.eye(n) - Qm, r)[0])

    base = p_conv(Q)
    eff = np.zeros(C)
    for i in range(C):
        Qm = Q.copy()
        Qm[:, i + 1] = 0.0  # moving into the removed channel ends the journey (null)
        Qm[i + 1, :] = 0.0
        rr = r.copy()
        rr[i + 1] = 0.0
        eff[i] = 1 - float(np.linalg.solve(np.eye(n) - Qm, rr)[0]) / base if base > 0 else 0.0
    return eff, base


def attribute(touch: pd.DataFrame, conv: pd.DataFrame, window_days: float = 16.0) -> pd.DataFrame:
    """Per channel: touches, spend, Markov / last-click / first-click conversions and shares."""
    channels = sorted(touch["channel"].unique())
    paths, converted = build_paths(touch, conv, window_days)
    eff, _ = markov_removal(paths, converted, channels)
    n_conv = int(sum(converted))
    last = pd.Series([p[-1] for p, c in zip(paths, converted) if c], dtype=object).value_counts()
    first = pd.Series([p[0] for p, c in zip(paths, converted) if c], dtype=object).value_counts()
    share = eff / eff.sum() if eff.sum() > 0 else np.zeros(len(channels))
    out = pd.DataFrame({"channel": channels})
    out["touches"] = touch.groupby("channel").size().reindex(channels).to_numpy()
    out["spend"] = (touch.groupby("channel")["cost"].sum().reindex(channels).fillna(0).round(2).to_numpy()
                    if "cost" in touch else 0.0)
    out["removal_effect"] = eff.round(6)
    out["markov_share"] = share.round(6)
    out["last_click_share"] = (last.reindex(channels).fillna(0) / max(n_conv, 1)).round(6).to_numpy()
    out["first_click_share"] = (first.reindex(channels).fillna(0) / max(n_conv, 1)).round(6).to_numpy()
    out["markov_conversions"] = (share * n_conv).round(3)
    out["last_click_conversions"] = last.reindex(channels).fillna(0).astype(int).to_numpy()
    out["first_click_conversions"] = first.reindex(channels).fillna(0).astype(int).to_numpy()
    out.attrs.update({"paths": len(paths), "conversions": n_conv})
    return out
