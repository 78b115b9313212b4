"""Learning while spending: a year of weekly decisions in which each week's spend is also an experiment.

Why: a marketing-mix history made of habitual, season-following spend cannot say how revenue splits across channels
(docs/BENCHMARKS.md, issue K); re-planning each week on the revenue that comes in only learns along the directions
its own plans happen to move. Spend varied on purpose, uncorrelated with the season, identifies each channel.

The loop, week t = 0 .. T-1 (T = 52):
1. **Posterior update** (conjugate: no refit of the nonlinear model): for each planning draw k (shape: decay,
   half-saturation, slope from the fit), a Bayesian linear regression of the observed weekly revenue minus the fit's
   baseline on [1, baseline - its mean, the fit's residual a year earlier, media_k,c(t) per channel c] (media_k,c(t):
   draw k's media revenue of channel c in loop week t given all spend so far, the history's carry-over included).
   theta_k,c are draw k's levels on its channel columns (the draw's curve shapes, each sized to return at least the
   draw's average channel at last year's mix, so a draw that says a channel returns nothing can still learn that it
   does), prior N(the draw's own level, TAU^2); noise sd from the history (fit_residuals). Each draw is also
   weighed by its evidence (the regression's marginal likelihood): the loop learns which shapes fit.
2. **Plan** the rest of the horizon on the draws resampled by weight: `robust` (the served objective, expected
   revenue less one sd of the gain over last year's mix in the identification-sized trust region, robust.py) with
   the levels at posterior samples (a fixed normal deviate per slot, so the ensemble narrows as levels are learned),
   `robust-mean` (levels at their posterior means) or `greedy` (expected revenue at the means). Spend row t.
3. **Explore** (`explore`): one budget-neutral pulse, information-directed. Candidates: one channel's week spend
   times e^{+/-a} (a in AMPS; a channel at zero raised from its historical weekly level), the others rescaled to
   the week's total. For each, the largest a inside the risk budget; its *information* = the expected drop in the
   posterior variance of the channel revenues over the rest of the horizon (sum over channels and draws, by weight,
   of level variance x (revenue per unit of level at the plan or last year's mix, the larger)^2) once this week and
   the next INFO_WEEKS - 1 (its carry-over) are seen, against the plan's own week; its *cost* = the drop in expected
   incremental revenue over the rest of the horizon. The pulse with the most information per unit of cost is
   spent. Both are second order in the pulse near the plan, so the budget, not the size, limits what a week teaches.
   `thompson` instead moves the week towards the plan on one posterior sample.
   **Risk budget** (the issue's "no week below 95% of passive's expected revenue", read on *incremental* revenue,
   the stricter reading: a week's total revenue, baseline included, is several times its media revenue): the
   week keeps >= (1 - RISK x schedule) of the passive choice's expected incremental revenue in that week AND loses
   at most that much over the rest of the horizon (carry-over included), both under the current posterior.
4. Observe the week's total revenue; next week.

`schedule(t)` in [0, 1], the share of the risk budget a week may use, is what a learned policy sets
(training/allocator/loop_worlds.py trains SB3 PPO on `LoopEnv`); the default explores at the full risk budget while
more than a quarter of the horizon is left, then exploits.
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
AMPS = (0.7, 0.5, 0.35, 0.25, 0.15, 0.1)  # pulse sizes tried, largest first: one channel x e^{+/-a} (0.7: double or halve)
A_MAX = AMPS[0]
EVIDENCE = True  # weigh the draws (shapes) by their evidence in the loop's revenue
INFO_WEEKS = 4  # weeks of a pulse's carry-over counted in what it teaches
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
        # columns: each draw's curve shapes sized to return at least its average channel at last year's mix (ref), so
        # a channel the draw says returns nothing (beta = 0) has a column too; prior sd TAU x ref, mean the draw's own
        unit = Ensemble([Curves(w.decay, w.half, w.slope, np.ones(C), w.mult, w.init) for w in self.ens.worlds])
        per_unit = unit.per_world(self.x_ref).sum(1)  # (K, C) revenue at last year's mix with effect size 1
        beta = np.array([w.beta for w in self.ens.worlds], float)
        pred = beta * per_unit
        ref = np.maximum(pred.mean(1, keepdims=True), 1e-12)
        small = (pred < ref) & (per_unit > 0)  # (a channel last year never spent keeps its own size)
        self.beta = np.where(small, ref / np.where(small, per_unit, 1.0), beta)  # (K, C) the columns' sizes
        self.ens = self.columns(self.ens)
        self.tau, m0 = np.full((K, C), TAU), beta / self.beta
        self.m = m0.copy()
        self.V = np.stack([np.diag(tk ** 2) for tk in self.tau])
        self.scale = float(np.mean(self.base_hat))
        # prior: intercept sd 10% of revenue, baseline slope sd 0.3, last year's residual's repeat sd 0.5,
        # theta ~ N(m0, TAU^2); P: the full posterior precision per draw (baseline terms first), for info_gain
        self.m0 = np.column_stack([np.tile([0.0, 0.0, self.repeat], (K, 1)), m0])
        self.p0 = np.column_stack([np.tile([1 / 0.1 ** 2, 1 / 0.3 ** 2, 1 / 0.5 ** 2], (K, 1)), 1 / self.tau ** 2])
        self.P = np.stack([np.diag(p) for p in self.p0])
        self.w = np.full(K, 1.0 / K)  # posterior weight of each draw (its shape): prior uniform, then its evidence

    def columns(self, ens: Ensemble) -> Ensemble:
        """`ens` (the same draws, any horizon) with the posterior's column sizes: the curves the levels multiply."""
        return Ensemble([Curves(w.decay, w.half, w.slope, b, w.mult, w.init) for w, b in zip(ens.worlds, self.beta)])

    def rows(self, X: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """(K, t1 - t0, 3 + C) the regression's design rows of loop weeks t0..t1-1 if spend were X (T, C), scaled by
        1/sigma: what those weeks would teach each draw."""
        K, C = self.ens.K, self.ens.C
        fixed = np.column_stack([np.full(t1 - t0, self.scale), self.base_hat[t0:t1] - self.base_hat.mean(),
                                 self.last[t0:t1]])
        media = K * self.ens.stack.media(np.tile(np.asarray(X, float), (1, K)))[t0:t1].reshape(t1 - t0, K, C)
        return np.concatenate([np.broadcast_to(fixed, (K, t1 - t0, 3)), media.transpose(1, 0, 2)], 2) / self.sigma

    def level_var(self, G: np.ndarray | None = None) -> np.ndarray:
        """(K, C) posterior variance of each draw's levels now, or after also observing design rows G (K, n, 3 + C)."""
        P = self.P if G is None else self.P + np.einsum("kni,knj->kij", G, G)
        return np.einsum("kcc->kc", np.linalg.inv(P))[:, 3:]

    def update(self, X: np.ndarray, y: np.ndarray) -> None:
        """X: (t, C) spend so far, y: (t,) observed total revenue."""
        t = len(y)
        if t == 0:
            return
        T = self.ens.T
        Xp = np.zeros((T, self.ens.C))
        Xp[:t] = X
        r = (y - self.base_hat[:t]) / self.sigma
        G = self.rows(Xp, 0, t)
        logml = np.zeros(self.ens.K)
        for k in range(self.ens.K):
            P = np.diag(self.p0[k]) + G[k].T @ G[k]
            cov = np.linalg.inv(P)
            mean = cov @ (self.p0[k] * self.m0[k] + G[k].T @ r)
            self.m[k], self.V[k], self.P[k] = mean[3:], cov[3:, 3:], P
            # log evidence of draw k (marginal likelihood of the loop's revenue): det(I + G P0^-1 G') = det P / det P0
            e = r - G[k] @ self.m0[k]
            g = G[k].T @ e
            logml[k] = -0.5 * (np.linalg.slogdet(P)[1] - np.log(self.p0[k]).sum() + e @ e - g @ cov @ g)
        if EVIDENCE:
            self.w = np.exp(logml - logml.max())
            self.w /= self.w.sum()

    def slots(self) -> np.ndarray:
        """(K,) the draw behind each planning slot: systematic resampling by weight (the same offsets every week, so
        the ensemble shifts smoothly as the weights move); uniform weights keep every draw once."""
        K = len(self.w)
        return np.minimum(np.searchsorted(np.cumsum(self.w), (np.arange(K) + 0.5) / K), K - 1)

    @property
    def rel_sd(self) -> np.ndarray:
        """(C,) each channel's posterior sd of its level relative to its prior sd, averaged over the draws (1 = nothing
        learned yet)."""
        return np.sqrt((np.einsum("kcc->kc", self.V) / self.tau ** 2).mean(0))

    def planning(self, ens: Ensemble, z: np.ndarray | None = None) -> Ensemble:
        """`ens` (the same draws, over the rest of the horizon) with each draw's levels at their posterior mean, or,
        with z (K, C) standard normals, at posterior samples m_k + sd_k * z_k (the same z every week: the ensemble
        narrows as the levels are learned instead of jittering)."""
        idx = self.slots()
        if z is None:
            return Ensemble([ens.worlds[k].scaled(np.maximum(self.m[k], 0.0)) for k in idx])
        sd = np.sqrt(np.einsum("kcc->kc", self.V))
        return Ensemble([ens.worlds[k].scaled(np.maximum(self.m[k] + sd[k] * zj, 0.0)) for k, zj in zip(idx, z)])

    def sample(self, ens: Ensemble, rng: np.random.Generator) -> Curves:
        """One posterior sample: a draw at random, its levels drawn from their posterior."""
        k = int(rng.choice(self.ens.K, p=self.w))
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

    def pulse(self, x: np.ndarray, c: int, a: float) -> np.ndarray:
        """Week row x with channel c's spend times e^a (a channel at zero raised to a x its historical weekly level
        when a > 0), the other channels rescaled so the week's total is unchanged (budget-neutral)."""
        S, xe = float(x.sum()), np.array(x, float)
        others = S - x[c]
        if S <= 0 or others <= 0:
            return xe
        xe[c] = min(x[c] * np.exp(a) if x[c] > 0 else max(a, 0.0) * self.hist_level[c], S)
        rest = np.arange(len(x)) != c
        xe[rest] *= (S - xe[c]) / others
        return xe

    def _explore(self, x: np.ndarray, rest: Ensemble, ens: Ensemble, risk: float) -> tuple[np.ndarray, float]:
        """The information-directed pulse of this week (module docstring, step 3): (week row, |amplitude|)."""
        t, T, C = self.t, self.T, len(x[0])
        H = min(T - t, INFO_WEEKS)
        r0 = ens.revenue(x)
        wk, tot = r0[0].sum(), r0.sum()
        # (K, C): channel revenue over the rest per unit of level, squared, times the draw's posterior weight; read
        # at the plan or last year's mix, whichever spends more (a channel the plan leaves out is still worth knowing)
        wts = rest.per_world(np.maximum(x, self.post.x_ref[t:t + len(x)])).sum(1) ** 2 * self.post.w[:, None]
        Xd = self.X.copy()
        Xd[t:] = x
        v0 = float((wts * self.post.level_var(self.post.rows(Xd, t, t + H))).sum())
        best, best_score = (x[0], 0.0), 0.0
        for c in range(C):
            for sign in (1.0, -1.0):
                for a in AMPS:  # the largest amplitude inside the risk budget (info and cost both ~ quadratic)
                    xc = self.pulse(x[0], c, sign * a)
                    if np.allclose(xc, x[0]):
                        break
                    xa = x.copy()
                    xa[0] = xc
                    r = ens.revenue(xa)
                    if r[0].sum() < (1 - risk) * wk or r.sum() < tot - risk * wk:
                        continue
                    Xd[t] = xc
                    gain = v0 - float((wts * self.post.level_var(self.post.rows(Xd, t, t + H))).sum())
                    score = gain / max(tot - r.sum(), 0.1 * risk * wk, 1e-12)
                    if score > best_score:
                        best, best_score = (xc, a), score
                    break
        return best

    def step(self, schedule: float | None = None) -> float:
        """Decide, spend and observe week t; returns the week's TRUE incremental revenue."""
        t, T = self.t, self.T
        self.post.update(self.X[:t], self.y[:t])
        self.sd[t] = self.post.rel_sd
        rest = self.post.columns(self.alloc.ensemble(T - t, start=t, actual_spend=self.X[:t] if t else None))
        ens = self.post.planning(rest)
        cons = Constraints(budget=self.B, reserve=0.0, spent=float(self.X[:t].sum()))
        x = self._plan(self.post.planning(rest, self.z) if self.planner == "robust" else ens, cons)
        self.prev = x[1:] * (cons.spendable - x[0].sum()) / max(x[1:].sum(), 1e-9) if T - t > 1 else None
        base_rev = ens.revenue(x)
        wk, tot = base_rev[0].sum(), base_rev.sum()
        s = default_schedule(t, T) if schedule is None else float(np.clip(schedule, 0.0, 1.0))
        choice, a_used = x[0], 0.0
        if self.policy == "explore" and s > 0 and T - t > 1:
            choice, a_used = self._explore(x, rest, ens, self.risk * s)
        elif self.policy == "thompson" and s > 0 and T - t > 1:
            # towards the plan on one posterior sample (the rest of the horizon, same budget), the largest step
            # inside the risk budget
            xs = optimise(self.post.sample(rest, self.rng), cons, x)[0]
            xs = xs * (x[0].sum() / xs.sum()) if xs.sum() > 0 else x[0]
            for a in s * 0.5 ** np.arange(5):
                xa = x.copy()
                xa[0] = (1 - a) * x[0] + a * xs
                r = ens.revenue(xa)
                if r[0].sum() >= (1 - self.risk) * wk and r.sum() >= tot - self.risk * wk:
                    choice, a_used = xa[0], float(a)
                    break
        self.X[t] = choice
        self.amp[t], self.planned[t] = a_used, x[0].sum()
        self.exp_pass[t] = wk
        xa = x.copy()
        xa[0] = choice
        self.exp_rev[t] = wk if a_used == 0 else ens.revenue(xa)[0].sum()
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
