"""The truth behind a 52-week closed loop (models/allocator/explore_loop.py), for both world families, and the SB3
agent that learns when to explore in it.

A loop world answers one question a week: given all spend so far, what total revenue was seen this week? That is the
generator's own baseline (continued past the history, promotions off), plus its TRUE media response (the history's
carry-over included), plus the generator's own noise (additive 2% of level for ours, multiplicative 3% for the
seasonal family). The world is never shown to the policies: they see the observed revenue only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.models.allocator.constraints import Constraints
from omnidecide.models.allocator.mmm import History, history_from_frame, horizon_curves, truth_params
from omnidecide.models.allocator.solvers import best_plan
from omnidecide.training.mmm_worlds import make_seasonal_world, season, world_response
from omnidecide.training.synth import MMM_CHANNELS, is_peak, make_marketing_mix

FAMILIES = ("ours", "seasonal")


@dataclass
class LoopWorld:
    true: object  # TRUE response over the loop: revenue(x) (T, C) incremental, value_grad for the oracle
    base: np.ndarray  # (T,) expected total revenue with no new spend (baseline + the history's media carry-over)
    noise: float
    multiplicative: bool
    channel_noise: float = 0.1  # lognormal sd of a week's measured channel revenue (attribution, platform reports)

    def observe(self, x: np.ndarray, t: int, rng: np.random.Generator) -> float:
        xw = np.array(x, float)
        xw[t + 1:] = 0.0
        mu = self.base[t] + float(self.true.revenue(xw)[t].sum())
        return float(mu * np.exp(rng.normal(0, self.noise)) if self.multiplicative else mu + rng.normal(0, self.noise))

    def measure(self, x: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
        """(C,) each channel's TRUE incremental revenue in week t (all spend so far), as measured: times a lognormal
        error of sd channel_noise. What the product's re-planning reads from `revenue_<channel>` in --actuals."""
        xw = np.array(x, float)
        xw[t + 1:] = 0.0
        r = self.true.revenue(xw)[t]
        return r * np.exp(rng.normal(0, self.channel_noise, len(r)))

    def oracle(self, budget: float, seed: int = 0) -> tuple[np.ndarray, float]:
        """The best plan knowing the true response (several starts), and its incremental revenue."""
        rng = np.random.default_rng(seed)
        T, C = self.true.T, self.true.C
        starts = [rng.dirichlet(np.ones(T * C)).reshape(T, C) * budget for _ in range(3)]
        x = best_plan(self.true, Constraints(budget=budget, reserve=0.0), starts, iters=300, tol=1e-7)
        return x, float(self.true.revenue(x).sum())


def family_world(family: str, seed: int, channels: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """A history and its truth: ours (training/synth.make_marketing_mix; 3-6 channels drawn by the seed unless
    given) or seasonal (training/mmm_worlds.make_seasonal_world, 5 channels)."""
    if family == "seasonal":
        return make_seasonal_world(seed)
    if channels is None:
        rng = np.random.default_rng(seed)
        n = int(rng.integers(3, 7))
        channels = [MMM_CHANNELS[i] for i in sorted(rng.choice(len(MMM_CHANNELS), n, replace=False))]
    return make_marketing_mix(seed, channels=list(channels))


def loop_world(family: str, h: History, truth: dict, T: int = 52) -> LoopWorld:
    """The truth of the T weeks after history `h` of a world of `family`."""
    dates = h.future_dates(T)
    n = len(h.dates)
    if family == "seasonal":
        true = world_response(truth, h.spend, T, h.channels)
        f0 = true._f(true.carry)[0]
        carry = (true.beta * f0 * true.mult[:, None]).sum(1)
        t = np.arange(n, n + T) / 52.0
        base = truth["base_level"] * (1 + truth["base_growth_per_year"] * t) * season(dates)
        return LoopWorld(true, base + carry, float(truth["noise"]), True)
    mm = truth.get("marketing_mix", truth)
    true = horizon_curves(truth_params(mm, h.channels), h, T)
    b = mm["baseline"]
    t = np.arange(n, n + T)
    woy = dates.isocalendar().week.to_numpy().astype(float)
    peak = is_peak(dates) | is_peak(dates + pd.Timedelta(days=6))
    base = (b["level"] * (1 + b["trend_per_week"] * t) * (1 + b["season_amplitude"] * np.sin(2 * np.pi * woy / 52
            + b["season_phase"])) * (1 + b["peak_lift"] * peak))
    carry = true.media(np.zeros((T, true.C))).sum(1)
    return LoopWorld(true, base + carry, float(b["noise_sd_share"] * b["level"]), False)


def build(family: str, seed: int, channels: list[str] | None = None, T: int = 52, fit_seed: int | None = None):
    """(fitted allocator, loop world, budget, oracle's incremental revenue) for one world: the product's own fit
    (two priors, 20 bootstrap refits, no agent) and B = last year's average weekly spend x T."""
    from omnidecide.training.allocator.pipeline import Config, reference_budget, run

    df, truth = family_world(family, seed, channels)
    h = history_from_frame(df)
    alloc, _ = run(h, Config(seed=seed if fit_seed is None else fit_seed, timesteps=0, n_boot=20))
    world = loop_world(family, h, truth, T)
    B = reference_budget(h, T)
    return alloc, world, B, world.oracle(B)[1]


def train_loop_agent(pool: list[tuple], timesteps: int, seed: int = 0, T: int = 52, policy: str = "explore",
                     max_seconds: float | None = None):
    """PPO on LoopEnv over a pool of built worlds of both families (domain randomisation: each episode a random
    world and a fresh noise draw). policy "explore": the action is the exploration schedule, the policy's mean starts
    at 0.5 of the risk budget; "learn": the action caps the step towards the learned plan, the mean starts at 1 (the
    hand-designed learn policy, the best one measured: PPO starts there and learns when to step less). Log-std -1.
    max_seconds: stop after this much wall time even if fewer steps are done (a time box; model.num_timesteps
    says how many were). Returns (model, env); env (a Monitor) holds the training episodes' returns."""
    import time

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor

    from omnidecide.models.allocator.loop_env import LoopEnv
    from omnidecide.training.allocator.pipeline import quiet_logger

    torch.set_num_threads(1)

    def make(rng):
        alloc, world, B, orc = pool[int(rng.integers(len(pool)))]
        return alloc, world, B, orc / T

    env = Monitor(LoopEnv(make, T, policy=policy))
    model = PPO("MlpPolicy", env, n_steps=T * 2, batch_size=T, n_epochs=10, learning_rate=3e-4, gamma=0.99,
                gae_lambda=0.95, seed=seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [32, 32], "log_std_init": -1.0})
    quiet_logger(model)
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.fill_(0.5 if policy == "explore" else 1.0)
    end = time.time() + (max_seconds if max_seconds else float("inf"))

    class TimeBox(BaseCallback):
        def _on_step(self) -> bool:
            return time.time() < end

    model.learn(total_timesteps=timesteps, callback=TimeBox())
    return model, env
