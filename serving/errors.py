"""One error body everywhere, and the checks every request passes before BentoML sees it.

Every answer that is not a success has the body `{"error": code, "message": ..., "field": ... or null}`:
- the endpoints raise `ApiError` (or let a bad-input error through) and `answers` turns it into that body;
- `Guard`, an ASGI middleware, rewrites what BentoML and Starlette answer on their own (request validation, an
  unknown path, a crash) into the same shape, and refuses before parsing: a POST body that is not
  `application/json` (415: a page in a browser cannot post `text/plain` to us) or larger than the body limit (413).
It also answers `GET /readyz` with each model's state (`degraded` names the model and why) and `GET /docs.json`
with the service's own OpenAPI 3.1 document (serving/openapi.py).
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from typing import Any, Awaitable, Callable

import anyio
import pandas as pd
from pydantic import BaseModel
from starlette.responses import JSONResponse

from omnidecide.models.errors import InputError
from omnidecide.serving.limits import LIMITS, Limits

log = logging.getLogger(__name__)

# status -> code when BentoML or Starlette answered by themselves
_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type", 422: "limit_exceeded",
          429: "too_many_requests", 500: "internal_error", 503: "unavailable", 504: "timeout"}
# list fields with a limit -> the limit's name (Limits field); per path where one name means two things
_LIST_LIMITS = {"recent_events": "recent_events", "exclude": "exclude", "candidates": "candidates", "events": "events",
                "items": "items", "user_ids": "user_ids"}
_PATH_LIST_LIMITS = {("/predict_churn", "events"): "churn_events"}


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: str
    message: str
    field: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self) -> JSONResponse:
        return JSONResponse(ErrorBody(error=self.code, message=self.message, field=self.field).model_dump(),
                            status_code=self.status)


# Failures of bad input that surface from pandas or arithmetic rather than from our own checks.
BAD_INPUT = (InputError, pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta, OverflowError)


def bad_input(e: Exception, fields: set[str] | frozenset[str] = frozenset()) -> ApiError:
    """A 400 naming the field when the message starts with one (`events[1]: unknown event ...`)."""
    message = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
    m = re.match(r"[\s`'\"]*([A-Za-z_]+)", message)
    field = m.group(1) if m and m.group(1) in fields else None
    return ApiError(400, "invalid_request", message, field)


def answers(fields: set[str]) -> Callable:
    """Endpoint decorator: ApiError and bad input become their error body; any other failure is logged and answers
    500 in the same shape (the decision log line with the failing version is written by `service._call`). Works on
    plain and on `async` endpoints."""

    def wrap(fn: Callable) -> Callable:
        def refused(e: Exception) -> JSONResponse:
            if isinstance(e, ApiError):
                return e.response()
            if isinstance(e, BAD_INPUT):
                return bad_input(e, fields).response()
            log.exception("%s failed", fn.__name__)  # the caller gets a 500 body, the server log the traceback
            return ApiError(500, "internal_error", f"{fn.__name__} failed on the server; the server log and "
                            "the decision log have the details").response()

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def inner_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except Exception as e:  # noqa: BLE001 - see `refused`
                    return refused(e)
            return inner_async

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - see `refused`
                return refused(e)
        return inner
    return wrap


def _field(loc: list | tuple) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("body", "root"):
            out += f".{part}" if out else str(part)
    return out or None


def from_validation(path: str, detail: list[dict]) -> tuple[int, dict]:
    """BentoML's pydantic error list -> (status, our body): 422 when a limit is exceeded, else 400. An unknown field
    is named first: a misspelt name (`itemid`) is usually also why a required one (`item_id`) is missing."""
    detail = sorted(detail, key=lambda d: d.get("type") != "extra_forbidden")
    first = detail[0] if detail else {}
    loc = list(first.get("loc") or [])
    field, kind, msg = _field(loc), str(first.get("type", "")), str(first.get("msg", "invalid"))
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    if kind == "json_invalid":
        return 400, {"error": "invalid_json", "message": f"the body is not valid JSON: {msg}", "field": None}
    names = [p for p in loc if isinstance(p, str)]
    if kind == "too_long" and names:
        limit = _PATH_LIST_LIMITS.get((path, names[-1])) or _LIST_LIMITS.get(names[-1])
        if limit:
            return 422, {"error": "limit_exceeded", "field": field, "message": (
                f"{field}: {msg}; the limit is {getattr(LIMITS, limit)} ({Limits.env_name(limit)}){more}")}
    if kind == "string_too_long":
        ids = f"; ids are limited to {LIMITS.id_chars} characters ({Limits.env_name('id_chars')})"
        return 422, {"error": "limit_exceeded", "field": field, "message": (
            f"{field}: {msg}{ids if msg.endswith(f' {LIMITS.id_chars} characters') else ''}{more}")}
    if kind == "less_than_equal" and msg.endswith(f" {LIMITS.amount}"):  # serving.limits.Money: bad input, a 400
        msg += f", the limit of a money amount ({Limits.env_name('amount')})"
    if kind == "extra_forbidden":
        msg = "not a field of this endpoint (misspelt?); /docs.json lists its fields"
    if kind == "string_too_short" and msg.endswith("at least 1 character"):  # BentoML sends no input, no context
        msg = "is empty or only whitespace"
    if kind == "string_pattern_mismatch":
        msg = "contains a control character (NUL, a line break, ...), which ids may not hold"
    return 400, {"error": "invalid_request", "message": f"{field or 'body'}: {msg}{more}", "field": field}


def _reshape(path: str, status: int, raw: bytes) -> dict:
    """Whatever BentoML or Starlette answered with `status` -> our error body."""
    try:
        body: Any = json.loads(raw or b"null")
    except ValueError:
        body = raw.decode("utf-8", "replace").strip()
    if isinstance(body, dict) and set(body) == {"error", "message", "field"}:
        return body  # ours already
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        return from_validation(path, body["detail"])[1]
    if isinstance(body, list) and body and isinstance(body[0], dict):  # BentoML's 4xx: [{"error": message}]
        body = body[0]
    message = body.get("error") or body.get("detail") if isinstance(body, dict) else body
    return {"error": _CODES.get(status, "error"), "message": str(message or status), "field": None}


class Guard:
    """ASGI middleware in front of BentoML's app (see the module docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: Limits | None = None) -> None:
        self.app, self.limits = app, limits or LIMITS
        self._service: Any = None  # this app's service instance (has `readiness()`), once BentoML built it

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._service is None:
            from _bentoml_sdk.service import get_current_service
            try:
                self._service = get_current_service()
            except Exception:  # noqa: BLE001 - still starting: BentoML's own /readyz answers 503
                pass
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if path == "/ui" or path.startswith("/ui/"):  # the web console: HTML pages and forms, its own answers
            return await self.app(scope, receive, send)
        if method == "GET" and path == "/docs.json":
            from omnidecide.serving.openapi import document
            return await JSONResponse(document())(scope, receive, send)
        if method == "GET" and path == "/readyz" and hasattr(self._service, "readiness"):
            state = await anyio.to_thread.run_sync(self._service.readiness)
            return await JSONResponse(state)(scope, receive, send)
        if method == "POST":
            refused = await self._refuse(scope, receive)
            if isinstance(refused, ApiError):
                return await refused.response()(scope, receive, send)
            receive = refused or receive
        await self.app(scope, receive, self._reshaping(path, send))

    async def _refuse(self, scope: dict, receive: Callable) -> ApiError | Callable | None:
        """415 / 413 before anything parses the body; a body of unknown length is read (bounded) and replayed."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not (not media and length == "0"):
            return ApiError(415, "unsupported_media_type", f"POST bodies must be application/json, got "
                            f"{media or 'no content-type'}", "content-type")
        limit = self.limits.body_bytes
        too_big = ApiError(413, "body_too_large", f"the body is larger than {limit} bytes "
                           f"({Limits.env_name('body_bytes')})")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return ApiError(400, "invalid_request", f"content-length {length!r} is not a number", "content-length")
            return too_big if n > limit else None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return too_big
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return replay

    @staticmethod
    def _reshaping(path: str, send: Callable) -> Callable:
        """Pass successes through; hold an error answer to the end and send it again in our shape."""
        held: dict[str, Any] = {}

        async def inner(message: dict) -> None:
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    return await send(message)
                held["start"], held["body"] = message, b""
                return None
            if "start" not in held:
                return await send(message)
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return None
            status = held["start"]["status"]
            body = _reshape(path, status, held["body"])
            if status == 400 and body.get("error") == "limit_exceeded":
                status = 422
            raw = json.dumps(body).encode()
            headers = [(k, v) for k, v in held["start"].get("headers", [])
                       if k.lower() not in (b"content-length", b"content-type")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
            await send({**held["start"], "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": raw, "more_body": False})
        return inner
