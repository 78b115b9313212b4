"""`omnidecide retrain` / `monitor` as an engineer runs them: flags, messages and exit codes."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import omnidecide.cli.lifecycle  # noqa: F401  (registers the commands)
from omnidecide.cli.app import app
from omnidecide.models.errors import InputError
from omnidecide.store import registry

runner = CliRunner()


@pytest.fixture(scope="module")
def allocator_tag(synth_world) -> str:
    from omnidecide.training import allocator

    return allocator.train(synth_world / "marketing_mix.csv", timesteps=0, n_boot=2)


def test_unknown_model_and_missing_folder_are_clear_errors(synth_world, tmp_path):
    res = runner.invoke(app, ["retrain", "--data", str(synth_world), "--model", "bogus"])
    assert isinstance(res.exception, InputError) and "--model bogus" in str(res.exception)
    res = runner.invoke(app, ["monitor", "--data", str(tmp_path / "nope")])
    assert isinstance(res.exception, InputError) and "not a folder" in str(res.exception)
    (tmp_path / "only").mkdir()
    res = runner.invoke(app, ["monitor", "--data", str(tmp_path / "only")])
    assert isinstance(res.exception, InputError) and "no events.csv or marketing_mix.csv" in str(res.exception)


def test_retrain_says_why_it_did_nothing(synth_world, allocator_tag, own_stages):
    registry.promote(allocator_tag, reason="test")
    res = runner.invoke(app, ["retrain", "--data", str(synth_world), "--model", "allocator"])
    assert res.exit_code == 0, res.output
    assert "kept production: nothing to judge on" in res.output and "periods" in res.output


def test_monitor_alerts_on_drifted_spend_and_exits_1(synth_world, allocator_tag, own_stages, tmp_path):
    """Douyin's spend doubled over the last 13 weeks: a drift alert on it, exit 1, results written."""
    import pandas as pd

    registry.promote(allocator_tag, reason="test")
    mix = pd.read_csv(synth_world / "marketing_mix.csv")
    mix.loc[mix.index[-13:], "spend_douyin"] *= 2.0
    (tmp_path / "fresh").mkdir()
    mix.to_csv(tmp_path / "fresh" / "marketing_mix.csv", index=False)
    res = runner.invoke(app, ["monitor", "--data", str(tmp_path / "fresh"), "--model", "allocator", "--dry-run"])
    latest = json.loads((registry.home() / "monitor" / "latest.json").read_text())
    alerts = latest["models"]["allocator"]["alerts"]
    assert res.exit_code == 1, res.output
    assert any("douyin" in json.dumps(a) for a in alerts), alerts
    assert latest["models"]["allocator"]["production"] == allocator_tag and "written:" in res.output


def test_models_whose_file_is_missing_are_said_to_be_unchecked(synth_world, tmp_path, capsys):
    """`monitor --data` on a folder with only marketing_mix.csv checked the allocator and said nothing about the
    recommender and churn (skipped in silence)."""
    import shutil

    from omnidecide.cli.lifecycle import _fresh_data

    shutil.copy(synth_world / "marketing_mix.csv", tmp_path / "marketing_mix.csv")
    assert set(_fresh_data(tmp_path, None)) == {"allocator"}
    err = " ".join(capsys.readouterr().err.split())
    assert "recommender: not checked" in err and "churn: not checked" in err and "has no events.csv" in err
