"""The service under bad input and faults: limits, one error body, 4xx instead of 5xx, degraded mode per model, refusing
unloadable versions, non-JSON POSTs, and a server that never leaves a worker behind.

Each test reproduces one defect reported from the outside (issue 12). The trained store is shared with the other
service tests (conftest `served_tags`); a test that breaks an artefact puts it back before it ends.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnidecide.cli.app import app
from omnidecide.serving.limits import LIMITS, Limits

runner = CliRunner()
ERROR_KEYS = {"error", "message", "field"}


def ok_error(r, status: int, code: str | None = None) -> dict:
    """The answer has `status` and exactly the documented error body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert code is None or body["error"] == code, body
    return body


@contextmanager
def fresh_service():
    """A new service instance (what a restarted worker builds), in-process."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from _bentoml_impl.server.app import ServiceAppFactory

    from omnidecide.serving.service import OmniDecide

    OmniDecide.inject_config()
    # metrics off: a second app in one process would register BentoML's Prometheus series twice
    with TestClient(ServiceAppFactory(OmniDecide, is_main=True, enable_metrics=False)()) as c:
        yield c


# --- limits -------------------------------------------------------------------------------------------------------

def test_limits_answer_413_and_422_naming_the_limit(served_client):
    c = served_client
    big = b'{"user_id": "' + b"x" * (LIMITS.body_bytes + 10) + b'"}'
    body = ok_error(c.post("/recommend", content=big, headers={"content-type": "application/json"}), 413,
                    "body_too_large")
    assert "OMNIDECIDE_MAX_BODY_BYTES" in body["message"]

    def chunks():  # no content-length: the body is counted as it arrives
        for _ in range(LIMITS.body_bytes // 65536 + 2):
            yield b" " * 65536
    ok_error(c.post("/events", content=chunks(), headers={"content-type": "application/json"}), 413)

    body = ok_error(c.post("/recommend", json={"user_id": "u" * (LIMITS.id_chars + 1)}), 422, "limit_exceeded")
    assert body["field"] == "user_id" and "OMNIDECIDE_MAX_ID_CHARS" in body["message"]
    many = [{"item_id": f"i{n}"} for n in range(LIMITS.recent_events + 1)]
    body = ok_error(c.post("/recommend", json={"user_id": "u", "recent_events": many}), 422, "limit_exceeded")
    assert body["field"] == "recent_events" and "OMNIDECIDE_MAX_RECENT_EVENTS" in body["message"]
    body = ok_error(c.post("/recommend", json={"user_id": "u", "exclude": ["i"] * (LIMITS.exclude + 1)}), 422)
    assert "OMNIDECIDE_MAX_EXCLUDE" in body["message"]
    body = ok_error(c.post("/bid", json={"user_id": "u", "channel": "douyin",
                                         "candidates": ["i"] * (LIMITS.candidates + 1)}), 422)
    assert "OMNIDECIDE_MAX_CANDIDATES" in body["message"]
    event = {"user_id": "limit-user", "timestamp": "2026-01-01T10:00:00", "event": "view", "item_id": "i"}
    body = ok_error(c.post("/events", json={"events": [event] * (LIMITS.events + 1)}), 422)
    assert "OMNIDECIDE_MAX_EVENTS" in body["message"]
    ids = [f"u{n}" for n in range(1001)]  # these two answered 400 with no limit named
    for route in ("/customer_scores", "/predict_churn"):
        body = ok_error(c.post(route, json={"user_ids": ids}), 422, "limit_exceeded")
        assert body["field"] == "user_ids" and "OMNIDECIDE_MAX_USER_IDS" in body["message"], route


def test_limits_come_from_the_environment():
    assert Limits.from_env({"OMNIDECIDE_MAX_RECENT_EVENTS": "5"}).recent_events == 5
    assert Limits.from_env({}).body_bytes == Limits().body_bytes
    with pytest.raises(ValueError, match="OMNIDECIDE_MAX_ID_CHARS"):
        Limits.from_env({"OMNIDECIDE_MAX_ID_CHARS": "lots"})


@pytest.mark.parametrize("bad", ["a\x00b", "a\u2028b", "a\x85b", "a\x1cb", "line\nbreak"])
def test_control_characters_in_ids_are_400_and_never_logged(served_client, bad):
    from omnidecide.serving.audit import DecisionLog

    c = served_client
    body = ok_error(c.post("/recommend", json={"user_id": bad, "k": 3}), 400, "invalid_request")
    assert body["field"] == "user_id" and "control character" in body["message"]
    ok_error(c.post("/events", json={"events": [{"user_id": "u", "timestamp": "2026-01-01", "event": "view",
                                                 "item_id": bad}]}), 400)
    assert not any(bad in json.dumps(x, ensure_ascii=False) for x in DecisionLog().read()[-50:])


# --- 4xx, never 5xx --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59", "0001-01-01"])
def test_timestamps_outside_what_pandas_holds_are_400(served_client, stamp):
    c = served_client
    ev = {"user_id": "far-future", "timestamp": stamp, "event": "view", "item_id": "i1"}
    body = ok_error(c.post("/events", json={"events": [ev]}), 400)
    assert "timestamp" in (body["field"] or "") + body["message"]
    ok_error(c.post("/predict_churn", json={"as_of": "2026-03-01", "events": [ev]}), 400)
    ok_error(c.post("/recommend", json={"user_id": "u", "recent_events": [{"item_id": "i1", "timestamp": stamp}]}),
             400)


def test_far_dates_budgets_and_broken_csv_are_400(served_client):
    c = served_client
    ev = {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": 20}
    body = ok_error(c.post("/predict_churn", json={"as_of": "9999-12-31", "events": [ev]}), 400)
    assert body["field"] == "as_of"
    body = ok_error(c.post("/allocate", json={"budget": 1e308, "periods": 4}), 400)
    assert body["field"] == "budget"
    body = ok_error(c.post("/allocate", json={"budget": 1000, "periods": 4,
                                              "actuals_csv": 'period,revenue\n1,"100\n'}), 400)
    assert "actuals_csv" in body["message"]
    ok_error(c.post("/allocate", content=b'{"budget": NaN, "periods": 4}',
                    headers={"content-type": "application/json"}), 400)


def test_only_json_bodies_are_accepted(served_client):
    """415 for text/plain (what a browser page may post cross-site without asking), forms and multipart."""
    from omnidecide.serving.online_store import OnlineStore

    c = served_client
    ev = json.dumps({"events": [{"user_id": "csrf-victim", "timestamp": "2026-01-01", "event": "cart",
                                 "item_id": "i1"}]})
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                  "multipart/form-data; boundary=x"):
        body = ok_error(c.post("/events", content=ev.encode(), headers={"content-type": media}), 415,
                        "unsupported_media_type")
        assert "application/json" in body["message"]
    assert OnlineStore().recent("csrf-victim").empty  # nothing was written
    ok_error(c.post("/forget_user", content=b'{"user_id": "x"}', headers={"content-type": "text/plain"}), 415)


def test_every_error_has_the_one_body_shape(served_client):
    c = served_client
    ok_error(c.post("/recommend", json={"k": 3}), 400, "invalid_request")  # missing field
    ok_error(c.post("/allocate", content=b"not json", headers={"content-type": "application/json"}), 400)
    ok_error(c.post("/similar_items", json={"item_id": "no-such-item"}), 400)  # a runtime's own InputError
    ok_error(c.post("/no-such-path", json={}), 404, "not_found")
    ok_error(c.get("/recommend"), 405)


def test_openapi_document_is_3_1_and_lists_every_error(served_client):
    doc = served_client.get("/docs.json").json()
    assert doc["openapi"] == "3.1.0"
    text = json.dumps(doc)
    assert '"nullable"' not in text  # a 3.0 form
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error", "message"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if "requestBody" in op:
                for status in ("400", "413", "415", "422", "500", "503"):
                    ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, status)


# --- degraded mode ------------------------------------------------------------------------------------------------

@contextmanager
def broken(path: Path, how: str):
    """Break one file of a stored version (truncate it, or overwrite it with garbage), restore it afterwards."""
    saved = path.read_bytes()
    try:
        path.write_bytes(saved[: len(saved) // 3] if how == "truncate" else b"\x00garbage: [")
        yield
    finally:
        path.write_bytes(saved)


@pytest.mark.parametrize("which", ["churn.pt", "model.yaml"])
def test_a_corrupt_model_degrades_only_its_endpoints(served_tags, which):
    """Before: a truncated artefact made the worker restart-loop (no endpoint answered, /readyz included)."""
    from omnidecide.store import registry

    folder = registry.path("churn", served_tags["churn"])
    with broken(folder / which, "truncate" if which.endswith(".pt") else "garbage"), fresh_service() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200
        state = ready.json()
        assert state["status"] == "degraded" and state["degraded"] == ["churn"]
        assert state["models"]["churn"]["tag"] is None and state["models"]["churn"]["error"]
        assert str(registry.home()) not in state["models"]["churn"]["error"]  # a caller sees versions, not paths
        assert state["models"]["recommender"]["tag"] == served_tags["recommender"]
        models = c.post("/models", json={}).json()
        assert models["churn"]["degraded"] is True and models["churn"]["error"] == state["models"]["churn"]["error"]
        ev = {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": 20}
        body = ok_error(c.post("/predict_churn", json={"as_of": "2026-03-01", "events": [ev]}), 503,
                        "model_unavailable")
        assert "omnidecide models rollback churn" in body["message"] or "omnidecide train churn" in body["message"]
        assert str(registry.home()) not in body["message"]
        assert c.post("/recommend", json={"user_id": "u", "k": 3}).status_code == 200
        assert c.post("/allocate", json={"budget": 1000, "periods": 2}).status_code == 200


def test_a_missing_churn_folder_answers_503_with_the_training_command(served_tags):
    from omnidecide.store import registry

    folder = registry.home() / "models" / "churn"
    hidden = folder.with_name("churn.hidden-by-test")
    folder.rename(hidden)
    try:
        with fresh_service() as c:
            assert c.get("/readyz").json()["degraded"] == ["churn"]
            body = ok_error(c.post("/predict_churn", json={"as_of": "2026-03-01", "events": [
                {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase"}]}), 503, "model_unavailable")
            assert "omnidecide train churn" in body["message"]
    finally:
        hidden.rename(folder)


def test_a_version_that_stops_loading_is_never_shown_as_served(monkeypatch):
    """Before: a promotion to a broken version left the old tag on show with `error: null`, and the request failed."""
    from types import SimpleNamespace

    from omnidecide.serving import routing
    from omnidecide.store.loader import VersionLoadError

    stages: dict = {"production": "m:a"}
    monkeypatch.setattr(routing.registry, "stages", lambda name: stages)

    def load(tag):
        if tag == "m:bad":
            raise VersionLoadError("m:bad does not load (UnpicklingError: truncated)")
        if tag == "m:worse":
            raise RuntimeError("a failure the loader did not expect")
        return SimpleNamespace(tag=tag)

    v = routing.Versions("m", load, check_every_s=0)
    assert v.describe()["tag"] == "m:a" and v.describe()["error"] is None
    for bad in ("m:bad", "m:worse"):
        stages["production"] = bad
        assert v.pick("user") is None
        d = v.describe()
        assert d["tag"] is None and d["degraded"] is True and "Fix:" in d["error"], d
    stages["production"] = "m:a"
    assert v.pick("user").tag == "m:a" and v.describe()["error"] is None


def test_promote_refuses_a_version_that_does_not_load(served_tags, own_stages):
    """Before: `models promote` staged an unloadable version; the next restart loop-crashed."""
    import bentoml

    from omnidecide.store import registry
    from omnidecide.store.loader import VersionLoadError

    def write(folder):
        (folder / "churn.json").write_text("{not json")
    toy = registry.save("churn", write, metrics={}, params={}, data_fingerprint="x")
    try:
        before = registry.stages("churn")
        res = runner.invoke(app, ["models", "promote", toy])
        assert res.exit_code != 0 and "does not load" in str(res.exception) + res.output
        with pytest.raises(VersionLoadError):
            registry.set_canary(toy, 0.1)
        assert registry.stages("churn") == before
    finally:
        bentoml.models.delete(toy)


# --- the server process -----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_names_the_process_holding_the_port():
    port = _free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        res = runner.invoke(app, ["serve", "--port", str(port)])
    assert res.exit_code != 0
    msg = str(res.exception)
    assert f"pid {os.getpid()}" in msg and "already held" in msg, msg


def test_a_killed_server_leaves_no_worker_holding_the_port(tmp_path):
    """SIGKILL the `omnidecide serve` process: its worker stops by itself and the port is free again."""
    import psutil

    from omnidecide.serving.ready import wait_ready

    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": str(tmp_path)}  # an empty store: every model degraded, still serving
    omni = str(Path(sys.executable).with_name("omnidecide"))
    server = subprocess.Popen([omni, "serve", "--port", str(port)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = wait_ready(f"http://127.0.0.1:{port}", 240)  # start-up imports torch, BentoML: slow on 2 busy cores
        assert r is not None and r.json()["status"] == "degraded"
        workers = psutil.Process(server.pid).children(recursive=True)
        assert workers
        server.kill()  # SIGKILL: no chance to stop the workers itself
        server.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        from omnidecide.serving.watchdog import port_holder
        assert port_holder("127.0.0.1", port) is None
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
