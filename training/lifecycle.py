"""Retrain and monitor: the decisions ML engineers otherwise make by hand, made the same way every time.

Rules (from how our users release models: retrain when quality drops > 5%, alert when an attribute moves > ±15%,
release gradually from 5% of traffic, roll back automatically when a release goes wrong):
- `retrain`: a challenger is fitted on the fresh data before a cutoff and judged beside production on the window after
  it (`training.backtest`). If it is no worse than production by more than `tolerance`, the model is refitted on all
  the data and released as a canary (5%), or promoted at once with `promote=True` or when nothing serves yet.
  Otherwise production stays and the rejection is logged.
- `monitor`: drift of the fresh data against the version's training profile; production's quality on the newest
  window against its quality the first time it was judged (its quality at release); and the canary's health in
  serving (errors, latency) and quality against production's — which ramps the canary up (5% → 25% → 50% → promoted)
  or ends it.
Every decision goes to the registry's lifecycle log with its figures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from omnidecide.models.errors import InputError
from omnidecide.store import loader, registry
from omnidecide.training import backtest, progress

QUALITY_DROP = 0.05  # production judged > 5% worse than at release: retrain
CANARY_STEPS = (0.05, 0.25, 0.5, 1.0)  # traffic share of a canary, step by step; 1.0 = promote
MIN_CANARY_REQUESTS = 100  # requests a canary must have answered at its share before it moves up
MAX_ERROR_RATE = 0.001  # a canary erring on more than 0.1% of requests (and more than production) is ended
LATENCY_SLACK = 1.5  # ... or slower than 1.5 x production's p95 (+ 5 ms)


@dataclass
class RetrainOutcome:
    name: str
    production: str | None
    window: str
    metric: str
    production_metrics: dict | None
    challenger_metrics: dict
    change: float | None  # relative improvement of the challenger on the primary figure
    decision: str  # "promoted" | "canary" | "kept production"
    tag: str | None = None  # the version trained on all the data (None when rejected)
    notes: list[str] = field(default_factory=list)


def _horizon(meta: dict | None) -> int:
    return int((meta or {}).get("params", {}).get("horizon_days", 90))


def _train_final(data: backtest.Data, horizon_days: int, seed: int) -> str:
    """Fit on all the data through the model's usual entry point (validation, metrics, profile, save)."""
    if data.name == "recommender":
        from omnidecide.training import recommender
        files = {p.stem: p for p in data.files}
        return recommender.train(files["events"], items=files.get("items"), users=files.get("users"), seed=seed)
    if data.name == "churn":
        from omnidecide.training import churn
        return churn.train(data.files[0], horizon_days=horizon_days, seed=seed)
    from omnidecide.training import allocator
    return allocator.train(data.files[0], seed=seed)


