"""`omnidecide report`: one Markdown page a person reads to know what serves, how well, and what was decided.

Everything comes from files that already exist: the registry (versions, metadata, stages), the lifecycle log,
the decision log (serving health per version) and the monitor's `monitor/latest.json` when there is one. Nothing
is computed anew, so the report is cheap and says exactly what the machinery saw.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from omnidecide.cli.app import app, console
from omnidecide.models.errors import InputError
from omnidecide.store.reports import fmt

# The figures a reader compares across versions; other metrics stay in `omnidecide models show`.
HEADLINE = {
    "recommender": ("holdout_ndcg@20", "holdout_recall@20", "popularity_ndcg@20"),
    "churn": ("val_auc", "val_ap", "val_brier", "val_ece"),
    "allocator": ("fit_r2", "fit_mape", "agent_over_planner_mean", "agent_enabled"),
}
N_VERSIONS, N_DECISIONS = 5, 10


def _cell(x: Any) -> str:
    """A table cell: one line, no stray pipes."""
    return fmt(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in rows)]


def _headline(name: str, metrics: dict[str, Any]) -> str:
    keys = [k for k in HEADLINE.get(name, ()) if k in metrics] or list(metrics)[:4]
    return ", ".join(f"{k}={fmt(metrics[k])}" for k in keys)


def _versions(name: str, every: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in every if r["name"] == name][:N_VERSIONS]
    if not rows:
        return [f"No versions: train one with `omnidecide train {name}`."]
    return _table(["tag", "created", "stage", "data end", "data fingerprint", "headline metrics"], [
        [r["tag"], r["created"], r["stage"], r["metadata"].get("data_end"), r["metadata"].get("data_fingerprint"),
         _headline(name, r["metrics"])] for r in rows])


def _decisions(name: str) -> list[str]:
    from omnidecide.store import registry

    def details(entry: dict[str, Any]) -> str:  # share, replaced, figures: whatever the entry carries
        return ", ".join(f"{k}={fmt(v)}" for k, v in entry.items()
                         if k not in ("at", "action", "tag", "reason") and v is not None)

    rows = registry.decisions(name)[-N_DECISIONS:]
    if not rows:
        return ["None logged."]
    return _table(["at", "action", "tag", "details", "reason"],
                  [[e.get("at"), e.get("action"), e.get("tag"), details(e), e.get("reason")] for e in reversed(rows)])


def _health(name: str, health: dict[str, dict], days: int) -> list[str]:
    rows = [[tag, h["requests"], h["errors"], f"{h['error_rate']:.2%}", h["p50_ms"], h["p95_ms"]]
            for tag, h in sorted(health.items()) if tag.split(":")[0] == name]
    if not rows:
        return [f"No requests logged in the last {days} days."]
    return _table(["version", "requests", "errors", "error rate", "p50 ms", "p95 ms"], rows)


def _monitor(result: dict[str, Any]) -> list[str]:
    """One model's part of `monitor/latest.json`: alerts, actions, drift that alerted, quality."""
    out = []
    for key in ("alerts", "actions"):
        out += [f"- {key[:-1]}: {x}" for x in result.get(key) or []]
    drift = result.get("drift") or []
    moved = [r for r in drift if r.get("alert")]
    if drift:
        out.append(f"- drift: {len(moved)} of {len(drift)} attributes moved beyond the threshold")
        if moved:
            out += ["", *_table(["attribute", "reference", "current", "change"], [
                [r.get("attribute"), r.get("reference"), r.get("current"),
                 r.get("status") if r.get("change") is None else f"{r['change']:+.1%}"] for r in moved]), ""]
    for key, value in (result.get("quality") or {}).items():
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) if isinstance(value, dict) else fmt(value)
        out.append(f"- quality {key}: {shown}")
    return out or ["Nothing reported."]


def _latest_monitor(home: Path) -> tuple[dict[str, Any] | None, str | None]:
    f = home / "monitor" / "latest.json"
    if not f.exists():
        return None, "No monitor run yet (`omnidecide monitor --data DIR`)."
    try:
        return json.loads(f.read_text()), None
    except (json.JSONDecodeError, OSError) as e:
        return None, f"{f} is unreadable: {e}"


