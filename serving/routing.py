"""Which loaded version answers a request: production, or a canary for a sticky share of keys.

`omnidecide models promote|rollback|canary` only rewrite the registry's stages file; a running service notices the
change on its next request (checked at most once a second) and reloads, so a rollback takes effect in seconds
without a restart. A canary gets the keys (user ids, items, request bodies) whose hash falls under its share, so a
user sees one version consistently while the canary runs.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import time
from typing import Callable, Generic, TypeVar

from omnidecide.store import registry
from omnidecide.store.loader import VersionLoadError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_S = 10.0  # a model that is not served is looked for again this often, without a stages change


def bucket(name: str, key: str) -> float:
    """A stable number in [0, 1) for a key: the same user lands on the same version on every call."""
    return int.from_bytes(hashlib.sha256(f"{name}\0{key}".encode()).digest()[:8], "big") / 2.0 ** 64


class Versions(Generic[T]):
    """The production (promoted, else latest) and canary runtimes of one model, kept in step with the registry."""

    def __init__(self, name: str, load: Callable[[str | None], T], *, check_every_s: float = 1.0) -> None:
        self.name, self._load, self._every = name, load, check_every_s
        self._lock = threading.Lock()
        self._checked = self._failed_at = 0.0
        self._seen: dict | None = None
        self.production: T | None = None
        self.canary: T | None = None
        self.share = 0.0
        self.error: str | None = None
        self._loaded: dict[str, T] = {}  # by tag: a canary change does not reload production
        self.refresh(force=True)

    def _get(self, tag: str | None) -> T:
        key = tag or "latest"
        if key not in self._loaded:
            self._loaded[key] = self._load(tag)
            gc.freeze()  # a version loaded after start-up leaves the collector's sight too (see OmniDecide.__init__)
        return self._loaded[key]

    def due(self) -> bool:
        """Whether the next `pick` checks the registry (and may load a version: seconds): an async endpoint calls
        `refresh` on a thread first."""
        return time.monotonic() - self._checked >= self._every

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._every:
            return
        with self._lock:
            self._checked = now
            stages = registry.stages(self.name)
            retry = self.error is not None and now - self._failed_at >= RETRY_S  # e.g. a model trained meanwhile
            if not force and stages == self._seen and not retry:
                return
            self._seen = json.loads(json.dumps(stages))  # a snapshot, not a live reference
            try:
                self.production, self.error = self._get(stages.get("production")), None
            except Exception as e:  # noqa: BLE001 - missing or unloadable: its endpoints answer 503, others serve
                log.warning("%s not served: %s", self.name, e)
                self.production, self.error = None, registry.without_home(f"{e}. {self.fix(e)}")
            canary = stages.get("canary") or {}
            try:
                self.canary = self._get(canary["tag"]) if canary else None
                self.share = float(canary.get("share", 0.0)) if self.canary is not None else 0.0
            except Exception as e:  # noqa: BLE001 - a broken canary leaves production serving everyone
                log.warning("%s canary %s not served: %s", self.name, canary.get("tag"), e)
                self.canary, self.share = None, 0.0
            self._failed_at = now
            keep = {stages.get("production") or "latest", canary.get("tag")}
            self._loaded = {k: v for k, v in self._loaded.items() if k in keep}

    def pick(self, key: str) -> T | None:
        """The runtime for this key (None when the model is not served)."""
        self.refresh()
        if self.canary is not None and self.production is not None and bucket(self.name, key) < self.share:
            return self.canary
        return self.production

    def fix(self, e: Exception) -> str:
        """The commands that bring this model back, for the 503 body and /readyz."""
        if isinstance(e, VersionLoadError):
            return (f"Fix: `omnidecide models rollback {self.name}`, or promote a version that loads "
                    f"(`omnidecide models list {self.name}`, `omnidecide models promote TAG`), or train a new one "
                    f"with `omnidecide train {self.name}`")
        return "" if "omnidecide train" in str(e) else f"Fix: train one with `omnidecide train {self.name}`"

    def describe(self) -> dict:
        """What /models and /readyz show: the tag served (None when none), and when none, why and the fix."""
        self.refresh()
        return {"tag": getattr(self.production, "tag", None), "error": self.error,
                "degraded": self.production is None,
                "canary": {"tag": self.canary.tag, "share": self.share} if self.canary is not None else None,
                "stages": registry.stages(self.name)}


def declared_models() -> list:
    """The stored versions the service serves now (production, else latest, and any canary), as BentoML model
    references: `bentoml build` records them in the Bento, so the Bento names the models it needs (and `bentoml
    export` carries them). A model with no version yet is left out; its endpoints answer 503."""
    from bentoml.models import BentoModel

    tags = []
    for name in registry.MODEL_NAMES:
        tags += [registry.serving_tag(name), (registry.stages(name).get("canary") or {}).get("tag")]
    return [BentoModel(t) for t in dict.fromkeys(t for t in tags if t)]