def retrain(data: backtest.Data, *, promote: bool = False, share: float = CANARY_STEPS[0], tolerance: float = 0.01,
            seed: int = 0) -> RetrainOutcome:
    """Challenger vs production on the newest window; release the refitted challenger when it holds up."""
    name = data.name
    champion = registry.serving_tag(name)
    champ_obj, champ_meta = loader.load_version(name, champion) if champion else (None, None)
    horizon = _horizon(champ_meta)
    metric = backtest.PRIMARY[name][0]
    with progress.task(f"retrain {name}", 4):
        progress.step("cutoff and challenger fit on the data before it")
        try:
            cut = backtest.cutoff(data, horizon, champ_meta.get("data_end") if champ_meta else None)
        except backtest.NothingToJudge as e:
            registry.record("retrain_skipped", name=name, tag=champion, reason=f"retrain: {e}")
            return RetrainOutcome(name, champion, "", metric, None, {}, None, "kept production: nothing to judge on",
                                  notes=[str(e)])
        past = backtest.before(data, cut)
        challenger = backtest.fit(past, horizon_days=horizon, seed=seed)
        progress.step("judge challenger and production on the window")
        new = backtest.evaluate(data, challenger, cut, data_end=str(past.end), seed=seed)
        old = backtest.evaluate(data, champ_obj, cut, data_end=champ_meta.get("data_end"), seed=seed) if champion else None
        window = f"{new['window_start']} .. {new['window_end']}"
        change = backtest.relative_change(name, new, old) if old else None
        notes = []
        if old and champ_meta.get("data_end") is None:
            notes.append(f"{champion} does not record where its training data ends (trained before this was kept)")
        accept = champion is None or (change is not None and change >= -tolerance)
        if not accept:
            figures = f"{metric} {backtest.primary(name, new):.4f} vs production {backtest.primary(name, old):.4f}"
            registry.record("retrain_rejected", name=name, tag=champion, window=window, challenger=new, production=old,
                            reason=f"retrain: challenger {figures} ({change:+.1%}) on {window}")
            progress.step("rejected")
            return RetrainOutcome(name, champion, window, metric, old, new, change, "kept production", notes=notes)
        progress.step("refit on all the data and save")
        tag = _train_final(data, horizon, seed)
        progress.step("release")
        if old is None:
            reason = f"retrain: first version; {metric} {backtest.primary(name, new):.4f} on {window}"
        else:
            reason = (f"retrain: {metric} {backtest.primary(name, new):.4f} vs production "
                      f"{backtest.primary(name, old):.4f} ({change:+.1%}) on {window}")
        if champion is None or promote:
            registry.promote(tag, reason=reason)
            decision = "promoted"
        else:
            registry.set_canary(tag, share, reason=reason)
            decision = "canary"
    return RetrainOutcome(name, champion, window, metric, old, new, change, decision, tag, notes)


# --- monitor ---------------------------------------------------------------------------------------

def _state_dir() -> Path:
    d = registry.home() / "monitor"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _baselines() -> dict[str, dict]:
    f = _state_dir() / "baseline.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _save_baseline(tag: str, metrics: dict) -> None:
    b = _baselines()
    b[tag] = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **metrics}
    (_state_dir() / "baseline.json").write_text(json.dumps(b, indent=1, default=str))


def _judge(data: backtest.Data, obj: Any, meta: dict, cut: pd.Timestamp) -> tuple[dict | None, str | None]:
    """(metrics, why not) of a loaded version on the window: not judged when it has seen the window or labels are
    missing."""
    try:
        m = backtest.evaluate(data, obj, cut, data_end=meta.get("data_end"))
    except InputError as e:
        return None, str(e)
    if m["seen_window"]:
        return None, f"not judged: its training data reaches {meta.get('data_end')}, after the window's start {cut.date()}"
    return m, None


def _drift_alert(row: dict) -> str:
    if row["status"] == "new":
        return f"{row['attribute']} is new in the data ({row['current']:.4g}; not in the training data)"
    if row["status"] == "gone":
        return f"{row['attribute']} is gone from the data (was {row['reference']:.4g} in the training data)"
    if row["change"] is None:
        return f"{row['attribute']} moved from 0 to {row['current']:.4g}"
    return f"{row['attribute']} moved {row['change']:+.0%} ({row['reference']:.4g} → {row['current']:.4g})"


def _score_drift(model: Any, data: backtest.Data, tag: str) -> dict[str, Any]:
    """Production's churn scores today (mean probability, risk-tier shares) against their first monitor run."""
    from omnidecide.training.profile import drift

    as_of = data.end.normalize() + pd.Timedelta(days=1)
    table = model.score(data.frame, as_of)
    now = {"mean_churn_probability": float(table["churn_probability"].mean()),
           "mean_expected_spend": float(table["expected_spend"].mean()),
           **{f"share_risk.{t}": float((table["risk_tier"] == t).mean()) for t in ("high", "medium", "low")}}
    key = f"{tag}#scores"
    base = _baselines().get(key)
    if base is None:
        _save_baseline(key, now)
        return {"as_of": str(as_of.date()), "now": now, "baseline": "first run: kept as the scores at release"}
    ref = {k: v for k, v in base.items() if k != "at"}
    return {"as_of": str(as_of.date()), "now": now, "baseline": base, "drift": drift(ref, now)}


