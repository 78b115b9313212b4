"""Benchmark: RL allocator vs oracle vs five baselines on several synthetic worlds; attribution vs planted truth.

    .venv/bin/python bench/allocator.py [--timesteps 20000] [--periods 26] [--quick]
    .venv/bin/python bench/allocator.py --validate 10-29   # re-planning variants on validation worlds (no agent)
    .venv/bin/python bench/allocator.py --validate 10-29 --reported   # same, histories with platform-reported revenue
    .venv/bin/python bench/allocator.py --families [ours|seasonal] [--bayes-steps 1500]   # issue K's open-loop table only
    .venv/bin/python bench/allocator.py --families seasonal --seeds 0-14 --blends   # spreadsheet-plan blends, TRUE only
    .venv/bin/python bench/allocator.py --families seasonal --seeds 0-14 --bayes-steps 0 --reported --cache DIR2
    .venv/bin/python bench/allocator.py --families seasonal --seeds 0-14 --bayes-steps 0 --lift-tests --cache DIR

For each world (seed, channel set): fit the response model on its 156-week marketing_mix history, train the
residual PPO agent, then play every plan for the next T periods on the TRUE curves (truth of the synthetic world)
and report its incremental revenue as a share of the oracle's (a nonlinear full-horizon optimiser that knows the
true curves). Reserve 0 for the comparison; then the cost of the default 15% reserve; then issue K's open-loop table
on both world families (ours and training/mmm_worlds.py's) with the equal split, the historical mix, the Bayes
reference (bench/allocator_bound.py) and the oracle. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from allocator_baselines import myopic, spread  # noqa: E402
from omnidecide.models.allocator.actuals import Updating  # noqa: E402
from omnidecide.models.allocator.env import rollout  # noqa: E402
from omnidecide.models.allocator.lift import parse_lift_tests  # noqa: E402
from omnidecide.models.allocator.mmm import history_from_frame, horizon_curves, truth_params  # noqa: E402
from omnidecide.models.allocator.robust import historical_plan  # noqa: E402
from omnidecide.models.allocator.constraints import Constraints  # noqa: E402
from omnidecide.models.allocator.solvers import best_plan  # noqa: E402
from omnidecide.models.response import media_revenue  # noqa: E402
from omnidecide.training.allocator.pipeline import Config, reference_budget, run  # noqa: E402
from omnidecide.training.mmm_worlds import channel_media, make_seasonal_world, season, world_response  # noqa: E402
from omnidecide.training.synth import MMM_CHANNELS, make_marketing_mix  # noqa: E402
from omnidecide.training.synth.mmm import reported_revenue  # noqa: E402

WORLDS = [
    (0, MMM_CHANNELS), (1, MMM_CHANNELS), (2, MMM_CHANNELS),
    (3, ["douyin", "tmall_ads", "search", "sms"]),
    (4, ["xiaohongshu", "douyin", "kol_live"]),
]
COLS = ["equal split", "last year's mix", "prop. to hist. ROI", "myopic (fitted)", "full-horizon (fitted)",
        "expected-revenue planner (before issue K)", "ensemble planner (agent off)", "RL plan (open loop)", "RL (closed loop)", "served plan",
        "re-planned weekly, rescaling only (previous rule)", "served plan re-planned weekly (measured channel revenue)"]


def markdown(df: pd.DataFrame, fmt: str = ".4f") -> str:
    """A pipe table (no tabulate dependency)."""
    cells = [[f"{v:{fmt}}" if isinstance(v, (float, np.floating)) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def oracle_plan(true, cons, seed=0):
    rng = np.random.default_rng(seed)
    T, C = true.T, true.C
    starts = [rng.dirichlet(np.ones(T * C)).reshape(T, C) * cons.spendable for _ in range(4)]
    starts.append(np.outer(true.mult, true.beta) / (true.mult.sum() * true.beta.sum()) * cons.spendable)
    return best_plan(true, cons, starts, iters=500, tol=1e-7)


def true_and_oracle(h, truth: dict, T: int, B: float, reserve: float = 0.0):
    """The world's TRUE curves over the next T periods and the oracle's incremental revenue on them."""
    true = horizon_curves(truth_params(truth, h.channels), h, T)
    return true, true.revenue(oracle_plan(true, Constraints(budget=B, reserve=reserve))).sum()


def family_truth(family: str, h, truth: dict, T: int, B: float):
    """The TRUE response over the next T periods and the oracle's incremental revenue, for either world family."""
    if family == "ours":
        return true_and_oracle(h, truth, T, B)
    true = world_response(truth, h.spend, T, h.channels)
    rng = np.random.default_rng(0)
    cons = Constraints(budget=B, reserve=0.0)
    starts = [rng.dirichlet(np.ones(T * true.C)).reshape(T, true.C) * B for _ in range(4)]
    return true, true.revenue(best_plan(true, cons, starts, iters=500, tol=1e-7)).sum()


