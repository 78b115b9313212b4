"""The allocator's figures, drawn from the stored version through its public objects (history, fitted parameters and
bootstrap draws, `plan`): fitted vs actual revenue, each channel's response curve with its band, a plan and the
marginal ROI at that plan.

Response curves are drawn at steady state: a weekly spend x held long enough that the adstock settles at
x / (1 - decay), outside peak weeks; the band spans the 5th-95th percentile of the bootstrap draws.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from matplotlib.ticker import EngFormatter, MaxNLocator

from omnidecide.store.reports.plot import PALETTE, Figure, canvas, draw

PLAN_WEEKS = 8
BAND = (5, 95)


def _steady(p: Any, x: np.ndarray) -> np.ndarray:
    """(len(x), C) weekly incremental revenue at a steady weekly spend x per channel (non-peak weeks)."""
    from omnidecide.models.response import hill

    stock = x[:, None] / (1 - np.asarray(p.decay)[None, :])
    return np.asarray(p.beta) * hill(stock, p.half_saturation, p.slope)


def _fitted(alloc: Any) -> np.ndarray:
    """The point fit's revenue over the history: baseline + media + controls."""
    from omnidecide.models.allocator.mmm import peak_flags

    h, p = alloc.history, alloc.params
    n = len(h.dates)
    base = p.baseline_at(h.dates, np.arange(n), h.step_days)
    media = p.media(h.spend, peak_flags(h.dates, h.step_days).max(1)).sum(1)
    ctrl = h.controls @ p.gamma if len(p.gamma) and h.controls.size else 0.0
    return base + media + ctrl


def default_plan(alloc: Any) -> tuple[float, Any]:
    """The plan drawn in the report: the next 8 weeks at the last 8 weeks' total spend (default reserve)."""
    budget = float(np.round(alloc.history.spend[-PLAN_WEEKS:].sum(), -2))
    return budget, alloc.plan(budget, PLAN_WEEKS)


def figures(alloc: Any, meta: dict[str, Any]) -> list[Figure]:
    h = alloc.history
    C = len(h.channels)
    draws = alloc.samples or [alloc.params]
    metrics = meta.get("metrics", {})
    budget, plan = default_plan(alloc)
    table = plan.table
    weekly = table[table["channel"] != "reserve"].groupby("channel")["spend"].sum() / PLAN_WEEKS

    def fit():
        fig, axes = canvas(width=8.0, height=3.2)
        ax = axes[0][0]
        ax.plot(h.dates, h.revenue, color="#334155", lw=1.2, label="actual")
        ax.plot(h.dates, _fitted(alloc), color=PALETTE[1], lw=1.2, label="fitted")
        ax.set(ylabel="revenue per period")
        ax.yaxis.set_major_formatter(EngFormatter())
        ax.legend(fontsize=8)
        return fig

    def curves():
        ncols = min(C, 3)
        nrows = int(np.ceil(C / ncols))
        fig, axes = canvas(ncols, nrows, width=8.0, height=2.4 * nrows)
        hi = np.maximum(h.spend.max(0), 1e-9) * 1.5
        for c, ax in enumerate(axes.flat):
            if c >= C:
                ax.set_visible(False)
                continue
            x = np.linspace(0, hi[c], 60)
            band = np.stack([_steady(d, x)[:, c] for d in draws])
            lo, up = np.percentile(band, BAND, axis=0)
            ax.fill_between(x, lo, up, color=PALETTE[c % len(PALETTE)], alpha=0.2, lw=0)
            ax.plot(x, _steady(alloc.params, x)[:, c], color=PALETTE[c % len(PALETTE)], lw=1.6)
            mean = h.spend[:, c].mean()
            ax.axvline(mean, color="#64748b", ls=":", lw=1)
            ax.set_title(h.channels[c], fontsize=9)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_formatter(EngFormatter())
            ax.yaxis.set_major_formatter(EngFormatter())
            ax.xaxis.set_major_locator(MaxNLocator(4))
        fig.supxlabel("weekly spend", fontsize=8)
        fig.supylabel("weekly incremental revenue", fontsize=8)
        return fig

    def by_week():
        fig, axes = canvas(width=8.0, height=3.4)
        ax = axes[0][0]
        rows = table[table["channel"] != "reserve"].pivot_table(index="period", columns="channel", values="spend",
                                                                  aggfunc="sum").reindex(columns=h.channels).fillna(0)
        bottom = np.zeros(len(rows))
        for c, ch in enumerate(h.channels):
            ax.bar(rows.index.astype(str), rows[ch], bottom=bottom, color=PALETTE[c % len(PALETTE)], label=ch)
            bottom += rows[ch].to_numpy()
        reserve = float(table.loc[table["channel"] == "reserve", "spend"].sum())
        if reserve > 0:
            ax.bar(["reserve"], [reserve], color="white", edgecolor="#64748b", hatch="//", label="reserve")
        ax.set(xlabel="week", ylabel="spend")
        ax.yaxis.set_major_formatter(EngFormatter())
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncols=min(C + 1, 7))
        return fig

    def marginal():
        x = weekly.reindex(h.channels).fillna(0).to_numpy()
        eps = np.maximum(x * 0.01, 1.0)
        roi = [(_steady(d, x + eps) - _steady(d, x)).diagonal() / eps for d in draws]
        point = (_steady(alloc.params, x + eps) - _steady(alloc.params, x)).diagonal() / eps
        lo, up = np.percentile(np.stack(roi), BAND, axis=0)
        fig, axes = canvas(width=6.4, height=0.8 + 0.4 * C)
        ax = axes[0][0]
        y = np.arange(C)
        ax.barh(y, point, color=[PALETTE[c % len(PALETTE)] for c in range(C)],
                xerr=[np.maximum(point - lo, 0), np.maximum(up - point, 0)], capsize=3)
        ax.axvline(1.0, color="#64748b", ls="--", lw=1, label="break-even (1.0)")
        ax.set(yticks=y, yticklabels=h.channels, xlabel="revenue from one more unit of weekly spend")
        ax.invert_yaxis()
        ax.legend(fontsize=8)
        return fig

    r2, mape = metrics.get("fit_r2"), metrics.get("fit_mape")
    s = plan.summary
    return [
        draw("Fitted vs actual revenue", f"{len(h.dates)} periods of history"
             + (f"; R² {r2:.3f}, MAPE {mape:.1%}." if r2 is not None and mape is not None else "."), fit),
        draw("Response curves", "Weekly incremental revenue per channel at a steady weekly spend (non-peak weeks); "
             f"band: {BAND[0]}th-{BAND[1]}th percentile over {len(draws)} bootstrap fits; dotted: mean historical "
             "spend.", curves),
        draw("Plan by week and channel", f"Budget {budget:,.0f} over the next {PLAN_WEEKS} weeks (the last "
             f"{PLAN_WEEKS} weeks' spend), reserve {s['reserve']:,.0f} held back; expected incremental revenue "
             f"{s['expected_incremental_revenue']:,.0f}.", by_week),
        draw("Marginal ROI at the plan", "Long-run revenue (carry-over included) from one more unit of weekly spend at "
             f"each channel's planned weekly spend; bars: the point fit, whiskers: {BAND[0]}th-{BAND[1]}th percentile of the bootstrap fits.",
             marginal),
    ]
