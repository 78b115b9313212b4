"""The recommender's figures, from what training measured on its own holdout (metadata `figures`)."""
from __future__ import annotations

from typing import Any

from omnidecide.store.reports.plot import PALETTE, Figure, calibration, canvas, draw, missing

OLD = "not in this version's metadata: trained before reports were kept (retrain to get it)"


def figures(meta: dict[str, Any]) -> list[Figure]:
    f = meta.get("figures") or {}
    metrics = meta.get("metrics", {})
    out = []
    if "k" in f:
        def curves():
            fig, axes = canvas(2, width=8.0, height=3.4)
            for ax, key, label in zip(axes[0], ("recall", "ndcg"), ("Recall@k", "NDCG@k")):
                for n, (series, ys) in enumerate(f[key].items()):
                    ax.plot(f["k"], ys, marker="o", color=PALETTE[n], lw=2 if series == "model" else 1.2,
                            label=series.replace("_", " "))
                ax.set(xscale="log", xlabel="k (list length)", ylabel=label, xticks=f["k"], xticklabels=f["k"])
                ax.legend(fontsize=8)
            return fig
        out.append(draw("Recall and NDCG at k on the holdout",
                        "The model as served (both stages) against the holdout's baselines, same users and split "
                        f"({f.get('coverage', {}).get('users', '?')} users with holdout purchases).", curves))
    else:
        out.append(missing("Recall and NDCG at k on the holdout", OLD))
    cov = f.get("coverage")
    if cov:
        def coverage():
            fig, axes = canvas(width=6.4, height=3.0)
            ax = axes[0][0]
            names = ["catalogue coverage@20", "long-tail share@20", "tail share of catalogue"]
            vals = [cov["catalog_coverage@20"], cov["long_tail_share@20"], cov["tail_share_of_catalogue"]]
            ax.barh(names, vals, color=[PALETTE[0], PALETTE[0], "#94a3b8"])
            for y, v in enumerate(vals):
                ax.text(v + 0.01, y, f"{v:.0%}", va="center", fontsize=9)
            ax.set(xlim=(0, 1.1), xlabel="share")
            ax.invert_yaxis()
            return fig
        out.append(draw("Coverage and long tail",
                        "Share of the catalogue that appears in some top-20 list, and share of recommended slots "
                        "filled by long-tail items (outside the 20% most bought); grey: the tail's share of the "
                        "catalogue, what a popularity-blind list would give.", coverage))
    else:
        out.append(missing("Coverage and long tail", OLD))
    rel = f.get("purchase_prob_reliability")
    if rel:
        def cal():
            fig, axes = canvas(width=4.6, height=4.0)
            calibration(axes[0][0], rel, "holdout candidates")
            return fig
        ece = metrics.get("purchase_prob_ece")
        out.append(draw("Calibration of the purchase probability",
                        "Cross-fitted calibrated probabilities of the holdout candidates against how often they were "
                        f"bought{'' if ece is None else f' (ECE {ece:.3f})'}; `/bid` prices impressions with them.",
                        cal))
    else:
        why = OLD if "k" not in f else "no second stage in this version: too few positives to fit one"
        out.append(missing("Calibration of the purchase probability", why))
    return out