TOL = 1e-6  # of the oracle: "below" means by more than the rounding of a plan to cents
OPEN = ["equal split", "historical mix", "expected-revenue planner (before issue K)", "served plan",
        "Bayes reference"]


def cached_fit(folder: str | None, family: str, seed: int, h, lift: list | None = None, name: str = ""):
    """The product's fit of one world (`run`, no agent), through a pickle DIR/<family>_<seed><name>.pkl when a folder
    is given: the fit is most of a world's time, and a change to the plan step alone can then be measured on the same
    fits. A file written by bench/allocator_loop.py's --cache (a tuple whose first item is the same fit) is read too.
    lift: lift tests the fit also matches (`train allocator --lift-tests`); give them their own `name`."""
    import pickle

    path = Path(folder) / f"{family}_{seed}{name}.pkl" if folder else None
    if path is not None and path.exists():
        got = pickle.loads(path.read_bytes())
        return got[0] if isinstance(got, tuple) else got
    alloc, _ = run(h, Config(seed=seed, timesteps=0, n_boot=20), lift)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(alloc))
    return alloc


def cached_truth(folder: str | None, family: str, seed: int, T: int, make):
    """(TRUE response, oracle's incremental revenue) over T periods, through DIR/<family>_<seed>_T<T>_truth.pkl when a
    folder is given (the oracle's multi-start solve is the other slow part of a world)."""
    import pickle

    path = Path(folder) / f"{family}_{seed}_T{T}_truth.pkl" if folder else None
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    out = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


def with_reports(df: pd.DataFrame, truth: dict, seed: int) -> pd.DataFrame:
    """A seasonal-family history with platform-reported channel revenue added (`revenue_<channel>`), by the formula
    training/synth's `reported=True` uses for ours (`reported_revenue`, its default bias and noise) over each channel's
    TRUE media revenue of the history's (rounded) spend; its own random stream, drawn channel by channel (the figures
    in docs/BENCHMARKS.md were made so), so the history's other columns are unchanged."""
    rng = np.random.default_rng(20_000 + seed)
    s = season(pd.DatetimeIndex(pd.to_datetime(df["date"])))
    out = df.copy()
    for c, p in truth["channels"].items():
        media = channel_media(p, df[f"spend_{c}"].to_numpy(float), s)
        out[f"revenue_{c}"] = reported_revenue(media[:, None], rng)[0][:, 0].round(2)
    return out


def spend_channels(df: pd.DataFrame) -> list[str]:
    """The history's channels, in its column order (`spend_<channel>`)."""
    return [c[len("spend_"):] for c in df.columns if c.startswith("spend_")]


def true_media(family: str, df: pd.DataFrame, truth: dict) -> np.ndarray:
    """Each channel's TRUE incremental revenue per history week (weeks x channels, the history's column order), from
    the world's own formula: training/mmm_worlds.channel_media (seasonal) or models/response.media_revenue (ours)."""
    chans = spend_channels(df)
    dates = pd.DatetimeIndex(pd.to_datetime(df["date"]))
    if family == "seasonal":
        s = season(dates)
        return np.column_stack([channel_media(truth["channels"][c], df[f"spend_{c}"].to_numpy(float), s)
                                for c in chans])
    p = [truth["channels"][c] for c in chans]
    peak = df["date"].isin(truth["peak_weeks"]).to_numpy()
    mult = 1 + (truth["peak_media_multiplier"] - 1) * peak
    return media_revenue(df[[f"spend_{c}" for c in chans]].to_numpy(float), [q["decay"] for q in p],
                         [q["half_saturation"] for q in p], [q["slope"] for q in p], [q["beta"] for q in p],
                         multiplier=mult)


LIFT_WEEKS = 4  # a test's length: a month-long geo holdout