def canary_step(share: float) -> float:
    """The next traffic share of a healthy canary (1.0 = promote)."""
    return next((s for s in CANARY_STEPS if s > share + 1e-9), 1.0)


def canary_verdict(canary: dict, production: dict, quality_change: float | None) -> tuple[str, str]:
    """("end" | "ramp" | "wait", why) from serving health ({requests, errors, error_rate, p95_ms}) and quality."""
    n = int(canary.get("requests", 0))
    rate, base_rate = float(canary.get("error_rate", 0.0)), float(production.get("error_rate", 0.0))
    if canary.get("errors", 0) and rate > max(MAX_ERROR_RATE, 2 * base_rate):
        return "end", f"error rate {rate:.2%} on {n} requests (production {base_rate:.2%})"
    p95, base_p95 = canary.get("p95_ms"), production.get("p95_ms")
    if n >= MIN_CANARY_REQUESTS and p95 is not None and base_p95 is not None and p95 > LATENCY_SLACK * base_p95 + 5:
        return "end", f"p95 latency {p95:.1f} ms vs production {base_p95:.1f} ms"
    if quality_change is not None and quality_change < -QUALITY_DROP:
        return "end", f"quality {quality_change:+.1%} against production on the newest window"
    if n < MIN_CANARY_REQUESTS:
        return "wait", f"{n} of {MIN_CANARY_REQUESTS} requests answered at this share"
    return "ramp", f"{n} requests, error rate {rate:.2%}, p95 {p95 if p95 is not None else float('nan'):.1f} ms"


def monitor(data: backtest.Data, health: dict[str, dict], *, act: bool = True) -> dict[str, Any]:
    """Alerts, drift rows, quality and the canary decision for one model. `health`: per tag serving figures since
    the canary started (from the decision log). With `act`, the canary decision is carried out."""
    from omnidecide.training.profile import drift, profile

    name = data.name
    out: dict[str, Any] = {"alerts": [], "drift": [], "quality": {}, "actions": []}
    tag = registry.serving_tag(name)
    if tag is None:
        out["alerts"].append(f"no {name} version in the store: train one with `omnidecide train {name}`")
        return out
    out["production"] = tag
    obj, meta = loader.load_version(name, tag)
    ref = meta.get("profile")
    if ref:
        rows = drift(ref, profile("marketing_mix" if name == "allocator" else "events", data.frame))
        out["drift"] = rows
        out["alerts"] += [_drift_alert(r) for r in rows if r.get("alert")]
    else:
        out["quality"]["note"] = f"{tag} has no training profile (trained before profiles were kept): no drift check"
    if name == "churn":  # what CRM sees: the scores themselves moving, before any label has matured
        out["scores"] = _score_drift(obj, data, tag)
        out["alerts"] += [f"churn scores: {_drift_alert(r)}" for r in out["scores"].get("drift", []) if r.get("alert")]
    metric = backtest.PRIMARY[name][0]
    q = out["quality"]
    q["metric"] = metric
    try:
        cut = backtest.cutoff(data, _horizon(meta), meta.get("data_end"))
        current, why = _judge(data, obj, meta, cut)
    except backtest.NothingToJudge as e:
        cut, current, why = None, None, f"not judged: {e}"
    if current is None:
        q["production"] = why
    else:
        q["production"] = current
        base = _baselines().get(tag)
        if base is None:
            _save_baseline(tag, current)
            q["baseline"] = "first judgement: kept as this version's quality at release"
        else:
            q["baseline"] = base
            change = backtest.relative_change(name, current, base)
            q["change_since_release"] = change
            if change < -QUALITY_DROP:
                out["alerts"].append(f"{metric} {backtest.primary(name, current):.4f} is {change:+.1%} against release "
                                     f"({backtest.primary(name, base):.4f}): retrain (`omnidecide retrain --model {name}`)")
    canary = registry.stages(name).get("canary")
    if canary:
        out["canary"] = canary
        c_metrics, c_why = (_judge(data, *loader.load_version(name, canary["tag"]), cut) if cut is not None
                            else (None, why))
        change = backtest.relative_change(name, c_metrics, current) if c_metrics and current else None
        q["canary"] = c_metrics or c_why
        verdict, why = canary_verdict(health.get(canary["tag"], {}), health.get(tag, {}), change)
        nxt = canary_step(float(canary["share"]))
        action = {"end": f"end canary {canary['tag']}: {why}",
                  "wait": f"keep canary {canary['tag']} at {canary['share']:.0%}: {why}",
                  "ramp": (f"promote {canary['tag']}: {why}" if nxt >= 1.0
                           else f"ramp canary {canary['tag']} {canary['share']:.0%} → {nxt:.0%}: {why}")}[verdict]
        out["actions"].append(action if act else f"(dry run) {action}")
        if verdict == "end":
            out["alerts"].append(action)
        if act and verdict == "end":
            registry.end_canary(name, reason=f"monitor: {why}")
        elif act and verdict == "ramp" and nxt >= 1.0:
            registry.promote(canary["tag"], reason=f"monitor: canary healthy at {canary['share']:.0%}: {why}")
        elif act and verdict == "ramp":
            registry.set_canary(canary["tag"], nxt, reason=f"monitor: {why}")
    return out


