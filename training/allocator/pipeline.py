"""Allocator training: fit the response model, build the env, train the residual agent under domain
randomisation, evaluate it against the planner it corrects, and return everything to save.

Uncertainty used twice, from one distribution ("widened bootstrap"): a bootstrap draw of the fit with each
channel's effect size and half-saturation multiplied by exp(N(0, widen)) and its Hill slope shifted by
N(0, 1.5 widen) — the residual bootstrap under the MAP priors understates how wrong the curves can be (on the
synthetic worlds the planted curves often sit outside the bootstrap range). With `alt_slope_prior`, every other
draw comes from a second fit under a Hill-slope prior leaning less S-shaped, so the ensemble also spans the prior
on the curve's shape (the point fit, its diagnostics and the heuristics stay on PRIOR).
- model-form uncertainty (models/allocator/forms.py): the planning draws come from the calendar form above, a
  form with a free effect per week of the year and a season x media form, in the proportions their stacked held-out
  predictions weigh them (the agent's training and evaluation worlds stay on the calendar form); each form's draws
  are widened to its held-out error (`tempered`, forms.FormScore.tau) and a quarter of them are its time-fold refit
  (fitted without the last 26 weeks): the bootstrap alone resamples noise, not misspecification;
- lift tests (models/allocator/lift.py) enter the fits as extra rows, and after the widening every draw is
  re-anchored to them (`lift.anchored`): a tested channel keeps the test's width, not the misspecification's;
- the planner the agent corrects maximises the *expected* revenue over `n_plan_worlds` such draws (sample
  average approximation: hedges against curve shapes the data cannot pin down);
- the agent trains with domain randomisation over `n_worlds` other draws: each episode's realised revenue
  comes from one of them, and it sees the realised/expected ROI of the last period.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from omnidecide.models.allocator.artifact import Allocator
from omnidecide.models.allocator.env import rollout
from omnidecide.models.allocator.forms import draws_per_form, fit_form, score_forms
from omnidecide.models.allocator.lift import anchored
from omnidecide.models.allocator.mmm import DECAY_MAX, SLOPE_RANGE, History, MMMParams, fit
from omnidecide.models.allocator.constraints import Constraints

log = logging.getLogger(__name__)


@dataclass
class Config:
    horizon: int = 26  # training episodes: periods
    timesteps: int = 3_000  # PPO steps (CLI default: quick; the benchmark trains longer)
    n_boot: int = 12
    n_eval_worlds: int = 8
    widen: float = 0.2
    n_worlds: int = 64
    n_plan_worlds: int = 16
    alpha: float = 0.3
    budget_scales: tuple = (0.6, 1.0, 1.6)
    seed: int = 0
    threads: int = 1  # tiny nets: one thread is fastest (more only adds contention)
    # half of every ensemble (planning, training, evaluation) comes from a second fit under this Hill-slope prior
    # (mean, sd) instead of PRIOR's: planning averages over the prior on the curve's shape, which 156 weeks of habitual
    # spend cannot pin down; None = one fit only. Chosen on held-out synthetic worlds (docs/BENCHMARKS.md).
    alt_slope_prior: tuple | None = (1.2, 0.4)
    # planning draws of each model form widened to its held-out error (forms.FormScore.tau); False = bootstrap width
    calibrate: bool = True
    # share of each form's planning draws that are its time-fold refit (the form fitted without the last 26 weeks):
    # where the history's two windows tell different stories (misspecification), those draws disagree with the rest
    fold_share: float = 0.25


def _log_away(point: np.ndarray, draw: np.ndarray, tau: float) -> np.ndarray:
    """point * (draw / point)^tau for positive quantities (a zero stays zero)."""
    p, d = np.asarray(point, float), np.asarray(draw, float)
    ok = (p > 0) & (d > 0)
    return np.where(ok, p * np.exp(tau * np.log(np.where(ok, d, 1.0) / np.where(ok, p, 1.0))), d)


def tempered(point: MMMParams, s: MMMParams, tau: float) -> MMMParams:
    """A bootstrap draw moved tau times as far from the point fit (effect size and half-saturation on the log scale;
    decay, Hill slope and the peak multiplier linearly, within their bounds): the draw of a posterior tempered by
    1 / tau^2 (models/allocator/forms.py FormScore.tau). tau = 1 returns the draw."""
    if tau == 1.0:
        return s
    d = s.to_dict()
    d["beta"] = _log_away(point.beta, s.beta, tau).tolist()
    d["half_saturation"] = _log_away(point.half_saturation, s.half_saturation, tau).tolist()
    d["slope"] = np.clip(point.slope + tau * (np.asarray(s.slope) - point.slope), *SLOPE_RANGE).tolist()
    d["decay"] = np.clip(point.decay + tau * (np.asarray(s.decay) - point.decay), 0.0, DECAY_MAX).tolist()
    d["media_peak_mult"] = float(np.clip(point.media_peak_mult + tau * (s.media_peak_mult - point.media_peak_mult),
                                         -0.5, 3.0))
    return MMMParams.from_dict(d)


def widened_worlds(params: MMMParams, samples: list[MMMParams], n: int, widen: float, rng: np.random.Generator,
                   alt: tuple | None = None, tau: float = 1.0) -> list[MMMParams]:
    """n widened bootstrap draws; with alt = (params, samples) of a second fit, every other draw comes from it.
    tau: each draw first tempered (`tempered`) and its widening noise tau times as wide."""
    pools = [(params, samples or [params])] + ([(alt[0], alt[1] or [alt[0]])] if alt is not None else [])
    out = []
    for i in range(n):
        point, pool = pools[i % len(pools)]
        s = tempered(point, pool[(i // len(pools)) % len(pool)], tau)
        d = s.to_dict()
        C = len(s.beta)
        d["beta"] = (np.asarray(s.beta) * np.exp(rng.normal(0, tau * widen, C))).tolist()
        d["half_saturation"] = (np.asarray(s.half_saturation) * np.exp(rng.normal(0, tau * widen, C))).tolist()
        d["slope"] = np.clip(np.asarray(s.slope) + rng.normal(0, 1.5 * tau * widen, C), *SLOPE_RANGE).tolist()
        out.append(MMMParams.from_dict(d))
    return out


def reference_budget(h: History, periods: int) -> float:
    """Typical spend for `periods`: the last year's average per period (all channels) x periods."""
    last = h.spend[-min(len(h.spend), 52):]
    return float(last.sum(1).mean() * periods)