def lift_tests(family: str, df: pd.DataFrame, truth: dict, seed: int, rel_se: float, where: str = "most"
               ) -> pd.DataFrame:
    """lift.csv rows (docs/data.md) as a retailer's experiments would report them: one test per channel, over the
    LIFT_WEEKS consecutive weeks of the last half year where it spent most (`where` "most": at the sale peaks,
    where spend follows the season) or a typical amount ("typical": the window of median spend among those it spent in,
    as experiments are usually placed away from the peaks), of the whole history when it spent nothing in the last
    half year; its incremental revenue is the channel's TRUE revenue in those weeks (what lift.py reads a row
    as) measured with a standard error of `rel_se` of it, the 95% interval around the measurement. Its own random
    stream, so the history is unchanged. Set a priori, not tuned: one test per channel, 4 weeks, the same `rel_se`
    for every channel and world."""
    media = true_media(family, df, truth)
    rng = np.random.default_rng(30_000 + seed)
    dates = pd.to_datetime(df["date"])
    rows = []
    for j, c in enumerate(spend_channels(df)):
        spend = df[f"spend_{c}"].to_numpy(float)
        first = len(spend) - 26 if spend[-26:].sum() > 0 else 0
        win = np.convolve(spend[first:], np.ones(LIFT_WEEKS), "valid")
        if where == "typical" and (win > 0).sum() > 0:
            ok = np.flatnonzero(win > 0)
            a = first + int(ok[np.argsort(win[ok], kind="stable")[len(ok) // 2]])
        else:
            a = first + int(np.argmax(win))
        true = float(media[a:a + LIFT_WEEKS, j].sum())
        se = max(rel_se * abs(true), 1.0)
        m = true + rng.normal(0, se)
        rows.append({"channel": c, "start": dates[a].strftime("%Y-%m-%d"),
                     "end": dates[a + LIFT_WEEKS - 1].strftime("%Y-%m-%d"), "incremental_revenue": round(m, 2),
                     "ci_low": round(m - 1.96 * se, 2), "ci_high": round(m + 1.96 * se, 2)})
    return pd.DataFrame(rows)


def open_loop_families(quick: bool, T: int, steps: int, draws: int = 64, which: str = "both",
                       seeds: list[int] | None = None, cache: str | None = None, reported: bool = False,
                       lift_se: float = 0.0, lift_where: str = "most") -> None:
    """Issue K's bars, open loop, reserve 0: both world families, every plan played on the TRUE response, as a share
    of the oracle's incremental revenue. The Bayes reference: bench/allocator_bound.py's posterior under the
    product's priors + a log-normal ROI prior LN(log 3, 0.7) (the variant that needs nothing from the generator).
    reported: the histories also carry platform-reported channel revenue (both families; use another --cache folder,
    the fits differ). lift_se > 0: each world is also fitted with one lift test per channel (`lift_tests`, standard
    error lift_se of the true value, placed by `lift_where`) and that fit's served plan is a column of the same table."""
    from allocator_bound import VARIANTS, Posterior, bayes_plan

    fam = []
    if which in ("both", "ours"):
        ours = (WORLDS[:2] if quick else WORLDS) if seeds is None else [(s, dict(WORLDS).get(s)) for s in seeds]
        for s, c in ours:  # seeds past the five benchmark worlds: validation worlds (3-6 channels drawn by the seed)
            df, truth = (make_marketing_mix(s, channels=list(c), reported=reported) if c is not None
                         else validation_world(s, reported))
            fam.append(("ours", f"seed {s}, {sum(k.startswith('spend_') for k in df.columns)} ch", s, df, truth))
    if which in ("both", "seasonal"):
        for s in (range(3 if quick else 5) if seeds is None else seeds):
            df, truth = make_seasonal_world(s)
            fam.append(("seasonal", f"seed {s}, 5 ch", s, with_reports(df, truth, s) if reported else df, truth))
    rows = []
    for family, name, seed, df, truth in fam:
        h = history_from_frame(df)
        alloc = cached_fit(cache, family, seed, h)
        B = reference_budget(h, T)
        cons = Constraints(budget=B, reserve=0.0)
        true, orc = cached_truth(cache, family, seed, T, lambda: family_truth(family, h, truth, T, B))
        served = alloc.plan(B, T, reserve=0.0)
        x = {"equal split": spread(np.ones(len(h.channels)), T, cons),
             "historical mix": historical_plan(h.spend, T, 0, cons.spendable),
             "expected-revenue planner (before issue K)": alloc.plan(B, T, reserve=0.0, robust=False).spend,
             "served plan": served.spend}
        if lift_se > 0:
            lift = parse_lift_tests(lift_tests(family, df, truth, seed, lift_se, lift_where), h.channels, h.dates)
            with_lift = cached_fit(cache, family, seed, h, lift, f"_lift{lift_se:g}{lift_where}").plan(B, T, reserve=0.0)
            x["served plan + lift tests"] = with_lift.spend
        if steps > 0:
            knows, mu, sd = VARIANTS["Bayes: product priors + ROI prior LN(log 3, 0.7)"]
            post = Posterior(h, truth, knows, mu, sd)
            rng = np.random.default_rng(seed)
            W = max(2 * draws, 8 * post.d + 2)
            start = np.stack([post.point(alloc.samples[k % len(alloc.samples)]) for k in range(W)])
            x["Bayes reference"] = bayes_plan(post, h, start + rng.normal(0, 0.01, start.shape), T, cons, draws, steps,
                                              rng)[0]
        row = {"family": family, "world": name, **{k: true.revenue(v).sum() / orc for k, v in x.items()}}
        if steps <= 0:
            row["Bayes reference"] = float("nan")
        row["served: plan chosen"] = served.summary["plan_chosen"]
        if lift_se > 0:
            row["served + lift tests: plan chosen"] = with_lift.summary["plan_chosen"]
        cpu, wall = [], []
        for _ in range(5):  # the served plan's latency (reserve 0.15 as the CLI default), CPU time and wall time
            t1, c1 = time.perf_counter(), time.process_time()
            alloc.plan(B, T, reserve=0.15)
            wall.append((time.perf_counter() - t1) * 1000)
            cpu.append((time.process_time() - c1) * 1000)
        row["plan ms CPU / wall (median of 5)"] = f"{np.median(cpu):.0f} / {np.median(wall):.0f}"
        row["load (1 min)"] = f"{os.getloadavg()[0]:.1f}"
        row["form weights (calendar / week-of-year / season x media)"] = " / ".join(
            f"{f['weight']:.2f}" for f in alloc.info["forms"])
        row["draw width x bootstrap (tau)"] = " / ".join(f"{f['tau']:.2f}" for f in alloc.info["forms"])
        pc = served.summary["per_channel"]
        row["identification (min-max)"] = (f"{min(v['identification'] for v in pc.values()):.2f}-"
                                           f"{max(v['identification'] for v in pc.values()):.2f}")
        rows.append(row)
        print(f"done {family} {name}: " + ", ".join(f"{k} {row[k]:.4f}" for k in x), file=sys.stderr, flush=True)
    res = pd.DataFrame(rows)
    out = []
    for family, g in res.groupby("family", sort=False):
        out.append(g)
        served = g["served plan"]
        cols = OPEN + (["served plan + lift tests"] if lift_se > 0 else [])
        out.append(pd.DataFrame([{"family": family, "world": "**mean**", **g[cols].mean().to_dict(),
                                  "identification (min-max)": "", "served: plan chosen": "",
                                  "plan ms CPU / wall (median of 5)": "", "load (1 min)": ""},
                                 {"family": family, "world": "served - Bayes ref. (mean); below equal / hist. (worlds)",
                                  "served plan": f"{(served - g['Bayes reference']).mean():+.4f}; "
                                  f"{int((served < g['equal split'] - TOL).sum())} / "
                                  f"{int((served < g['historical mix'] - TOL).sum())} "
                                  f"of {len(g)}"}]))
    print(f"\nIssue K, open loop, reserve 0, T={T}: TRUE incremental revenue / oracle's, both world families "
          f"(Bayes reference: {steps}+{steps} MCMC steps, {draws} draws); load average at the end {os.getloadavg()[0]:.2f}\n")
    print(markdown(pd.concat(out, ignore_index=True).fillna("")))
    for family, g in res.groupby("family", sort=False):
        floor = np.maximum(g["equal split"], g["historical mix"])
        for col in ("served plan", "served plan + lift tests")[:2 if lift_se > 0 else 1]:
            print(f"{family}: {col} below max(equal split, historical mix) in "
                  f"{int((g[col] < floor - TOL).sum())} of {len(g)} worlds; worst gap {(g[col] - floor).min():+.4f}")


def replanned_weekly(alloc, true, T, B, reserve, seed=0, noise=0.1, **kw):
    """Closed loop through the product's re-planning: each week `allocate --actuals` with the weeks so far (spend and
    each channel's incremental revenue realised on the TRUE curves, measured with `noise` lognormal error as
    attribution would), spend that week's row of the new plan. kw: passed to `Allocator.plan` (e.g. updating)."""
    rng = np.random.default_rng(seed)
    ch = alloc.channels
    x = np.zeros((T, len(ch)))
    meas = np.zeros((T, len(ch)))
    for t in range(T):
        act = None
        if t:
            act = pd.DataFrame({"period": np.arange(1, t + 1), **{f"spend_{c}": x[:t, j] for j, c in enumerate(ch)},
                                **{f"revenue_{c}": meas[:t, j] for j, c in enumerate(ch)}})
        x[t] = alloc.plan(B, T, reserve=reserve, actuals=act, **kw).spend[t]
        meas[t] = true.revenue(x)[t] * np.exp(rng.normal(0, noise, len(ch)))
    return x


def plans(alloc, h, truth, T, B, reserve):
    """All plans for one world -> {name: true incremental revenue}, plus oracle."""
    true, orc = true_and_oracle(h, truth, T, B, reserve)
    fitted = alloc.curves(T)
    cons = Constraints(budget=B, reserve=reserve)
    out = {"oracle": orc}
    C = len(h.channels)
    hist_roi = np.array([alloc.info["diagnostics"]["historical_roi"][c] for c in h.channels])
    n = len(h.spend)
    ly = np.array([h.spend[n - 52 + t] if n - 52 + t < n else h.spend[n - 52 + t - 52] for t in range(T)])
    x = {
        "equal split": spread(np.ones(C), T, cons),
        "last year's mix": ly / ly.sum() * cons.spendable,
        "prop. to hist. ROI": spread(np.maximum(hist_roi, 1e-9), T, cons),
        "myopic (fitted)": myopic(fitted, cons),
        "full-horizon (fitted)": best_plan(fitted, cons),
        "expected-revenue planner (before issue K)": alloc.plan(B, T, reserve=reserve, use_agent=False, robust=False).spend,
        "ensemble planner (agent off)": alloc.plan(B, T, reserve=reserve, use_agent=False).spend,
        "RL plan (open loop)": alloc.plan(B, T, reserve=reserve, use_agent=True).spend,
        "served plan": alloc.plan(B, T, reserve=reserve).spend,
    }
    for k, v in x.items():
        assert v.sum() <= B * (1 - reserve) + 1e-6, k
        out[k] = true.revenue(v).sum()
    xr = replanned_weekly(alloc, true, T, B, reserve)
    assert xr.sum() <= B * (1 - reserve) + 1e-6
    out["served plan re-planned weekly (measured channel revenue)"] = true.revenue(xr).sum()
    xo = replanned_weekly(alloc, true, T, B, reserve, updating=Updating(reweight=False))
    out["re-planned weekly, rescaling only (previous rule)"] = true.revenue(xo).sum()
    env = alloc.env(fitted, cons, base=x["ensemble planner (agent off)"])
    xs, rev = rollout(env, alloc.act, world=true, seed=0)
    out["RL (closed loop)"] = rev.sum()
    return out


def validation_world(seed: int, reported: bool = False) -> tuple[pd.DataFrame, dict]:
    """A validation world (never the benchmark's seeds 0-4): 3-6 channels drawn with the seed's own generator.
    reported: the history also carries platform-reported channel revenue (biased, noisy `revenue_<channel>`)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    chans = [MMM_CHANNELS[i] for i in sorted(rng.choice(len(MMM_CHANNELS), n, replace=False))]
    return make_marketing_mix(seed, channels=chans, reported=reported)


def validate(seeds, T: int = 26, noise_seed: int = 0, reported: bool = False) -> None:
    """Re-planning variants on validation worlds: fit (no agent), then the closed loop of `replanned_weekly`
    (reserve 0) for each variant; true incremental revenue / oracle per world, then mean (worst) and worlds >= 0.98."""
    variants = {"open loop (no re-planning)": None, "rescaling only (previous rule)": Updating(reweight=False),
                "reweighting only": Updating(rescale=False), "reweighting + rescaling (default)": Updating()}
    rows = []
    for seed in seeds:
        df, truth = validation_world(seed, reported)
        h = history_from_frame(df)
        t0 = time.time()
        alloc, _ = run(h, Config(seed=seed, timesteps=0, n_boot=20))
        t_fit = time.time() - t0
        B = reference_budget(h, T)
        true, orc = true_and_oracle(h, truth, T, B)
        row = {"world": f"seed {seed}, {len(h.channels)} ch"}
        for name, upd in variants.items():
            x = (alloc.plan(B, T, reserve=0.0).spend if upd is None
                 else replanned_weekly(alloc, true, T, B, 0.0, seed=noise_seed, updating=upd))
            row[name] = true.revenue(x).sum() / orc
        row["fit s (two fits + bootstrap)"] = t_fit
        rows.append(row)
        print(f"done seed {seed}", file=sys.stderr, flush=True)
    res = pd.DataFrame(rows)
    cols = list(variants)
    summ = [{"world": "**mean**", **res[cols + ["fit s (two fits + bootstrap)"]].mean().to_dict()},
            {"world": "worst", **res[cols].min().to_dict()},
            {"world": "worlds >= 0.98", **{c: f"{int((res[c] >= 0.98).sum())}/{len(res)}" for c in cols}}]
    print(f"histories {'with' if reported else 'without'} platform-reported channel revenue; "
          f"load average at the end {os.getloadavg()[0]:.2f}\n")
    print(markdown(pd.concat([res, pd.DataFrame(summ)], ignore_index=True)))


def spreadsheet_blends(family: str, seeds: list[int], T: int) -> None:
    """No model: on each world's TRUE response, the equal split, last year's mix and their blends (share of the equal
    split 0.25 / 0.5 / 0.75) against the better of the two. Says whether any rule that stays between the spreadsheet
    plans could hold the floor without ranking them (docs/BENCHMARKS.md, issue K)."""
    rows = []
    for s in seeds:
        if family == "ours":
            c = dict(WORLDS).get(s)
            df, truth = make_marketing_mix(s, channels=list(c)) if c is not None else validation_world(s)
        else:
            df, truth = make_seasonal_world(s)
        h = history_from_frame(df)
        B = reference_budget(h, T)
        cons = Constraints(budget=B, reserve=0.0)
        true, orc = family_truth(family, h, truth, T, B)
        xe, xh = spread(np.ones(len(h.channels)), T, cons), historical_plan(h.spend, T, 0, cons.spendable)
        r = {f"{t:.2f} equal + {1 - t:.2f} hist": true.revenue(t * xe + (1 - t) * xh).sum() / orc
             for t in (0.0, 0.25, 0.5, 0.75, 1.0)}
        floor = max(r["1.00 equal + 0.00 hist"], r["0.00 equal + 1.00 hist"])
        rows.append({"world": f"{family} seed {s}", "equal split": r["1.00 equal + 0.00 hist"],
                     "historical mix": r["0.00 equal + 1.00 hist"],
                     **{f"{k} - better": v - floor for k, v in r.items() if k[:4] in ("0.25", "0.50", "0.75")}})
    res = pd.DataFrame(rows)
    below = {c: f"{int((res[c] < -TOL).sum())}/{len(res)}" for c in res.columns if c.endswith("- better")}
    print(f"TRUE response, T={T}, reserve 0: blends of the spreadsheet plans minus the better of them (share of the "
          f"oracle); load average at the end {os.getloadavg()[0]:.2f}\n")
    print(markdown(pd.concat([res, pd.DataFrame([{"world": "worlds below the better", **below}])], ignore_index=True)
                   .fillna("")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", type=int, default=20_000)
    ap.add_argument("--periods", type=int, default=26)
    ap.add_argument("--quick", action="store_true", help="2 worlds, 3000 steps (smoke run)")
    ap.add_argument("--families", nargs="?", const="both", choices=["both", "ours", "seasonal"],
                    help="only issue K's open-loop table, on both world families (or one)")
    ap.add_argument("--bayes-steps", type=int, default=3000, help="MCMC steps of the Bayes reference (burn-in, sampling); "
                    "0 = no reference")
    ap.add_argument("--seeds", help="with --families: a seed range like 5-9 instead of the benchmark worlds (ours: seeds "
                    "0-4 are the benchmark worlds, later seeds validation worlds)")
    ap.add_argument("--validate", help="seed range like 10-29: re-planning variants on validation worlds, then exit")
    ap.add_argument("--noise-seed", type=int, default=0, help="with --validate: seed of the measurement noise")
    ap.add_argument("--reported", action="store_true", help="histories carry platform-reported channel revenue "
                    "(revenue_<channel>: per-channel bias U(0.8, 1.6), lognormal noise 0.2); with --validate or "
                    "--families (then give another --cache folder)")
    ap.add_argument("--blends", action="store_true", help="with --families ours|seasonal and --seeds: blends of the "
                    "two spreadsheet plans on the TRUE response only (no fit), then exit")
    ap.add_argument("--lift-tests", type=float, nargs="?", const=0.2, default=0.0, metavar="REL_SE",
                    help="with --families: also fit each world with one lift test per channel (4 weeks, standard error "
                    "REL_SE of the TRUE value, default 0.2) and show that fit's served plan beside the plain one")
    ap.add_argument("--lift-where", choices=["most", "typical"], default="most",
                    help="with --lift-tests: each test over the 4 weeks of the last half year of most spend (the sale "
                    "peaks) or of median spend")
    ap.add_argument("--cache", help="with --families: a folder of fitted allocators (<family>_<seed>.pkl), read when "
                    "there, written when not (the fit is most of a world's time)")
    args = ap.parse_args()
    if args.blends:
        a, b = (int(v) for v in (args.seeds or "0-4").split("-"))
        spreadsheet_blends(args.families or "seasonal", list(range(a, b + 1)), args.periods)
        return
    if args.validate:
        a, b = (int(v) for v in args.validate.split("-"))
        validate(range(a, b + 1), args.periods, args.noise_seed, args.reported)
        return
    if args.families:
        seeds = None
        if args.seeds:
            a, b = (int(v) for v in args.seeds.split("-"))
            seeds = list(range(a, b + 1))
        open_loop_families(args.quick, args.periods, args.bayes_steps, which=args.families, seeds=seeds,
                           cache=args.cache, reported=args.reported, lift_se=args.lift_tests,
                           lift_where=args.lift_where)
        return
    worlds = WORLDS[:2] if args.quick else WORLDS
    steps = 3000 if args.quick else args.timesteps
    T = args.periods
    rows, reserve_rows, timing = [], [], []
    for seed, chans in worlds:
        df, truth = make_marketing_mix(seed, channels=list(chans), reported=args.reported)
        h = history_from_frame(df)
        t0 = time.time()
        alloc, metrics = run(h, Config(seed=seed, timesteps=steps, n_boot=20, n_eval_worlds=16))
        t_train = time.time() - t0
        B = reference_budget(h, T)
        r0 = plans(alloc, h, {"marketing_mix": truth}, T, B, 0.0)
        rows.append({"world": f"seed {seed}, {len(chans)} ch", **{k: r0[k] / r0["oracle"] for k in COLS}})
        r15 = plans(alloc, h, {"marketing_mix": truth}, T, B, 0.15)
        reserve_rows.append({"world": f"seed {seed}, {len(chans)} ch",
                             "oracle, reserve 15% / reserve 0": r15["oracle"] / r0["oracle"],
                             "RL closed loop, reserve 15% / oracle reserve 0": r15["RL (closed loop)"] / r0["oracle"],
                             "RL plan, reserve 15% / oracle reserve 0": r15["RL plan (open loop)"] / r0["oracle"],
                             "served plan, reserve 15% / oracle reserve 0": r15["served plan"] / r0["oracle"],
                             "re-planned weekly, reserve 15% / oracle reserve 0":
                                 r15["served plan re-planned weekly (measured channel revenue)"] / r0["oracle"],
                             "served plan: reserve 15% / reserve 0": r15["served plan"] / r0["served plan"]})
        lat = []
        for _ in range(20):
            t1 = time.perf_counter()
            alloc.plan(B, T, reserve=0.15)
            lat.append((time.perf_counter() - t1) * 1000)
        rules = []
        ch = alloc.channels
        for _ in range(5):
            t1 = time.perf_counter()
            alloc.plan(B, T, reserve=0.15, lo={ch[0]: 0.1 * B}, hi={ch[1]: 0.05 * B}, roi_floor={ch[2]: 3.0})
            rules.append((time.perf_counter() - t1) * 1000)
        # re-planning half way (13 weeks of actuals with measured channel revenue: the ensemble update + the plan)
        x0 = alloc.plan(B, T, reserve=0.15).spend
        true = horizon_curves(truth_params({"marketing_mix": truth}, h.channels), h, T)
        k = T // 2
        meas = true.revenue(x0)[:k] * np.exp(np.random.default_rng(0).normal(0, 0.1, (k, len(ch))))
        act = pd.DataFrame({"period": np.arange(1, k + 1), **{f"spend_{c}": x0[:k, j] for j, c in enumerate(ch)},
                            **{f"revenue_{c}": meas[:, j] for j, c in enumerate(ch)}})
        rp = []
        for _ in range(5):
            t1 = time.perf_counter()
            alloc.plan(B, T, reserve=0.15, actuals=act)
            rp.append((time.perf_counter() - t1) * 1000)
        longer = {f"re-plan ms after {k} weeks of actuals (median / max of 5)": f"{np.median(rp):.0f} / {np.max(rp):.0f}"}
        for TT in (52, 104):  # the optimiser's cost grows with T (dense T x T adstock up to 48 periods, blocks beyond)
            BB = reference_budget(h, TT)
            for name, kw in (("budget", {}), ("rules", {"lo": {ch[0]: 0.1 * BB}, "hi": {ch[1]: 0.05 * BB}, "roi_floor": {ch[2]: 3.0}})):
                ms = []
                for _ in range(5):
                    t1 = time.perf_counter()
                    alloc.plan(BB, TT, reserve=0.15, **kw)
                    ms.append((time.perf_counter() - t1) * 1000)
                longer[f"T={TT} {name} ms (median / max of 5)"] = f"{np.median(ms):.0f} / {np.max(ms):.0f}"
        timing.append({"world": f"seed {seed}, {len(chans)} ch", "train s (fit + PPO)": t_train,
                       "PPO steps": steps, "agent / planner (held-out DR worlds)": metrics.get("agent_over_planner_mean", float("nan")),
                       "agent served": str(metrics.get("agent_enabled")), "plan ms (median of 20)": float(np.median(lat)),
                       "plan ms (max)": float(np.max(lat)), "plan ms with --min/--max/--roi-floor (median of 5)": float(np.median(rules)),
                       "plan ms with rules (max of 5)": float(np.max(rules)), **longer,
                       "load avg (1 min) when timed": os.getloadavg()[0], "fit R2": metrics["fit_r2"],
                       "fitted media share": metrics["fit_media_share"], "true media share": truth["media_revenue_share"]})
        print(f"done seed {seed} in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    res = pd.DataFrame(rows)
    mean = {"world": "**mean**", **res[COLS].mean().to_dict()}
    res = pd.concat([res, pd.DataFrame([mean])], ignore_index=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"load average at the end {', '.join(f'{v:.2f}' for v in os.getloadavg())}; T={T} periods, "
          f"B = last year's average spend per period x T; PPO steps {steps}\n")
    print("Incremental revenue on the TRUE curves as a share of the oracle's (reserve 0):\n")
    print(markdown(res))
    print("\nCost of the default 15% strategic reserve:\n")
    print(markdown(pd.DataFrame(reserve_rows)))
    print("\nTiming and fit:\n")
    print(markdown(pd.DataFrame(timing), ".3f"))
    open_loop_families(args.quick, T, args.bayes_steps)
    attribution_bench()


def attribution_bench(users=(2000,), seeds=(0, 1)) -> None:
    import tempfile

    from omnidecide.models.allocator.attribution import attribute
    from omnidecide.store.io import load
    from omnidecide.training.synth import generate

    rows = []
    for n in users:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as d:
                truth = generate(d, n_users=n, seed=seed)
                tp = load(Path(d) / "touchpoints.csv", "touchpoints", write=False).data
                ev = load(Path(d) / "events.csv", "events", write=False).data
                conv = ev[ev["event"] == "purchase"]
                a = attribute(tp.assign(ts=tp["timestamp"]), conv.assign(ts=conv["timestamp"])[["user_id", "ts"]])
            share = truth["attribution"]["contribution_share"]
            tr = np.array([share[c] for c in a["channel"]])
            rows.append({"world": f"{n} users, seed {seed}", "journeys": a.attrs["paths"],
                         "L1 Markov": np.abs(a["markov_share"] - tr).sum(),
                         "L1 last-click": np.abs(a["last_click_share"] - tr).sum(),
                         "L1 first-click": np.abs(a["first_click_share"] - tr).sum()})
    print("\nAttribution: L1 distance of channel shares to the planted contribution_share (lower is better):\n")
    print(markdown(pd.DataFrame(rows), ".3f"))


if __name__ == "__main__":
    main()
