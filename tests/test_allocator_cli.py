"""`train allocator`, `allocate` (plan, re-plan, errors) as the planner calls them."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import omnidecide.cli.allocator  # noqa: F401  (registers the commands)
from omnidecide.cli.app import app
from omnidecide.models.errors import InputError

runner = CliRunner()


@pytest.fixture(scope="module")
def tag(synth_world):
    from omnidecide.training.allocator import train

    return train(synth_world / "marketing_mix.csv", seed=0, timesteps=256, n_boot=2)


@pytest.fixture(scope="module")
def runtime(tag):
    from omnidecide.serving.allocator import AllocatorRuntime

    return AllocatorRuntime(tag)


def test_train_saves_version_with_fit_and_agent(tag):
    from omnidecide.store import registry

    v = [r for r in registry.versions("allocator") if r["tag"] == tag][0]
    m = v["metrics"]
    assert m["fit_r2"] > 0.95
    # the agent was evaluated against its planner on the held-out worlds, and the gate follows that figure
    assert m["eval_worlds"] == 8 and 0.5 < m["agent_over_planner_mean"] < 1.5
    assert m["agent_over_planner_min"] <= m["agent_over_planner_mean"] <= m["agent_over_planner_max"]
    assert m["agent_enabled"] == (m["agent_over_planner_mean"] > 1.0)
    assert (registry.path("allocator", tag) / "agent.zip").exists()


class _PushFirst:
    """A stand-in policy with a large, fixed correction: every period moves budget towards the first channel."""

    def __init__(self, C: int):
        self.a = np.zeros(C + 2, np.float32)
        self.a[0], self.a[1:C] = 1.0, -1.0

    def predict(self, obs, deterministic=True):
        return self.a, None


def test_agent_is_served_only_when_it_beat_its_planner(runtime):
    """The gate: `agent_enabled` (set in training from agent / planner on held-out worlds) decides whether the agent's
    corrections reach the served plan; forcing use_agent overrides it either way."""
    import dataclasses

    from omnidecide.training.allocator.pipeline import agent_gate

    assert agent_gate({"agent_over_planner_mean": 1.003}) and not agent_gate({"agent_over_planner_mean": 0.999})
    assert not agent_gate({"agent_over_planner_mean": 1.0})
    base = runtime.allocator
    C = len(base.channels)
    planner = base.plan(3e6, 8, reserve=0.0, use_agent=False)
    for enabled in (False, True):
        alloc = dataclasses.replace(base, policy=_PushFirst(C), info={**base.info, "agent_enabled": enabled})
        served = alloc.plan(3e6, 8, reserve=0.0)
        assert served.summary["agent"] is enabled
        moved = bool(np.abs(served.spend - planner.spend).sum() > 0.05 * planner.spend.sum())
        assert moved is enabled
        if enabled:
            assert served.spend[:, 0].sum() > planner.spend[:, 0].sum()
        forced = alloc.plan(3e6, 8, reserve=0.0, use_agent=not enabled)
        assert forced.summary["agent"] is (not enabled)


def test_allocate_writes_plan_within_budget(tag, synth_world, tmp_path):
    out = tmp_path / "plan.csv"
    res = runner.invoke(app, ["allocate", "--budget", "3000000", "--periods", "8", "--output", str(out), "--model", tag])
    assert res.exit_code == 0, res.output
    plan = pd.read_csv(out)
    assert list(plan.columns) == ["period", "channel", "spend", "expected_revenue", "revenue_p10", "revenue_p90",
                                  "identification"]
    cells = plan[plan["channel"] != "reserve"]
    assert (cells["revenue_p10"] <= cells["expected_revenue"] + 0.01).all()
    assert (cells["expected_revenue"] <= cells["revenue_p90"] + 0.01).all()
    assert cells["identification"].between(0, 1).all()
    channels = [c[len("spend_"):] for c in pd.read_csv(synth_world / "marketing_mix.csv", nrows=1).columns if c.startswith("spend_")]
    media = plan[plan["channel"] != "reserve"]
    assert set(media["channel"]) == set(channels)
    assert sorted(media["period"].unique()) == list(range(1, 9))
    reserve = plan[plan["channel"] == "reserve"]
    assert len(reserve) == 1 and np.isclose(reserve["spend"].iloc[0], 450_000)
    assert plan["spend"].sum() <= 3_000_000 + 1e-6
    assert media["spend"].sum() <= 3_000_000 * 0.85 + 1e-6
    assert media["spend"].sum() >= 3_000_000 * 0.85 - 0.01 * len(channels)  # rounding to cents loses < 1 cent a channel
    assert "expected incremental revenue" in res.output and "marginal ROI" in res.output
    assert "80% interval" in res.output and "identified" in res.output and "last year's mix" in res.output
    # --explore: one proposed experiment per channel, least identified first
    ex = tmp_path / "explore.csv"
    res = runner.invoke(app, ["allocate", "--budget", "3000000", "--periods", "8", "--output", str(out), "--model", tag,
                              "--explore", str(ex)])
    assert res.exit_code == 0, res.output
    e = pd.read_csv(ex)
    assert set(e["channel"]) == set(channels) and e["identification"].is_monotonic_increasing
    assert {"weeks", "change", "expected_revenue_cost", "expected_narrowing", "interval_width_now"} <= set(e.columns)
    # reserve 0: no reserve row
    runner.invoke(app, ["allocate", "--budget", "3000000", "--periods", "8", "--output", str(out), "--reserve", "0", "--model", tag])
    assert "reserve" not in set(pd.read_csv(out)["channel"])


def test_report_is_one_self_contained_page_with_the_figures(tag, tmp_path):
    import base64
    import re

    out, rep = tmp_path / "plan.csv", tmp_path / "plan.html"
    args = ["allocate", "--budget", "3000000", "--periods", "8", "--output", str(out), "--model", tag]
    assert runner.invoke(app, args).exit_code == 0  # an earlier plan at the same path: "what changed" compares to it
    res = runner.invoke(app, [*args, "--reserve", "0.1", "--max", "douyin=100000", "--report", str(rep)])
    assert res.exit_code == 0, res.output
    page = rep.read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    for section in ("Response curves", "Plan by period", "Marginal ROI", "Cost of the reserve", "What changed"):
        assert section in page
    assert "--max" in page and "douyin=100000" in page and "previous spend" in page


def test_rules_are_honoured(runtime):
    from omnidecide.serving.allocator import PlanRequest

    ch = runtime.channels
    req = PlanRequest(budget=3e6, periods=8, reserve=0.1, min={ch[0]: 400_000}, max={ch[1]: 50_000},
                      roi_floor={ch[2]: 1.5})
    resp, res = runtime.plan(req)
    x = res.spend
    assert x.sum() <= 3e6 * 0.9 + 1e-6
    assert x[:, 0].sum() >= 400_000 - 0.01 * 8 and x[:, 1].sum() <= 50_000 + 1e-6
    pc = resp.per_channel[ch[2]]
    assert pc.spend == 0 or pc.incremental_revenue / pc.spend >= 1.5 - 1e-6


@pytest.mark.parametrize("args,flag", [
    (["--min", "douyin=9000000"], "--min"),
    (["--min", "douyin=200000", "--max", "douyin=100000"], "--min"),
    (["--max", "nochannel=5"], "--max"),
    (["--roi-floor", "douyin=abc"], "--roi-floor"),
    (["--reserve", "1.5"], "--reserve"),
])
def test_infeasible_or_bad_rules_are_input_errors_naming_the_flag(tag, tmp_path, args, flag):
    res = runner.invoke(app, ["allocate", "--budget", "3000000", "--periods", "8", "--output", str(tmp_path / "p.csv"),
                              "--model", tag, *args])
    assert isinstance(res.exception, InputError), res.output
    assert flag in str(res.exception)


def test_replanning_carries_state_forward(runtime, tmp_path):
    from omnidecide.serving.allocator import PlanRequest

    ch = runtime.channels
    req = PlanRequest(budget=4e6, periods=10, reserve=0.0)
    _, first = runtime.plan(req)
    k = 3
    heavy = pd.DataFrame({"period": range(1, k + 1), **{f"spend_{c}": first.spend[:k, j] + (200_000.0 if j == 0 else 0.0)
                                                        for j, c in enumerate(ch)}})
    light = heavy.copy()
    light[f"spend_{ch[0]}"] = first.spend[:k, 0]
    _, rh = runtime.plan(req, actuals=heavy)
    _, rl = runtime.plan(req, actuals=light)
    for r, act in ((rh, heavy), (rl, light)):
        t = r.table
        assert sorted(t["period"].unique()) == list(range(1, 11))
        assert np.allclose(r.spend[:k], act[[f"spend_{c}" for c in ch]].to_numpy())
        assert r.spend.sum() <= 4e6 + 1e-6
    # more spent already -> less left for the rest; heavy early spend leaves adstock that earns in later periods
    assert rh.spend[k:].sum() < rl.spend[k:].sum()
    # the CLI reads the same file
    f = tmp_path / "actuals.csv"
    heavy.assign(revenue=1e7).to_csv(f, index=False)
    out = tmp_path / "replan.csv"
    res = runner.invoke(app, ["allocate", "--budget", "4000000", "--periods", "10", "--reserve", "0", "--output", str(out),
                              "--actuals", str(f), "--model", runtime.tag])
    assert res.exit_code == 0, res.output
    assert "re-planned periods 4..10" in res.output
    assert pd.read_csv(out)["spend"].sum() <= 4e6 + 1e-6
    # actuals that already exceed the budget are an error naming the flag
    over = heavy.copy()
    over[f"spend_{ch[0]}"] = 5e6
    with pytest.raises(InputError, match="--actuals"):
        runtime.plan(req, actuals=over)


def test_replanning_recalibrates_channels_to_measured_revenue(runtime, tmp_path):
    """revenue_<channel> in the actuals: a channel that earned twice what the fit expected gets more of the rest of
    the budget, one that earned half gets less; an unknown channel column is an --actuals error."""
    from omnidecide.serving.allocator import PlanRequest

    ch = runtime.channels
    req = PlanRequest(budget=4e6, periods=10, reserve=0.0)
    _, first = runtime.plan(req)
    k = 3
    act = pd.DataFrame({"period": range(1, k + 1), **{f"spend_{c}": first.spend[:k, j] for j, c in enumerate(ch)}})
    exp_ = first.table[first.table["period"] <= k].pivot(index="period", columns="channel", values="expected_revenue")
    funded = [c for c in ch if first.spend[:k, ch.index(c)].sum() > 0 and first.spend[k:, ch.index(c)].sum() > 0]
    up, down = funded[0], funded[1]
    meas = act.copy()
    for c in ch:
        meas[f"revenue_{c}"] = exp_[c].to_numpy() * (2.0 if c == up else 0.5 if c == down else 1.0)
    _, base = runtime.plan(req, actuals=act)
    _, cal = runtime.plan(req, actuals=meas)  # default: ensemble reweighted, then rescaled
    # the rescaling alone (no reweighting): the shrunk ratio against the plain ensemble mean, exactly
    from omnidecide.models.allocator.actuals import Updating

    r = runtime.allocator.plan(4e6, 10, reserve=0.0, actuals=meas, updating=Updating(reweight=False)).summary["channel_ratio"]
    n = {c: int((act[f"spend_{c}"] > 0).sum()) for c in (up, down)}  # periods it spent in (and was measured); n0 = 2
    assert np.isclose(r[up], 2.0 ** (n[up] / (n[up] + 2)), rtol=0.01)
    assert np.isclose(r[down], 0.5 ** (n[down] / (n[down] + 2)), rtol=0.01)
    assert all(abs(r[c] - 1) < 0.01 for c in ch if c not in (up, down))
    j_up, j_down = ch.index(up), ch.index(down)
    assert cal.spend[k:, j_up].sum() > base.spend[k:, j_up].sum() * 1.05
    assert cal.spend[k:, j_down].sum() < base.spend[k:, j_down].sum() * 0.95
    assert cal.spend.sum() <= 4e6 + 1e-6
    f = tmp_path / "measured.csv"
    meas.to_csv(f, index=False)
    res = runner.invoke(app, ["allocate", "--budget", "4000000", "--periods", "10", "--reserve", "0", "--output",
                              str(tmp_path / "p.csv"), "--actuals", str(f), "--model", runtime.tag])
    assert res.exit_code == 0, res.output
    out_text = " ".join(res.output.split())  # (rich wraps long lines at the test terminal width)
    assert "effective draws per channel" in out_text and "recalibrated" in out_text, res.output
    bad = meas.assign(revenue_nochannel=1.0)
    with pytest.raises(InputError, match="--actuals"):
        runtime.plan(req, actuals=bad)


def test_reweighting_moves_the_ensemble_towards_the_world_that_was_measured(runtime):
    """Bayesian update of the planning ensemble: channel revenue measured (10% lognormal noise) from one of the
    draws for 6 periods -> that draw gains weight on every channel that spent, the reweighted expectation of the
    remaining periods is closer to its revenue than the plain mean, and tempering keeps >= ess_min x K draws."""
    from omnidecide.models.allocator.actuals import Updating, draw_weights

    alloc = runtime.allocator
    ch = alloc.channels
    T, k = 12, 6
    B = float(alloc.history.spend[-52:].sum(1).mean() * T)
    first = alloc.plan(B, T, reserve=0.0)
    x_act = first.spend[:k] * np.exp(np.random.default_rng(1).normal(0, 0.3, (k, len(ch))))  # some spend variation
    ens = alloc.ensemble(k)
    K = ens.K
    E = np.stack([w.revenue(x_act) for w in ens.worlds]).sum(1)  # (K, C); the truth: the most atypical draw
    dist = np.abs(np.log(np.maximum(E, 1e-9) / np.maximum(E.mean(0), 1e-9))).sum(1)
    j = int(np.argmax(dist))
    rng = np.random.default_rng(0)
    meas = ens.worlds[j].revenue(x_act) * np.exp(rng.normal(0, 0.1, x_act.shape))
    upd = Updating()
    du = draw_weights(alloc.ensemble(k), x_act, meas, upd)
    W = du.weights
    spent = x_act.sum(0) > 0
    assert W.shape == (K, len(ch)) and np.allclose(W.sum(0), 1.0)
    assert np.all(W[j, spent] > 1.0 / K)
    assert np.all(du.ess >= upd.ess_min * K - 1e-6)
    # the rest of the horizon, as re-planning would see it: reweighted expectation vs plain mean vs the truth draw
    rest = alloc.ensemble(T - k, start=k, actual_spend=x_act)
    x_rest = first.spend[k:]
    truth = rest.worlds[j].revenue(x_rest).sum(0)
    plain = rest.revenue(x_rest).sum(0)
    rew = rest.reweighted(W).revenue(x_rest).sum(0)
    assert np.abs(rew - truth)[spent].sum() < 0.8 * np.abs(plain - truth)[spent].sum()
    # through plan(): the summary reports the effective number of draws per channel
    act = pd.DataFrame({"period": range(1, k + 1), **{f"spend_{c}": x_act[:, i] for i, c in enumerate(ch)},
                        **{f"revenue_{c}": meas[:, i] for i, c in enumerate(ch)}})
    res = alloc.plan(B, T, reserve=0.0, actuals=act)
    eff = res.summary["draws_effective"]
    assert set(eff) == set(ch) and min(eff.values()) >= upd.ess_min * K - 0.01 and min(eff.values()) < K - 0.5
    assert res.spend.sum() <= B + 1e-6


def test_nonfinite_flags_and_bad_actuals_files_are_input_errors(tmp_path):
    """nan/inf in --min/--max/--roi-floor reached the plan request (a pydantic traceback); a folder or an empty file
    as --actuals was a pandas traceback; --window-days nan passed the `<= 0` check and crashed the journey split.
    All are refused before any model is loaded."""
    from omnidecide.cli.allocator import _pairs

    for v in ("douyin=nan", "douyin=inf"):
        with pytest.raises(InputError, match="not a finite number"):
            _pairs([v], "--min")
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "empty.csv").write_text("")
    for name, why in (("dir.csv", "is a folder"), ("empty.csv", "not a readable CSV")):
        res = runner.invoke(app, ["allocate", "--budget", "1000", "--periods", "4", "--output", str(tmp_path / "p.csv"),
                                  "--actuals", str(tmp_path / name)])
        assert isinstance(res.exception, InputError) and why in str(res.exception), res.output
    res = runner.invoke(app, ["attribute", "--touchpoints", "t.csv", "--events", "e.csv", "--output", "a.csv",
                              "--window-days", "nan"])
    assert isinstance(res.exception, InputError) and "--window-days" in str(res.exception)


def test_actuals_period_must_be_the_elapsed_periods_and_rows_are_file_rows():
    """A row marked period 9 was silently planned as period 1; a bad value was named by its place after sorting."""
    from omnidecide.models.allocator.actuals import parse_actuals

    with pytest.raises(InputError, match="period must be 1..1"):
        parse_actuals(pd.DataFrame({"period": [9], "spend_a": [5.0]}), ["a"], 4)
    with pytest.raises(InputError, match=r"row 1: spend_a must be a finite number >= 0, got 'inf'"):
        parse_actuals(pd.DataFrame({"period": [2, 1], "spend_a": [float("inf"), 5.0]}), ["a"], 4)
    assert parse_actuals(pd.DataFrame({"period": [2, 1], "spend_a": [7.0, 5.0]}), ["a"], 4).spend[:, 0].tolist() == [5.0, 7.0]
