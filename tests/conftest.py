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


@pytest.fixture
def cli(capsys):
    """Runs the real entry point (its error handling included): cli([...]) -> (exit code, stderr on one line; rich
    wraps long lines)."""
    import sys

    from omnidecide.cli import main

    def run(args: list[str]) -> tuple[int, str]:
        argv, sys.argv = sys.argv, ["omnidecide", *args]
        try:
            with pytest.raises(SystemExit) as exit_info:
                main()
        finally:
            sys.argv = argv
        return exit_info.value.code, " ".join(capsys.readouterr().err.split())
    return run


@pytest.fixture(scope="session")
def items_users(synth_world):
    """The synthetic world's catalogue (item ids as text) and user ids, for the service modules' requests."""
    import pandas as pd

    items = pd.read_csv(synth_world / "items.csv", dtype={"item_id": str})
    return items, pd.read_csv(synth_world / "users.csv", dtype=str)["user_id"]


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
def trained(served_tags) -> dict[str, str]:
    """The promoted tags of the session's trained store (see served_tags)."""
    return served_tags


@pytest.fixture(scope="session")
def service_app():
    """Makes OmniDecide's ASGI app for an in-process client. BentoML registers its request metrics in
    prometheus_client's global registry once per app, so a second app in one session (each service test module
    has its own, with its own environment) first drops the previous app's."""

    def make():
        from prometheus_client import REGISTRY

        from omnidecide.serving.service import OmniDecide

        for collector, names in list(REGISTRY._collector_to_names.items()):
            if any(n.startswith("bentoml_") for n in names):
                REGISTRY.unregister(collector)
        return OmniDecide.to_asgi()

    return make


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


PG_URL_FILE = Path("/tmp/omnidecide-test-database-url")  # written by scripts/services/postgres.sh


@pytest.fixture
def pg_url(monkeypatch):
    """A fresh PostgreSQL database for one test, dropped after, on the server `scripts/services/postgres.sh` starts
    (its URL from OMNIDECIDE_TEST_DATABASE_URL or the file the script writes). Unreachable: fails under CI (these
    tests must run there), skipped elsewhere with the command that starts it."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    url = os.environ.get("OMNIDECIDE_TEST_DATABASE_URL") or (PG_URL_FILE.read_text().strip()
                                                            if PG_URL_FILE.exists() else "")
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5) if url else None
        why = "no URL"
    except psycopg.OperationalError as e:
        admin, why = None, str(e).strip()
    if admin is None:
        msg = f"PostgreSQL not reachable ({why}): run `bash scripts/services/postgres.sh` (scripts/test.sh does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    name = f"omnidecide_t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("OMNIDECIDE_HASH_SECRET", "test-secret")
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def serve():
    """Start `omnidecide serve` processes (each in its own session, killed with its workers after the test):
    `serve(env) -> base URL`, ready when it returns."""
    import signal
    import socket
    import subprocess
    import sys

    from omnidecide.serving.ready import wait_ready

    started: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        omni = str(Path(sys.executable).with_name("omnidecide"))
        err = tempfile.TemporaryFile()  # a pipe nobody reads could fill and block the server
        proc = subprocess.Popen([omni, "serve", "--port", str(port)], env={**os.environ, **env},
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        if wait_ready(base, 180, proc, every=0.5) is not None:
            return base
        if proc.poll() is not None:
            err.seek(0)
            raise RuntimeError(f"server exited {proc.returncode}: {err.read().decode()[-3000:]}")
        raise RuntimeError("server not ready in 180 s")

    start.processes = started  # type: ignore[attr-defined]
    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)


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


def _test_client():
    import warnings

    with warnings.catch_warnings():  # starlette nags about httpx versions; the client works the same
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient


@pytest.fixture(scope="session")
def served_client(served_tags, service_app):
    """The BentoML app in-process (Starlette's test client): real routes, validation and error codes, no port."""
    with _test_client()(service_app()) as c:
        yield c


@pytest.fixture(scope="module")
def own_client(service_app, served_tags, tmp_path_factory):
    """A service of the module's own on a database of its own, for a module whose writes (live catalogue, online
    store) must not reach the state later tests read. It serves the session's trained versions: the stages live in
    the database, and a new one would otherwise serve each model's latest version, which may be a toy another
    module saved (tests/test_registry.py)."""
    from omnidecide.store import registry

    mp = pytest.MonkeyPatch()
    mp.setenv("OMNIDECIDE_DATABASE_URL", f"sqlite:///{tmp_path_factory.mktemp('own') / 'state.sqlite3'}")
    for tag in served_tags.values():
        registry.promote(tag, reason="own_client")
    with _test_client()(service_app()) as c:
        yield c
    mp.undo()