def _serving(name: str) -> list[str]:
    """Who serves: production, canary with its share, rollback targets and the rollbacks done."""
    from omnidecide.store import registry

    st = registry.stages(name)
    latest = registry.serving_tag(name)
    production = st.get("production") or (f"{latest} (latest; none promoted)" if latest else "none")
    canary = st.get("canary")
    rollbacks = [e for e in registry.decisions(name) if e.get("action") == "rollback"]
    targets = ", ".join(st.get("history", [])) or "none"
    return [f"- production: {production}",
            f"- canary: {canary['tag']} at {float(canary['share']) * 100:g}% of traffic" if canary else "- canary: none",
            f"- rollback targets (earlier production versions, newest last): {targets}",
            f"- rollbacks: {len(rollbacks)}",
            *(f"  - {e.get('at')}: {e.get('replaced')} → {e.get('tag')} ({e.get('reason')})" for e in rollbacks[-5:])]


def build(days: int = 7, now: datetime | None = None) -> str:
    """The report as Markdown; serving health over the last `days` days of the decision log."""
    from omnidecide.serving.audit import DecisionLog
    from omnidecide.store import registry

    if days < 1:
        raise InputError(f"--days {days}: must be at least 1")
    now = now or datetime.now(timezone.utc)
    log = DecisionLog()
    health = log.health(now - timedelta(days=days))
    monitor, monitor_note = _latest_monitor(registry.home())
    every = registry.versions()  # one store listing, split by model below
    lines = [f"# omnidecide report — {now:%Y-%m-%d %H:%M} UTC", "",
             f"Model store `{registry.home()}`; decision log and stages in {log.db.describe()}.",
             f"Latest monitor run: {monitor.get('at', '?')}." if monitor else monitor_note or "", ""]
    for name in registry.MODEL_NAMES:
        if monitor is None:
            watched = []
        elif name in (monitor.get("models") or {}):
            watched = _monitor(monitor["models"][name])
        else:
            watched = ["Not monitored in the latest run."]
        lines += [f"## {name}", "", *_serving(name),
                  "", f"### Versions (newest {N_VERSIONS})", "", *_versions(name, every),
                  "", f"### Serving health (last {days} days)", "", *_health(name, health, days),
                  "", f"### Lifecycle decisions (last {N_DECISIONS}, newest first)", "", *_decisions(name), ""]
        if watched:
            lines += ["### Latest monitor run", "", *watched, ""]
    lines += [f"## Customer-level exports (last {days} days)", "", *_exports(now - timedelta(days=days)), ""]
    return "\n".join(lines)


def _exports(since: datetime) -> list[str]:
    """Who exported what, when, and the alarms raised (odd hours, unusual size): the export audit."""
    from omnidecide.training import exports

    rows = exports.read(since)
    if not rows:
        return ["None logged."]
    return _table(["at (local)", "user", "command", "output", "rows", "customers", "model", "alarms"],
                  [[r["local_time"], f"{r['user']}@{r['host']}", r["command"], r["output"], r["rows"], r["customers"],
                    r["model"], "; ".join(r["alarms"]) or "—"] for r in reversed(rows[-N_DECISIONS * 2:])])


def build_html(days: int = 7, now: datetime | None = None) -> str:
    """Every serving version's report with plots (`omnidecide.store.reports`) in one self-contained HTML page."""
    from omnidecide.serving.audit import DecisionLog
    from omnidecide.store import reports

    if days < 1:
        raise InputError(f"--days {days}: must be at least 1")
    now = now or datetime.now(timezone.utc)
    return reports.store_html(DecisionLog().health(now - timedelta(days=days)))


def _write(output: Path, text: str, flag: str) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as e:
        raise InputError(f"{flag} {output}: cannot write ({e.strerror})") from e
    console.print(f"written: {output}", highlight=False)


@app.command("report")
def report(output: Optional[Path] = typer.Option(None, "--output", help="Write the Markdown here (default: stdout)"),
           html: Optional[Path] = typer.Option(None, "--html", help="Write one self-contained HTML page with every "
                                               "plot (each serving version and its lifecycle) here; the Markdown "
                                               "then goes only to --output, when given"),
           days: int = typer.Option(7, "--days", help="Serving health over this many past days")) -> None:
    """A Markdown report: what serves (production, canary, rollbacks), versions with their metrics and data,
    lifecycle decisions, serving health per version, the latest monitor results and the customer-level exports.
    With --html, also the plots: model quality, response curves and plans, drift, canaries and decisions."""
    if html is not None:
        _write(html, build_html(days), "--html")
        if output is None:
            return
    text = build(days)
    if output is None:
        typer.echo(text)
        return
    _write(output, text, "--output")
