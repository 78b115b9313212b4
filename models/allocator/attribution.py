"""Multi-touch attribution that counts only the purchases a journey can explain, beside the usual heuristics.

Journeys: a customer's touches, split where two touches are more than `window_days` apart. A journey converts when
a purchase comes within the lookback of one of its touches (read off the data by default: the lag after a last
touch by which 95% of the purchases above the organic rate have happened). Most purchases are organic, so each
journey carries the probability that a purchase lands in its lookback anyway: the customer's own purchase rate in
the 60 days before and after the journey (before and after: a trend in their activity cancels), shrunk to their
rate outside every journey and that to everyone's (unexposed customers included).

Our estimate: P(purchase) = 1 - (1 - organic)(1 - ad), with `ad` a model of the journey's channels (additive
hazards, i.e. independent causes, or logistic; channel present or touch counts: whichever predicts held-out
journeys best). A channel's share is its removal effect under that model: the expected ad conversions lost when
it is taken out of every journey, normalised. The interval is a bootstrap over journeys.

Heuristics on the same journeys: first-click, last-click, linear, and a Markov chain (removal effect when every
transition into the channel goes to null). A first-order chain spreads credit along the path, so it cannot tell a
seeding channel from the ones that merely follow it; `markov_removal(order=k)` keeps k touches of memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit


def markov_removal(paths: list[list[str]], converted: list[bool], channels: list[str],
                   order: int = 1) -> tuple[np.ndarray, float]:
    """Removal effect per channel and the chain's conversion probability, for a chain of `order` (states are the
    last `order` channels; a higher order keeps the memory of an earlier seeding touch that order 1 loses)."""
    states: dict[tuple, int] = {(): 0}  # () = start
    trans: list[tuple[int, int]] = []
    ends: list[tuple[int, bool]] = []
    for p, conv in zip(paths, converted):
        prev = 0
        for k in range(len(p)):
            s = states.setdefault(tuple(p[max(0, k + 1 - order):k + 1]), len(states))
            trans.append((prev, s))
            prev = s
        ends.append((prev, bool(conv)))
    n = len(states)
    counts = np.zeros((n, n + 2))  # columns: states, then conversion (n), null (n+1)
    if trans:
        np.add.at(counts, tuple(np.array(trans).T), 1)
    e = np.array(ends, dtype=int).reshape(-1, 2)
    np.add.at(counts, (e[:, 0], np.where(e[:, 1] == 1, n, n + 1)), 1)
    rows = counts.sum(1, keepdims=True)
    P = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    Q, r = P[:, :n], P[:, n]
    base = float(np.linalg.solve(np.eye(n) - Q, r)[0])
    keys = list(states)
    eff = np.zeros(len(channels))
    for i, c in enumerate(channels):
        gone = np.array([c in k for k in keys])
        if not gone.any() or base <= 0:
            continue
        Qm, rr = Q.copy(), r.copy()
        Qm[:, gone] = 0.0  # moving into a state that holds the removed channel ends the journey (null)
        Qm[gone, :] = 0.0
        rr[gone] = 0.0
        eff[i] = 1 - float(np.linalg.solve(np.eye(n) - Qm, rr)[0]) / base
    return eff, base


DAY = 86_400
PRE_DAYS = 60  # days before and after a journey whose purchases set its organic baseline
EXCESS_SHARE = 0.95  # the lookback holds this share of the purchases above the organic rate


@dataclass
class Journeys:
    """Touch clusters (a gap longer than `gap_days` starts a new one), each with its outcome and organic baseline.

    converted: a purchase within the lookback of one of the journey's touches; organic: the probability that such a
    purchase happens anyway, from the customer's own purchase rate around the journey; X: touches per channel;
    window_days: the lookback used.
    """

    paths: list[list[str]]
    X: np.ndarray
    converted: np.ndarray
    organic: np.ndarray
    window_days: float


def _keys(users: pd.Series, ts: pd.Series, codes: dict) -> np.ndarray:
    """One sortable int64 per (user, second): purchases and touches of a user line up by time."""
    sec = pd.to_datetime(ts).to_numpy().astype("datetime64[s]").astype(np.int64)
    return users.map(codes).to_numpy(np.int64) * 10**10 + (sec - _EPOCH)


_EPOCH = int(np.datetime64("2000-01-01", "s").astype(np.int64))


def journeys(touch: pd.DataFrame, conv: pd.DataFrame, channels: list[str], gap_days: float,
             window_days: float | None = None) -> Journeys:
    """Cluster touches into journeys and count the conversions a journey can explain.

    window_days None: the lookback is read off the data, as the lag after a last touch by which 95% of the excess
    purchases (observed minus the organic expectation) have happened, at most `gap_days`.
    """
    codes = {u: i for i, u in enumerate(pd.unique(pd.concat([touch["user_id"], conv["user_id"]])))}
    tk = _keys(touch["user_id"], touch["ts"], codes)
    order = np.argsort(tk, kind="stable")
    tk, ch = tk[order], touch["channel"].to_numpy()[order]
    pk = np.sort(_keys(conv["user_id"], conv["ts"], codes))
    new = np.r_[True, (np.diff(tk) > gap_days * DAY) | (np.diff(tk // 10**10) != 0)]
    jid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    last = np.r_[tk[starts[1:] - 1], tk[-1]]
    nxt = np.r_[tk[starts[1:]], np.iinfo(np.int64).max]
    user = last // 10**10
    nxt = np.where(nxt // 10**10 == user, nxt, np.iinfo(np.int64).max)
    sec = np.r_[tk % 10**10, pk % 10**10]
    hi = sec.max()
    room = np.minimum(np.minimum(nxt - last, (hi - last % 10**10)), gap_days * DAY) / DAY  # days each window can see

    # organic rate: the customer's purchases in the PRE_DAYS before the journey (after the previous one's window)
    # and after it, shrunk to their rate over their whole span outside journey windows (itself shrunk to everyone's,
    # exposed or not)
    n_users = len(codes)
    first = tk[starts]
    during = (last - first) / DAY
    first_in = np.searchsorted(pk, first, side="right")
    inside = np.searchsorted(pk, last + (room * DAY).astype(np.int64), side="right") - first_in
    ukeys = np.r_[tk, pk] // 10**10
    u_lo = np.full(n_users, np.iinfo(np.int64).max)
    np.minimum.at(u_lo, ukeys, sec)
    u_hi = np.zeros(n_users, np.int64)
    np.maximum.at(u_hi, ukeys, sec)
    n_buy = np.bincount(pk // 10**10, minlength=n_users)
    n_in = np.bincount(user, weights=inside, minlength=n_users)
    d_in = np.bincount(user, weights=during + room, minlength=n_users)
    n_out = np.maximum(n_buy - n_in - 1, 0)  # the span starts at the customer's first event: do not count it
    d_out = np.maximum((u_hi - u_lo) / DAY - d_in, 1.0)
    lam0 = max(n_out.sum() / d_out.sum(), 1e-9)
    lam_u = (n_out + 1.0) / (d_out + 1.0 / lam0)  # gamma(1, lam0) prior: one purchase's worth of evidence
    prev_end = np.r_[0, last[:-1] + (room[:-1] * DAY).astype(np.int64)]  # the previous journey's window is not organic
    prev_end = np.where(np.r_[False, user[1:] == user[:-1]], prev_end, 0)
    pre_lo = np.minimum(np.maximum.reduce([first - PRE_DAYS * DAY, user * 10**10 + u_lo[user], prev_end]), first)
    n_pre = np.searchsorted(pk, first, side="left") - np.searchsorted(pk, pre_lo, side="right")  # nor its start
    d_pre = (first - pre_lo) / DAY
    # and in the PRE_DAYS after its window (before the next journey): a trend in the customer's activity cancels
    post_lo = last + int(gap_days * DAY)
    post_hi = np.minimum.reduce([post_lo + PRE_DAYS * DAY, nxt, np.full_like(last, hi) + user * 10**10])
    post_hi = np.maximum(post_hi, post_lo)
    n_post = np.searchsorted(pk, post_hi, side="left") - np.searchsorted(pk, post_lo, side="left")
    d_post = (post_hi - post_lo) / DAY
    lam = (n_pre + n_post + 2.0) / (d_pre + d_post + 2.0 / lam_u[user])

    if window_days is None:
        window_days = _lookback(pk, last, room, lam, gap_days)
    # a purchase counts for the journey when it comes within the lookback of one of its touches
    w = np.minimum(room, window_days)
    gaps = np.minimum(np.diff(tk, append=tk[-1]) / DAY, window_days)
    gaps[np.r_[starts[1:] - 1, len(tk) - 1]] = 0.0
    exposed = np.bincount(jid, weights=gaps, minlength=len(starts)) + w  # days the journey can explain
    prev = np.searchsorted(tk, pk, side="right") - 1
    ok = prev >= 0
    lag = (pk[ok] - tk[prev[ok]]) / DAY
    is_last = np.r_[starts[1:] - 1, len(tk) - 1][jid[prev[ok]]] == prev[ok]
    hit = (pk[ok] // 10**10 == tk[prev[ok]] // 10**10) & (lag <= np.where(is_last, w[jid[prev[ok]]], window_days))
    converted = np.zeros(len(starts), bool)
    converted[jid[prev[ok]][hit]] = True
    ci = {c: i for i, c in enumerate(channels)}
    X = np.zeros((len(starts), len(channels)))
    np.add.at(X, (jid, [ci[c] for c in ch]), 1)
    paths = [list(p) for p in np.split(ch, starts[1:])]
    return Journeys(paths, X, converted, 1 - np.exp(-lam * exposed), float(window_days))


def _lookback(pk: np.ndarray, last: np.ndarray, room: np.ndarray, lam: np.ndarray, gap_days: float) -> float:
    """Days after a last touch by which 95% of the purchases above the organic rate have happened."""
    edges = np.arange(0.0, gap_days + 0.25, 0.25)
    obs = np.array([(np.searchsorted(pk, last + int(e * DAY), side="right") - np.searchsorted(pk, last, side="right")).sum()
                    for e in edges])
    excess = obs - np.array([(lam * np.minimum(room, e)).sum() for e in edges])
    top = excess.max()
    if top <= 0:
        return float(gap_days)
    return float(max(edges[np.argmax(excess >= EXCESS_SHARE * top)], 0.25))


LINKS = ("hazard", "logit")


def design(X: np.ndarray, counts: bool) -> np.ndarray:
    """Per journey and channel: touches (counts) or whether it was touched at all."""
    return X.astype(float) if counts else (X > 0).astype(float)


def ad_probability(Z: np.ndarray, v: np.ndarray, link: str) -> np.ndarray:
    """Ad-conversion probability of each journey: hazard: 1 - exp(-(b + Z w)), independent causes adding up
    (noisy-OR); logit: sigmoid(b + Z w)."""
    z = v[0] + Z @ v[1:]
    return -np.expm1(-z) if link == "hazard" else expit(z)


def fit_lift(Z: np.ndarray, y: np.ndarray, organic: np.ndarray, link: str = "hazard", ridge: float = 1.0,
             start: np.ndarray | None = None) -> np.ndarray:
    """Maximum likelihood of P(purchase in the window) = 1 - (1 - organic)(1 - ad_probability), ridge on the channel
    weights (hazard weights are kept >= 0: a touch cannot take purchases away). Returns (b, w...)."""
    k = Z.shape[1]

    def nll(v: np.ndarray) -> tuple[float, np.ndarray]:
        z = v[0] + Z @ v[1:]
        if link == "hazard":
            q = np.exp(-z) * (1 - organic)
            dpdz = q
        else:
            pa = expit(z)
            q = (1 - organic) * (1 - pa)
            dpdz = q * pa
        p = np.clip(1 - q, 1e-12, 1 - 1e-12)
        g = (-(y / p) + (1 - y) / (1 - p)) * dpdz
        f = -(y * np.log(p) + (1 - y) * np.log1p(-p)).sum() + 0.5 * ridge * (v[1:] ** 2).sum()
        return f, np.r_[g.sum(), Z.T @ g + ridge * v[1:]]

    if start is None:
        start = np.r_[0.01, np.full(k, 0.01)] if link == "hazard" else np.zeros(k + 1)
    bounds = [(1e-9, None)] + [(0, None)] * k if link == "hazard" else None
    return minimize(nll, start, jac=True, method="L-BFGS-B", bounds=bounds).x


def log_lik(Z: np.ndarray, y: np.ndarray, organic: np.ndarray, v: np.ndarray, link: str) -> float:
    p = np.clip(1 - (1 - organic) * (1 - ad_probability(Z, v, link)), 1e-12, 1 - 1e-12)
    return float((y * np.log(p) + (1 - y) * np.log1p(-p)).sum())


def removal_shares(Z: np.ndarray, v: np.ndarray, link: str = "hazard") -> tuple[np.ndarray, np.ndarray]:
    """(shares, effects): each channel's expected ad conversions lost when it is removed from every journey that
    has it, under the fitted model; negatives count as 0."""
    pa = ad_probability(Z, v, link)
    eff = np.array([(pa - ad_probability(Z, v - np.eye(len(v))[c + 1] * v[c + 1], link)).sum()
                    for c in range(Z.shape[1])])
    pos = np.clip(eff, 0, None)
    return (pos / pos.sum() if pos.sum() > 0 else pos), eff


def bootstrap(Z: np.ndarray, y: np.ndarray, organic: np.ndarray, v: np.ndarray, link: str, n_boot: int, seed: int,
              level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the shares over journeys resampled with replacement (lookback and organic rates held)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        draws.append(removal_shares(Z[i], fit_lift(Z[i], y[i], organic[i], link, start=v), link)[0])
    q = np.quantile(np.array(draws), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return q[0], q[1]


def choose_model(J: Journeys, folds: int = 5, seed: int = 0) -> tuple[str, bool]:
    """(link, counts) with the best held-out likelihood of the journeys' outcomes: chosen on the data in hand, never
    on a planted answer."""
    fold = np.random.default_rng(seed).integers(0, folds, len(J.converted))
    y = J.converted.astype(float)
    best, score = (LINKS[0], False), -np.inf
    for link in LINKS:
        for counts in (False, True):
            Z = design(J.X, counts)
            ll = sum(log_lik(Z[fold == f], y[fold == f], J.organic[fold == f],
                             fit_lift(Z[fold != f], y[fold != f], J.organic[fold != f], link), link) for f in range(folds))
            if ll > score:
                best, score = (link, counts), ll
    return best


def heuristic_shares(paths: list[list[str]], converted: np.ndarray, channels: list[str]) -> dict[str, np.ndarray]:
    """Conversion counts by first-click, last-click and linear (equal credit to every touch) rules."""
    idx = {c: i for i, c in enumerate(channels)}
    out = {k: np.zeros(len(channels)) for k in ("first", "last", "linear")}
    for p, c in zip(paths, converted):
        if c:
            out["first"][idx[p[0]]] += 1
            out["last"][idx[p[-1]]] += 1
            np.add.at(out["linear"], [idx[x] for x in p], 1 / len(p))
    return out


def attribute(touch: pd.DataFrame, conv: pd.DataFrame, window_days: float = 16.0, lookback_days: float | None = None,
              n_boot: int = 100, seed: int = 0, level: float = 0.9) -> pd.DataFrame:
    """Per channel: our share (removal effect under the fitted conversion model) with a bootstrap interval, the
    conversions it explains, and Markov / last-click / first-click / linear shares on the same journeys.

    touch: user_id, ts, channel[, cost]; conv: user_id, ts of every purchase (exposed customers or not: the
    unexposed set the organic baseline)."""
    channels = sorted(touch["channel"].unique())
    J = journeys(touch, conv, channels, window_days, lookback_days)
    y = J.converted.astype(float)
    link, counts = choose_model(J, seed=seed)
    Z = design(J.X, counts)
    v = fit_lift(Z, y, J.organic, link)
    share, _ = removal_shares(Z, v, link)
    low, high = bootstrap(Z, y, J.organic, v, link, n_boot, seed, level) if n_boot > 0 else (share, share)
    # purchases the channels explain: each converted journey's chance that its purchase came from the ads beyond
    # the organic rate and the no-channel baseline
    p = 1 - (1 - J.organic) * (1 - ad_probability(Z, v, link))
    p0 = 1 - (1 - J.organic) * (1 - ad_probability(np.zeros_like(Z), v, link))
    explained = float((y * (p - p0) / np.maximum(p, 1e-12)).sum())
    eff, _ = markov_removal(J.paths, J.converted, channels)
    n_conv = int(y.sum())
    mshare = eff / eff.sum() if eff.sum() > 0 else np.zeros(len(channels))
    h = heuristic_shares(J.paths, J.converted, channels)
    out = pd.DataFrame({"channel": channels})
    out["touches"] = touch.groupby("channel").size().reindex(channels).to_numpy()
    out["spend"] = (touch.groupby("channel")["cost"].sum().reindex(channels).fillna(0).round(2).to_numpy()
                    if "cost" in touch else 0.0)
    out["share"], out["share_low"], out["share_high"] = share.round(6), low.round(6), high.round(6)
    out["attributed_conversions"] = (share * explained).round(3)
    out["removal_effect"] = eff.round(6)
    out["markov_share"] = mshare.round(6)
    for k in ("last", "first", "linear"):
        out[f"{k}_click_share" if k != "linear" else "linear_share"] = (h[k] / max(n_conv, 1)).round(6)
    out["markov_conversions"] = (mshare * n_conv).round(3)
    out["last_click_conversions"] = h["last"].astype(int)
    out["first_click_conversions"] = h["first"].astype(int)
    out.attrs.update({"paths": len(J.paths), "conversions": n_conv, "explained": round(explained, 1),
                      "lookback_days": J.window_days, "model": f"{link}, {'touch counts' if counts else 'channel present'}",
                      "level": level})
    return out
