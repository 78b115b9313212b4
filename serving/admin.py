"""Promote, roll back and canary over HTTP (scope `admin`): the same registry calls as `omnidecide models ...`.

Every running worker follows the stages within a second (serving.routing), so an operator without shell access to
the model store can act on a bad release. The lifecycle log records each change with the key that made it.
"""
from __future__ import annotations

from typing import Any

from omnidecide.models.errors import InputError
from omnidecide.store import registry


def _tag(model: str, version: str) -> str:
    if model not in registry.MODEL_NAMES:
        raise InputError(f"model {model!r}: one of {', '.join(registry.MODEL_NAMES)}")
    if ":" in version and version.split(":")[0] != model:
        raise InputError(f"version {version!r} is not a version of {model}")
    return version if ":" in version else f"{model}:{version}"


def _why(reason: str, key: str) -> str:
    return f"{reason or 'over HTTP'} (key {key})"


def promote(model: str, version: str, key: str, reason: str = "") -> dict[str, Any]:
    st = registry.promote(_tag(model, version), reason=_why(reason, key))
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
        st = registry.set_canary(_tag(model, version), share, reason=_why(reason, key))
    return {"model": model, "canary": st.get("canary"), "stages": st, "by": key}
