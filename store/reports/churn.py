"""The churn model's figures, from what training measured on its validation customers (metadata `figures`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from omnidecide.store.reports.plot import PALETTE, Figure, calibration, canvas, draw, missing

OLD = "not in this version's metadata: trained before reports were kept (retrain to get it)"
TIER_COLOURS = {"high": PALETTE[3], "medium": PALETTE[1], "low": PALETTE[2]}


def figures(meta: dict[str, Any]) -> list[Figure]:
    f = meta.get("figures") or {}
    metrics = meta.get("metrics", {})
    if not f:
        return [missing(t, OLD) for t in ("Calibration", "Scores by risk tier", "Lift chart", "RFM segment sizes")]
    as_of = meta.get("training", {}).get("validation_as_of", "?")

    def cal():
        fig, axes = canvas(width=4.6, height=4.0)
        calibration(axes[0][0], f["reliability"], "validation customers")
        return fig

    def hist():
        fig, axes = canvas(width=6.4, height=3.2)
        ax = axes[0][0]
        edges = np.asarray(f["score_bins"])
        bottom = np.zeros(len(edges) - 1)
        for tier in ("low", "medium", "high"):
            counts = np.asarray(f["score_hist"].get(tier, bottom * 0))
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", bottom=bottom, color=TIER_COLOURS[tier],
                   edgecolor="white", label=tier)
            bottom = bottom + counts
        ax.set(xlabel="churn probability", ylabel="customers", xlim=(0, 1))
        ax.legend(title="risk tier", fontsize=8)
        return fig

    def lift():
        fig, axes = canvas(width=6.4, height=3.2)
        ax = axes[0][0]
        ax.bar(f["lift"]["group"], f["lift"]["lift"], color=PALETTE[0])
        ax.axhline(1.0, color="#94a3b8", ls="--", lw=1, label="random targeting")
        ax.set(xlabel="decile by churn score (1 = riskiest 10%)", ylabel="lift (churn rate / overall)",
               xticks=f["lift"]["group"])
        ax.legend(fontsize=8)
        return fig

    def segments():
        seg = dict(sorted(f["segments"].items(), key=lambda kv: kv[1]))
        fig, axes = canvas(width=6.4, height=0.6 + 0.32 * max(len(seg), 3))
        ax = axes[0][0]
        ax.barh(list(seg), list(seg.values()), color=PALETTE[4])
        for y, v in enumerate(seg.values()):
            ax.text(v, y, f" {v}", va="center", fontsize=8)
        ax.set(xlabel="customers")
        return fig

    auc, ece = metrics.get("val_auc"), metrics.get("val_ece")
    return [
        draw("Calibration", f"Validation customers at {as_of}: predicted churn probability against the share that "
             f"churned" + (f" (AUC {auc:.3f}, ECE {ece:.3f})." if auc is not None and ece is not None else "."), cal),
        draw("Scores by risk tier", "Distribution of the churn probability; tiers cut at 0.3 (medium) and 0.6 (high).",
             hist),
        draw("Lift chart", "Churn rate of each score decile over the overall rate: how much better than random a "
             "retention campaign on the top deciles is.", lift),
        draw("RFM segment sizes", f"Validation customers per RFM segment at {as_of}.", segments),
    ]
