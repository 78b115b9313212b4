"""What the recommender's report draws, measured on the holdout while training still has it.

The report (`omnidecide.store.reports`) only reads a version's metadata; the curves need the holdout split and the
model fitted without it, which exist only inside training. So training measures them here, through the pipeline's
public evaluation functions, and stores the plain numbers in the version's metadata (`figures`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from omnidecide.models.metrics import (catalog_coverage, long_tail_share, ndcg_at_k, recall_at_k,
                                       tail_items_by_popularity)

KS = (1, 5, 10, 20, 50)


def holdout_figures(rec: Any, test: pd.DataFrame, has_repeats: bool) -> dict[str, Any]:
    """Recall/NDCG at each k in KS for the model (as served) and the holdout's baselines; coverage and long-tail
    share of the model's top-20 lists."""
    from omnidecide.training.recommender.pipeline import baseline_topk, relevant_sets, topk_stage1

    ks = [k for k in KS if k < len(rec.item_ids)]
    uidx, rel, now = relevant_sets(rec, test)
    tops = topk_stage1(rec, uidx, now, max(ks))
    out: dict[str, Any] = {"k": ks, "recall": {"model": [recall_at_k(tops, rel, k) for k in ks]},
                           "ndcg": {"model": [ndcg_at_k(tops, rel, k) for k in ks]}}
    for kind in ("popularity", "buy_again") if has_repeats else ("popularity",):
        reports = [baseline_topk(rec, test, kind, k) for k in ks]
        out["recall"][kind] = [r[f"recall@{k}"] for r, k in zip(reports, ks)]
        out["ndcg"][kind] = [r[f"ndcg@{k}"] for r, k in zip(reports, ks)]
    top20 = [t[:20] for t in tops]
    counts = dict(enumerate(np.asarray(rec.pop["global"], float)))
    tail = tail_items_by_popularity(counts)
    out["coverage"] = {"catalog_coverage@20": catalog_coverage(top20, len(rec.item_ids)),
                       "long_tail_share@20": long_tail_share(top20, tail),
                       "tail_share_of_catalogue": len(tail) / max(len(counts), 1), "users": len(uidx)}
    return out
