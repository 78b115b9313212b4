"""The web console, mounted in the BentoML service at /ui (`@bentoml.asgi_app`): server-rendered pages (Starlette +
Jinja2) and a little vanilla JS/CSS, no build step.

Pages: models (versions with their metrics and stage, canary share and serving health, promote / rollback / canary
for admins, the latest monitor alerts), a recommendation preview with reasons, a budget what-if that calls
`/allocate` from the browser and draws the plan, and the reports with plots (`omnidecide.store.reports`).

Login: the user pastes an API key once (`omnidecide keys create`); it is checked with the service's own
`serving.auth.authorize` and kept in a same-site cookie that the pages send back and the what-if script reads to
call `/allocate` with `Authorization: Bearer`. `read` views, `admin` acts; every act asks to confirm (in the page)
and goes to the lifecycle log with the key's name as its reason.

The console reads the running service's loaded runtimes and decision log (`bentoml.get_current_service()`), and the
registry for versions and stages, so what it shows is what the service serves.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from omnidecide.models.errors import InputError
from omnidecide.serving.auth import AuthError, authorize
from omnidecide.store import registry
from omnidecide.store.reports import headline

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "omnidecide_key"
HEALTH_DAYS = 7
CACHE_S = 10.0  # serving health and lifecycle figures are recomputed at most this often

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def _service() -> Any | None:
    """The running OmniDecide instance (None when the console runs outside the service, e.g. in a unit test)."""
    import bentoml

    try:
        return bentoml.get_current_service()
    except Exception:  # noqa: BLE001 - BentoML raises its own exception type before the service starts
        return None


class _Cache:
    """A few small time-bounded caches: report figures per version tag (they never change) and per-state lifecycle
    figures, so pages answer in well under a second after their first draw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, make, ttl: float | None) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and (ttl is None or now - hit[0] < ttl):
            return hit[1]
        value = make()
        with self._lock:
            if len(self._data) > 64:
                self._data.clear()
            self._data[key] = (now, value)
        return value


cache = _Cache()


def health() -> dict[str, dict]:
    svc = _service()
    if svc is None:
        return {}
    since = datetime.now(timezone.utc) - timedelta(days=HEALTH_DAYS)
    return cache.get("health", lambda: svc.log.health(since), CACHE_S)


def _key(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def _who(request: Request, scope: str) -> str:
    """The key's name if it may act in `scope` (raises AuthError)."""
    key = _key(request)
    return authorize(f"Bearer {key}" if key else None, scope)


def _can(request: Request, scope: str) -> bool:
    try:
        _who(request, scope)
        return True
    except AuthError:
        return False


def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.update(root=request.scope.get("root_path", ""), is_admin=_can(request, "admin"),
               key_set=bool(_key(request)), flash=request.query_params.get("msg"),
               flash_error=request.query_params.get("err"))
    return HTMLResponse(templates.get_template(template).render(**ctx), status_code=status)


def guarded(scope: str):
    """Route decorator: without a valid key the browser goes to the sign-in page; with a key lacking `scope` the
    page says so (403)."""
    def wrap(fn):
        async def inner(request: Request) -> Response:
            try:
                who = _who(request, scope)
            except AuthError as e:
                if e.status == 401:  # no key, or one revoked since: sign in (again)
                    root = request.scope.get("root_path", "")
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    err = f"&err={_q(e.message)}" if _key(request) else ""
                    return RedirectResponse(f"{root}/login?next={_q(target)}{err}", status_code=303)
                return page(request, "login.html", status=e.status, error=e.message, scope=scope,
                            next=request.url.path)
            request.state.key_name = who
            return await fn(request)
        inner.__name__ = fn.__name__
        return inner
    return wrap


# --- pages ----------------------------------------------------------------------------------------------------

def _latest_monitor() -> dict[str, Any] | None:
    import json

    f = registry.home() / "monitor" / "latest.json"
    try:
        return json.loads(f.read_text()) if f.exists() else None
    except (OSError, ValueError):
        return None


@guarded("read")
async def models(request: Request) -> Response:
    every = registry.versions()
    h = health()
    svc = _service()
    rows = []
    for name in registry.MODEL_NAMES:
        st = registry.stages(name)
        served = getattr(svc, name).describe() if svc is not None else {"tag": registry.serving_tag(name)}
        versions = [{**v, "headline": headline(name, v["metrics"]), "health": h.get(v["tag"])}
                    for v in every if v["name"] == name][:8]
        rows.append({"name": name, "serving": served.get("tag"), "error": served.get("error"),
                     "canary": st.get("canary"), "history": st.get("history", []), "versions": versions,
                     "decisions": list(reversed(registry.decisions(name)[-5:]))})
    monitor = _latest_monitor()
    return page(request, "models.html", models=rows, monitor=monitor, title="Models")


@guarded("admin")
async def act(request: Request) -> Response:
    form = await request.form()
    action, tag, name = form.get("action", ""), form.get("tag", ""), form.get("name", "")
    reason = f"console: {request.state.key_name}"
    root = request.scope.get("root_path", "")
    try:
        if action == "promote":
            registry.promote(str(tag), reason=reason)
            msg = f"promoted {tag}"
        elif action == "rollback":
            st = registry.rollback(str(name), reason=reason)
            msg = f"rolled {name} back to {st['production']}"
        elif action == "canary":
            share = float(form.get("share", "0.05")) / 100.0
            registry.set_canary(str(tag), share, reason=reason)
            msg = f"{tag} is a canary at {share:.0%}"
        elif action == "end_canary":
            registry.end_canary(str(name), reason=reason)
            msg = f"ended {name}'s canary"
        else:
            raise InputError(f"unknown action {action!r}")
    except (InputError, ValueError) as e:
        return RedirectResponse(f"{root}/?err={_q(str(e))}", status_code=303)
    log.warning("console %s by %s: %s", action, request.state.key_name, msg)
    return RedirectResponse(f"{root}/?msg={_q(msg)}", status_code=303)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300])


