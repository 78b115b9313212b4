"""Reports with plots: one self-contained HTML page (CSS inline, figures as base64 PNG) per model version.

Lives in `store` because three layers need it: training writes `report.html` into each new version
(`registry.save` calls `write_into`), the CLI writes one file for every serving version (`omnidecide report --html`)
and the console (serving) shows the same figures. It reads only what the store holds — a version's metadata and
artefacts, the lifecycle log, the monitor's run history — plus the serving health its caller passes in.

Per model: recommender (recall/NDCG@k vs the holdout's baselines, coverage and long tail, purchase-probability
calibration), churn (calibration, scores by risk tier, lift, RFM segments), allocator (fitted vs actual, response
curves with bands, a plan by week and channel with the reserve, marginal ROI); for each, the lifecycle (drift over
time vs the ±15% band, canary health, decisions).
"""
from __future__ import annotations

import html
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omnidecide.store.reports.plot import Figure, missing

log = logging.getLogger(__name__)
FILE = "report.html"  # inside each version's folder
FIGURES = "report.json"  # the same figures, for the console (drawing them again takes seconds)
HEADLINE = {
    "recommender": ("holdout_ndcg@20", "holdout_recall@20", "popularity_ndcg@20", "purchase_prob_ece"),
    "churn": ("val_auc", "val_ap", "val_brier", "val_ece"),
    "allocator": ("fit_r2", "fit_mape", "agent_over_planner_mean", "agent_enabled"),
}
N_DECISIONS = 10


@dataclass
class Section:
    heading: str
    figures: list[Figure] = field(default_factory=list)
    table: str = ""  # trusted HTML built here (every value escaped)


def headline(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in HEADLINE.get(name, ()) if k in metrics] or list(metrics)[:4]
    return {k: metrics[k] for k in keys}


def fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def model_figures(name: str, metadata: dict[str, Any], folder: Path | None = None) -> list[Figure]:
    """The model's own figures from a version's metadata (and, for the allocator, its artefacts in `folder`)."""
    if name == "recommender":
        from omnidecide.store.reports import recommender
        return recommender.figures(metadata)
    if name == "churn":
        from omnidecide.store.reports import churn
        return churn.figures(metadata)
    if name == "allocator":
        from omnidecide.store.reports import allocator
        try:
            from omnidecide.models.allocator.artifact import Allocator
            alloc = Allocator.load(folder) if folder is not None else None
        except Exception as e:  # noqa: BLE001 - an unloadable version still gets a report that says so
            alloc, why = None, f"the version does not load ({type(e).__name__}: {e})"
        else:
            why = "no artefacts given"
        if alloc is None:
            return [missing("Allocator figures", why)]
        try:
            return allocator.figures(alloc, metadata)
        except Exception as e:  # noqa: BLE001 - e.g. the default plan is infeasible for this history
            return [missing("Allocator figures", f"not drawn: {type(e).__name__}: {e}")]
    return [missing(f"{name} figures", f"unknown model {name!r}")]


def lifecycle_section(name: str, health: dict[str, dict] | None) -> Section:
    from omnidecide.store import registry
    from omnidecide.store.reports import lifecycle

    rows = registry.decisions(name)[-N_DECISIONS:]
    detail = lambda e: ", ".join(f"{k}={fmt(v)}" for k, v in e.items()  # noqa: E731
                                 if k not in ("at", "action", "tag", "reason") and v is not None)
    tbl = table(["at", "action", "tag", "details", "reason"],
                [[e.get("at"), e.get("action"), e.get("tag"), detail(e), e.get("reason")] for e in reversed(rows)])
    return Section(f"{name}: lifecycle", lifecycle.figures(name, health), tbl if rows else "")


