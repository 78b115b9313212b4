"""Promote, roll back and canary over HTTP (scope `admin`): the same registry calls as `omnidecide models ...`.

Every running worker follows the stages within a second (serving.routing), so an operator without shell access to
the model store can act on a bad release. The lifecycle log records each change with the key that made it.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from omnidecide.models.errors import InputError
from omnidecide.serving.limits import Id, MaybeId, Note, RequestModel
from omnidecide.store import registry


class AdminPromoteRequest(RequestModel):
    model: Id
    version: Id = Field(..., description="name:version or the version alone")
    reason: Note = Field("", description="written to the lifecycle log with the key's name")


class AdminRollbackRequest(RequestModel):
    model: Id
    reason: Note = ""


class AdminCanaryRequest(RequestModel):
    model: Id
    version: MaybeId = ""
    share: float = Field(0.05, ge=0, le=1, description="of the model's traffic; 0 ends the canary")
    reason: Note = ""


def _tag(model: str, version: str) -> str:
    if model not in registry.MODEL_NAMES:
        raise InputError(f"model {model!r}: one of {', '.join(registry.MODEL_NAMES)}")
    if ":" in version and version.split(":")[0] != model:
        raise InputError(f"version {version!r} is not a version of {model}")
    return version if ":" in version else f"{model}:{version}"


def _held(model: str, version: str) -> str:
    """The tag, when the store holds it. Why not the registry's own error: it names the model store's path on the
    server, which an HTTP caller cannot use and should not see; the versions there are is what they need."""
    tag = _tag(model, version)
    try:
        registry.get(model, tag)
    except registry.RegistryError:
        held = [v["tag"].split(":", 1)[1] for v in registry.versions(model)]
        listed = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "")
        raise InputError(f"version {tag!r} is not in the model store; {model} versions there, newest first: "
                         f"{listed or 'none (train one)'}") from None
    return tag


def _why(reason: str, key: str) -> str:
    return f"{reason or 'over HTTP'} (key {key})"


def promote(model: str, version: str, key: str, reason: str = "") -> dict[str, Any]:
    st = registry.promote(_held(model, version), reason=_why(reason, key))
    return {"model": model, "production": st["production"], "stages": st, "by": key}


def rollback(model: str, key: str, reason: str = "") -> dict[str, Any]:
    _tag(model, "x")
    st = registry.rollback(model, reason=_why(reason, key))
    return {"model": model, "production": st["production"], "stages": st, "by": key}


def canary(model: str, version: str | None, share: float, key: str, reason: str = "") -> dict[str, Any]:
    """Send `share` of traffic to `version`; share 0 (or no version) ends the running canary."""
    if not version or share == 0:
        _tag(model, "x")
        st = registry.end_canary(model, reason=_why(reason, key))
    else:
        st = registry.set_canary(_held(model, version), share, reason=_why(reason, key))
    return {"model": model, "canary": st.get("canary"), "stages": st, "by": key}
