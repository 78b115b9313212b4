"""Learning while spending: a year of weekly decisions in which each week's spend is also an experiment.

Why: a marketing-mix history made of habitual, season-following spend cannot say how revenue splits across channels
(docs/BENCHMARKS.md, issue K); re-planning each week on the revenue that comes in only learns along the directions
its own plans happen to move. Spend varied on purpose, uncorrelated with the season, identifies each channel.

The loop, week t = 0 .. T-1 (T = 52):
1. **Posterior update** (cheap, conjugate): for each planning draw k (shape: decay, half-saturation, slope from the
   fit), a Bayesian linear regression of the observed weekly revenue minus the fit's expected baseline on
   [1, baseline - its mean, the fit's residual in the same week last year, media_k,c(t) for every channel c], where media_k,c(t) is draw k's media revenue of
   channel c in loop week t given all spend so far (the history's carry-over included). The channel coefficients
   theta_k,c are draw k's level corrections; prior N(1, TAU^2) each (the levels can be off by half either way), the
   baseline terms broad. Noise sd: the fit's residual sd on the history net of last year's (fit_residuals).
2. **Plan**: the rest of the horizon — `robust` (the served objective: expected revenue less one sd of the gain over
   last year's mix, in the identification-sized trust region, models/allocator/robust.py) on the draws with their
   levels at posterior samples (so the penalty and the trust region see what the loop has and has not learned:
   at week 0 the levels' prior spread keeps the plan near history, measured channels are then let move),
   `robust-mean` (the same objective, levels at their posterior means: only the fit's own spread is penalised) or
   `greedy` (expected revenue, levels at their posterior means). Spend row t.
3. **Explore** (policies other than passive): a pulse — each channel's spend this week multiplied by
   exp(+/- a * s_c / max s), random signs, then rescaled to the week's total (budget-neutral), where s_c is channel
   c's posterior sd of theta (most where least is known); a channel the plan left at zero is pulsed up from zero at
   its historical weekly level. `thompson` instead moves the week towards the plan on one posterior sample.
   **Risk budget**: the largest amplitude a <= A_MAX * schedule * max_c (posterior sd / prior sd) (halving) whose week keeps >= (1 - RISK) of the
   passive choice's expected incremental revenue in that week AND loses at most RISK x that week's revenue over the
   rest of the horizon (carry-over included), both under the current posterior mean.
4. Observe the week's total revenue; next week.

`schedule(t)` is what a learned policy sets (training/allocator/loop_worlds.py trains SB3 PPO on `LoopEnv`); the default
explores at full risk budget while more than a quarter of the horizon is left, then exploits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from omnidecide.models.allocator.constraints import Constraints
from omnidecide.models.allocator.curves import Curves, Ensemble
from omnidecide.models.allocator.robust import RobustObjective, historical_plan, identification, trust_region
from omnidecide.models.allocator.solvers import best_plan, optimise

TAU = 0.5  # prior sd of a draw's per-channel level (fixed a priori, not tuned on either world family)
RISK = 0.05  # a week may lose at most 5% of the passive choice's expected incremental revenue
A_MAX = 0.5  # largest pulse: x e^{+/-0.5} (about +65% / -40%)
POLICIES = ("passive", "explore", "thompson")


class World(Protocol):
    """The truth behind a loop: `true.revenue(x)` (T, C) incremental revenue of a plan; `observe` the week's total."""

    true: object

    def observe(self, x: np.ndarray, t: int, rng: np.random.Generator) -> float: ...


