"""The closed loop (explore_loop.Loop) as a gymnasium env for SB3, and a trained policy played on one world.

Why a separate module: the env is the learned policies' view of the loop (what they observe and set each week); the
loop itself, its guard and the hand-designed policies stay in explore_loop.py.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from omnidecide.models.allocator.explore_loop import A_MAX, Loop, LoopResult, Week, World


def run_agent(model, alloc, world: World, budget: float, T: int = 52, seed: int = 0, planner: str = "robust",
              policy: str = "explore") -> LoopResult:
    """The loop with its weekly action (explore: the exploration schedule; learn: the largest step towards the
    learned plan) set by a trained SB3 policy (deterministic)."""
    env = LoopEnv(lambda rng: (alloc, world, budget, 1.0), T, planner, policy)
    obs, _ = env.reset(options={"loop_seed": seed})
    done = False
    while not done:
        a, _ = model.predict(obs, deterministic=True)
        obs, _, done, _, _ = env.step(a)
    return env.loop.result()


class LoopEnv(gym.Env):
    """The closed loop as a gymnasium env for SB3: one episode = one 52-week loop on a world drawn from `make()`
    (domain randomisation: the caller's pool spans both world families). Reward: the week's TRUE incremental revenue
    / the oracle's weekly mean. Planning, the posterior and the risk budget stay the product's, so no action can
    break the budget or the risk limit.

    policy "explore": the action is the exploration schedule in [0, 1] (how much of the risk budget this week's
    pulse may use). Observation (7): weeks left, budget left, the posterior sd of the levels (mean, max, over
    channels), season (sin, cos of the loop week), last amplitude / A_MAX.

    policy "learn": the action is the largest step in [0, 1] this week may take from the passive choice towards the
    learned plan (Loop._learn with cap = action: steps action x (1, ..., 1/16) inside the weekly guard; 0 is passive,
    1 the hand-designed learn policy). Observation (12): the 7 above (last step instead of the amplitude), then the
    week's own (Loop.prepare, made before the action): the share of channels that pass the posterior-predictive
    check (only those move), how far the target week is from the passive choice (L1 / the week's spend), the step
    the guard allows at action 1 (what learn would take), and the full step's expected gain over the rest of the
    horizon on the posterior means (/ the week's expected revenue) and the share of posterior-sample slots in which
    it gains (the kloop4 trade: a big step pays where the posterior is right, costs where it is confidently wrong)."""

    metadata = {"render_modes": []}

    def __init__(self, make: Callable[[np.random.Generator], tuple], T: int = 52, planner: str = "robust",
                 policy: str = "explore"):
        super().__init__()
        if policy not in ("explore", "learn"):
            raise ValueError(f"LoopEnv policy {policy!r}: explore or learn")
        self.make, self.T, self.planner, self.policy = make, int(T), planner, policy
        self.n_obs = 7 if policy == "explore" else 12
        self.observation_space = spaces.Box(-10.0, 10.0, (self.n_obs,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.loop: Loop | None = None

    def _obs(self) -> np.ndarray:
        lp, t = self.loop, self.loop.t
        sd = lp.post.rel_sd
        ang = 2 * np.pi * t / 52.0
        left = 1 - lp.X[:t].sum() / lp.B
        last = (lp.amp[t - 1] / (A_MAX if self.policy == "explore" else 1.0)) if t else 0.0
        o = [(self.T - t) / self.T, left, sd.mean(), sd.max(), np.sin(ang), np.cos(ang), last]
        if self.policy == "learn":
            o += self._week_obs(lp.prepare())
        return np.clip(np.asarray(o, np.float32), -10, 10)

    def _week_obs(self, w: Week) -> list[float]:
        """The learning week's 5 features (class docstring), from the state Loop.prepare made."""
        lp = self.loop
        ok = lp.post.fits() if lp.channels else np.zeros(w.x.shape[1], bool)
        if w.target is None:
            return [float(ok.mean()), 0.0, 0.0, 0.0, 0.0]
        dist = float(np.abs(w.target[0] - w.x[0]).sum() / max(w.x[0].sum(), 1e-12))
        _, a1 = lp._learn(w.x, w.ens, w.ens_z, w.cons, 1.0, w.target)
        xa = lp._stepped(w.x, w.target, 1.0, w.cons.spendable)
        gain = (w.ens.revenue(xa).sum() - w.ens.revenue(w.x).sum()) / max(abs(w.wk), 1e-12)
        slots = w.ens_z.per_world(xa).sum((1, 2)) - w.ens_z.per_world(w.x).sum((1, 2))
        return [float(ok.mean()), dist, a1, float(gain), float((slots > 0).mean())]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        alloc, world, budget, self.scale = self.make(self.np_random)
        loop_seed = options.get("loop_seed", int(self.np_random.integers(1 << 30)))  # noise and pulse signs
        self.loop = Loop(alloc, world, budget, self.T, planner=self.planner, policy=self.policy, seed=int(loop_seed))
        return self._obs(), {}

    def step(self, action):
        r = self.loop.step(float(np.asarray(action).reshape(-1)[0]))
        done = self.loop.done
        obs = self._obs() if not done else np.zeros(self.n_obs, np.float32)
        return obs, float(r / self.scale), done, False, {}
