"""The web console in-process (its Starlette app mounted at /ui under the test client, without the BentoML service:
a second service app in one process trips BentoML's metrics registry): sign-in, scopes and the admin acts, without a
browser. tests/test_console_browser.py drives the same pages, served by `omnidecide serve`, in Chromium."""
from __future__ import annotations

import re
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from omnidecide.store import keys as keystore

    mp = pytest.MonkeyPatch()
    mp.setenv("OMNIDECIDE_KEYS_FILE", str(tmp_path_factory.mktemp("keys") / "keys.json"))
    out = {scope: keystore.create(scope, f"console-{scope}")[1] for scope in ("read", "ingest", "admin")}
    yield out
    mp.undo()


@pytest.fixture(scope="module")
def client(trained, keys):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from omnidecide.serving.console.app import app

    with TestClient(Starlette(routes=[Mount("/ui", app=app)]), follow_redirects=False) as c:
        yield c


def _as(client, key: str | None) -> None:
    client.cookies.clear()
    if key:
        client.cookies.set("omnidecide_key", key)


def test_without_a_key_the_console_asks_for_one(client):
    _as(client, None)
    r = client.get("/ui/recommend?user_id=u1")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=/ui/recommend")
    assert client.get("/ui/login").status_code == 200
    r = client.post("/ui/login", data={"key": "od_not-a-key", "next": "/ui/"})
    assert r.status_code == 401 and "unknown or revoked API key" in r.text


def test_sign_in_keeps_the_key_and_goes_where_asked(client, keys):
    _as(client, None)
    r = client.post("/ui/login", data={"key": keys["read"], "next": "/ui/whatif"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/whatif"
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    r = client.post("/ui/login", data={"key": keys["read"], "next": "https://elsewhere.example/"})
    assert r.headers["location"].startswith("/ui/")  # never sends the browser off the console
    r = client.post("/ui/login", data={"key": keys["ingest"], "next": "/ui/"})
    assert r.status_code == 403  # an ingest key cannot read


def test_a_read_key_views_but_cannot_act(client, keys, trained, own_stages):
    from omnidecide.store import registry

    _as(client, keys["read"])
    page = client.get("/ui/")
    assert page.status_code == 200 and trained["recommender"] in page.text
    assert 'class="promote"' not in page.text
    before = registry.stages("churn")
    r = client.post("/ui/act", data={"action": "canary", "tag": trained["churn"], "share": "25"})
    assert r.status_code == 403 and registry.stages("churn") == before


def test_admin_acts_are_logged_with_the_key(client, keys, trained, own_stages):
    from omnidecide.store import registry

    _as(client, keys["admin"])
    r = client.post("/ui/act", data={"action": "canary", "tag": trained["churn"], "share": "25"})
    assert r.status_code == 303 and "msg=" in r.headers["location"]
    assert registry.stages("churn")["canary"] == {"tag": trained["churn"], "share": 0.25}
    entry = registry.decisions("churn")[-1]
    assert entry["action"] == "canary" and entry["reason"] == "console: console-admin"
    r = client.post("/ui/act", data={"action": "end_canary", "name": "churn"})
    assert r.status_code == 303 and "canary" not in registry.stages("churn")
    r = client.post("/ui/act", data={"action": "promote", "tag": "churn:no-such-version"})
    assert r.status_code == 303 and "err=" in r.headers["location"]  # refused, said on the page, nothing changed


def test_reports_and_a_downloadable_one(client, keys, trained):
    _as(client, keys["read"])
    r = client.get("/ui/reports/allocator")
    assert r.status_code == 200 and len(re.findall(r"<img alt=", r.text)) >= 4
    assert client.get("/ui/reports/nothing").status_code == 404
    r = client.get("/ui/reports/churn?download=1")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert "<h3>Lift chart</h3><img" in r.text and "<script" not in r.text