@guarded("read")
async def recommend(request: Request) -> Response:
    user = (request.query_params.get("user_id") or "").strip()
    result, error = None, None
    if user:
        from omnidecide.serving.recommender import RecommendRequest

        svc = _service()
        runtime = svc.recommender.pick(user) if svc is not None else None
        if runtime is None:
            error = (svc.recommender.error if svc is not None else None) or "the recommender is not served"
        else:
            try:
                result = runtime.recommend(RecommendRequest(user_id=user, k=10), stored=svc.store.recent_items(user))
            except InputError as e:
                error = str(e)
    return page(request, "recommend.html", user_id=user, result=result, error=error, title="Recommendations")


@guarded("read")
async def whatif(request: Request) -> Response:
    svc = _service()
    runtime = svc.allocator.pick("console") if svc is not None else None
    channels, weekly = [], 0.0
    if runtime is not None:
        h = runtime.allocator.history
        channels, weekly = list(h.channels), float(h.spend[-8:].sum() / 8)
    return page(request, "whatif.html", channels=channels, budget=round(weekly * 8, -2) or 100000,
                title="Budget what-if")


@guarded("read")
async def reports_index(request: Request) -> Response:
    return page(request, "reports.html", names=registry.MODEL_NAMES, name=None, sections=[], title="Reports")


def _lifecycle_state(name: str) -> tuple:
    files = [registry.home() / "lifecycle.log.jsonl", registry.home() / "monitor" / "history.jsonl"]
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files) + (name,)


def _sections(name: str, tag: str | None) -> list:
    from omnidecide.store import reports

    stored = registry.get(name, tag)
    tag = str(stored.tag)
    model = cache.get(("model", tag), lambda: reports.version_section(name, tag, drawn=True), None)
    life = cache.get(("life", _lifecycle_state(name)), lambda: reports.lifecycle_section(name, health()), CACHE_S)
    return [model, life]


@guarded("read")
async def report(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in registry.MODEL_NAMES:
        return page(request, "reports.html", status=404, names=registry.MODEL_NAMES, name=None, sections=[],
                    error=f"no model {name!r}", title="Reports")
    tag = request.query_params.get("tag") or None
    try:
        sections = _sections(name, tag)
    except InputError as e:
        return page(request, "reports.html", status=404, names=registry.MODEL_NAMES, name=name, sections=[],
                    error=str(e), title="Reports")
    if request.query_params.get("download"):
        from omnidecide.store import reports

        return HTMLResponse(reports.render(f"omnidecide {sections[0].heading}", sections),
                            headers={"content-disposition": f'attachment; filename="{name}-report.html"'})
    return page(request, "reports.html", names=registry.MODEL_NAMES, name=name, sections=sections, request_tag=tag,
                title=f"Report: {name}")


async def login(request: Request) -> Response:
    """GET: the form. POST: check the pasted key (read scope at least), keep it in the cookie, go where asked."""
    root = request.scope.get("root_path", "")
    if request.method == "GET":
        return page(request, "login.html", error=None, scope="read", next=request.query_params.get("next") or "/")
    form = await request.form()
    key = str(form.get("key", "")).strip()
    nxt = str(form.get("next") or "/")
    try:
        authorize(f"Bearer {key}" if key else None, "read")
    except AuthError as e:
        return page(request, "login.html", status=e.status, error=e.message, scope="read", next=nxt)
    target = nxt if nxt.startswith(root + "/") else root + (nxt if nxt.startswith("/") else "/")
    resp = RedirectResponse(target, status_code=303)
    # Not HttpOnly: the what-if script sends it as the Authorization header to /allocate. SameSite=Strict keeps
    # it off cross-site requests (no CSRF on the admin forms).
    resp.set_cookie(COOKIE, key, httponly=False, samesite="strict", path="/", max_age=12 * 3600)
    return resp


async def logout(request: Request) -> Response:
    resp = RedirectResponse(request.scope.get("root_path", "") + "/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


def create_app() -> Starlette:
    return Starlette(routes=[
        Route("/", models),
        Route("/act", act, methods=["POST"]),
        Route("/recommend", recommend),
        Route("/whatif", whatif),
        Route("/reports", reports_index),
        Route("/reports/{name}", report),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ])


app = create_app()
