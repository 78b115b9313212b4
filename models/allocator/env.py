"""The budget environment: one episode = one planning horizon of T periods, played one period at a time.

The agent is a *residual* policy on top of the planner: each period the planner's full-horizon plan (rescaled to
the budget still left) is the base, and the action corrects it — `a[c]` multiplies channel c's spend by
exp(alpha * a[c]) (and, when positive, adds boost * a[c] of an even per-channel split, so a channel the base left
at zero can be funded), `a[C]` scales the whole period (spend now vs later), `a[C+1]` (when positive) leans every
channel towards its recent realised/expected ROI ratio (ratio ** a[C+1]). a = 0 reproduces the base exactly. The corrected spend is projected onto the constraints (budget left, per-channel max, minimums still
needed, reserve held back), so every episode respects them exactly whatever the policy does.

Domain randomisation: each episode's *world* (the curves that produce realised revenue) is drawn from the
fit's bootstrap samples, so the agent learns corrections that pay off across what the fit might have got
wrong, using the realised ROI of the last period (realised / expected per channel) as its signal.

Observation (all scaled to O(1)): periods left / T, budget left / spendable, adstock / half-saturation per
channel, season (sin, cos of week of year, peak now, peak next), realised/expected ROI per channel in the last
period (an average over recent periods of realised/expected incremental revenue, measured with 10% noise as
attribution would), this period's base spend relative to the per-period average.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from omnidecide.models.allocator.constraints import Constraints, project_period
from omnidecide.models.allocator.curves import Curves
from omnidecide.models.allocator.solvers import best_plan


class AllocatorEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, planning: Curves, worlds: list[Curves], cons: Constraints, *, woy: np.ndarray,
                 peak: np.ndarray, alpha: float = 0.5, budget_scales: tuple[float, ...] = (1.0,),
                 base_plans: dict | None = None, floor_channels: np.ndarray | None = None, base_source=None,
                 boost: float = 0.5, ratio_noise: float = 0.1):
        super().__init__()
        self.planning, self.worlds, self.cons = planning, list(worlds), cons
        self.T, self.C = planning.T, planning.C
        self.woy, self.peak = np.asarray(woy, float), np.asarray(peak, float)
        self.alpha = float(alpha)
        self.budget_scales = tuple(budget_scales)
        self.base_plans = dict(base_plans or {})
        self.base_source = base_source if base_source is not None else planning  # what the base plan optimises
        self.boost = float(boost)
        self.ratio_noise = float(ratio_noise)
        lo, hi, fl = cons.arrays(self.C)
        self.floor = np.isfinite(fl) if floor_channels is None else np.asarray(floor_channels, bool)
        n_obs = 2 + self.C + 4 + self.C + 1
        self.observation_space = spaces.Box(-10.0, 10.0, (n_obs,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.C + 2,), dtype=np.float32)
        self.world = self.worlds[0]
        self._setup(1.0)

    # --- episode state -----------------------------------------------------------------------------
    def base_plan(self, scale: float) -> np.ndarray:
        key = round(scale, 6)
        if key not in self.base_plans:
            cons = Constraints(**{**self.cons.__dict__, "budget": self.cons.budget * scale})
            self.base_plans[key] = best_plan(self.base_source, cons)
        return self.base_plans[key]

    def _setup(self, scale: float) -> None:
        self.scale = scale
        self.ep_cons = Constraints(**{**self.cons.__dict__, "budget": self.cons.budget * scale})
        self.base = self.base_plan(scale)
        self.S = self.ep_cons.spendable
        lo, hi, _ = self.ep_cons.arrays(self.C)
        self.t, self.left = 0, self.S
        self.lo_left, self.hi_left = lo.copy(), hi.copy()
        self.w_stock = self.world.init.astype(float).copy()  # world adstock with the plan
        self.w_zero = self.world.init.astype(float).copy()  # world adstock with no spend (counterfactual)
        self.p_stock = self.planning.init.astype(float).copy()
        self.ratio = np.ones(self.C)
        self.spend = np.zeros((self.T, self.C))
        self.realised = np.zeros((self.T, self.C))
        exp_total = self.planning.revenue(self.base).sum()
        self.reward_scale = max(exp_total / self.T, 1.0)

    def _obs(self) -> np.ndarray:
        t = min(self.t, self.T - 1)
        ang = 2 * np.pi * self.woy[t] / 52.0
        nxt = self.peak[t + 1] if t + 1 < self.T else 0.0
        rem = self.base[self.t:].sum() if self.t < self.T else 0.0
        base_rel = self.base[t].sum() / max(self.S / self.T, 1e-9) if rem > 0 else 0.0
        o = np.concatenate([[(self.T - self.t) / self.T, self.left / max(self.S, 1e-9)],
                            np.clip(self.p_stock / self.planning.half, 0, 5),
                            [np.sin(ang), np.cos(ang), self.peak[t], nxt],
                            np.clip(self.ratio, 0, 3) - 1.0, [min(base_rel, 5.0)]])
        return o.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "world" in options:
            self.world = options["world"]
        else:
            self.world = self.worlds[int(self.np_random.integers(len(self.worlds)))]
        scale = options.get("budget_scale", self.budget_scales[int(self.np_random.integers(len(self.budget_scales)))])
        self._setup(float(scale))
        if "ratio" in options:  # a realised/expected ROI already known at the start (re-planning with revenue)
            self.ratio = np.asarray(options["ratio"], float).copy()
        return self._obs(), {}

    def spend_for(self, action: np.ndarray) -> np.ndarray:
        """The corrected, projected spend of the current period."""
        a = np.clip(np.asarray(action, float), -1, 1)
        rem = self.base[self.t:].sum()
        base_t = self.base[self.t] * (self.left / rem if rem > 0 else 0.0)
        mult = np.exp(self.alpha * a[:self.C]) * np.exp(self.alpha * a[self.C])
        # trust in what was realised: lean each channel towards its realised/expected ROI ratio (0 = not at all)
        mult = mult * np.clip(self.ratio, 1 / 3, 3) ** max(a[self.C + 1], 0.0)
        mult = np.where(self.floor, np.minimum(mult, 1.0), mult)  # ROI-floored channels: only less
        last = self.t == self.T - 1
        # positive corrections may also fund a channel the base left at zero (a share of an even split)
        even = self.left / ((self.T - self.t) * self.C)
        add = np.where(self.floor, 0.0, self.boost * np.maximum(a[:self.C], 0.0) * even)
        x = base_t * mult + add
        if last and x.sum() > 0 and not self.floor.any():  # nothing to keep for later: spend what is left
            x = x * (self.left / x.sum())
        return project_period(x, self.left, self.hi_left, self.lo_left, last)

    def _period_revenue(self, curves: Curves, stock: np.ndarray, zero: np.ndarray, x: np.ndarray):
        new = x + curves.decay * stock
        z = curves.decay * zero
        m = curves.mult[self.t]
        rev = curves.beta * m * (curves.h(new) - curves.h(z))
        return rev, new, z

    def step(self, action):
        x = self.spend_for(action)
        w_rev, self.w_stock, self.w_zero = self._period_revenue(self.world, self.w_stock, self.w_zero, x)
        p_zero = self.planning.decay ** (self.t + 1) * self.planning.init
        p_new = x + self.planning.decay * self.p_stock
        p_rev = self.planning.beta * self.planning.mult[self.t] * (self.planning.h(p_new) - self.planning.h(p_zero))
        self.p_stock = p_new
        # realised/expected ROI per channel, as attribution would measure it (noisy), averaged over recent periods
        seen = w_rev * np.exp(self.np_random.normal(0, self.ratio_noise, self.C)) if self.ratio_noise else w_rev
        now = np.where(p_rev > 1e-6 * self.reward_scale, seen / np.maximum(p_rev, 1e-12), self.ratio)
        self.ratio = np.where(x > 0, 0.5 * self.ratio + 0.5 * now, self.ratio) if self.t else now
        self.spend[self.t], self.realised[self.t] = x, w_rev
        self.left = max(self.left - x.sum(), 0.0)
        self.lo_left = np.maximum(self.lo_left - x, 0.0)
        self.hi_left = np.maximum(self.hi_left - x, 0.0)
        self.t += 1
        done = self.t >= self.T
        return self._obs(), float(w_rev.sum() / self.reward_scale), done, False, {"spend": x, "revenue": w_rev}


def rollout(env: AllocatorEnv, act, *, world: Curves | None = None, budget_scale: float = 1.0,
            seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Play one episode with `act(obs) -> action`; returns (spend (T, C), realised incremental revenue (T, C))."""
    opts = {"budget_scale": budget_scale}
    if world is not None:
        opts["world"] = world
    obs, _ = env.reset(seed=seed, options=opts)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(act(obs))
    return env.spend.copy(), env.realised.copy()
