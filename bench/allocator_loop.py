"""Benchmark: 52 weeks of learning while spending (issue K part 3), both world families.

    .venv/bin/python bench/allocator_loop.py [--families ours,seasonal] [--seeds 0-4] [--noise-seeds 0]
                                            [--train-steps 2600] [--train-worlds 10-12]
    .venv/bin/python bench/allocator_loop.py --train-steps 1560 --save-agent artifacts/loop_ppo.zip   # train only
    .venv/bin/python bench/allocator_loop.py --families seasonal --agent artifacts/loop_ppo.zip     # evaluate
    .venv/bin/python bench/allocator_loop.py --agent-policy learn --train-worlds 20-25 --train-steps 5200 \
        --save-agent /tmp/ppo_learn.zip --cache /tmp/loop_cache                        # PPO sets learn's step

Each world: the product's fit on the history (two priors, 20 bootstrap refits), B = last year's average weekly spend
x 52, then 52 weekly decisions (models/allocator/explore_loop.py) played on the TRUE world: each week the policy
spends, sees that week's total revenue (the generator's baseline + true media + the generator's noise) and each
channel's MEASURED incremental revenue (the truth's, times a lognormal error of sd 0.1: what the product's
re-planning reads from `revenue_<channel>` in --actuals), and updates its posterior (levels per draw and channel
from the channel revenue, each draw's weight by its evidence). Policies, all on the same posterior update and noise
draws:
- *passive*: re-plan every week on the updated posterior with the served (robust) objective, spend the plan's week;
- *passive, robust on mean levels*: the same objective with the levels at their posterior means (the fit's own
  spread alone is penalised, not the levels' uncertainty);
- *passive, greedy*: the expected-revenue objective on the posterior means;
- *explore*: passive + one information-directed, budget-neutral pulse a week (the channel and size that teach the
  most about the rest of the horizon's channel revenue per unit of expected revenue given up), within the risk
  budget, full budget while > 13 weeks are left;
- *explore, robust on mean levels*: the same pulses on the robust planner with the levels at their posterior means;
- *explore, greedy*: the same on the greedy planner;
- *learn*: the week moved from the passive choice towards the expected-revenue plan on the posterior (levels at
  their means, draws by weight, timing free), the largest step inside the risk budget, every week;
- *Thompson*: each week moved towards the plan on one posterior sample, within the same risk budget;
- *PPO explore*: the exploration schedule chosen each week by an SB3 PPO policy trained on LoopEnv over worlds of
  both families with other seeds (--train-worlds; domain randomisation over worlds and noise);
- *PPO learn* (--agent-policy learn): the learn policy with the largest step each week set by an SB3 PPO policy
  (LoopEnv(policy="learn"): action 0 is passive, 1 is learn; the guard still applies), trained the same way;
- *oracle*: the best 52-week plan on the true response.
Figures: cumulative TRUE incremental revenue over the 52 weeks / the oracle's. Weekly floor (the issue's "no single
week below 95% of passive's expected revenue"): each week's TRUE incremental revenue as the policy spent it / what the
passive choice of that same week would have earned from the same state (same spend up to last week, so the same
carry-over, budget left and posterior); the loops' own weeks are also compared (another state: after their first
different week the two loops' budgets and carry-over differ, so late weeks can compare a loop that has spent its
budget with one that has not) as the worst week's shortfall in units of passive's mean week.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from allocator import WORLDS, markdown  # noqa: E402
from omnidecide.models.allocator.explore_loop import RISK, run_loop  # noqa: E402
from omnidecide.models.allocator.loop_env import run_agent  # noqa: E402
from omnidecide.training.allocator.loop_worlds import build, train_loop_agent  # noqa: E402

T = 52
CHANNELS = dict(WORLDS)  # our family's benchmark worlds keep bench/allocator.py's channel sets


def seeds(spec: str) -> list[int]:
    a, _, b = spec.partition("-")
    return list(range(int(a), int(b or a) + 1))


def weekly(world, x: np.ndarray) -> np.ndarray:
    return world.true.revenue(x).sum(1)


def same_state(world, r, tiny: float) -> np.ndarray:
    """(T,) the issue's weekly floor on the truth: each week's TRUE incremental revenue as the policy spent it / as
    the passive choice of that week would have earned from the SAME state (the policy's own spend up to last week,
    so the same carry-over, budget left and posterior). Weeks where the passive choice earns below `tiny` (nothing
    spent and no carry-over left: the ratio has no meaning there) count as 1."""
    out = np.ones(len(r.spend))
    for t in range(len(r.spend)):
        Xa = r.spend.copy()
        Xa[t + 1:] = 0.0
        Xp = Xa.copy()
        Xp[t] = r.passive_row[t]
        num, den = world.true.revenue(Xa)[t].sum(), world.true.revenue(Xp)[t].sum()
        if den >= tiny:
            out[t] = num / den
    return out


def cached_build(folder: str | None, fam: str, s: int):
    """build() of one world, through a pickle in `folder` when given (the fit is most of a world's time)."""
    import pickle

    path = Path(folder) / f"{fam}_{s}.pkl" if folder else None
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    out = build(fam, s, CHANNELS.get(s) if fam == "ours" else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="ours,seasonal")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--noise-seeds", default="0")
    ap.add_argument("--train-steps", type=int, default=2600, help="PPO steps (52 a loop); 0 = no PPO column")
    ap.add_argument("--train-minutes", type=float, help="stop PPO training after this much wall time (a time box)")
    ap.add_argument("--train-worlds", default="10-12", help="seeds of the PPO pool, each family (never the test seeds)")
    ap.add_argument("--save-agent", help="save the trained PPO policy here (a .zip) and stop")
    ap.add_argument("--agent", help="a PPO policy saved by --save-agent (instead of training one)")
    ap.add_argument("--agent-policy", default="explore", choices=("explore", "learn"),
                    help="what a trained PPO sets each week: the exploration schedule or learn's largest step (a "
                    "loaded --agent: read from its observation size)")
    ap.add_argument("--cache", help="a folder: each world's build (the fit, the loop world, the oracle) is saved there "
                    "and read back on the next run (the loop code can change; the open-loop fit must not)")
    ap.add_argument("--only", default="", help="policy columns to run, separated by ';' (names hold commas; passive always runs)")
    args = ap.parse_args()
    fams = args.families.split(",")
    only = [c.strip() for c in args.only.split(";") if c.strip()]
    t0 = time.time()
    model, train_s = None, 0.0
    if args.agent:
        from stable_baselines3 import PPO

        model = PPO.load(args.agent, device="cpu")
        args.agent_policy = "learn" if model.observation_space.shape[0] == 12 else "explore"
    elif args.train_steps > 0:
        test = set(seeds(args.seeds))
        if test & set(seeds(args.train_worlds)):
            raise SystemExit("--train-worlds must not share seeds with --seeds")
        pool = [cached_build(args.cache, f, s) for f in ("ours", "seasonal") for s in seeds(args.train_worlds)]
        t1, w1 = time.process_time(), time.time()
        model, env = train_loop_agent(pool, args.train_steps, seed=0, T=T, policy=args.agent_policy,
                                      max_seconds=60 * args.train_minutes if args.train_minutes else None)
        train_s = time.process_time() - t1
        ret = env.get_episode_rewards()
        q = max(len(ret) // 4, 1)
        print(f"PPO {args.agent_policy}: {model.num_timesteps} steps, {len(ret)} episodes on {len(pool)} worlds in "
              f"{train_s:.0f} s CPU ({time.time() - w1:.0f} s wall); episode return (sum of weekly revenue / the "
              f"oracle's mean week) first quarter {np.mean(ret[:q]):.2f}, last quarter {np.mean(ret[-q:]):.2f}; "
              f"load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        if args.save_agent:
            model.save(args.save_agent)
            return
    rows, risk_rows = [], []
    for fam in fams:
        for s in seeds(args.seeds):
            alloc, world, B, orc = cached_build(args.cache, fam, s)
            for ns in seeds(args.noise_seeds):
                runs = {"passive": lambda: run_loop(alloc, world, B, policy="passive", seed=ns),
                        "passive, robust on mean levels": lambda: run_loop(alloc, world, B, policy="passive",
                                                                           planner="robust-mean", seed=ns),
                        "passive, greedy": lambda: run_loop(alloc, world, B, policy="passive", planner="greedy", seed=ns),
                        "explore": lambda: run_loop(alloc, world, B, policy="explore", seed=ns),
                        "explore, robust on mean levels": lambda: run_loop(alloc, world, B, policy="explore",
                                                                           planner="robust-mean", seed=ns),
                        "explore, greedy": lambda: run_loop(alloc, world, B, policy="explore", planner="greedy", seed=ns),
                        "learn": lambda: run_loop(alloc, world, B, policy="learn", seed=ns),
                        "Thompson": lambda: run_loop(alloc, world, B, policy="thompson", seed=ns)}
                if model is not None:
                    runs[f"PPO {args.agent_policy}"] = lambda: run_agent(model, alloc, world, B, T, seed=ns,
                                                                         policy=args.agent_policy)
                res = {k: f() for k, f in runs.items() if k in only or (k == "passive") or not only}
                name = f"seed {s}, {alloc.history.spend.shape[1]} ch" + (f", noise {ns}" if len(seeds(args.noise_seeds)) > 1 else "")
                rows.append({"family": fam, "world": name,
                             **{k: world.true.revenue(r.spend).sum() / orc for k, r in res.items()}})
                wp = weekly(world, res["passive"].spend)
                rr = {"family": fam, "world": name}
                for k in [k for k in res if not k.startswith("passive")]:
                    ss = same_state(world, res[k], 1e-3 * orc / T)
                    short = (weekly(world, res[k].spend) - wp).min() / wp.mean()
                    ok = res[k].expected_passive > 0
                    exp_min = float((res[k].expected[ok] / res[k].expected_passive[ok]).min()) if ok.any() else 1.0
                    rr[k] = (f"{ss.min():.3f} / {int((ss < 1 - RISK).sum())} / {exp_min:.3f} / {short:+.3f} / "
                             f"{res[k].amplitude.mean():.2f}")
                risk_rows.append(rr)
                figs = ", ".join(f"{k} {v:.4f}" for k, v in rows[-1].items() if k not in ("family", "world"))
                print(f"done {fam} {name} ({time.time() - t0:.0f} s): {figs}; risk {rr}", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    cols = [c for c in df.columns if c not in ("family", "world")]
    out = []
    for fam, g in df.groupby("family", sort=False):
        out.append(g)
        summ = {"family": fam, "world": "**mean**", **g[cols].mean().to_dict()}
        beats = {"family": fam, "world": "beats passive (worlds)",
                 **{c: f"{int((g[c] > g['passive']).sum())}/{len(g)}" for c in cols if c != "passive"}}
        out.append(pd.DataFrame([summ, beats]))
    allw = {"family": "both", "world": "beats passive (worlds)",
            **{c: f"{int((df[c] > df['passive']).sum())}/{len(df)}" for c in cols if c != "passive"}}
    out.append(pd.DataFrame([allw]))
    ppo = (f"PPO {args.agent_policy} from {args.agent}" if args.agent else
           f"PPO {args.agent_policy} {args.train_steps} steps ({train_s:.0f} s CPU)")
    print(f"\n52-week closed loop, reserve 0, risk budget {RISK:.0%} a week; {ppo}; load average at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"{time.time() - t0:.0f} s wall\n")
    print("Cumulative TRUE incremental revenue over 52 weeks / oracle's:\n")
    print(markdown(pd.concat(out, ignore_index=True).fillna("")))
    print("\nWeekly floor, each week against the passive choice from the same state: worst week's TRUE incremental "
          f"revenue / the passive choice's / weeks below {1 - RISK:.2f} of it / the same on EXPECTED revenue (the "
          "enforced limit, worst week) / against the passive LOOP's own week (another state): the worst week's "
          "shortfall as a share of passive's mean week / mean amplitude:\n")
    print(markdown(pd.DataFrame(risk_rows)))


if __name__ == "__main__":
    main()
