"""Attribution quality: L1 distance of channel shares to the planted contribution, on two journey generators.

Generators: `synth` (training/synth.py: our world, highest-lift channels first in each journey) and `journeys`
(training/journeys.py: awareness first, seeding mid-journey with a lag, retargeting and brand search last; planted
shares by counterfactual re-simulation). Every method runs on the same journeys and conversions in one run:
first-click, last-click, linear, Markov (order 1 and 2) and ours (removal effects under the conversion model chosen
by held-out likelihood, organic baseline, data-read lookback). `in 90% int.` counts channels whose planted share lies
in our bootstrap interval.

Run: nice .venv/bin/python bench/attribution.py [--seeds 0 1 2] [--synth-users 10000] [--journey-users 20000]
The lookback rule, pre-period and priors were set while looking at seeds 100-101 only; the default seeds are the test.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.allocator.attribution import attribute, journeys, markov_removal
from omnidecide.training.journeys import make_journeys
from omnidecide.training.synth import generate

METHODS = ["first-click", "last-click", "linear", "Markov 1", "Markov 2", "ours"]


def world(kind: str, seed: int, users: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(touches with ts, purchases with ts, planted share by channel)."""
    if kind == "journeys":
        tp, pu, truth = make_journeys(seed, users)
        return (tp.assign(ts=pd.to_datetime(tp["timestamp"])), pu.assign(ts=pd.to_datetime(pu["timestamp"])),
                truth["contribution_share"])
    with tempfile.TemporaryDirectory() as d:
        generate(d, n_users=users, seed=seed)
        tp = pd.read_csv(Path(d) / "touchpoints.csv")
        ev = pd.read_csv(Path(d) / "events.csv", usecols=["user_id", "timestamp", "event"])
        share = json.loads((Path(d) / "truth.json").read_text())["attribution"]["contribution_share"]
    pu = ev[ev["event"] == "purchase"]
    return tp.assign(ts=pd.to_datetime(tp["timestamp"])), pu.assign(ts=pd.to_datetime(pu["timestamp"])), share


def score(kind: str, seed: int, users: int, n_boot: int) -> dict:
    tp, pu, share = world(kind, seed, users)
    t0 = time.perf_counter()
    a = attribute(tp, pu[["user_id", "ts"]], n_boot=n_boot, seed=seed)
    secs = time.perf_counter() - t0
    truth = a["channel"].map(share).to_numpy()
    J = journeys(tp, pu, list(a["channel"]), 16.0, a.attrs["lookback_days"])
    eff2, _ = markov_removal(J.paths, J.converted, list(a["channel"]), order=2)
    est = {"first-click": a["first_click_share"], "last-click": a["last_click_share"], "linear": a["linear_share"],
           "Markov 1": a["markov_share"], "Markov 2": eff2 / eff2.sum(), "ours": a["share"]}
    row = {m: float(np.abs(np.asarray(s) - truth).sum()) for m, s in est.items()}
    inside = int(((a["share_low"] - 1e-9 <= truth) & (truth <= a["share_high"] + 1e-9)).sum())
    row.update(generator=kind, seed=seed, users=users, journeys=a.attrs["paths"], converted=a.attrs["conversions"],
               lookback=a.attrs["lookback_days"], model=a.attrs["model"], inside=f"{inside}/{len(a)}", secs=secs)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--synth-users", type=int, default=10_000)
    ap.add_argument("--journey-users", type=int, default=20_000)
    ap.add_argument("--bootstrap", type=int, default=100)
    args = ap.parse_args()
    print(f"# {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC, {platform.machine()} {platform.processor() or ''}, "
          f"python {platform.python_version()}")
    rows = []
    for kind, users in (("synth", args.synth_users), ("journeys", args.journey_users)):
        for s in args.seeds:
            rows.append(score(kind, s, users, args.bootstrap))
            print(f"  {kind} seed {s}: ours {rows[-1]['ours']:.3f}", file=sys.stderr, flush=True)
    print("\n| generator | seed | users | journeys | converted | lookback d | model | "
          + " | ".join(f"L1 {m}" for m in METHODS) + " | planted in our 90% int. | ours s |")
    print("|" + "---|" * (len(METHODS) + 9))
    for r in rows:
        print(f"| {r['generator']} | {r['seed']} | {r['users']} | {r['journeys']} | {r['converted']} | {r['lookback']:g} | "
              f"{r['model']} | " + " | ".join(f"{r[m]:.3f}" for m in METHODS) + f" | {r['inside']} | {r['secs']:.1f} |")
    for kind in ("synth", "journeys"):
        sub = [r for r in rows if r["generator"] == kind]
        best_heur = [min(r["first-click"], r["last-click"]) for r in sub]
        wins = sum(r["ours"] < b for r, b in zip(sub, best_heur))
        print(f"| {kind} mean | | | | | | | " + " | ".join(f"{np.mean([r[m] for r in sub]):.3f}" for m in METHODS)
              + f" | ours < min(first, last) in {wins}/{len(sub)} | |")


if __name__ == "__main__":
    main()
