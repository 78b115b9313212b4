"""API keys and scopes: `omnidecide keys create|list|revoke`, 401/403/200 per endpoint, pickup without a restart,
the refusal to serve open beyond loopback, and admin acts logged with the key's name.

The service runs in-process (BentoML's ASGI app under Starlette's test client) with its own keys file and online
store, so nothing here leaks into the other service tests.
"""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

import omnidecide.cli.keys  # noqa: F401  (registers `keys`)
import omnidecide.cli.lifecycle  # noqa: F401  (registers `serve`)
from omnidecide.cli.app import app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

runner = CliRunner()


def body(route: str, fields: dict) -> dict:
    """The JSON body of `route` for these fields: flat, or wrapped in "request" while an endpoint still takes one."""
    from omnidecide.serving.service import OmniDecide

    api = next(a for a in OmniDecide.apis.values() if a.route == route)
    return {"request": fields} if set(api.input_spec.model_fields) == {"request"} else fields


def create_key(scope: str, name: str) -> str:
    res = runner.invoke(app, ["keys", "create", "--scope", scope, "--name", name])
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def env(trained, tmp_path_factory):  # trained first: its promotions go to the session database
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("auth")
    mp.setenv("OMNIDECIDE_KEYS_FILE", str(home / "keys.json"))
    mp.setenv("OMNIDECIDE_DATABASE_URL", f"sqlite:///{home / 'state.sqlite3'}")
    mp.delenv("OMNIDECIDE_API_KEYS", raising=False)
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def keys(env) -> dict[str, str]:
    return {scope: create_key(scope, f"test-{scope}") for scope in ("read", "ingest", "admin")}


@pytest.fixture(scope="module")
def client(trained, keys, service_app):
    with TestClient(service_app()) as c:
        yield c


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def test_keys_file_holds_only_hashes_and_list_never_shows_a_key(keys, env):
    text = (env / "keys.json").read_text()
    assert all(k not in text for k in keys.values())
    assert all(k.startswith("od_") and len(k) > 40 for k in keys.values())
    res = runner.invoke(app, ["keys", "list"])
    assert res.exit_code == 0 and all(f"test-{s}" in res.output for s in keys)
    assert all(k not in res.output for k in keys.values())
    dup = runner.invoke(app, ["keys", "create", "--scope", "read", "--name", "test-read"])
    assert dup.exit_code != 0 and "exists" in str(dup.exception)
    bad = runner.invoke(app, ["keys", "create", "--scope", "write"])
    assert bad.exit_code != 0 and "read, ingest, admin" in str(bad.exception)