def canary_since(name: str) -> datetime | None:
    """When the current canary got its present share (health is counted from then)."""
    canary = registry.stages(name).get("canary")
    if not canary:
        return None
    for entry in reversed(registry.decisions(name)):
        if entry.get("action") == "canary" and entry.get("tag") == canary["tag"]:
            return datetime.fromisoformat(entry["at"])
    return None


def last_run() -> datetime | None:
    """When `monitor` last wrote its results (None before the first run)."""
    f = _state_dir() / "latest.json"
    try:
        return datetime.fromisoformat(json.loads(f.read_text())["at"]) if f.exists() else None
    except (ValueError, KeyError, json.JSONDecodeError):
        return None


def stale_scores_alert(max_age_days: float | None = None) -> str | None:
    """An alert when the customer scores `/customer_scores` and `/bid` answer from were published longer ago than
    `OMNIDECIDE_SCORE_MAX_AGE_DAYS` (default 2); None when fresh or when none are published."""
    from omnidecide.store import scores

    limit = scores.max_age_days() if max_age_days is None else max_age_days
    f = scores.freshness()
    if not f["scores"] or f["newest_age_days"] <= limit:
        return None
    return (f"customer scores are {f['newest_age_days']:.1f} days old (limit {limit:g}; {f['scores']} stored): "
            "run `omnidecide predict churn --publish`")


def export_alarms(since: datetime | None) -> list[str]:
    """The export audit's alarms since `since`, one line each (who, what, why)."""
    from omnidecide.training import exports

    return [f"{r['at']} {r['user']}@{r['host']} `{r['command']}` -> {r['output']} ({r['rows']} rows): {a}"
            for r in exports.read(since) for a in r.get("alarms", [])]


def save_report(models: dict[str, dict], export_alarms: list[str] | None = None) -> Path:
    """`monitor/latest.json` (read by `omnidecide report`) and one line per run in `monitor/history.jsonl`."""
    doc = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": models,
           "export_alarms": export_alarms or []}
    text = json.dumps(doc, default=str)
    d = _state_dir()
    (d / "latest.json").write_text(json.dumps(doc, indent=1, default=str))
    with open(d / "history.jsonl", "a") as f:
        f.write(text + "\n")
    return d / "latest.json"
