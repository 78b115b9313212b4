"""Where the 52-week loop's gap to the oracle comes from (issue K part 3): passive weekly re-planning's plan against
the oracle's, split into the weekly totals (timing) and the channel split, on the TRUE response.

    .venv/bin/python bench/allocator_loop_gap.py --cache DIR ours_0 ours_3 seasonal_0 ... [--total-only]

DIR: bench/allocator_loop.py's --cache (each world's fit, loop world and oracle value). Columns, each the TRUE
cumulative incremental revenue / the oracle's: passive; the oracle's weekly totals with passive's split inside each
week; passive's weekly totals with the oracle's split; passive's channel totals with the oracle's timing per
channel. Then how much each plan's weekly total varies (cv), and the channel shares. --total-only: the loop sees the
total revenue alone (the setting before measured channel revenue). --policy: split that loop's plan instead of
passive's (the column headed "passive" is then that policy's).
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from omnidecide.models.allocator.explore_loop import run_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("worlds", nargs="+", help="family_seed, e.g. ours_0 seasonal_2 (built into --cache already)")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--total-only", action="store_true")
    ap.add_argument("--policy", default="passive", help="the loop whose plan is split (passive, learn, thompson, ...)")
    args = ap.parse_args()
    print("| world | passive | oracle totals, passive split | passive totals, oracle split | passive channel totals, "
          "oracle timing | weekly total cv: oracle / passive | channel shares: oracle / passive |")
    print("|---|---|---|---|---|---|---|")
    for name in args.worlds:
        path = Path(args.cache) / f"{name}.pkl"
        if not path.exists():
            sys.exit(f"{path}: not built (run bench/allocator_loop.py with --cache {args.cache} first)")
        alloc, world, B, _ = pickle.loads(path.read_bytes())
        xo, ro = world.oracle(B)
        p = run_loop(alloc, world, B, policy=args.policy, seed=0, channels=not args.total_only).spend

        def share(X: np.ndarray) -> float:
            return float(world.true.revenue(X).sum()) / ro

        wo, wp = xo.sum(1), p.sum(1)
        a = p / np.maximum(wp[:, None], 1e-12) * wo[:, None]
        b = xo / np.maximum(wo[:, None], 1e-12) * wp[:, None]
        c = xo / np.maximum(xo.sum(0), 1e-12) * p.sum(0)
        cv = f"{wo.std() / wo.mean():.2f} / {wp.std() / wp.mean():.2f}"
        sh = f"{np.round(xo.sum(0) / B, 2).tolist()} / {np.round(p.sum(0) / B, 2).tolist()}"
        print(f"| {name} | {share(p):.4f} | {share(a):.4f} | {share(b):.4f} | {share(c):.4f} | {cv} | {sh} |", flush=True)


if __name__ == "__main__":
    main()
