"""Figures as embedded PNG: matplotlib's object API on the Agg canvas (no pyplot, no global state, so a server
thread can draw while another does), one `Figure` record per plot with its caption.

A plot that cannot be drawn (a version trained before reports were kept, a model file that does not load) becomes a
`Figure` carrying the reason instead of an image: the report says what is missing and why, never just leaves it out.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Callable


PALETTE = ["#2563eb", "#f97316", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#ca8a04", "#db2777", "#475569"]


@dataclass(frozen=True)
class Figure:
    """One plot of a report: a title, a caption that says what to read in it, and the PNG (base64) or why not."""
    title: str
    caption: str = ""
    png: str | None = None
    missing: str | None = None


def canvas(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.6, **kw) -> tuple[Any, Any]:
    """A figure (matplotlib imported here, on first use: pages that draw nothing never pay for it) and its axes."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, ever
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def draw(title: str, caption: str, fn: Callable[[], Any]) -> Figure:
    """Run one figure function; any failure becomes a Figure that names the failure."""
    try:
        return Figure(title, caption, png=png(fn()))
    except Exception as e:  # noqa: BLE001 - a report shows what it could not draw rather than failing as a whole
        return Figure(title, caption, missing=f"not drawn: {type(e).__name__}: {e}")


def missing(title: str, why: str) -> Figure:
    return Figure(title, missing=why)


def calibration(ax, curve: dict, label: str) -> None:
    """A reliability diagram: the diagonal is perfect calibration; dot area grows with the bin's count."""
    ax.plot([0, 1], [0, 1], color="#94a3b8", ls="--", lw=1, label="perfectly calibrated")
    counts = curve.get("count") or [1] * len(curve["mean_prob"])
    top = max(counts) or 1
    ax.plot(curve["mean_prob"], curve["observed_rate"], color=PALETTE[0], lw=1.5)
    ax.scatter(curve["mean_prob"], curve["observed_rate"], s=[20 + 180 * c / top for c in counts], color=PALETTE[0],
               zorder=3, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", ylabel="observed rate")
    ax.legend(loc="upper left", fontsize=8)