def test_each_endpoint_answers_401_403_200_by_scope(client, keys, synth_world, trained, own_stages):
    item = pd.read_csv(synth_world / "items.csv", dtype={"item_id": str})["item_id"].iloc[0]
    user = pd.read_csv(synth_world / "users.csv", dtype=str)["user_id"].iloc[0]
    event = {"user_id": "scope-test", "item_id": item, "event": "view", "timestamp": "2026-06-01T10:00:00"}
    calls = {  # route -> (scope, fields)
        "/recommend": ("read", {"user_id": user, "k": 3}),
        "/similar_items": ("read", {"item_id": item, "k": 3}),
        "/bid": ("read", {"user_id": user, "channel": "douyin", "candidates": [item]}),
        "/predict_churn": ("read", {"as_of": "2026-03-01", "events": [
            {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": 20}]}),
        "/allocate": ("read", {"budget": 10000, "periods": 2}),
        "/models": ("read", {}),
        "/customer_scores": ("read", {"user_ids": [user]}),
        "/events": ("ingest", {"events": [event]}),
        "/items": ("ingest", {"items": [{"item_id": item, "price": 9.9}]}),
        "/forget_user": ("admin", {"user_id": "scope-test"}),
        "/admin/promote": ("admin", {"model": "churn", "version": trained["churn"]}),
        "/admin/canary": ("admin", {"model": "churn", "share": 0}),
        "/admin/rollback": ("admin", {"model": "churn"}),
    }
    for route, (scope, fields) in calls.items():
        data = body(route, fields) if fields else {}
        r = client.post(route, json=data)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", (route, r.text)
        r = client.post(route, json=data, headers=bearer("od_not-a-key"))
        assert r.status_code == 401 and "unknown" in r.json()["message"], route
        for key_scope, key in keys.items():
            r = client.post(route, json=data, headers=bearer(key))
            allowed = key_scope in (scope, "admin")
            if not allowed:
                assert r.status_code == 403 and r.json()["error"] == "forbidden", (route, key_scope, r.text)
                assert scope in r.json()["message"]
            elif route in ("/admin/rollback", "/admin/canary"):  # let through; nothing to roll back or end: 400 why
                assert r.status_code == 400 and "churn: no " in r.text, (route, r.text)
            else:
                assert r.status_code == 200, (route, key_scope, r.text)


def test_health_and_docs_stay_open(client, keys):
    """(/metrics answers only in a real server, where BentoML sets up Prometheus: tested in test_bento.py.)"""
    for path in ("/healthz", "/livez", "/readyz", "/docs.json"):
        assert client.get(path).status_code == 200, path
    from omnidecide.serving.auth import scope_for
    assert scope_for("/metrics") is None and scope_for("/anything-new") == "admin"


def test_admin_acts_over_http_are_logged_with_the_key(client, keys, trained, own_stages):
    from omnidecide.store import registry

    tag = trained["churn"]
    r = client.post("/admin/canary", json={"model": "churn", "version": tag, "share": 0.2}, headers=bearer(keys["admin"]))
    assert r.status_code == 200 and r.json()["canary"] == {"tag": tag, "share": 0.2} and r.json()["by"] == "test-admin"
    assert registry.stages("churn")["canary"]["tag"] == tag
    r = client.post("/admin/canary", json={"model": "churn", "share": 0}, headers=bearer(keys["admin"]))
    assert r.status_code == 200 and r.json()["canary"] is None
    r = client.post("/admin/promote", json={"model": "churn", "version": "no-such"}, headers=bearer(keys["admin"]))
    assert r.status_code == 400 and "churn:no-such" in r.text
    log = registry.decisions()
    acts = [x for x in log if x.get("action") == "admin_request"][-3:]
    assert [(x["path"], x["key"], x["status"]) for x in acts] == [
        ("/admin/canary", "test-admin", 200), ("/admin/canary", "test-admin", 200), ("/admin/promote", "test-admin", 400)]
    canary = [x for x in log if x.get("action") == "canary"][-1]
    assert "test-admin" in canary["reason"]
    client.post("/forget_user", json=body("/forget_user", {"user_id": "x"}), headers=bearer(keys["read"]))
    client.post("/admin/rollback", json={"model": "churn"})
    acts = [x for x in registry.decisions() if x.get("action") == "admin_request"][-2:]
    assert [(x["path"], x["key"], x["status"]) for x in acts] == [("/forget_user", "test-read", 403),
                                                                   ("/admin/rollback", None, 401)]


def test_new_and_revoked_keys_count_at_once(client, keys):
    fresh = create_key("read", "test-fresh")
    r = client.post("/models", json={}, headers=bearer(fresh))
    assert r.status_code == 200
    res = runner.invoke(app, ["keys", "revoke", "test-fresh"])
    assert res.exit_code == 0, res.output
    assert client.post("/models", json={}, headers=bearer(fresh)).status_code == 401
    gone = runner.invoke(app, ["keys", "revoke", "test-fresh"])
    assert gone.exit_code != 0 and "no key named" in str(gone.exception)


def test_keys_from_the_environment(client, keys, monkeypatch):
    from omnidecide.store.keys import digest

    monkeypatch.setenv("OMNIDECIDE_API_KEYS", f"container-ingest:ingest:{digest('od_from-env')}")
    r = client.post("/models", json={}, headers=bearer("od_from-env"))
    assert r.status_code == 403 and "container-ingest" in r.json()["message"]
    listed = runner.invoke(app, ["keys", "list", "--env"])
    assert f"container-ingest:ingest:{digest('od_from-env')}" in listed.stdout
    monkeypatch.setenv("OMNIDECIDE_API_KEYS", "broken-entry")
    with pytest.raises(Exception, match="name:scope:sha256hex"):
        from omnidecide.store import keys as keystore
        keystore.load()


def test_no_keys_means_open_on_loopback_only(tmp_path, monkeypatch):
    from omnidecide.serving import auth

    monkeypatch.setenv("OMNIDECIDE_KEYS_FILE", str(tmp_path / "none.json"))
    monkeypatch.delenv("OMNIDECIDE_API_KEYS", raising=False)
    monkeypatch.setattr(auth, "_public", False)
    auth.refuse_open_public("127.0.0.1")
    assert auth.authorize(None, "admin") == auth.LOCAL
    with pytest.raises(RuntimeError, match="refusing to serve on 0.0.0.0 without API keys"):
        auth.refuse_open_public("0.0.0.0")
    with pytest.raises(auth.AuthError) as e:  # a public server whose last key was revoked does not open up
        auth.authorize(None, "read")
    assert e.value.status == 401
    res = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code != 0 and "without API keys" in str(res.exception)
    monkeypatch.setattr(auth, "_public", False)