def version_section(name: str, tag: str | None = None, *, drawn: bool = False) -> Section:
    """A stored version (default: the serving one): its headline metrics and figures. `drawn`: use the figures drawn
    at training time (`report.json`) when the version has them, instead of drawing them again."""
    from omnidecide.store import registry

    stored = registry.get(name, tag)
    meta = dict(stored.info.metadata)
    tag = str(stored.tag)
    head = [[k, v] for k, v in headline(name, meta.get("metrics", {})).items()]
    info = [["version", tag], ["created", stored.info.creation_time.isoformat(timespec="seconds")],
            ["data end", meta.get("data_end")], ["data fingerprint", meta.get("data_fingerprint")], *head]
    saved = Path(stored.path) / FIGURES
    figs = None
    if drawn and saved.exists():
        try:
            figs = [Figure(**f) for f in json.loads(saved.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError) as e:
            log.warning("%s: %s unreadable (%s); drawing again", tag, saved, e)
    return Section(tag, figs or model_figures(name, meta, Path(stored.path)), table(["", ""], info))


def version_sections(name: str, tag: str | None = None, health: dict[str, dict] | None = None) -> list[Section]:
    """A stored version (default: the serving one), drawn afresh, then the model's lifecycle."""
    return [version_section(name, tag), lifecycle_section(name, health)]


def render(title: str, sections: list[Section], note: str = "") -> str:
    """One self-contained page: inline CSS, every figure embedded; readable from 390 px wide up."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    for s in sections:
        parts.append(f"<section><h2>{html.escape(s.heading)}</h2>{s.table}")
        parts += [figure_html(f) for f in s.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def figure_html(f: Figure) -> str:
    body = (f"<img alt='{html.escape(f.title)}' src='data:image/png;base64,{f.png}'>" if f.png
            else f"<p class='missing'>{html.escape(f.missing or 'not drawn')}</p>")
    cap = f"<figcaption>{html.escape(f.caption)}</figcaption>" if f.caption else ""
    return f"<figure><h3>{html.escape(f.title)}</h3>{body}{cap}</figure>"


def version_html(name: str, tag: str | None = None, health: dict[str, dict] | None = None) -> str:
    now = datetime.now(timezone.utc)
    sections = version_sections(name, tag, health)
    return render(f"omnidecide {sections[0].heading}", sections, f"drawn {now:%Y-%m-%d %H:%M} UTC")


def store_html(health: dict[str, dict] | None = None) -> str:
    """Every model's serving version (and its lifecycle) in one page: `omnidecide report --html`."""
    from omnidecide.store import registry

    sections: list[Section] = []
    for name in registry.MODEL_NAMES:
        if registry.serving_tag(name) is None:
            sections.append(Section(name, [missing(f"{name}", f"no version: train one with `omnidecide train {name}`")]))
            continue
        sections += [version_section(name, drawn=True), lifecycle_section(name, health)]
    now = datetime.now(timezone.utc)
    return render(f"omnidecide report — {now:%Y-%m-%d %H:%M} UTC", sections, f"model store {registry.home()}")


def write_into(folder: Path, name: str, metadata: dict[str, Any]) -> None:
    """`report.html` for a version being saved (its folder already holds the artefacts): its figures and the
    model's lifecycle as it stands when it was trained. A failure is logged, never fails the training."""
    try:
        figs = model_figures(name, metadata, folder)
        head = table(["", ""], [[k, v] for k, v in headline(name, metadata.get("metrics", {})).items()])
        sections = [Section(f"{name}: new version", figs, head), lifecycle_section(name, None)]
        now = datetime.now(timezone.utc)
        (Path(folder) / FIGURES).write_text(json.dumps([asdict(f) for f in figs]), encoding="utf-8")
        (Path(folder) / FILE).write_text(render(f"omnidecide {name} — trained {now:%Y-%m-%d %H:%M} UTC", sections),
                                         encoding="utf-8")
    except Exception as e:  # noqa: BLE001
        log.warning("%s: report.html not written (%s: %s)", name, type(e).__name__, e)


CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:960px;padding:12px;
color:#0f172a;background:#fff}
h1{font-size:1.4rem}h2{font-size:1.15rem;border-bottom:1px solid #e2e8f0;padding-bottom:4px;margin-top:28px}
h3{font-size:1rem;margin:0 0 6px}
figure{margin:14px 0;padding:10px;border:1px solid #e2e8f0;border-radius:8px}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#475569;font-size:.85rem;margin-top:6px}
.missing{color:#b45309;background:#fffbeb;padding:6px 8px;border-radius:6px}.note{color:#64748b}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;margin:8px 0}
td,th{border-bottom:1px solid #e2e8f0;padding:4px 8px;text-align:left;vertical-align:top}
"""
