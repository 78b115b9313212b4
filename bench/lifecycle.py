"""Benchmark: does `retrain` replace a stale production version on real data, and what do retrain/monitor cost?

    .venv/bin/python bench/lifecycle.py [--stale-days 60] [--synth-users 2000]

Per data set, production is trained on the data minus its last `--stale-days` days (the version a team would be
serving after two months without retraining) and promoted. Then, on the full data, as an engineer would:
1. `monitor` (drift against the training profile, quality at release),
2. `retrain` (challenger judged beside production on the newest window; released as a canary when it holds up),
3. `retrain` once more, now against an up-to-date production that has seen the window (the control: the
   comparison is flagged, and a fresh challenger gains little or nothing).
ML-100K feeds the recommender and churn (H = 30 days); the synthetic world feeds the allocator (its marketing mix,
minus the last `--stale-days` / 7 weeks). Everything runs in a private model store. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="omnidecide-bench-lifecycle-")
sys.path.insert(0, str(ROOT))

from omnidecide.store import registry  # noqa: E402
from omnidecide.training import backtest, lifecycle, ml100k  # noqa: E402
from omnidecide.training.synth import generate  # noqa: E402


def stale_copy(src: Path, dst: Path, days: int) -> None:
    """The folder as it was `days` days before its end (events and marketing mix cut; catalogue files kept)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.csv"):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        col = "timestamp" if f.name == "events.csv" else "date" if f.name == "marketing_mix.csv" else None
        if col:
            epoch = df[col].str.fullmatch(r"\d+").all()  # ML-100K keeps unix seconds
            t = pd.to_datetime(pd.to_numeric(df[col]), unit="s") if epoch else pd.to_datetime(df[col])
            df = df[t < t.max() - pd.Timedelta(days=days)]
        df.to_csv(dst / f.name, index=False)


def train_production(folder: Path, names: list[str]) -> dict[str, str]:
    from omnidecide.training import allocator, churn, recommender

    tags = {}
    if "recommender" in names:
        tags["recommender"] = recommender.train(folder / "events.csv", items=folder / "items.csv",
                                                users=folder / "users.csv")
    if "churn" in names:
        tags["churn"] = churn.train(folder / "events.csv", horizon_days=30)
    if "allocator" in names:
        tags["allocator"] = allocator.train(folder / "marketing_mix.csv")
    for tag in tags.values():
        registry.promote(tag, reason="bench: stale production")
    return tags


def run(label: str, full: Path, names: list[str], stale_days: int) -> list[dict]:
    stale = full.parent / f"{full.name}-stale{stale_days}"
    stale_copy(full, stale, stale_days)
    train_production(stale, names)
    data = {n: d for n, d in backtest.from_folder(full).items() if n in names}
    rows = []
    for name, d in data.items():
        t = time.time()
        mon = lifecycle.monitor(d, {}, act=False)
        t_mon = time.time() - t
        for step in ("retrain vs stale production", "retrain again vs up-to-date production"):
            t = time.time()
            o = lifecycle.retrain(d)
            secs = time.time() - t
            old = o.production_metrics or {}
            rows.append({"data": label, "model": name, "step": step, "window": o.window or "—", "figure": o.metric,
                         "production": old.get(o.metric), "retrained": o.challenger_metrics.get(o.metric),
                         "change": o.change, "decision": o.decision, "seen": bool(old.get("seen_window")),
                         "seconds": secs,
                         "monitor": f"{len(mon['alerts'])} alerts, {t_mon:.1f} s" if step.startswith("retrain vs") else "",
                         "alerts": mon["alerts"] if step.startswith("retrain vs") else []})
            if o.decision == "canary":  # an engineer would let the canary ramp up; here it is promoted for step 2
                registry.promote(o.tag, reason="bench: canary promoted")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stale-days", type=int, default=60)
    ap.add_argument("--synth-users", type=int, default=2000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omnidecide-lifecycle-data-"))
    started = datetime.now(timezone.utc)
    ml = work / "ml-100k"
    ml100k.fetch(ml)
    rows = run("ML-100K", ml, ["recommender", "churn"], args.stale_days)
    synth = work / "synth"
    generate(synth, n_users=args.synth_users, seed=0)
    rows += run(f"synthetic ({args.synth_users} users)", synth, ["allocator"], args.stale_days)
    fmt = lambda x: "—" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)  # noqa: E731
    print(f"Run {started:%Y-%m-%d %H:%M} UTC: `.venv/bin/python bench/lifecycle.py --stale-days {args.stale_days} "
          f"--synth-users {args.synth_users}` on {os.cpu_count()} CPU cores ({platform.machine()}), load average "
          f"{os.getloadavg()[0]:.2f} at the end.\n")
    print("| data | model | step | window | figure | production | retrained | change | decision | production saw the window | retrain s | monitor (first step) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        change = "—" if r["change"] is None else f"{r['change']:+.1%}"
        print(f"| {r['data']} | {r['model']} | {r['step']} | {r['window']} | {r['figure']} | {fmt(r['production'])} | "
              f"{fmt(r['retrained'])} | {change} | {r['decision']} | {'—' if r['window'] == '—' else 'yes' if r['seen'] else 'no'} | "
              f"{r['seconds']:.1f} | {r['monitor']} |")
    print("\nMonitor alerts against the stale production version (first step):\n")
    for r in rows:
        for a in r["alerts"]:
            print(f"- {r['data']}, {r['model']}: {a}")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(os.environ["BENTOML_HOME"], ignore_errors=True)


if __name__ == "__main__":
    main()
