"""Who may call what: `Authorization: Bearer <key>` checked against the keys of `store.keys`, by scope per path.

`read`: recommend, similar_items, bid, predict_churn, allocate, models, customer_scores (and /noop, the benchmark's
floor).
`ingest`: events, items. `admin`: forget_user and /admin/* (promote, rollback, canary); an admin key may call
everything, an ingest key cannot read (see store/keys.py). Health, readiness, metrics and the API docs stay open; any other path needs an admin key, so a
new endpoint is closed until it is given a scope here. A missing or unknown key answers 401, a key without the
scope 403, both in the service's error body `{"error": "unauthorized"|"forbidden", "message": ..., "field": null}`.

With no key configured the service is open, which is only allowed on the loopback interface: `refuse_open_public`
stops a worker bound to any other address (and `omnidecide serve` checks before starting), and a public server
whose last key is revoked answers 401 to everything rather than opening up. Admin requests are recorded in the
lifecycle log with the key's name, whatever their outcome.

`authorize` is the one check; the middleware and other front ends (the web console) call it.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import sys

from omnidecide.store import keys as keystore

log = logging.getLogger(__name__)

SCOPE_OF = {
    "/recommend": "read", "/similar_items": "read", "/bid": "read", "/predict_churn": "read", "/allocate": "read",
    "/models": "read", "/noop": "read", "/customer_scores": "read",
    "/events": "ingest", "/items": "ingest",
    "/forget_user": "admin",
}
OPEN = {"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json", "/ui"}
# /ui/: the web console checks the key itself (from its cookie, with `authorize`: read to view, admin to act)
OPEN_PREFIXES = ("/static_content/", "/assets/", "/ui/")
LOCAL = "local (no keys configured)"  # the caller's name when the service runs open on loopback

_ring = keystore.KeyRing(every_s=0.0)  # a stat per request: a new or revoked key counts at once
_public = False  # set when this process serves on a non-loopback address


class AuthError(Exception):
    """Refused: `status` is 401 (no or unknown key) or 403 (key without the scope)."""

    def __init__(self, status: int, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.status = self.status_code = status
        self.message = message
        self.key = key  # the key's name when it was valid but lacked the scope

    def body(self) -> dict:
        """The service's one error body (serving/errors.py)."""
        return {"error": "unauthorized" if self.status == 401 else "forbidden", "message": self.message, "field": None}


def scope_for(path: str) -> str | None:
    """The scope a path needs; None for open paths."""
    path = path.rstrip("/") or "/"
    if path in OPEN or path.startswith(OPEN_PREFIXES):
        return None
    return SCOPE_OF.get(path, "admin")


def authorize(authorization_header: str | None, scope: str) -> str:
    """The name of the key in `Authorization: Bearer <key>` if it may act in `scope`; raises AuthError (401/403)."""
    if scope not in keystore.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if not _ring.configured():
        if _public:
            raise AuthError(401, "no API keys are configured on this public server; create one with "
                                 "`omnidecide keys create --scope read`")
        return LOCAL
    if not authorization_header:
        raise AuthError(401, "missing Authorization header: send `Authorization: Bearer <key>` "
                             "(`omnidecide keys create` makes a key)")
    kind, _, secret = authorization_header.strip().partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        raise AuthError(401, "Authorization header must be `Bearer <key>`")
    key = _ring.find(secret.strip())
    if key is None:
        raise AuthError(401, "unknown or revoked API key")
    if not key.allows(scope):
        raise AuthError(403, f"key {key.name!r} has scope {key.scope!r}; this endpoint needs {scope!r}", key.name)
    return key.name


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bound_host() -> str | None:
    """The address this BentoML worker serves on (from the listening socket it was handed), None in-process."""
    argv = sys.argv
    if "--fd" not in argv:
        return None
    try:
        fd = int(argv[argv.index("--fd") + 1])
        with socket.socket(fileno=os.dup(fd)) as s:
            return str(s.getsockname()[0])
    except (ValueError, IndexError, OSError):
        return None


def refuse_open_public(host: str | None = None) -> None:
    """Raise (the worker does not start) when serving beyond loopback with no key configured."""
    global _public
    host = host if host is not None else bound_host()
    _public = host is not None and not _loopback(host)
    if _public and not _ring.configured():
        raise RuntimeError(
            f"refusing to serve on {host} without API keys: anyone could read customers' recommendations and erase "
            f"data. Create a key (`omnidecide keys create --scope admin`, stored in {keystore.keys_file()}, or pass "
            "hashes in OMNIDECIDE_API_KEYS) or serve on 127.0.0.1.")


class StatusRecorder:
    """An ASGI `send` that remembers the response's status (500 until one is sent), for middleware that records
    what a request ended with even when the app raised."""

    def __init__(self, send) -> None:
        self.status = 500
        self._send = send

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


class KeyMiddleware:
    """ASGI middleware: every request to a scoped path must carry a key with that scope."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        need = scope_for(scope["path"]) if scope["type"] == "http" else None
        if need is None:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization")
        try:
            name = authorize(header.decode("latin-1") if header is not None else None, need)
        except AuthError as e:
            if need == "admin":
                _record_admin(scope["path"], e.key, e.status)
            return await _json(send, e.status, e.body(), {"www-authenticate": 'Bearer realm="omnidecide"'})
        scope.setdefault("state", {})["api_key"] = name
        if need != "admin":
            return await self.app(scope, receive, send)
        sent = StatusRecorder(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            _record_admin(scope["path"], name, sent.status)


def _record_admin(path: str, key: str | None, status: int) -> None:
    """Every admin request, allowed or not, with the key's name (None when no valid key was sent)."""
    from omnidecide.store import registry

    log.info("admin %s by key %s: %s", path, key, status)
    try:
        registry.record("admin_request", path=path, key=key, status=status)
    except OSError as e:  # the audit trail failing must not turn an answered request into an error
        log.error("could not record admin request %s by %s: %s", path, key, e)


async def _json(send, status: int, body: dict, headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
