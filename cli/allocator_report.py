"""The planner's one-pager (`allocate ... --report plan.html`): one self-contained HTML file, figures embedded as
base64 PNGs (matplotlib), so it can be mailed or attached to a ticket as is.

Sections: response curves with their 80% bands (each channel's expected revenue over the horizon as its total spend
scales, the plan and last year's mix marked), the plan by week and channel, marginal ROI, the cost of the reserve
and of each rule (the same request re-planned without it), and what changed since the last plan (the plan file that
was at --output before this run, when there was one).
"""
from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone

import numpy as np
import pandas as pd


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:,.2f}", border=0, classes="t")


def response_figure(res, channels: list[str]) -> str:
    import matplotlib.pyplot as plt

    ens, x = res.ensemble, res.spend[res.n_actual:]
    C = len(channels)
    cols = min(C, 3)
    fig, axes = plt.subplots(-(-C // cols), cols, figsize=(4.2 * cols, 3.0 * -(-C // cols)), squeeze=False)
    hist = res.historical
    for j, c in enumerate(channels):
        ax = axes[j // cols][j % cols]
        prof = x[:, j] if x[:, j].sum() > 0 else hist[:, j]
        if prof.sum() <= 0:
            prof = np.ones(len(x))
        ref = max(x[:, j].sum(), hist[:, j].sum(), 1.0)
        totals = np.linspace(0, 2.5 * ref, 26)
        X = np.outer(prof / prof.sum(), totals)  # (T, G): the channel's profile scaled to each total
        sub = ens.channel(j).replicate(len(totals))
        per = np.stack([w.revenue(X).sum(0) for w in sub.worlds])  # (K, G)
        ax.fill_between(totals, np.percentile(per, 10, 0), np.percentile(per, 90, 0), alpha=0.3, label="80% band")
        ax.plot(totals, per.mean(0), label="expected")
        ax.axvline(x[:, j].sum(), color="k", lw=1, label="plan")
        ax.axvline(hist[:, j].sum(), color="grey", lw=1, ls="--", label="last year's mix")
        ax.set_title(f"{c} (identification {res.identification[j]:.2f})", fontsize=9)
        ax.set_xlabel("channel spend over the horizon", fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(C, axes.size):
        axes.flat[j].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def plan_figure(res, channels: list[str]) -> str:
    import matplotlib.pyplot as plt

    x = res.spend
    fig, ax = plt.subplots(figsize=(9, 3.2))
    bottom = np.zeros(len(x))
    for j, c in enumerate(channels):
        ax.bar(np.arange(1, len(x) + 1), x[:, j], bottom=bottom, label=c)
        bottom += x[:, j]
    if res.n_actual:
        ax.axvline(res.n_actual + 0.5, color="k", lw=1)
        ax.text(res.n_actual + 0.6, bottom.max(), "planned from here", fontsize=8, va="top")
    ax.set_xlabel("period")
    ax.set_ylabel("spend")
    ax.legend(fontsize=7, ncol=min(len(channels), 6))
    return _png(fig)


def mroi_figure(summary: dict) -> str:
    import matplotlib.pyplot as plt

    pc = summary["per_channel"]
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(list(pc), [v["marginal_roi"] for v in pc.values()])
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.set_ylabel("marginal ROI (revenue per extra unit)")
    ax.tick_params(axis="x", labelsize=8)
    return _png(fig)


def rule_costs(alloc, request: dict, base_revenue: float) -> pd.DataFrame:
    """Expected incremental revenue given up to the reserve and to each rule: the same request re-planned without
    it (everything else unchanged)."""
    rows = []
    variants = []
    if request.get("reserve", 0) > 0:
        variants.append(("reserve", f"{request['reserve']:.0%} held back", {**request, "reserve": 0.0}))
    for key, flag in (("lo", "--min"), ("hi", "--max"), ("roi_floor", "--roi-floor")):
        for ch, v in (request.get(key) or {}).items():
            variants.append((flag, f"{ch}={v:g}", {**request, key: {k: w for k, w in request[key].items() if k != ch}}))
    for what, detail, req in variants:
        rev = alloc.plan(**req).summary["expected_incremental_revenue"]
        rows.append({"rule": what, "setting": detail, "expected revenue without it": rev,
                     "cost of the rule": rev - base_revenue})
    return pd.DataFrame(rows, columns=["rule", "setting", "expected revenue without it", "cost of the rule"])


def changes(previous: pd.DataFrame | None, table: pd.DataFrame) -> pd.DataFrame | None:
    if previous is None or not {"channel", "spend"} <= set(previous.columns):
        return None
    old = previous.groupby("channel")["spend"].sum()
    new = table.groupby("channel")["spend"].sum()
    df = pd.DataFrame({"previous spend": old, "this plan": new}).fillna(0.0)
    df["change"] = df["this plan"] - df["previous spend"]
    return df.reset_index(names="channel")


def write_report(path, alloc, res, tag: str, request: dict, previous: pd.DataFrame | None = None) -> None:
    """The one-pager for plan `res` of `alloc` (request: the keyword arguments the plan was made with)."""
    import matplotlib

    matplotlib.use("Agg")
    s, channels = res.summary, alloc.channels
    per = pd.DataFrame([{"channel": c, "spend": v["spend"], "last year's mix": v["historical_spend"],
                         "expected revenue": v["incremental_revenue"], "80% low": v["revenue_p10"],
                         "80% high": v["revenue_p90"], "identification": v["identification"],
                         "marginal ROI": v["marginal_roi"]} for c, v in s["per_channel"].items()])
    costs = rule_costs(alloc, request, s["expected_incremental_revenue"])
    diff = changes(previous, res.table)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Budget plan</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:1em auto;font-size:14px}"
        ".t td,.t th{padding:2px 8px;text-align:right}.t th{background:#eee}</style></head><body>",
        f"<h1>Budget plan</h1><p>model {e(tag)}; made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; budget "
        f"{s['budget']:,.2f} over {s['periods']} periods; reserve {s['reserve']:,.2f}; planned spend "
        f"{s['planned_spend']:,.2f}; expected incremental revenue {s['expected_incremental_revenue']:,.2f} "
        f"(last year's mix at this budget: {s['historical_mix_revenue']:,.2f}).</p>",
        "<h2>Per channel</h2>", _table(per),
        "<h2>Response curves (expected revenue over the horizon, 80% band over the posterior draws)</h2>",
        response_figure(res, channels),
        "<h2>Plan by period and channel</h2>", plan_figure(res, channels),
        "<h2>Marginal ROI</h2>", mroi_figure(s),
        "<h2>Cost of the reserve and of each rule</h2>",
        _table(costs) if len(costs) else "<p>No reserve and no rules: nothing given up.</p>",
        "<h2>What changed since the last plan</h2>",
        _table(diff) if diff is not None else "<p>No earlier plan at this output path.</p>",
        "</body></html>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
