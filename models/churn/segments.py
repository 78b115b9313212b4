"""RFM segments, risk tiers and reason codes a CRM user understands.

RFM scores are 1-5 per dimension, cut at quintile edges learned on the training population (saved with
the model, so one customer scores the same alone or in a batch). Segment names follow the common RFM
grid used by CRM teams.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SEGMENTS = ("champions", "loyal", "potential", "new", "at-risk", "can't-lose", "hibernating", "lost", "prospect")
RISK_TIERS = {"high": 0.6, "medium": 0.3}  # calibrated churn probability >= threshold; else "low"


def rfm_edges(rfm: pd.DataFrame) -> dict[str, list[float]]:
    """Quintile edges of recency, frequency and monetary among customers with at least one purchase."""
    buyers = rfm[rfm["frequency"] > 0]
    if not len(buyers):
        return {"recency": [], "frequency": [], "monetary": []}
    q = [0.2, 0.4, 0.6, 0.8]
    return {
        "recency": np.unique(np.quantile(buyers["recency_days"], q)).tolist(),
        "frequency": np.unique(np.quantile(buyers["frequency"], q)).tolist(),
        "monetary": np.unique(np.quantile(buyers["monetary"], q)).tolist(),
    }


def rfm_scores(rfm: pd.DataFrame, edges: dict[str, list[float]]) -> pd.DataFrame:
    """R, F, M in 1..5 (5 = best: most recent, most frequent, highest spend)."""
    r = 5 - np.searchsorted(np.asarray(edges["recency"]), rfm["recency_days"].to_numpy(), side="left")
    f = 1 + np.searchsorted(np.asarray(edges["frequency"]), rfm["frequency"].to_numpy(), side="left")
    m = 1 + np.searchsorted(np.asarray(edges["monetary"]), rfm["monetary"].to_numpy(), side="left")
    return pd.DataFrame({"R": np.clip(r, 1, 5), "F": np.clip(f, 1, 5), "M": np.clip(m, 1, 5)}, index=rfm.index)


def segment(rfm: pd.DataFrame, edges: dict[str, list[float]]) -> np.ndarray:
    s = rfm_scores(rfm, edges)
    R, F, M = s["R"].to_numpy(), s["F"].to_numpy(), s["M"].to_numpy()
    freq = rfm["frequency"].to_numpy()
    conds = [
        freq == 0,
        (R >= 4) & (F >= 4),
        (R >= 4) & (freq <= 1),
        (R >= 3) & (F >= 3),
        R >= 3,
        (F >= 4) & (M >= 4),
        F >= 3,
        R == 2,
    ]
    names = ["prospect", "champions", "new", "loyal", "potential", "can't-lose", "at-risk", "hibernating"]
    return np.select(conds, names, default="lost").astype(object)


def risk_tier(prob: np.ndarray) -> np.ndarray:
    p = np.asarray(prob, dtype=float)
    return np.where(p >= RISK_TIERS["high"], "high", np.where(p >= RISK_TIERS["medium"], "medium", "low")).astype(object)


def _d(x: float) -> int:
    return int(round(float(x)))


def _ago(x: float) -> str:
    d = _d(x)
    return "today" if d == 0 else "1 day ago" if d == 1 else f"{d} days ago"


def reasons(rfm: pd.DataFrame, prob: np.ndarray, noun: str = "purchase") -> list[str]:
    """One plain sentence per customer: the strongest signal behind their churn probability."""
    out = []
    plural = "activities" if noun == "activity" else noun + "s"
    cols = ["frequency", "recency_days", "recency_any_days", "mean_gap_days", "n_90", "n_prev_90", "visits_30",
            "n_30", "spend_90", "tenure_days"]
    for row, p in zip(rfm[cols].itertuples(index=False), np.asarray(prob, dtype=float)):
        freq, rec, rec_any, gap, n90, nprev, visits, n30, s90, tenure = row
        high = p >= RISK_TIERS["medium"]
        if freq == 0:
            if visits > 0:
                out.append(f"never bought; {int(visits)} visits in the last 30 days")
            else:
                out.append(f"never bought; last seen {_ago(rec_any)}")
            continue
        if high:
            if freq >= 2 and np.isfinite(gap) and rec > 1.5 * max(gap, 1):
                text = f"no {noun} for {_d(rec)} days, usual gap {_d(gap)}"
            elif freq == 1:
                text = f"one {noun} only, {_ago(rec)}; " + ("no repeat yet" if rec < 30 else "never came back")
            elif nprev >= 2 and n90 <= 0.5 * nprev:
                text = f"{plural} fell from {int(nprev)} to {int(n90)} (last 90 days vs the 90 before); last one {_ago(rec)}"
            else:
                text = f"last {noun} {_ago(rec)}" + (f", usual gap {_d(gap)}" if np.isfinite(gap) else "")
            if visits > 0 and rec > 14 and noun == "purchase":
                text += f"; still visiting ({int(visits)} visits in 30 days)"
            elif rec_any < rec - 7:
                text += f"; last seen {_ago(rec_any)}"
            out.append(text)
        else:
            if n30 >= 2:
                out.append(f"{int(n30)} {plural} in the last 30 days; last {_ago(rec)}")
            elif np.isfinite(gap):
                out.append(f"on schedule: last {noun} {_ago(rec)}, usual gap {_d(gap)} days")
            else:
                out.append(f"last {noun} {_ago(rec)}")
    return out


SCORE_ALERT = 0.15  # CRM's rule: a churn score that moved more than 15 points since the last run raises an alert


def score_changes(table: pd.DataFrame, previous: pd.DataFrame, threshold: float = SCORE_ALERT) -> pd.DataFrame:
    """`table` plus previous_probability, change (points of probability) and alert (|change| > threshold) per customer.

    Absolute points, not a relative change: 0.02 -> 0.03 is +50% of almost nothing, 0.40 -> 0.56 is a customer
    slipping away. Customers not in `previous` get no previous figure and no alert."""
    prev = previous.drop_duplicates("user_id", keep="last").set_index("user_id")["churn_probability"]
    out = table.copy()
    out["previous_probability"] = out["user_id"].map(prev)
    out["change"] = (out["churn_probability"] - out["previous_probability"]).round(4)
    out["alert"] = out["change"].abs() > threshold
    return out
