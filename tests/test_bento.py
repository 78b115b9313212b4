"""The deployment path a retailer follows: `bentoml build` in the repository, export the Bento and the model versions
it names, import them into another (empty) store, `bentoml serve omnidecide:latest` from an empty working directory
with two workers; every endpoint answers, keys are enforced and /metrics has per-version figures.

About a minute (build, export/import, two workers loading the models); it stays in the default run because it is
the only test of what ships.
"""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from omnidecide.serving.ready import wait_ready

REPO = Path(__file__).resolve().parents[1]
KEY = "od_bento-test-key"


def bentoml(*args: str, env: dict, cwd: Path) -> str:
    res = subprocess.run([sys.executable, "-m", "bentoml", *args], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (args, res.stdout[-3000:], res.stderr[-3000:])
    return res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    from omnidecide.store import registry

    tmp = tmp_path_factory.mktemp("bento")
    env = {**os.environ, "BENTOML_HOME": str(registry.home()), "BENTOML_DO_NOT_TRACK": "True"}
    out = bentoml("build", "-o", "tag", env=env, cwd=REPO)
    tag = out.strip().splitlines()[-1].replace("__tag__:", "")
    assert tag.startswith("omnidecide:"), out
    bentoml("export", tag, str(tmp / "omnidecide.bento"), env=env, cwd=tmp)
    for name in registry.MODEL_NAMES:
        bentoml("models", "export", trained[name], str(tmp / f"{name}.bentomodel"), env=env, cwd=tmp)

    target = {**env, "BENTOML_HOME": str(tmp / "target-home"), "OMNIDECIDE_KEYS_FILE": str(tmp / "no-keys.json"),
              "OMNIDECIDE_API_KEYS": f"ops:admin:{hashlib.sha256(KEY.encode()).hexdigest()}",
              "BENTOML_CONFIG_OPTIONS": "services.omnidecide.workers=2"}
    target.pop("OMNIDECIDE_DATABASE_URL", None)  # the target store keeps its own embedded database
    empty = tmp / "empty"
    empty.mkdir()
    for name in registry.MODEL_NAMES:
        bentoml("models", "import", str(tmp / f"{name}.bentomodel"), env=target, cwd=empty)
    bentoml("import", str(tmp / "omnidecide.bento"), env=target, cwd=empty)

    port = free_port()
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "omnidecide:latest", "--port", str(port),
                             "--host", "127.0.0.1"], env=target, cwd=empty, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if wait_ready(url, 240, proc) is None:
            assert proc.poll() is None, (tmp / "serve.log").read_text()[-4000:]
            pytest.fail("the Bento did not get ready in 240 s:\n" + (tmp / "serve.log").read_text()[-4000:])
        yield url, proc, empty
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers (a session of their own)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_built_bento_serves_every_endpoint_from_an_empty_directory(server, trained, synth_world):
    url, proc, empty = server
    assert [p.name for p in empty.iterdir()] == []  # nothing was needed (or written) in the working directory
    auth = {"authorization": f"Bearer {KEY}"}
    items = pd.read_csv(synth_world / "items.csv", dtype={"item_id": str})
    item, user = items["item_id"].iloc[0], pd.read_csv(synth_world / "users.csv", dtype=str)["user_id"].iloc[0]
    calls = {
        "/models": {},
        "/recommend": {"user_id": user, "k": 5},
        "/similar_items": {"item_id": item, "k": 3},
        "/bid": {"user_id": user, "channel": "douyin", "candidates": [item]},
        "/predict_churn": {"as_of": "2026-03-01", "events": [
            {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": 20}]},
        "/allocate": {"budget": 10000, "periods": 2},
        "/events": {"events": [{"user_id": user, "item_id": item, "event": "view", "timestamp": "2026-06-01T10:00:00"}]},
        "/items": {"items": [{"item_id": "bento-new", "category": items["category"].iloc[0], "stock": 3}]},
        "/forget_user": {"user_id": "nobody"},
        "/admin/promote": {"model": "churn", "version": trained["churn"]},
    }
    with httpx.Client(base_url=url, timeout=60) as c:
        for route, body in calls.items():
            r = c.post(route, json=body, headers=auth)
            assert r.status_code == 200, (route, r.text)
        served = c.post("/models", json={}, headers=auth).json()
        assert {n: v["tag"] for n, v in served.items()} == trained
        assert c.post("/recommend", json={"user_id": user}).status_code == 401
        assert c.get("/healthz").status_code == 200
        for _ in range(6):  # reach both workers
            c.post("/recommend", json={"user_id": user, "k": 5}, headers=auth)
        metrics = c.get("/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("omnidecide_model_seconds_count{")
                and 'endpoint="recommend"' in x and 'outcome="ok"' in x)
    assert f'version="{trained["recommender"]}"' in line and float(line.split()[-1]) >= 7
    assert 'omnidecide_request_seconds_count{endpoint="/recommend",status="401"}' in metrics

    import psutil

    def cmdline(p: psutil.Process) -> list[str]:  # a short-lived child may exit (or be a zombie) while we look
        try:
            return p.cmdline()
        except psutil.Error:
            return []

    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "--worker-id" in cmdline(p)]
    assert len(workers) == 2


def test_serve_workers_flag_reaches_bentoml(monkeypatch):
    from typer.testing import CliRunner

    import omnidecide.cli.lifecycle  # noqa: F401  (registers `serve`)
    from omnidecide.cli.app import app

    seen = {}
    monkeypatch.setattr(os, "execve", lambda exe, cmd, env: seen.update(cmd=cmd, env=env))
    monkeypatch.setattr(os, "chdir", lambda path: None)
    res = CliRunner().invoke(app, ["serve", "--workers", "3", "--port", "3999"])
    assert res.exit_code == 0, res.output
    assert "services.omnidecide.workers=3" in seen["env"]["BENTOML_CONFIG_OPTIONS"]
    assert seen["cmd"][-4:] == ["--port", "3999", "--host", "127.0.0.1"]