@dataclass
class LevelPosterior:
    """Per-draw conjugate regression of loop revenue on the draws' channel media (module docstring, step 1)."""

    ens: Ensemble  # planning draws over the whole loop (week 0 = first loop week)
    base_hat: np.ndarray  # (T,) the fit's expected revenue without media (baseline)
    sigma: float
    last: np.ndarray  # (T,) the fit's residual in the same weeks last year (fit_residuals)
    repeat: float  # prior mean of how much of it repeats
    x_ref: np.ndarray  # (T, C) last year's mix over the loop: where the prior's scale is read
    m: np.ndarray = field(init=False)  # (K, C) posterior mean of theta
    V: np.ndarray = field(init=False)  # (K, C, C) posterior covariance of theta

    def __post_init__(self) -> None:
        K, C = self.ens.K, self.ens.C
        # a draw that says a channel returns almost nothing cannot be corrected by a relative level of +/- TAU: each
        # level's prior sd is TAU in revenue units of the draw's average channel (at last year's mix), at least
        pred = self.ens.per_world(self.x_ref).sum(1)  # (K, C)
        ref = pred.mean(1, keepdims=True)
        self.tau = TAU * np.clip(ref / np.maximum(pred, 1e-9), 1.0, 20.0)
        self.m = np.ones((K, C))
        self.V = np.stack([np.diag(tk ** 2) for tk in self.tau])
        self.scale = float(np.mean(self.base_hat))

    def update(self, X: np.ndarray, y: np.ndarray) -> None:
        """X: (t, C) spend so far, y: (t,) observed total revenue."""
        t = len(y)
        if t == 0:
            return
        K, C, T = self.ens.K, self.ens.C, self.ens.T
        Xp = np.zeros((T, C))
        Xp[:t] = X
        b = self.base_hat[:t]
        r = (y - b) / self.sigma
        # prior: intercept sd 10% of revenue, baseline slope sd 0.3, last year's residual's repeat sd 0.5,
        # theta ~ N(1, TAU^2)
        m0 = np.concatenate([[0.0, 0.0, self.repeat], np.ones(C)])
        fixed = np.column_stack([np.full(t, self.scale), b - self.base_hat.mean(), self.last[:t]])
        for k, w in enumerate(self.ens.worlds):
            p0 = np.concatenate([[1 / 0.1 ** 2, 1 / 0.3 ** 2, 1 / 0.5 ** 2], 1 / self.tau[k] ** 2])
            G = np.column_stack([fixed, w.media(Xp)[:t]]) / self.sigma
            P = np.diag(p0) + G.T @ G
            cov = np.linalg.inv(P)
            mean = cov @ (p0 * m0 + G.T @ r)
            self.m[k], self.V[k] = mean[3:], cov[3:, 3:]

    @property
    def rel_sd(self) -> np.ndarray:
        """(C,) each channel's posterior sd of its level relative to its prior sd, averaged over the draws (1 = nothing
        learned yet)."""
        return np.sqrt((np.einsum("kcc->kc", self.V) / self.tau ** 2).mean(0))

    def planning(self, ens: Ensemble, z: np.ndarray | None = None) -> Ensemble:
        """`ens` (the same draws, over the rest of the horizon) with each draw's levels at their posterior mean, or,
        with z (K, C) standard normals, at posterior samples m_k + sd_k * z_k (the same z every week: the ensemble
        narrows as the levels are learned instead of jittering)."""
        if z is None:
            return Ensemble([w.scaled(np.maximum(mk, 0.0)) for w, mk in zip(ens.worlds, self.m)])
        sd = np.sqrt(np.einsum("kcc->kc", self.V))
        return Ensemble([w.scaled(np.maximum(mk + sk * zk, 0.0)) for w, mk, sk, zk in zip(ens.worlds, self.m, sd, z)])

    def sample(self, ens: Ensemble, rng: np.random.Generator) -> Curves:
        """One posterior sample: a draw at random, its levels drawn from their posterior."""
        k = int(rng.integers(self.ens.K))
        th = rng.multivariate_normal(self.m[k], self.V[k])
        return ens.worlds[k].scaled(np.maximum(th, 0.0))


@dataclass
class LoopResult:
    spend: np.ndarray  # (T, C)
    observed: np.ndarray  # (T,) total revenue seen
    amplitude: np.ndarray  # (T,) pulse amplitude used (thompson: the step towards the sample)
    expected: np.ndarray  # (T,) expected incremental revenue of the week as spent (posterior mean at the time)
    expected_passive: np.ndarray  # (T,) same for the passive choice in that state
    rel_sd: np.ndarray  # (T, C) posterior sd of the levels before each week's decision
    planned: np.ndarray  # (T,) the passive choice's total spend in the week (pulses keep it)


def default_schedule(t: int, T: int) -> float:
    """Explore at the full risk budget while more than a quarter of the horizon is left (fixed a priori)."""
    return 1.0 if T - t > T // 4 else 0.0


