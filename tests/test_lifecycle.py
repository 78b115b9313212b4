"""Retrain and monitor: champion/challenger on the newest window, canary ramp-up and automatic end (training.lifecycle)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from omnidecide.store import loader, registry
from omnidecide.training import backtest, lifecycle


@pytest.fixture(scope="module")
def stale_recommender(synth_world, tmp_path_factory) -> str:
    """A recommender trained on the world minus its last 150 days: what production looks like after months."""
    from omnidecide.training import recommender

    ev = pd.read_csv(synth_world / "events.csv", dtype=str)
    ts = pd.to_datetime(ev["timestamp"])
    path = tmp_path_factory.mktemp("stale") / "events.csv"
    ev[ts < ts.max() - pd.Timedelta(days=150)].to_csv(path, index=False)
    return recommender.train(path, items=synth_world / "items.csv")


@pytest.fixture(scope="module")
def fresh(synth_world) -> dict[str, backtest.Data]:
    return backtest.from_folder(synth_world)


def test_backtest_judges_every_version_on_the_same_customers_and_flags_a_seen_window(fresh, stale_recommender):
    data = fresh["recommender"]
    cut = backtest.cutoff(data)
    assert cut == (data.end - pd.Timedelta(days=backtest.RECOMMENDER_WINDOW_DAYS)).normalize()
    model, meta = loader.load_version("recommender", stale_recommender)
    m = backtest.evaluate(data, model, cut, data_end=meta["data_end"])
    assert m["seen_window"] is False and m["n"] > 50 and 0 < m["ndcg@20"] <= m["hitrate@20"] <= 1
    again = backtest.evaluate(data, model, cut, data_end=str(cut))
    assert again["seen_window"] is True and again["n"] == m["n"]
    assert backtest.relative_change("recommender", {"ndcg@20": 0.55}, {"ndcg@20": 0.5}) == pytest.approx(0.1)
    assert backtest.relative_change("allocator", {"accuracy": 0.99}, {"accuracy": 0.90}) == pytest.approx(0.1)
    assert backtest.relative_change("recommender", {"ndcg@20": 0.1}, {"ndcg@20": 0.0}) == float("inf")


def test_retrain_releases_a_better_version_as_a_5_percent_canary(fresh, stale_recommender, own_stages):
    registry.promote(stale_recommender, reason="test")
    o = lifecycle.retrain(fresh["recommender"])
    assert o.production == stale_recommender and o.production_metrics["seen_window"] is False
    assert o.change > 0 and o.decision == "canary"  # fresher data beats five months old data
    st = registry.stages("recommender")
    assert st["production"] == stale_recommender and st["canary"] == {"tag": o.tag, "share": 0.05}
    last = registry.decisions("recommender")[-1]
    assert last["action"] == "canary" and "ndcg@20" in last["reason"] and o.tag == last["tag"]
    new_meta = loader.load_version("recommender", o.tag)[1]
    assert new_meta["data_end"] >= str(fresh["recommender"].end.date())  # refitted on all the data


def test_retrain_keeps_production_when_the_challenger_does_not_hold_up(fresh, stale_recommender, own_stages):
    registry.promote(stale_recommender, reason="test")
    n_versions = len(registry.versions("recommender"))
    o = lifecycle.retrain(fresh["recommender"], tolerance=-10.0)  # demand a 1000% gain: nothing passes
    assert o.decision == "kept production" and o.tag is None
    assert registry.stages("recommender").get("canary") is None
    assert len(registry.versions("recommender")) == n_versions  # no refit, nothing saved
    last = registry.decisions("recommender")[-1]
    assert last["action"] == "retrain_rejected" and last["tag"] == stale_recommender


@pytest.mark.parametrize("canary,production,quality,verdict", [
    ({"requests": 500, "errors": 3, "error_rate": 0.006, "p95_ms": 4}, {"error_rate": 0.0, "p95_ms": 4}, None, "end"),
    ({"requests": 500, "errors": 0, "error_rate": 0.0, "p95_ms": 40}, {"error_rate": 0.0, "p95_ms": 4}, None, "end"),
    ({"requests": 500, "errors": 0, "error_rate": 0.0, "p95_ms": 4}, {"error_rate": 0.0, "p95_ms": 4}, -0.08, "end"),
    ({"requests": 20, "errors": 0, "error_rate": 0.0, "p95_ms": 4}, {"error_rate": 0.0, "p95_ms": 4}, None, "wait"),
    ({}, {}, None, "wait"),
    ({"requests": 500, "errors": 0, "error_rate": 0.0, "p95_ms": 5}, {"error_rate": 0.0, "p95_ms": 4}, 0.01, "ramp"),
])
def test_canary_verdict(canary, production, quality, verdict):
    assert lifecycle.canary_verdict(canary, production, quality)[0] == verdict


def test_canary_steps_up_to_promotion():
    assert [lifecycle.canary_step(s) for s in (0.05, 0.25, 0.5)] == [0.25, 0.5, 1.0]
    assert lifecycle.canary_step(0.1) == 0.25


def test_monitor_ramps_a_healthy_canary_and_ends_an_erring_one(fresh, stale_recommender, synth_world, own_stages):
    prod = registry.serving_tag("recommender")
    registry.promote(stale_recommender, reason="test")
    other = next(v["tag"] for v in registry.versions("recommender") if v["tag"] != stale_recommender)
    registry.set_canary(other, 0.05, reason="test")
    healthy = {other: {"requests": 400, "errors": 0, "error_rate": 0.0, "p95_ms": 4.0},
               stale_recommender: {"requests": 8000, "errors": 0, "error_rate": 0.0, "p95_ms": 4.0}}
    dry = lifecycle.monitor(fresh["recommender"], healthy, act=False)
    assert registry.stages("recommender")["canary"]["share"] == 0.05 and dry["actions"][0].startswith("(dry run)")
    r = lifecycle.monitor(fresh["recommender"], healthy)
    assert "ramp canary" in r["actions"][0] and registry.stages("recommender")["canary"]["share"] == 0.25
    assert lifecycle.canary_since("recommender") is not None
    erring = {**healthy, other: {"requests": 400, "errors": 4, "error_rate": 0.01, "p95_ms": 4.0}}
    r = lifecycle.monitor(fresh["recommender"], erring)
    assert "canary" not in registry.stages("recommender") and any("error rate" in a for a in r["alerts"])
    assert registry.decisions("recommender")[-1]["action"] == "end_canary"
    del prod


def test_monitor_alerts_when_quality_falls_below_its_release_figure(fresh, stale_recommender, own_stages):
    shutil.rmtree(registry.home() / "monitor", ignore_errors=True)  # no baseline kept by an earlier test
    registry.promote(stale_recommender, reason="test")
    first = lifecycle.monitor(fresh["recommender"], {})
    assert "first judgement" in first["quality"]["baseline"] and not any("retrain" in a for a in first["alerts"])
    f = registry.home() / "monitor" / "baseline.json"
    saved = f.read_text()
    b = json.loads(saved)
    b[stale_recommender]["ndcg@20"] = first["quality"]["production"]["ndcg@20"] * 1.2  # it was better at release
    f.write_text(json.dumps(b))
    try:
        r = lifecycle.monitor(fresh["recommender"], {})
        assert r["quality"]["change_since_release"] < -0.05 and any("retrain" in a for a in r["alerts"])
    finally:
        f.write_text(saved)
    path = lifecycle.save_report({"recommender": r})
    assert json.loads(path.read_text())["models"]["recommender"]["production"] == stale_recommender
    shutil.rmtree(registry.home() / "monitor")


def test_monitor_reports_drift_against_the_training_profile(fresh, stale_recommender, own_stages):
    registry.promote(stale_recommender, reason="test")
    d = fresh["recommender"]
    as_is = lifecycle.monitor(d, {}, act=False)
    assert as_is["drift"] and not any(a.startswith("share_event.view") for a in as_is["alerts"])
    ev = d.frame
    lost = ev[~((ev["event"] == "view") & (np.arange(len(ev)) % 2 == 0))].reset_index(drop=True)  # a broken tracker
    r = lifecycle.monitor(backtest.Data("recommender", lost, d.items, d.users, d.files), {}, act=False)
    assert any(a.startswith("share_event.view moved -") for a in r["alerts"])


def test_the_window_starts_after_what_production_has_seen(fresh):
    d = fresh["recommender"]
    default = backtest.cutoff(d)
    seen = default + pd.Timedelta(days=5, hours=3)
    assert backtest.cutoff(d, seen_until=str(seen)) == (seen + pd.Timedelta(days=1)).normalize()
    with pytest.raises(backtest.NothingToJudge):
        backtest.cutoff(d, seen_until=str(d.end - pd.Timedelta(days=1)))
    c = fresh["churn"]
    as_of = backtest.cutoff(c, 90)
    assert backtest.cutoff(c, 90, str(as_of - pd.Timedelta(days=1))) == as_of
    with pytest.raises(backtest.NothingToJudge, match="label window"):
        backtest.cutoff(c, 90, str(as_of))
    a = fresh["allocator"]
    dates = pd.DatetimeIndex(pd.to_datetime(a.frame["date"]).sort_values())
    assert backtest.cutoff(a) == dates[-backtest.ALLOCATOR_WINDOW]
    assert backtest.cutoff(a, seen_until=str(dates[-6].date())) == dates[-5]
    with pytest.raises(backtest.NothingToJudge):
        backtest.cutoff(a, seen_until=str(dates[-2].date()))


def test_retrain_does_nothing_when_production_has_seen_all_the_data(fresh, own_stages):
    from omnidecide.training import allocator

    d = fresh["allocator"]
    tag = allocator.train(d.files[0], timesteps=0, n_boot=2)
    registry.promote(tag, reason="test")
    n_versions = len(registry.versions("allocator"))
    o = lifecycle.retrain(d)
    assert o.decision.startswith("kept production") and o.tag is None and "periods" in o.notes[0]
    assert len(registry.versions("allocator")) == n_versions
    assert registry.decisions("allocator")[-1]["action"] == "retrain_skipped"


def test_monitor_alerts_when_churn_scores_move(fresh, synth_world, own_stages):
    from omnidecide.training import churn

    shutil.rmtree(registry.home() / "monitor", ignore_errors=True)
    tag = registry.serving_tag("churn") or churn.train(synth_world / "events.csv")
    registry.promote(tag, reason="test")
    first = lifecycle.monitor(fresh["churn"], {}, act=False)
    assert "first run" in first["scores"]["baseline"] and 0 < first["scores"]["now"]["mean_churn_probability"] < 1
    assert not any(a.startswith("churn scores") for a in first["alerts"])
    d = fresh["churn"]
    ev = d.frame
    users = ev["user_id"].unique()
    silent = ev["user_id"].isin(users[: len(users) * 2 // 3]) & (ev["timestamp"] >= d.end - pd.Timedelta(days=60))
    quiet = ev[~silent].reset_index(drop=True)  # two thirds of the customers silent for two months
    r = lifecycle.monitor(backtest.Data("churn", quiet, files=d.files), {}, act=False)
    assert any(a.startswith("churn scores: mean_churn_probability moved +") for a in r["alerts"])
    shutil.rmtree(registry.home() / "monitor")
