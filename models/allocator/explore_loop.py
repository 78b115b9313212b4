"""Learning while spending: a year of weekly decisions in which each week's spend is also an experiment.

Why: a marketing-mix history made of habitual, season-following spend cannot say how revenue splits across channels
(docs/BENCHMARKS.md, issue K); re-planning each week on the revenue that comes in only learns along the directions
its own plans happen to move. Spend varied on purpose, uncorrelated with the season, identifies each channel.

The loop, week t = 0 .. T-1 (T = 52):
1. **Posterior update** (conjugate, no refit of the nonlinear model): each planning draw's channel levels and each
   draw's weight by its evidence (the loop learns which shapes fit, not only the levels). From each channel's
   MEASURED weekly revenue where the world gives it (loop_posterior.ChannelPosterior: what the product re-plans on,
   `revenue_<channel>` in --actuals; each channel's (form, draw) pairs weighed by its own series, the forms adding
   a delayed peak, the history's season index multiplying media and other half-saturations), else from the total
   revenue alone (LevelPosterior: a regression on the
   draws' channel media, which cannot separate channels whose spend moves together).
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
   `thompson` instead moves the week towards the plan on one posterior sample; `learn` (_learn) towards the
   expected-revenue plan on the channels whose measured series the posterior explains, within the spend levels
   measured so far (times e^{+/-TRUST}), at the full risk budget every week, its week judged on all but the least
   favourable MISS of the planning slots (the lower end of an 80% interval) instead of every one.
   **Risk budget** (the issue's "no week below 95% of passive's expected revenue", read on *incremental* revenue,
   the stricter reading: a week's total revenue, baseline included, is several times its media revenue; and against
   the passive choice of the SAME week from the same state): the week keeps >= (1 - RISK x schedule)
   of the passive choice's incremental revenue in EVERY planning draw, at the levels' posterior means and at
   posterior samples (the draws least favourable to the pulse, not their mean: the truth is not the mean), AND
   loses at most RISK x schedule of the week's expected revenue over the rest of the horizon (carry-over included).
4. Observe the week's total revenue; next week.

`schedule(t)` in [0, 1], the share of the risk budget a week may use, is what a learned policy sets
(training/allocator/loop_worlds.py trains SB3 PPO on `loop_env.LoopEnv`); the default explores at the full risk
budget while more than a quarter of the horizon is left, then exploits. For `learn` it is instead the largest step
the week may take towards the learned plan (the default: 1, the hand-designed policy).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol

import numpy as np

from omnidecide.models.allocator.constraints import Constraints
from omnidecide.models.allocator.curves import Ensemble
from omnidecide.models.allocator.forms import season_index
from omnidecide.models.allocator.loop_posterior import ChannelPosterior, LevelPosterior, fit_residuals
from omnidecide.models.allocator.robust import TRUST, RobustObjective, historical_plan, identification, trust_region
from omnidecide.models.allocator.solvers import best_plan, optimise

RISK = 0.05  # a week may lose at most 5% of the passive choice's expected incremental revenue
MISS = 0.1  # the learning agent's week may fall below that in at most this share of the posterior's slots (the
# lower end of the product's 80% intervals), not in none of them
AMPS = (0.7, 0.5, 0.35, 0.25, 0.15, 0.1)  # pulse sizes tried, largest first: one channel x e^{+/-a} (0.7: double or halve)
A_MAX = AMPS[0]
INFO_WEEKS = 4  # weeks of a pulse's carry-over counted in what it teaches
POLICIES = ("passive", "explore", "thompson", "learn")


class World(Protocol):
    """The truth behind a loop: `true.revenue(x)` (T, C) incremental revenue of a plan; `observe` the week's total."""

    true: object

    def observe(self, x: np.ndarray, t: int, rng: np.random.Generator) -> float: ...

    def measure(self, x: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
        """(C,) each channel's measured incremental revenue in week t (optional: without it the loop learns from
        the total revenue alone)."""
        ...


@dataclass
class LoopResult:
    spend: np.ndarray  # (T, C)
    observed: np.ndarray  # (T,) total revenue seen
    amplitude: np.ndarray  # (T,) pulse amplitude used (thompson: the step towards the sample)
    expected: np.ndarray  # (T,) expected incremental revenue of the week as spent (posterior mean at the time)
    expected_passive: np.ndarray  # (T,) same for the passive choice in that state
    rel_sd: np.ndarray  # (T, C) posterior sd of the levels before each week's decision
    planned: np.ndarray  # (T,) the passive choice's total spend in the week (pulses keep it)
    passive_row: np.ndarray  # (T, C) the passive choice of each week, in the loop's own state (what a pulse changed)


@dataclass
class Week:
    """Loop.prepare's state of week t before the decision (the planning ensembles, the budget, the passive plan x,
    its week's expected revenue wk, the learning policy's target plan or None)."""

    t: int
    rest: Ensemble
    ens: Ensemble
    ens_z: Ensemble
    cons: Constraints
    x: np.ndarray
    wk: float
    target: np.ndarray | None


def default_schedule(t: int, T: int) -> float:
    """Explore at the full risk budget while more than a quarter of the horizon is left (fixed a priori)."""
    return 1.0 if T - t > T // 4 else 0.0


class Loop:
    """One closed loop on one fitted allocator (artifact.Allocator) and one world, played a week at a time, so an
    SB3 env (LoopEnv) and the benchmark drive the same code."""

    def __init__(self, alloc, world: World, budget: float, T: int = 52, *, planner: str = "robust",
                 policy: str = "explore", risk: float = RISK, seed: int = 0, sigma: float | None = None,
                 channels: bool = True):
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
        self.channels = channels and callable(getattr(world, "measure", None))  # else: the total revenue alone
        args = (alloc.ensemble(T), base, sd if sigma is None else sigma, last, repeat, x_ref)
        if self.channels:  # the history's own season index at the loop's weeks: a form the posterior may choose
            woy = np.clip(alloc.calendar(T)[1].astype(int), 1, 52) - 1
            self.post = ChannelPosterior(*args, season=season_index(h)[woy])
        else:
            self.post = LevelPosterior(*args)
        self.hist_level = h.spend[-52:].mean(0)
        self.t, self.X, self.y, self.Y = 0, np.zeros((T, C)), np.zeros(T), np.zeros((T, C))
        self.amp, self.exp_rev, self.exp_pass, self.planned = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
        self.sd, self.passive_row = np.zeros((T, C)), np.zeros((T, C))
        self.prev: np.ndarray | None = None
        self.week: Week | None = None

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

    def _guard(self, x: np.ndarray, ensembles: list[Ensemble], risk: float,
               miss: float = 0.0) -> Callable[[np.ndarray], float | None]:
        """The risk budget around the passive choice x[0]: a function of a changed plan xa that returns its expected
        revenue lost over the rest of the horizon, or None when xa breaks the budget. The week must keep >= 1 - risk
        of the passive choice's incremental revenue in EVERY planning draw of every ensemble given (the draws at their
        posterior mean levels and at posterior samples), or in all but a share `miss` of them: the change is judged by
        the draws least favourable to it, not by their mean (the truth is not the mean). And it may lose at most
        risk x the week's expected revenue over the rest of the horizon (carry-over included) in expectation (the
        first ensemble)."""
        # a week's revenue in each draw: the channels that realise it in the week (a draw's channel whose revenue
        # peaks d > 0 weeks after the spend earns this week from earlier weeks' spend alone, the same whatever this
        # week spends: left out of both sides, which only makes the test stricter)
        now = [(e.delay == 0).astype(float) for e in ensembles]
        wk0 = [(e.per_world(x)[:, 0] * m).sum(1) for e, m in zip(ensembles, now)]
        r0 = ensembles[0].revenue(x)
        wk, tot = r0[0].sum(), r0.sum()

        def lost(xa: np.ndarray) -> float | None:
            for e, w0, m in zip(ensembles, wk0, now):
                if ((e.per_world(xa)[:, 0] * m).sum(1) < (1 - risk) * w0 - 1e-9 * np.abs(w0)).mean() > miss:
                    return None
            loss = tot - ensembles[0].revenue(xa).sum()
            return None if loss > risk * wk else float(loss)

        return lost

    def _explore(self, x: np.ndarray, rest: Ensemble, lost, floor: float) -> tuple[np.ndarray, float]:
        """The information-directed pulse of this week (module docstring, step 3): (week row, |amplitude|). `lost`:
        the risk budget (_guard); floor: the least cost a pulse is charged (a share of the week's revenue)."""
        t, T, C = self.t, self.T, len(x[0])
        H = min(T - t, INFO_WEEKS)
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
                    cost = lost(xa)
                    if cost is None:
                        continue
                    Xd[t] = xc
                    gain = v0 - float((wts * self.post.level_var(self.post.rows(Xd, t, t + H))).sum())
                    score = gain / max(cost, floor, 1e-12)
                    if score > best_score:
                        best, best_score = (xc, a), score
                    break
        return best

    def _target(self, x: np.ndarray, ens: Ensemble, cons: Constraints) -> np.ndarray | None:
        """The week _learn steps towards: the expected-revenue plan on the posterior over the channels that pass the
        posterior-predictive check, the others at the passive choice (None: no channel passes yet)."""
        ok = self.post.fits() if self.channels else np.zeros(x.shape[1], bool)
        if not ok.any():
            return None
        tot = x.sum(0)
        lo, hi, _ = self._tried(cons, len(x)).arrays(x.shape[1])
        lo, hi = np.where(ok, lo, tot), np.where(ok, hi, tot)
        if lo.sum() > cons.spendable + 1e-6 or hi.sum() < cons.spendable - 1e-6:
            lo, hi = np.where(ok, 0.0, tot), np.where(ok, np.inf, tot)
        xg = best_plan(ens, replace(cons, lo=lo, hi=hi), [x])
        xg[0, ~ok] = x[0, ~ok]  # a channel the check rejects keeps the passive choice (its timing too)
        return xg

    def _stepped(self, x: np.ndarray, xg: np.ndarray, a: float, S: float) -> np.ndarray:
        """The plan x with its week moved a step a towards xg's week, the rest rescaled to the budget it leaves."""
        xa = x.copy()
        xa[0] = (1 - a) * x[0] + a * xg[0]
        if len(x) > 1:
            xa[1:] = x[1:] * max(S - xa[0].sum(), 0.0) / max(x[1:].sum(), 1e-12)
        return xa

    def _learn(self, x: np.ndarray, ens: Ensemble, ens_z: Ensemble, cons: Constraints,
               cap: float = 1.0, xg: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Exploit what the loop has measured: the week moved from the passive choice x[0] towards the week of the
        expected-revenue plan on the posterior (levels at their means, draws by weight; timing free), the largest
        step (1, 1/2, ..., 1/16) that keeps the risk budget (_guard at the full RISK, every week: the floor is
        judged against the passive choice whatever the schedule; the week may fall below the floor in at most MISS of
        the planning slots: with every slot the test is the least favourable of ~K draws, stricter than the product's
        80% intervals read anywhere else, and it held the seasonal family's moves to 1/16-1/8 of the step in weeks
        where the posterior's plan was right, BENCHMARKS). Why: the served objective stays anchored to last
        year's mix (a trust region of at most x2 per channel, the penalty on the draws' spread), right for a plan
        made from the history alone, but it keeps the plan there after weeks of measured channel revenue too (our
        family: the oracle's channel split is most of the gap, BENCHMARKS). Only channels that pass the posterior-
        predictive check (ChannelPosterior.fits) move, each within e^{+/-TRUST} of the weekly spend it has been
        measured at (_tried); the others keep the passive choice. No channel passes before 4 weeks are measured.
        cap in [0, 1] (a learned policy's action, LoopEnv(policy="learn")): the steps tried are cap x (1, ..., 1/16),
        so cap 1 is this policy and cap 0 the passive choice; xg: the target when already made (_target)."""
        if cap <= 0:
            return x[0], 0.0
        xg = self._target(x, ens, cons) if xg is None else xg
        if xg is None:
            return x[0], 0.0
        lost = self._guard(x, [ens, ens_z], self.risk, MISS)
        for a in min(cap, 1.0) * 0.5 ** np.arange(5):
            xa = self._stepped(x, xg, a, cons.spendable)
            if lost(xa) is not None:
                return xa[0], float(a)
        return x[0], 0.0

    def _tried(self, cons: Constraints, weeks: int) -> Constraints:
        """cons with each channel's spend over the rest of the horizon kept within e^{-/+ TRUST} x the weekly spend
        levels it has been measured at (the loop's weeks, and last year's average week), x the weeks left: the
        posterior's curves are backed by measured revenue only there, so a plan may step beyond, not leap."""
        seen = np.vstack([self.hist_level[None], self.X[:self.t]])
        lo, hi = np.exp(-TRUST) * seen.min(0) * weeks, np.exp(TRUST) * seen.max(0) * weeks
        S = cons.spendable
        if lo.sum() > S + 1e-6 or hi.sum() < S - 1e-6:
            return cons
        return replace(cons, lo=lo, hi=hi)

    def prepare(self) -> Week:
        """Week t before its decision: the posterior updated on the weeks seen, the passive plan and (learn) the
        target. step() calls it unless the caller has (LoopEnv(policy="learn") observes the week first)."""
        t, T = self.t, self.T
        if self.week is not None and self.week.t == t:
            return self.week
        if self.channels:
            self.post.update_channels(self.X[:t], self.Y[:t])
        else:
            self.post.update(self.X[:t], self.y[:t])
        self.sd[t] = self.post.rel_sd
        rest = self.post.columns(self.alloc.ensemble(T - t, start=t, actual_spend=self.X[:t] if t else None))
        ens, ens_z = self.post.planning(rest), self.post.planning(rest, self.z)
        cons = Constraints(budget=self.B, reserve=0.0, spent=float(self.X[:t].sum()))
        x = self._plan(ens_z if self.planner == "robust" else ens, cons)
        self.prev = x[1:] * (cons.spendable - x[0].sum()) / max(x[1:].sum(), 1e-9) if T - t > 1 else None
        xg = self._target(x, ens, cons) if self.policy == "learn" else None
        self.week = Week(t, rest, ens, ens_z, cons, x, float(ens.revenue(x)[0].sum()), xg)
        return self.week

    def step(self, schedule: float | None = None) -> float:
        """Decide, spend and observe week t; returns the week's TRUE incremental revenue. schedule: the share of the
        risk budget (explore, thompson) or the largest step towards the target (learn) this week may use."""
        t, T = self.t, self.T
        w = self.prepare()
        rest, ens, ens_z, cons, x, wk = w.rest, w.ens, w.ens_z, w.cons, w.x, w.wk
        s = default_schedule(t, T) if schedule is None else float(np.clip(schedule, 0.0, 1.0))
        choice, a_used = x[0], 0.0
        lost = self._guard(x, [ens, ens_z], self.risk * s) if s > 0 and T - t > 1 else None
        if self.policy == "explore" and lost is not None:
            choice, a_used = self._explore(x, rest, lost, 0.1 * self.risk * s * wk)
        elif self.policy == "thompson" and lost is not None:
            # towards the plan on one posterior sample (the rest of the horizon, same budget), the largest step
            # inside the risk budget
            xs = optimise(self.post.sample(rest, self.rng), cons, x)[0]
            xs = xs * (x[0].sum() / xs.sum()) if xs.sum() > 0 else x[0]
            for a in s * 0.5 ** np.arange(5):
                xa = x.copy()
                xa[0] = (1 - a) * x[0] + a * xs
                if lost(xa) is not None:
                    choice, a_used = xa[0], float(a)
                    break
        elif self.policy == "learn":
            choice, a_used = self._learn(x, ens, ens_z, cons, 1.0 if schedule is None else s, w.target)
        self.passive_row[t] = x[0]
        self.X[t] = choice
        self.amp[t], self.planned[t] = a_used, x[0].sum()
        self.exp_pass[t] = wk
        xa = x.copy()
        xa[0] = choice
        self.exp_rev[t] = wk if a_used == 0 else ens.revenue(xa)[0].sum()
        self.y[t] = self.world.observe(self.X, t, self.noise_rng)
        if self.channels:
            self.Y[t] = self.world.measure(self.X, t, self.noise_rng)
        self.t += 1
        Xw = self.X.copy()
        Xw[t + 1:] = 0.0
        return float(self.world.true.revenue(Xw)[t].sum())

    def result(self) -> LoopResult:
        return LoopResult(self.X.copy(), self.y.copy(), self.amp.copy(), self.exp_rev.copy(), self.exp_pass.copy(),
                          self.sd.copy(), self.planned.copy(), self.passive_row.copy())


def run_loop(alloc, world: World, budget: float, T: int = 52, schedule: Callable[[int, int], float] | None = None,
             **kw) -> LoopResult:
    loop = Loop(alloc, world, budget, T, **kw)
    while not loop.done:
        loop.step(None if schedule is None else schedule(loop.t, T))
    return loop.result()