class Loop:
    """One closed loop on one fitted allocator (artifact.Allocator) and one world, played a week at a time, so an
    SB3 env (LoopEnv) and the benchmark drive the same code."""

    def __init__(self, alloc, world: World, budget: float, T: int = 52, *, planner: str = "robust",
                 policy: str = "explore", risk: float = RISK, seed: int = 0, sigma: float | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}: one of {', '.join(POLICIES)}")
        self.alloc, self.world, self.B, self.T = alloc, world, float(budget), int(T)
        self.planner, self.policy, self.risk = planner, policy, float(risk)
        self.rng = np.random.default_rng(seed)
        self.noise_rng = np.random.default_rng([seed, 1])
        self.z = np.random.default_rng([seed, 2]).standard_normal((len(alloc.worlds or [0]), len(alloc.channels)))
        h = alloc.history
        C = len(h.channels)
        n = len(h.dates)
        base = alloc.params.baseline_at(h.future_dates(T), np.arange(n, n + T), h.step_days)
        last, repeat, sd = fit_residuals(alloc, T)
        x_ref = historical_plan(h.spend, T, 0, self.B)
        self.post = LevelPosterior(alloc.ensemble(T), base, sd if sigma is None else sigma, last, repeat, x_ref)
        self.hist_level = h.spend[-52:].mean(0)
        self.t, self.X, self.y = 0, np.zeros((T, C)), np.zeros(T)
        self.amp, self.exp_rev, self.exp_pass, self.planned = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
        self.sd = np.zeros((T, C))
        self.prev: np.ndarray | None = None

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def _plan(self, ens: Ensemble, cons: Constraints) -> np.ndarray:
        """The passive plan for the rest of the horizon, warm-started from last week's."""
        starts = [] if self.prev is None else [self.prev]
        if self.planner == "greedy":
            return best_plan(ens, cons, starts)
        if self.planner not in ("robust", "robust-mean"):
            raise ValueError(f"planner {self.planner!r}: robust, robust-mean or greedy")
        x_hist = historical_plan(self.alloc.history.spend, ens.T, self.t, cons.spendable)
        obj = RobustObjective(ens, x_hist)
        return best_plan(obj, trust_region(cons, x_hist, identification(ens, x_hist)), starts)

    def pulse(self, x: np.ndarray, a: float, signs: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Week row x pulsed by amplitude a (module docstring, step 3): budget-neutral within the week."""
        u = a * sd / max(sd.max(), 1e-12) * signs
        xe = x * np.exp(u) + np.where((x <= 0) & (signs > 0), u * self.hist_level, 0.0)
        return xe * (x.sum() / xe.sum()) if xe.sum() > 0 else x

    def step(self, schedule: float | None = None) -> float:
        """Decide, spend and observe week t; returns the week's TRUE incremental revenue."""
        t, T = self.t, self.T
        self.post.update(self.X[:t], self.y[:t])
        self.sd[t] = self.post.rel_sd
        rest = self.alloc.ensemble(T - t, start=t, actual_spend=self.X[:t] if t else None)
        ens = self.post.planning(rest)
        cons = Constraints(budget=self.B, reserve=0.0, spent=float(self.X[:t].sum()))
        x = self._plan(self.post.planning(rest, self.z) if self.planner == "robust" else ens, cons)
        self.prev = x[1:] * (cons.spendable - x[0].sum()) / max(x[1:].sum(), 1e-9) if T - t > 1 else None
        base_rev = ens.revenue(x)
        wk, tot = base_rev[0].sum(), base_rev.sum()
        s = default_schedule(t, T) if schedule is None else float(np.clip(schedule, 0.0, 1.0))
        choice, a_used = x[0], 0.0
        if self.policy != "passive" and s > 0 and T - t > 1:
            if self.policy == "explore":
                signs = self.rng.choice([-1.0, 1.0], len(x[0]))
                cand = lambda a: self.pulse(x[0], a, signs, self.sd[t])  # noqa: E731
                a0 = A_MAX * s * float(self.sd[t].max())  # less as the levels are learned (rel_sd 1 = nothing yet)
            else:  # thompson: towards the plan on one posterior sample (the rest of the horizon, same budget)
                xs = optimise(self.post.sample(rest, self.rng), cons, x)[0]
                xs = xs * (x[0].sum() / xs.sum()) if xs.sum() > 0 else x[0]
                cand = lambda a: (1 - a) * x[0] + a * xs  # noqa: E731
                a0 = s
            for a in a0 * 0.5 ** np.arange(5):
                xa = x.copy()
                xa[0] = cand(a)
                r = ens.revenue(xa)
                if r[0].sum() >= (1 - self.risk) * wk and r.sum() >= tot - self.risk * wk:
                    choice, a_used, wk_c = xa[0], float(a), r[0].sum()
                    break
        self.X[t] = choice
        self.amp[t], self.planned[t] = a_used, x[0].sum()
        self.exp_pass[t] = wk
        self.exp_rev[t] = wk if a_used == 0 else wk_c
        self.y[t] = self.world.observe(self.X, t, self.noise_rng)
        self.t += 1
        Xw = self.X.copy()
        Xw[t + 1:] = 0.0
        return float(self.world.true.revenue(Xw)[t].sum())

    def result(self) -> LoopResult:
        return LoopResult(self.X.copy(), self.y.copy(), self.amp.copy(), self.exp_rev.copy(), self.exp_pass.copy(),
                          self.sd.copy(), self.planned.copy())


def fit_residuals(alloc, T: int) -> tuple[np.ndarray, float, float]:
    """What the fit misses, carried into the loop: last year's residual (history revenue minus the fit) in the same
    weeks, (T,); how much of it repeats a year later (c, least squares over the history); and the noise sd of the
    loop's regression, the sd of what is left of the history's residuals after that repeat. A misspecified baseline
    (a season the model's calendar does not know) leaves the same residual every year; a well specified one leaves
    noise, c near 0 and the plain residual sd."""
    h, p = alloc.history, alloc.params
    n = len(h.dates)
    base = p.baseline_at(h.dates, np.arange(n), h.step_days)
    if len(p.gamma):
        base = base + h.controls @ p.gamma
    e = h.revenue - base - p.media(h.spend, h.peaks.max(1)).sum(1)
    if n < 104:  # not two years: nothing to say the residual repeats
        return np.zeros(T), 0.0, float(np.std(e))
    prev, now = e[:n - 52], e[52:]
    c = float(np.clip(prev @ now / max(prev @ prev, 1e-12), 0.0, 1.0))
    last = np.array([e[n - 52 + (j % 52)] for j in range(T)])
    return last, c, float(np.std(now - c * prev))


def run_loop(alloc, world: World, budget: float, T: int = 52, schedule: Callable[[int, int], float] | None = None,
             **kw) -> LoopResult:
    loop = Loop(alloc, world, budget, T, **kw)
    while not loop.done:
        loop.step(None if schedule is None else schedule(loop.t, T))
    return loop.result()


def run_agent(model, alloc, world: World, budget: float, T: int = 52, seed: int = 0, planner: str = "robust") -> LoopResult:
    """The loop with its exploration schedule set each week by a trained SB3 policy (deterministic)."""
    env = LoopEnv(lambda rng: (alloc, world, budget, 1.0), T, planner)
    obs, _ = env.reset(options={"loop_seed": seed})
    done = False
    while not done:
        a, _ = model.predict(obs, deterministic=True)
        obs, _, done, _, _ = env.step(a)
    return env.loop.result()


class LoopEnv(gym.Env):
    """The closed loop as a gymnasium env for SB3: one episode = one 52-week loop on a world drawn from `make()`
    (domain randomisation: the caller's pool spans both world families). Action: the exploration schedule in [0, 1]
    (how much of the risk budget this week's pulse may use). Observation: weeks left, budget left, the posterior sd
    of the levels (mean, max, over channels), season (sin, cos of the loop week), last amplitude. Reward: the week's
    TRUE incremental revenue / the oracle's weekly mean. The exploring decision is what is learned; planning and
    the risk budget stay the product's, so no action can break the budget or the risk limit."""

    metadata = {"render_modes": []}

    def __init__(self, make: Callable[[np.random.Generator], tuple], T: int = 52, planner: str = "robust"):
        super().__init__()
        self.make, self.T, self.planner = make, int(T), planner
        self.observation_space = spaces.Box(-10.0, 10.0, (7,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.loop: Loop | None = None

    def _obs(self) -> np.ndarray:
        lp, t = self.loop, self.loop.t
        sd = lp.post.rel_sd
        ang = 2 * np.pi * t / 52.0
        left = 1 - lp.X[:t].sum() / lp.B
        o = [(self.T - t) / self.T, left, sd.mean(), sd.max(), np.sin(ang), np.cos(ang),
             lp.amp[t - 1] / A_MAX if t else 0.0]
        return np.clip(np.asarray(o, np.float32), -10, 10)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        alloc, world, budget, self.scale = self.make(self.np_random)
        loop_seed = options.get("loop_seed", int(self.np_random.integers(1 << 30)))  # noise and pulse signs
        self.loop = Loop(alloc, world, budget, self.T, planner=self.planner, policy="explore", seed=int(loop_seed))
        return self._obs(), {}

    def step(self, action):
        r = self.loop.step(float(np.asarray(action).reshape(-1)[0]))
        done = self.loop.done
        obs = self._obs() if not done else np.zeros(7, np.float32)
        return obs, float(r / self.scale), done, False, {}
