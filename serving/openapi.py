"""The service's OpenAPI 3.1 document (`GET /docs.json`), built from the same pydantic models that validate requests.

Why not BentoML's own: it labels the document 3.0.2 but prints 3.1 forms (`exclusiveMinimum: 0`), keeps only the
first branch of every `anyOf` (an optional field loses `null`), and lists no 503 or error body shape. Here every
POST names its flat request schema with an example, its answer, and every error status with `ErrorBody`; the
fuzz test (tests/test_fuzz.py) checks the running service against this document.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from omnidecide.serving.errors import ErrorBody

REF = "#/components/schemas/{model}"
ERRORS = {"400": "bad input: the message names the field and the reason (an unknown field, a money amount over "
                 "OMNIDECIDE_MAX_AMOUNT, ...)",
          "413": "the body is larger than the limit (OMNIDECIDE_MAX_BODY_BYTES)",
          "415": "the body is not application/json",
          "422": "a list, an id or a text is longer than its limit (the message names the limit and its variable)",
          "500": "a failure of the model call (logged with the version's tag)",
          "503": "the model is not served (missing or does not load): the message says why and the command that "
                 "fixes it; the other models keep serving"}


class Canary(BaseModel):
    tag: str
    share: float


class ModelState(BaseModel):
    tag: Optional[str]
    error: Optional[str]
    degraded: bool
    canary: Optional[Canary]
    stages: dict[str, Any]


class Readiness(BaseModel):
    status: str
    degraded: list[str]
    models: dict[str, ModelState]


def _endpoints() -> list[tuple[str, type[BaseModel] | None, Any, str]]:
    """(route, request model or None, answer type, docstring) of every `@bentoml.api` of the service, so a new
    endpoint appears here without an edit."""
    import typing

    import pydantic
    from _bentoml_sdk.io_models import IOMixin

    from omnidecide.serving.service import OmniDecide

    out = []
    for name, api in OmniDecide.apis.items():
        spec = api.input_spec
        # input_spec=Model: BentoML subclasses Model with its IOMixin; the model itself is the request schema
        req = next((b for b in spec.__mro__[1:] if issubclass(b, BaseModel) and b is not BaseModel
                    and not issubclass(b, IOMixin)), None)
        if req is None and spec.model_fields:
            # individual parameters: BentoML's generated model, named `Input` for every such endpoint; documented
            # under a name of its own (AdminPromoteRequest), or the components would collide
            title = "".join(w.capitalize() for w in api.route.strip("/").replace("/", "_").split("_")) + "Request"
            req = pydantic.create_model(title, __base__=spec)
        answer = typing.get_type_hints(api.func).get("return", Any)
        if name == "models":
            answer = dict[str, ModelState]
        out.append((api.route, req, answer, (api.doc or "").strip()))
    return out


def _json(schema: dict, example: Any = None) -> dict:
    out: dict = {"application/json": {"schema": schema}}
    if example is not None:
        out["application/json"]["example"] = example
    return out


@functools.cache
def document() -> dict:
    endpoints = _endpoints()
    models: list = [(ErrorBody, "serialization"), (Readiness, "serialization"), (ModelState, "serialization")]
    for _, req, resp, _ in endpoints:
        if req is not None:
            models.append((req, "validation"))
        if isinstance(resp, type) and issubclass(resp, BaseModel):
            models.append((resp, "serialization"))
    answers = {id(resp): TypeAdapter(resp).json_schema(ref_template=REF, mode="serialization")
               for _, _, resp, _ in endpoints if not (isinstance(resp, type) and issubclass(resp, BaseModel))}
    refs, defs = models_json_schema(models, ref_template=REF)
    components = defs.get("$defs", {})
    for schema in answers.values():  # a plain answer type (a dict of models): its models join the components
        components.update(schema.pop("$defs", {}))
    error = {"description": "", "content": _json({"$ref": REF.format(model="ErrorBody")})}
    paths: dict = {}
    for route, req, resp, doc in endpoints:
        resp_schema = refs[(resp, "serialization")] if (resp, "serialization") in refs else answers[id(resp)]
        op: dict = {"operationId": route.strip("/"), "summary": doc.split("\n")[0], "description": doc,
                    "responses": {"200": {"description": "the answer", "content": _json(resp_schema)},
                                  **{s: {**error, "description": d} for s, d in ERRORS.items()}}}
        if req is not None:
            # the request schema inline, so the document shows the flat body and its example at the path
            flat = dict(components[req.__name__])  # a model without fields (NoBody): the body may be left out
            op["requestBody"] = {"required": bool(req.model_fields), "content": _json(flat, flat.get("example"))}
        else:
            op["requestBody"] = {"required": False, "content": _json({"type": "object"})}
        paths[route] = {"post": op}
    paths["/readyz"] = {"get": {"operationId": "readyz", "summary": "each model's state; `degraded` lists the models "
                                "not served and why (200 while the process serves)",
                                "responses": {"200": {"description": "state",
                                                      "content": _json({"$ref": REF.format(model="Readiness")})}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "omnidecide", "version": "1",
                     "description": "Recommendation and decisioning for omnichannel retail. Flat JSON bodies; every "
                                    "error answers `{error, message, field}`."},
            "paths": paths, "components": {"schemas": components}}
