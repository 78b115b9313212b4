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


@pytest.fixture(scope="session")
def served_tags(synth_world) -> dict[str, str]:
    """Every model trained by `omnidecide train all` on the synthetic world, then promoted (shared by the service
    tests: training once keeps the suite within CI time)."""
    from typer.testing import CliRunner

    import omnidecide.cli.lifecycle  # noqa: F401  (registers `train all`)
    from omnidecide.cli.app import app
    from omnidecide.store import registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNIDECIDE_CHURN_FIT_SECONDS", "4")  # quality is tested in test_churn_model
        res = CliRunner().invoke(app, ["train", "all", "--data", str(synth_world)])
    assert res.exit_code == 0, res.output
    printed = [line for line in res.stdout.splitlines() if ":" in line and " " not in line.strip()]
    out = {t.split(":")[0]: t for t in printed}
    assert set(out) == {"recommender", "churn", "allocator"}, res.stdout
    for t in out.values():
        registry.promote(t, reason="test_service")
    return out


@pytest.fixture(scope="session")
def served_client(served_tags):
    """The BentoML app in-process (Starlette's test client): real routes, validation and error codes, no port."""
    import warnings

    with warnings.catch_warnings():  # starlette nags about httpx versions; the client works the same
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from omnidecide.serving.service import OmniDecide

    with TestClient(OmniDecide.to_asgi()) as c:
        yield c
