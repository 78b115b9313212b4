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
    """The test store is shared by the session: after a test that promotes or sets canaries, the stages are put
    back as they were and the monitor's state (baselines, latest run) is removed."""
    import shutil

    from omnidecide.store import registry

    saved = registry._read_stages()
    yield
    shutil.rmtree(registry.home() / "monitor", ignore_errors=True)
    registry._write_stages(saved)