def train_agent(alloc: Allocator, cfg: Config, worlds: list[MMMParams]):
    from stable_baselines3 import PPO

    torch.set_num_threads(cfg.threads)
    T = cfg.horizon
    B = reference_budget(alloc.history, T)
    planning = alloc.curves(T)
    cons = Constraints(budget=B, reserve=0.0)
    env = alloc.env(planning, cons, worlds=[alloc.curves(T, params=w) for w in worlds])
    env.budget_scales = cfg.budget_scales
    for s in cfg.budget_scales:
        env.base_plan(s)
    model = PPO("MlpPolicy", env, n_steps=T * 8, batch_size=T * 2, n_epochs=10, learning_rate=1e-4, gamma=0.99,
                gae_lambda=0.95, ent_coef=0.0, clip_range=0.2, seed=cfg.seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [64, 64], "log_std_init": -1.5})
    quiet_logger(model)
    with torch.no_grad():  # residual policy: start exactly at the planner (mean correction 0)
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
    model.learn(total_timesteps=cfg.timesteps)
    return model, env


def quiet_logger(model) -> None:
    """A logger with no outputs for an SB3 model: its default one makes a folder /tmp/SB3-<time> at every `learn()`,
    even at verbose=0 (SB3's `configure` falls back to a temporary folder); training reports through `run`'s result."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))


def evaluate(alloc: Allocator, env, worlds: list[MMMParams], scales=(1.0,)) -> dict:
    """Closed-loop revenue of agent vs planner alone (zero correction) on held-out worlds."""
    T = env.T
    zero = np.zeros(env.action_space.shape)
    ratios = []
    for w in worlds:
        wc = alloc.curves(T, params=w)
        for s in scales:
            _, r_agent = rollout(env, alloc.act, world=wc, budget_scale=s, seed=len(ratios))
            _, r_base = rollout(env, lambda o: zero, world=wc, budget_scale=s, seed=len(ratios))
            ratios.append(r_agent.sum() / max(r_base.sum(), 1e-9))
    ratios = np.array(ratios)
    return {"agent_over_planner_mean": float(ratios.mean()), "agent_over_planner_min": float(ratios.min()),
            "agent_over_planner_max": float(ratios.max()), "eval_worlds": len(ratios)}


def agent_gate(metrics: dict) -> bool:
    """Serve the agent only if its corrections beat the planner alone on the held-out worlds (strictly)."""
    return bool(metrics["agent_over_planner_mean"] > 1.0)


def run(h: History, cfg: Config, lift: list | None = None) -> tuple[Allocator, dict]:
    """lift: lift tests (models/allocator/lift.py) that both fits also match."""
    t0 = time.time()
    torch.set_num_threads(cfg.threads)  # (OMP_NUM_THREADS would only act before numpy/torch load: set it in the shell)
    res = fit(h, n_boot=cfg.n_boot, seed=cfg.seed, lift=lift)
    t_fit = time.time() - t0
    alloc = Allocator(params=res.params, samples=res.samples, history=h, alpha=cfg.alpha,
                      info={"diagnostics": res.diagnostics})
    alt = None
    if cfg.alt_slope_prior is not None:
        res_alt = fit(h, n_boot=cfg.n_boot, seed=cfg.seed, prior={"slope": tuple(cfg.alt_slope_prior)}, lift=lift)
        alt = (res_alt.params, res_alt.samples)
        alloc.info["alt_fit"] = {"slope_prior": list(cfg.alt_slope_prior), "r2": res_alt.diagnostics["r2"],
                                 "media_share": res_alt.diagnostics["media_share"]}
        t_fit = time.time() - t0
    rng = np.random.default_rng(cfg.seed)
    forms = score_forms(h, cfg.seed)  # model-form uncertainty: the planning draws come from each form by its weight
    k_cal, *k_other = draws_per_form([f.weight for f in forms], cfg.n_plan_worlds) + [0]
    alloc.info["forms"] = [{"form": f.name, "holdout_rmse": f.holdout_rmse, "noise": f.noise, "tau": f.tau,
                            "weight": f.weight, "planning_draws": k} for f, k in zip(forms, [k_cal, *k_other])]
    tau = [f.tau if cfg.calibrate else 1.0 for f in forms]
    alloc.worlds = []
    for i, (f, k, t) in enumerate(zip(forms, [k_cal, *k_other], tau)):
        if not k:
            continue
        r = res if i == 0 else fit_form(h, f.week_effects, f.season, n_boot=cfg.n_boot, seed=cfg.seed, lift=lift)
        m = int(round(k * cfg.fold_share)) if cfg.calibrate and f.fold is not None else 0
        alloc.worlds += widened_worlds(r.params, r.samples, k - m, cfg.widen, rng, alt if i == 0 else None, t)
        alloc.worlds += widened_worlds(f.fold, [f.fold], m, cfg.widen, rng, tau=t)
    train_worlds = widened_worlds(res.params, res.samples, cfg.n_worlds, cfg.widen, rng, alt)
    test_worlds = widened_worlds(res.params, res.samples, cfg.n_eval_worlds, cfg.widen, rng, alt)
    if lift:  # the widening above is for what the history cannot tell; what a test measured keeps the test's width
        lrng = np.random.default_rng([cfg.seed, 1])
        alloc.worlds, train_worlds, test_worlds = (anchored(w, h, lift, lrng)
                                                   for w in (alloc.worlds, train_worlds, test_worlds))
    metrics = {"lift_tests": len(lift or []), "fit_r2": res.diagnostics["r2"], "fit_mape": res.diagnostics["mape"],
               "fit_media_share": res.diagnostics["media_share"], "fit_seconds": t_fit}
    if cfg.timesteps > 0:
        model, env = train_agent(alloc, cfg, train_worlds)
        alloc.policy = model
        metrics.update(evaluate(alloc, env, test_worlds))
        # gate (automatic rollback of a failed optimisation): corrections that do not beat the planner on held-out
        # worlds are not served; the agent stays in the version for inspection and `use_agent=True` forces it.
        alloc.info["agent_enabled"] = agent_gate(metrics)
        metrics["agent_enabled"] = alloc.info["agent_enabled"]
    metrics["train_seconds"] = time.time() - t0
    alloc.info["metrics"] = metrics
    return alloc, metrics
