"""Batch jobs on a local Ray give exactly the rows of the single-process commands (recommend --all-users and
predict churn, users sharded across 2 workers)."""
from __future__ import annotations

import os

import pandas as pd
import pytest
from typer.testing import CliRunner

import omnidecide.cli.churn  # noqa: F401  (registers the commands)
import omnidecide.cli.recommender  # noqa: F401
from omnidecide.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one takes ~15 s); the commands join it instead of starting their own."""
    ray = pytest.importorskip("ray")
    env = {k: os.environ[k] for k in ("BENTOML_HOME", "OMNIDECIDE_CHURN_FIT_SECONDS") if k in os.environ}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(synth_world):
    from omnidecide.training import recommender

    os.environ["OMNIDECIDE_CHURN_FIT_SECONDS"] = "4"
    rec = recommender.train(synth_world / "events.csv", synth_world / "items.csv", synth_world / "users.csv", seed=0)
    res = runner.invoke(app, ["train", "churn", "--events", str(synth_world / "events.csv"), "--horizon-days", "90"])
    assert res.exit_code == 0, res.output
    return str(rec), res.stdout.strip().splitlines()[-1]


def _run(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output


def test_recommend_all_users_on_ray_equals_single_process(trained, local_ray, tmp_path):
    rec, _ = trained
    base = ["recommend", "--all-users", "--k", "10", "--model", rec]
    _run(base + ["--output", str(tmp_path / "one.csv")])
    _run(base + ["--output", str(tmp_path / "ray.csv"), "--workers", "2"])
    one, on_ray = (pd.read_csv(tmp_path / f, dtype=str, keep_default_na=False) for f in ("one.csv", "ray.csv"))
    assert one["user_id"].nunique() > 500 and len(one) > 5000
    pd.testing.assert_frame_equal(one, on_ray)


def test_predict_churn_on_ray_equals_single_process(trained, local_ray, synth_world, tmp_path):
    _, churn = trained
    base = ["predict", "churn", "--events", str(synth_world / "events.csv"), "--as-of", "2026-05-01",
            "--horizon-days", "90", "--model", churn]
    _run(base + ["--output", str(tmp_path / "one.csv")])
    _run(base + ["--output", str(tmp_path / "ray.csv"), "--workers", "2"])
    one, on_ray = (pd.read_csv(tmp_path / f, dtype=str, keep_default_na=False) for f in ("one.csv", "ray.csv"))
    assert len(one) > 500
    pd.testing.assert_frame_equal(one, on_ray)


def test_users_file_or_all_users_not_both(trained, tmp_path):
    res = runner.invoke(app, ["recommend", "--output", str(tmp_path / "x.csv")])
    assert res.exit_code != 0 and "--all-users" in str(res.exception)
