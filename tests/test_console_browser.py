"""The web console in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium, installed by
scripts/services/chromium.sh; never `playwright install`) against `omnidecide serve` on a loopback port.

Each page loads with no console error at 1280 and 390 px (screenshots of both go to artifacts/console/, git-ignored),
the what-if form gets a plan from /allocate and draws it, a promotion made in the console is what /models reports
next, and a read key cannot promote.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
OMNIDECIDE = str(Path(sys.executable).with_name("omnidecide"))  # the installed command, as users run it
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("OMNIDECIDE_ARTIFACTS", ROOT / "artifacts")) / "console"
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}
PAGES = {"models": "/ui/", "recommend": "/ui/recommend?user_id={user}", "whatif": "/ui/whatif",
         "reports": "/ui/reports", "report-recommender": "/ui/reports/recommender",
         "report-churn": "/ui/reports/churn", "report-allocator": "/ui/reports/allocator"}


def _cli(*args: str) -> str:
    env = {**os.environ}
    res = subprocess.run([OMNIDECIDE, *args], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout


def _key(scope: str, name: str) -> str:
    out = _cli("keys", "create", "--scope", scope, "--name", name)
    return out.strip().splitlines()[-1].strip()  # the key, printed once, as the last line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, key: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json",
                                          **({"authorization": f"Bearer {key}"} if key else {})},
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def world(trained, synth_world, tmp_path_factory):
    """Two recommender versions (the second a copy of the first's artefacts under a new tag, so a promotion
    visibly changes what serves), everything promoted, keys for both scopes, the service on a free port."""
    from omnidecide.store import registry

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/services/chromium.sh (scripts/test.sh does)")
    stages = registry.home() / "stages.json"
    saved = stages.read_text() if stages.exists() else None
    first = registry.get("recommender", trained["recommender"])
    meta = dict(first.info.metadata)
    second = registry.save("recommender", lambda f: [shutil.copy2(p, f) for p in Path(first.path).iterdir()
                                                     if p.is_file() and p.name != "model.yaml"],
                           metrics=meta["metrics"], params=meta["params"], data_fingerprint=meta["data_fingerprint"],
                           extra={k: v for k, v in meta.items() if k not in ("metrics", "params", "data_fingerprint")})
    for tag in trained.values():
        registry.promote(tag, reason="test_console_browser")
    mp = pytest.MonkeyPatch()  # keys of this module only, in their own file (the server inherits the setting)
    mp.setenv("OMNIDECIDE_KEYS_FILE", str(tmp_path_factory.mktemp("console-keys") / "keys.json"))
    keys = {"admin": _key("admin", "console-admin-test"), "read": _key("read", "console-read-test")}
    port = _free_port()
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SHOTS / "server.log", "w")
    proc = subprocess.Popen([OMNIDECIDE, "serve", "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, (SHOTS / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as r:  # answers once models loaded
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the service did not get ready in 240 s")
        user = (synth_world / "users.csv").read_text().splitlines()[1].split(",")[0]
        yield {"base": base, "keys": keys, "first": trained["recommender"], "second": second, "user": user}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        if saved is None:
            stages.unlink(missing_ok=True)
        else:
            stages.write_text(saved)
        mp.undo()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _login(browser, world, scope: str, width: str = "laptop"):
    w, h = WIDTHS[width]
    ctx = browser.new_context(viewport={"width": w, "height": h})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(world["base"] + "/ui/")
    page.fill("#key", world["keys"][scope])
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    return ctx, page, errors


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_loads_without_console_errors(browser, world, width):
    ctx, page, errors = _login(browser, world, "read", width)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        resp = page.goto(world["base"] + path.format(user=world["user"]), wait_until="load")
        assert resp is not None and resp.status == 200, (name, resp and resp.status)
        assert page.locator("h1").count() >= 1
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= WIDTHS[width][0] + 1, f"{name} overflows sideways at {width}: {wide}px"
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    recs = page.goto(world["base"] + PAGES["recommend"].format(user=world["user"]))
    assert recs.status == 200 and page.locator("ol.recs li").count() == 10
    assert page.locator(".reason").first.inner_text().strip()
    assert not errors, errors
    ctx.close()


def test_whatif_draws_a_plan(browser, world):
    ctx, page, errors = _login(browser, world, "read")
    page.goto(world["base"] + "/ui/whatif")
    page.fill("input[name=budget]", "2000000")
    page.fill("input[name=periods]", "6")
    page.click("#whatif button[type=submit]")
    page.wait_for_selector("#result:not([hidden])", timeout=30000)
    assert page.locator("#chart rect").count() >= 6  # at least one bar segment per week
    assert page.locator("#chart rect[data-channel=reserve]").count() == 1
    assert "Plan from allocator:" in page.inner_text("#summary")
    assert page.locator("#per-channel tbody tr").count() >= 2
    page.screenshot(path=str(SHOTS / "whatif-plan-laptop.png"), full_page=True)
    assert not errors, errors
    ctx.close()


def test_a_promote_from_the_console_changes_models(browser, world, own_stages):
    from omnidecide.store import registry

    read = world["keys"]["read"]
    assert _get(world["base"] + "/models", read, {})[1]["recommender"]["tag"] == world["first"]
    ctx, page, errors = _login(browser, world, "admin")
    asked = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.click(f"tr[data-tag='{world['second']}'] button.promote")
    page.wait_for_selector(".flash.ok")
    assert asked == [f"Promote {world['second']} to production?"]
    deadline = time.monotonic() + 10
    while _get(world["base"] + "/models", read, {})[1]["recommender"]["tag"] != world["second"]:
        assert time.monotonic() < deadline, "/models still reports the old version"
        time.sleep(0.5)
    entry = registry.decisions("recommender")[-1]
    assert entry["action"] == "promote" and entry["tag"] == world["second"] and "console-admin-test" in entry["reason"]
    assert not errors, errors
    ctx.close()


def test_a_read_key_cannot_promote(browser, world, own_stages):
    from omnidecide.store import registry

    before = registry.stages("recommender").get("production")
    ctx, page, errors = _login(browser, world, "read")
    assert page.locator("button.promote").count() == 0  # no admin buttons for a read key
    resp = page.request.post(world["base"] + "/ui/act", form={"action": "promote", "tag": world["second"]})
    assert resp.status == 403
    assert registry.stages("recommender").get("production") == before
    assert not errors, errors
    ctx.close()
