"""Shared fixtures: a private model store per test session, a small synthetic world, ML-100K when reachable."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Tests never touch the developer's model_store/: BentoML reads BENTOML_HOME when first imported.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="omnidecide-store-")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

SYNTH_USERS = 600
SYNTH_SEED = 0


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory) -> Path:
    """A 600-user synthetic world (seed 0): canonical files + truth.json + truth_users.csv."""
    from omnidecide.training.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, n_users=SYNTH_USERS, seed=SYNTH_SEED)
    return out


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory) -> Path:
    """ML-100K as canonical files; skips when no source is reachable (use with @pytest.mark.network)."""
    from omnidecide.models.errors import InputError
    from omnidecide.training import ml100k

    out = tmp_path_factory.mktemp("ml100k")
    try:
        ml100k.fetch(out)
    except InputError as e:
        pytest.skip(f"ML-100K not reachable: {e}")
    return out


@pytest.fixture(scope="session")
def trained(synth_world) -> dict[str, str]:
    """Every model trained by `omnidecide train all` on the synthetic world, then promoted (once per session)."""
    from typer.testing import CliRunner

    import omnidecide.cli.lifecycle  # noqa: F401  (registers `train all`)
    from omnidecide.cli.app import app
    from omnidecide.store import registry

    mp = pytest.MonkeyPatch()
    mp.setenv("OMNIDECIDE_CHURN_FIT_SECONDS", "4")  # quality is tested in test_churn_model
    try:
        res = CliRunner().invoke(app, ["train", "all", "--data", str(synth_world)])
    finally:
        mp.undo()
    assert res.exit_code == 0, res.output
    printed = [line for line in res.stdout.splitlines() if ":" in line and " " not in line.strip()]
    out = {t.split(":")[0]: t for t in printed}
    assert set(out) == {"recommender", "churn", "allocator"}, res.stdout
    for t in out.values():
        registry.promote(t, reason="tests")
    return out


@pytest.fixture()
def own_stages():
    """The test store is shared by the session: after a test that promotes or sets canaries, the stages file is put
    back as it was and the monitor's state (baselines, latest run) is removed."""
    import shutil

    from omnidecide.store import registry

    f = registry.home() / "stages.json"
    saved = f.read_text() if f.exists() else None
    yield
    shutil.rmtree(registry.home() / "monitor", ignore_errors=True)
    if saved is None:
        f.unlink(missing_ok=True)
    else:
        f.write_text(saved)
