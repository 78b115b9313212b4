"""The one metrics module: ranking metrics for recommenders, probability metrics for churn/propensity.

Conventions (used by every benchmark so figures are comparable):
- Ranking metrics are averaged over users with at least one relevant item.
- Recall@K = hits / |relevant| (LightGCN convention); NDCG@K uses binary gains, IDCG over min(K, |relevant|);
  MAP@K divides by min(K, |relevant|); HitRate@K = share of users with at least one hit.
"""
from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np


def hits_matrix(topk: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]]) -> tuple[np.ndarray, np.ndarray]:
    """(hits[u, r] in {0,1} for the r-th recommendation, n_relevant[u]) for users with any relevant item."""
    keep = [u for u, rel in enumerate(relevant) if len(rel) > 0]
    k = max((len(topk[u]) for u in keep), default=0)
    hits = np.zeros((len(keep), k), dtype=np.float64)
    for row, u in enumerate(keep):
        rel = relevant[u] if isinstance(relevant[u], (set, frozenset, dict)) else set(relevant[u])
        for r, item in enumerate(topk[u]):
            if item in rel:
                hits[row, r] = 1.0
    n_rel = np.array([len(relevant[u]) for u in keep], dtype=np.float64)
    return hits, n_rel


def _cut(topk: Sequence[Sequence[Hashable]], k: int) -> list[Sequence[Hashable]]:
    return [list(t)[:k] for t in topk]


def recall_at_k(topk, relevant, k: int) -> float:
    hits, n_rel = hits_matrix(_cut(topk, k), relevant)
    return float(np.mean(hits.sum(1) / n_rel)) if len(n_rel) else 0.0


def hit_rate_at_k(topk, relevant, k: int) -> float:
    hits, n_rel = hits_matrix(_cut(topk, k), relevant)
    return float(np.mean(hits.sum(1) > 0)) if len(n_rel) else 0.0


def ndcg_at_k(topk, relevant, k: int) -> float:
    hits, n_rel = hits_matrix(_cut(topk, k), relevant)
    if not len(n_rel):
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: hits.shape[1]]).sum(1)
    idcg = np.array([discounts[: int(min(k, n))].sum() for n in n_rel])
    return float(np.mean(dcg / idcg))


def map_at_k(topk, relevant, k: int) -> float:
    hits, n_rel = hits_matrix(_cut(topk, k), relevant)
    if not len(n_rel):
        return 0.0
    precision = np.cumsum(hits, 1) / np.arange(1, hits.shape[1] + 1)
    return float(np.mean((precision * hits).sum(1) / np.minimum(k, n_rel)))


def catalog_coverage(topk: Sequence[Sequence[Hashable]], n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    return len({i for t in topk for i in t}) / n_items if n_items else 0.0


def long_tail_share(topk: Sequence[Sequence[Hashable]], tail_items: Collection[Hashable]) -> float:
    """Share of recommended slots filled by long-tail items (see `tail_items_by_popularity`)."""
    slots = [i for t in topk for i in t]
    tail = tail_items if isinstance(tail_items, (set, frozenset)) else set(tail_items)
    return sum(i in tail for i in slots) / len(slots) if slots else 0.0


def tail_items_by_popularity(counts: dict[Hashable, int], head_share: float = 0.2) -> set[Hashable]:
    """Long tail = every item outside the most popular `head_share` of items."""
    ranked = sorted(counts, key=lambda i: (-counts[i], str(i)))
    return set(ranked[int(np.ceil(head_share * len(ranked))):])


def auc(y_true, y_score) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties get half credit)."""
    from scipy.stats import rankdata

    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true, y_score) -> float:
    """Area under the precision-recall curve as the mean precision at each positive (step-wise, ties broken by order)."""
    y = np.asarray(y_true, dtype=bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-np.asarray(y_score, dtype=np.float64), kind="stable")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def brier(y_true, y_prob) -> float:
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """Equal-width bins over [0, 1]; |mean outcome - mean probability| weighted by bin size."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    if not len(p):
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    err = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            err += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return float(err)


def classification_report(y_true, y_prob) -> dict[str, float]:
    """The four probability metrics every churn/propensity benchmark reports."""
    return {
        "auc": auc(y_true, y_prob),
        "ap": average_precision(y_true, y_prob),
        "brier": brier(y_true, y_prob),
        "ece": expected_calibration_error(y_true, y_prob),
    }


def ranking_report(topk, relevant, k: int = 20) -> dict[str, float]:
    """Recall, NDCG, HitRate and MAP at k in one dict."""
    return {
        f"recall@{k}": recall_at_k(topk, relevant, k),
        f"ndcg@{k}": ndcg_at_k(topk, relevant, k),
        f"hitrate@{k}": hit_rate_at_k(topk, relevant, k),
        f"map@{k}": map_at_k(topk, relevant, k),
    }


def reliability_curve(y_true, y_prob, n_bins: int = 10) -> dict[str, list[float]]:
    """Calibration curve: per equal-width probability bin (empty bins left out), the mean predicted probability, the
    observed rate and the count. What a report's calibration plot draws; the bins are those of
    `expected_calibration_error`, so the plot and the ECE figure agree."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out: dict[str, list[float]] = {"mean_prob": [], "observed_rate": [], "count": []}
    for b in range(n_bins):
        m = bins == b
        if m.any():
            out["mean_prob"].append(float(p[m].mean()))
            out["observed_rate"].append(float(y[m].mean()))
            out["count"].append(int(m.sum()))
    return out


def lift_by_decile(y_true, y_score, n: int = 10) -> dict[str, list[float]]:
    """Customers sorted by score, highest first, cut into `n` equal groups: each group's positive rate and its lift
    over the overall rate (the lift chart CRM teams read: how much better than random the top decile is)."""
    y = np.asarray(y_true, dtype=np.float64)
    order = np.argsort(-np.asarray(y_score, dtype=np.float64), kind="stable")
    groups = [g for g in np.array_split(y[order], n) if len(g)]
    base = float(y.mean()) if len(y) else float("nan")
    rates = [float(g.mean()) for g in groups]
    return {"group": list(range(1, len(groups) + 1)), "rate": rates,
            "lift": [r / base if base > 0 else float("nan") for r in rates]}
