"""The lifecycle's figures for one model: the monitor's drift over its runs against the ±15% band, the canary's
share over time with serving health per version, and the decision history.

Reads what the store's home holds: the lifecycle log (`registry.decisions`) and the monitor's run history
(`monitor/history.jsonl`, one JSON line per `omnidecide monitor` run). Serving health (requests, errors, latency per
version) comes from the decision log, which the caller passes in (the store does not read serving's files).
"""
from __future__ import annotations

import json
from datetime import datetime

import numpy as np

from omnidecide.store import registry
from omnidecide.store.reports.plot import PALETTE, Figure, canvas, draw, missing

DRIFT_BAND = 0.15  # the monitor's drift rule (training.profile.drift's threshold)
N_ATTRIBUTES = 8  # lines in the drift plot: the attributes that moved most
ACTIONS = ("promote", "canary", "end_canary", "rollback", "retrain", "alert")


def monitor_runs(name: str) -> list[tuple[datetime, dict]]:
    """(time, that run's result for `name`) for every monitor run, oldest first; unreadable lines are skipped."""
    f = registry.home() / "monitor" / "history.jsonl"
    out = []
    for line in f.read_text().splitlines() if f.exists() else []:
        try:
            doc = json.loads(line)
            if name in (doc.get("models") or {}):
                out.append((datetime.fromisoformat(doc["at"]), doc["models"][name]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _when(entry: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(entry["at"])
    except (KeyError, ValueError, TypeError):
        return None


def figures(name: str, health: dict[str, dict] | None = None) -> list[Figure]:
    runs = monitor_runs(name)
    decisions = [(t, e) for e in registry.decisions(name) if (t := _when(e)) is not None]
    out = []
    series: dict[str, list[tuple[datetime, float]]] = {}
    for at, result in runs:
        for row in result.get("drift") or []:
            if row.get("change") is not None:
                series.setdefault(row["attribute"], []).append((at, float(row["change"])))
    if series:
        top = sorted(series, key=lambda a: -max(abs(v) for _, v in series[a]))[:N_ATTRIBUTES]

        def drift():
            fig, axes = canvas(width=8.0, height=3.4)
            ax = axes[0][0]
            ax.axhspan(-DRIFT_BAND, DRIFT_BAND, color="#22c55e", alpha=0.12, label="±15% band")
            for n, attr in enumerate(top):
                ts, vs = zip(*series[attr])
                ax.plot(ts, vs, marker="o", ms=3, color=PALETTE[n % len(PALETTE)], label=attr)
            ax.yaxis.set_major_formatter(lambda v, _: f"{v:+.0%}")
            ax.set(ylabel="change vs training data")
            ax.legend(fontsize=7, ncols=2)
            fig.autofmt_xdate()
            return fig
        out.append(draw("Drift over time", f"Relative change of the data's profile against the serving version's "
                        f"training data at each of {len(runs)} monitor runs (the {len(top)} attributes that moved "
                        "most); outside the band the monitor alerts.", drift))
    else:
        out.append(missing("Drift over time", "no monitor run has judged this model yet (`omnidecide monitor --data DIR`)"))

    shares = [(t, float(e.get("share") or 0)) if e.get("action") == "canary" else (t, 0.0)
              for t, e in decisions if e.get("action") in ("canary", "end_canary", "promote", "rollback")]
    mine = {tag: h for tag, h in (health or {}).items() if tag.split(":")[0] == name}
    if shares or mine:
        def canary():
            fig, axes = canvas(2, width=8.0, height=3.0)
            ax = axes[0][0]
            if shares:
                ts, vs = zip(*shares)
                ax.step(ts, vs, where="post", color=PALETTE[0], marker="o", ms=3)
                ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
                ax.tick_params(axis="x", labelrotation=30, labelsize=7)
            ax.set(title="canary share of traffic", ylim=(-0.02, 1.02))
            ax = axes[0][1]
            if mine:
                tags = sorted(mine)
                p95 = [mine[t].get("p95_ms") or 0 for t in tags]
                ax.barh([t.split(":")[1][:10] for t in tags], p95, color=PALETTE[1])
                for y, t in enumerate(tags):
                    ax.text(p95[y], y, f" {mine[t]['requests']} req, {mine[t]['error_rate']:.1%} err", va="center",
                            fontsize=7)
                ax.set(title="serving p95 latency (ms)", xlim=(0, max(max(p95), 1.0) * 1.8))
            else:
                ax.text(0.5, 0.5, "no requests logged", ha="center", va="center", transform=ax.transAxes)
                ax.set(title="serving health")
            return fig
        out.append(draw("Canary health", "Left: the share of traffic a canary got over time (0 when none runs). "
                        "Right: each version's answered requests, error rate and p95 latency in the decision log.",
                        canary))
    else:
        out.append(missing("Canary health", "no canary, promotion or request logged yet"))

    if decisions:
        def history():
            fig, axes = canvas(width=8.0, height=2.6)
            ax = axes[0][0]
            kinds = sorted({e.get("action", "?") for _, e in decisions}, key=lambda a: (a not in ACTIONS, a))
            for n, kind in enumerate(kinds):
                ts = [t for t, e in decisions if e.get("action", "?") == kind]
                ax.scatter(ts, np.full(len(ts), n), color=PALETTE[n % len(PALETTE)], s=30, zorder=3)
            ax.set(yticks=range(len(kinds)), yticklabels=kinds, ylim=(-0.7, len(kinds) - 0.3))
            fig.autofmt_xdate()
            return fig
        out.append(draw("Decision history", f"{len(decisions)} lifecycle decisions (promotions, canaries, "
                        "rollbacks, rejected retrains, alerts) in the order they were made.", history))
    else:
        out.append(missing("Decision history", "no lifecycle decision logged yet"))
    return out
