"""The one loader of stored versions: name + tag -> the model object and its metadata.

Serving runtimes and the lifecycle's backtests both call `load_version`, so a version is judged exactly as it is
served. A version that fails to load raises `VersionLoadError` naming the version and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnidecide.models.errors import InputError
from omnidecide.store import registry


class VersionLoadError(InputError):
    """A stored version that exists but cannot be loaded (corrupt or missing artefact files)."""


@dataclass(frozen=True)
class Loaded:
    """A loaded version: the model object, its tag and the metadata stored with it."""
    name: str
    tag: str
    model: Any
    metadata: dict


def _model_class(name: str) -> Any:
    if name == "recommender":
        from omnidecide.models.recommender.core import Recommender
        return Recommender
    if name == "churn":
        from omnidecide.models.churn.model import ChurnModel
        return ChurnModel
    if name == "allocator":
        from omnidecide.models.allocator.artifact import Allocator
        return Allocator
    raise InputError(f"unknown model {name!r}: one of recommender, churn, allocator")


def load(name: str, tag: str | None = None, **how: Any) -> Loaded:
    """Load version `tag` of model `name` (default: the promoted, else the latest); `how`: passed to the model
    class's `load` (the recommender's `arrays`: see models/recommender/shared.py; by default its memory-mapped arrays,
    store/mapped.py)."""
    stored = registry.get(name, tag)
    try:
        if name == "recommender" and how.get("arrays") is None:  # one copy per machine (store/mapped.py)
            from omnidecide.store import mapped

            how["arrays"] = mapped.arrays(Path(stored.path))
        obj = _model_class(name).load(Path(stored.path), **how)
    except Exception as e:  # noqa: BLE001 - any failure of a stored artefact means the same thing: unloadable
        raise VersionLoadError(f"{name}:{stored.tag} does not load ({type(e).__name__}: {e})") from e
    return Loaded(name, str(stored.tag), obj, dict(stored.info.metadata))


def load_version(name: str, tag: str) -> tuple[Any, dict]:
    """The stored model object (what serving loads) and its metadata."""
    v = load(name, tag)
    return v.model, v.metadata
