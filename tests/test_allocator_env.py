"""Env and planners on curves built in-test: constraints hold exactly, the checker passes, optimisers beat heuristics."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from omnidecide.models.allocator.env import AllocatorEnv, rollout
from omnidecide.models.allocator.constraints import Constraints, enforce_roi_floor, project_plan, request_constraints
from omnidecide.models.allocator.curves import FULL_T, Curves
from omnidecide.models.allocator.solvers import best_plan
from omnidecide.models.errors import InputError
from omnidecide.models.response import media_revenue

_spec = importlib.util.spec_from_file_location("allocator_baselines",
                                               Path(__file__).resolve().parents[1] / "bench" / "allocator_baselines.py")
_baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baselines)
myopic, spread = _baselines.myopic, _baselines.spread  # the benchmark's heuristic baselines

T, C = 12, 3
CHANNELS = ["a", "b", "c"]


def curves(beta_scale=1.0, init=None):
    peak = np.zeros(T)
    peak[[4, 5]] = 1
    return Curves(decay=np.array([0.2, 0.5, 0.7]), half=np.array([50_000.0, 120_000.0, 200_000.0]),
                  slope=np.array([1.2, 2.0, 1.6]), beta=np.array([150_000.0, 400_000.0, 500_000.0]) * beta_scale,
                  mult=1 + 0.5 * peak, init=np.zeros(C) if init is None else init)


def make_env(cons, worlds=None):
    cv = curves()
    woy = np.arange(20, 20 + T, dtype=float)
    return AllocatorEnv(cv, worlds or [cv, curves(0.7), curves(1.3)], cons, woy=woy, peak=(cv.mult > 1).astype(float))


def test_curves_match_models_response():
    cv = curves(init=np.array([1e4, 2e4, 3e4]))
    x = np.random.default_rng(0).uniform(0, 1e5, (T, C))
    ref = media_revenue(x, cv.decay, cv.half, cv.slope, cv.beta, initial=cv.init, multiplier=cv.mult)
    zero = media_revenue(np.zeros_like(x), cv.decay, cv.half, cv.slope, cv.beta, initial=cv.init, multiplier=cv.mult)
    assert np.allclose(cv.revenue(x), ref - zero)
    v, g = cv.value_grad(x)
    e = np.zeros_like(x)
    e[3, 1] = 1.0
    num = (cv.revenue(x + e).sum() - cv.revenue(x - e).sum()) / 2
    assert np.isclose(g[3, 1], num, rtol=1e-4)


def test_env_passes_checker():
    check_env(make_env(Constraints(budget=2e6, reserve=0.15)), skip_render_check=True)


@pytest.mark.parametrize("reserve", [0.0, 0.15])
def test_env_enforces_constraints_exactly_under_random_actions(reserve):
    B = 2e6
    lo, hi = np.array([100_000.0, 0, 0]), np.array([np.inf, 300_000.0, np.inf])
    cons = Constraints(budget=B, reserve=reserve, lo=lo, hi=hi)
    env = make_env(cons)
    rng = np.random.default_rng(0)
    for ep in range(10):
        x, _ = rollout(env, lambda o: rng.uniform(-1, 1, C + 2) * (3 if ep % 2 else 1))
        assert x.min() >= 0
        assert x.sum() <= B * (1 - reserve) + 1e-6  # the reserve is never spent
        assert x[:, 0].sum() >= lo[0] - 1e-6
        assert x[:, 1].sum() <= hi[1] + 1e-6


def test_roi_floor_channels_are_only_corrected_down():
    cons = Constraints(budget=2e6, reserve=0.0, roi_floor=np.array([np.nan, 2.0, np.nan]))
    env = make_env(cons)
    env.reset(seed=0)
    up = env.spend_for(np.ones(C + 2))
    base_t = env.base[0]
    assert up[1] <= base_t[1] + 1e-6
    assert base_t[2] > 0 and up[2] > base_t[2]


def test_full_horizon_beats_heuristics_and_myopic():
    cv = curves(init=np.array([5e4, 1e5, 2e5]))
    cons = Constraints(budget=2e6, reserve=0.0)
    full = best_plan(cv, cons)
    val = cv.revenue(full).sum()
    assert np.isclose(full.sum(), 2e6)
    for other in (spread(np.ones(C), T, cons), myopic(cv, cons), spread(cv.beta, T, cons)):
        assert other.sum() <= 2e6 + 1e-6
        assert val >= cv.revenue(other).sum() - 1e-6
    # first-order optimality: spending cells share one marginal ROI
    _, g = cv.value_grad(full)
    active = full > 1e3
    assert g[active].std() / g[active].mean() < 0.02


def test_constraints_and_roi_floor_are_exact():
    cv = curves()
    lo, hi = np.array([0, 500_000.0, 0]), np.array([200_000.0, np.inf, np.inf])
    cons = Constraints(budget=2e6, reserve=0.1, lo=lo, hi=hi, roi_floor=np.array([np.nan, np.nan, 3.0]))
    x = best_plan(cv, cons, channels=CHANNELS)
    rev = cv.revenue(x)
    assert x.sum() <= 2e6 * 0.9 + 1e-6
    assert x[:, 0].sum() <= 200_000 + 1e-6 and x[:, 1].sum() >= 500_000 - 1e-6
    assert x[:, 2].sum() == 0 or rev[:, 2].sum() / x[:, 2].sum() >= 3.0 - 1e-9


def test_infeasible_constraints_name_the_flag():
    with pytest.raises(InputError, match="--min"):
        request_constraints(CHANNELS, 1e6, T, 0.15, {"a": 5e5, "b": 5e5}, None, None)
    with pytest.raises(InputError, match="--min is above --max"):
        request_constraints(CHANNELS, 1e6, T, 0.0, {"a": 2e5}, {"a": 1e5}, None)
    with pytest.raises(InputError, match="--reserve"):
        request_constraints(CHANNELS, 1e6, T, 1.2, None, None, None)
    with pytest.raises(InputError, match="--max nochannel"):
        request_constraints(CHANNELS, 1e6, T, 0.0, None, {"nochannel": 5.0}, None)
    with pytest.raises(InputError, match="--periods"):
        request_constraints(CHANNELS, 1e6, 0, 0.0, None, None, None)
    cv = curves()
    cons = Constraints(budget=1e6, reserve=0.0, lo=np.array([0, 0, 9e5]), roi_floor=np.array([np.nan, np.nan, 50.0]))
    x = project_plan(np.full((T, C), 1e6 / (T * C)), cons)
    with pytest.raises(InputError, match="--roi-floor"):
        enforce_roi_floor(x, cv, cons, CHANNELS)


def test_capped_projection_is_exact_and_nearest():
    from scipy.optimize import minimize

    from omnidecide.models.allocator.constraints import project_capped

    rng = np.random.default_rng(1)
    for _ in range(25):
        T_, C_ = int(rng.integers(2, 8)), int(rng.integers(1, 4))
        v = rng.normal(0, 1, (T_, C_)) * rng.choice([0.01, 1.0, 100.0])
        S = float(rng.uniform(0.5, 5) * T_)
        lo = np.where(rng.random(C_) < 0.5, rng.uniform(0, S / C_, C_), 0.0)
        hi = np.where(rng.random(C_) < 0.5, lo + rng.uniform(0, S / C_, C_), np.inf)
        x = project_capped(v, S, lo, hi)
        total = min(S, hi.sum())
        assert x.min() >= 0 and np.isclose(x.sum(), total, rtol=1e-10, atol=1e-12)
        assert np.all(x.sum(0) >= lo - 1e-9) and np.all(x.sum(0) <= hi + 1e-9)
        E = np.kron(np.ones((1, T_)), np.eye(C_))
        cons = [{"type": "eq", "fun": lambda z: z.sum() - total}, {"type": "ineq", "fun": lambda z: E @ z - lo}]
        if np.isfinite(hi).any():
            cons.append({"type": "ineq", "fun": lambda z, f=np.isfinite(hi): (hi - E @ z)[f]})
        ref = minimize(lambda z: ((z - v.ravel()) ** 2).sum(), np.full(T_ * C_, total / (T_ * C_)),
                       jac=lambda z: 2 * (z - v.ravel()), bounds=[(0, None)] * (T_ * C_), constraints=cons,
                       method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        assert ((x - v) ** 2).sum() <= ref.fun + 1e-7 * max(1.0, ref.fun)


def test_constrained_optimum_matches_a_general_solver():
    """min/max/ROI-floor plans (active-set L-BFGS + ROI caps) are at least as good as SLSQP run long on the same
    problem, and honour every rule exactly; a binding ROI floor is met with equality, not by defunding the channel."""
    from scipy.optimize import minimize

    cv = curves(init=np.array([5e4, 1e5, 2e5]))
    B = 2e6
    free = best_plan(cv, Constraints(budget=B, reserve=0.0))
    roi_free = cv.revenue(free).sum(0) / free.sum(0)
    lo = np.array([0.0, 0.0, 0.3 * B])
    hi = np.array([0.5 * free[:, 0].sum(), np.inf, np.inf])
    fl = np.array([np.nan, 1.1 * roi_free[1], np.nan])
    cons = Constraints(budget=B, reserve=0.0, lo=lo, hi=hi, roi_floor=fl)
    x = best_plan(cv, cons, channels=CHANNELS)
    rev = cv.revenue(x)
    assert np.isclose(x.sum(), B) and x[:, 0].sum() <= hi[0] + 1e-6 and x[:, 2].sum() >= lo[2] - 1e-6
    assert x[:, 1].sum() > 0.05 * free[:, 1].sum()
    assert fl[1] - 1e-9 <= rev[:, 1].sum() / x[:, 1].sum() <= fl[1] * 1.001
    scale = B / (T * C)
    E = np.kron(np.ones((1, T)), np.eye(C))

    def roi_con(z):
        xx = z.reshape(T, C) * scale
        return (cv.revenue(xx)[:, 1].sum() - fl[1] * xx[:, 1].sum()) / B

    ref = minimize(lambda z: -cv.revenue(z.reshape(T, C) * scale).sum() / B, (free / scale).ravel(),
                   jac=lambda z: -cv.value_grad(z.reshape(T, C) * scale)[1].ravel() * scale / B, method="SLSQP",
                   bounds=[(0, None)] * (T * C), options={"maxiter": 1000, "ftol": 1e-12},
                   constraints=[{"type": "eq", "fun": lambda z: z.sum() - B / scale},
                                {"type": "ineq", "fun": lambda z: hi[0] / scale - E[0] @ z},
                                {"type": "ineq", "fun": lambda z: E[2] @ z - lo[2] / scale},
                                {"type": "ineq", "fun": roi_con}])
    xr = ref.x.reshape(T, C) * scale
    assert ref.success and roi_con(ref.x) >= -1e-9 and xr[:, 0].sum() <= hi[0] * (1 + 1e-9)  # a valid reference
    assert rev.sum() >= cv.revenue(xr).sum() * (1 - 1e-4)


@pytest.mark.parametrize("T_", [49, 104, 157])
def test_long_horizons_blocked_adstock_matches_reference(T_):
    """Horizons over 3 blocks compute the adstock block by block (linear in T): same revenue and gradient."""
    rng = np.random.default_rng(T_)
    cv = Curves(decay=np.array([0.1, 0.5, 0.85]), half=np.array([5e4, 1e5, 2e5]), slope=np.array([0.8, 1.6, 2.8]),
                beta=np.array([2e5, 5e5, 8e5]), mult=1 + rng.random(T_), init=np.array([1e4, 5e4, 3e5]))
    assert cv.T > FULL_T
    x = rng.uniform(0, 1e5, (T_, C))
    ref = media_revenue(x, cv.decay, cv.half, cv.slope, cv.beta, initial=cv.init, multiplier=cv.mult)
    zero = media_revenue(np.zeros_like(x), cv.decay, cv.half, cv.slope, cv.beta, initial=cv.init, multiplier=cv.mult)
    assert np.allclose(cv.revenue(x), ref - zero)
    v, g = cv.value_grad(x)
    assert np.isclose(v, (ref - zero).sum())
    for t, c in ((0, 2), (T_ // 2, 1), (T_ - 1, 0), (17, 2)):
        e = np.zeros_like(x)
        e[t, c] = 1.0
        assert np.isclose(g[t, c], (cv.revenue(x + e).sum() - cv.revenue(x - e).sum()) / 2, rtol=1e-4)


def test_feasible_plan_is_left_unchanged_by_projection():
    """project_plan returns an already feasible plan as is (its shortcut): the period-by-period pass would not move it."""
    from omnidecide.models.allocator.constraints import project_period

    rng = np.random.default_rng(7)
    for _ in range(30):
        x = rng.uniform(0, 1e4, (T, C)) * (rng.random((T, C)) < 0.7)
        y = x.sum(0)
        lo = np.where(rng.random(C) < 0.5, y * rng.uniform(0, 1, C), 0.0)
        hi = np.where(rng.random(C) < 0.5, y * rng.uniform(1, 2, C), np.inf)
        cons = Constraints(budget=x.sum() * rng.uniform(1, 1.3) / 0.85, reserve=0.15, lo=lo, hi=hi)
        out = project_plan(x, cons)
        assert np.array_equal(out, x)
        left, lo_left, hi_left, ref = cons.spendable, lo.copy(), hi.copy(), x.copy()
        for t in range(T):  # the pass the shortcut skips
            ref[t] = project_period(x[t], left, hi_left, lo_left, t == T - 1)
            left -= ref[t].sum()
            lo_left, hi_left = np.maximum(lo_left - ref[t], 0), np.maximum(hi_left - ref[t], 0)
        assert np.allclose(ref, x, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("held", [0, 2])
def test_channel_held_at_its_total_matches_a_general_solver(held):
    """A channel with min == max (the robust plan's pinned channels) skips the budget-only solve: the plan still spends
    exactly that total on it and is at least as good as SLSQP run long on the same problem."""
    from scipy.optimize import minimize

    cv = curves(init=np.array([5e4, 1e5, 2e5]))
    B = 2e6
    free = best_plan(cv, Constraints(budget=B, reserve=0.0))
    total = 0.5 * free[:, held].sum() + 0.05 * B  # away from where the budget-only optimum would put it
    lo, hi = np.zeros(C), np.full(C, np.inf)
    lo[held] = hi[held] = total
    x = best_plan(cv, Constraints(budget=B, reserve=0.0, lo=lo, hi=hi), channels=CHANNELS)
    assert np.isclose(x.sum(), B) and np.isclose(x[:, held].sum(), total) and (x >= 0).all()
    scale = B / (T * C)
    ref = minimize(lambda z: -cv.revenue(z.reshape(T, C) * scale).sum() / B, np.full(T * C, 1.0),
                   jac=lambda z: -cv.value_grad(z.reshape(T, C) * scale)[1].ravel() * scale / B, method="SLSQP",
                   bounds=[(0, None)] * (T * C), options={"maxiter": 1000, "ftol": 1e-12},
                   constraints=[{"type": "eq", "fun": lambda z: z.sum() - B / scale},
                                {"type": "eq", "fun": lambda z: z.reshape(T, C)[:, held].sum() - total / scale}])
    xr = ref.x.reshape(T, C) * scale
    assert ref.success and np.isclose(xr[:, held].sum(), total, rtol=1e-6)  # a valid reference
    assert cv.revenue(x).sum() >= cv.revenue(xr).sum() * (1 - 1e-4)
