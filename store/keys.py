"""API keys: who may call the service, with which scope. Only a key's sha256 is stored, never the key.

Keys live in `keys.json` in the model store's home (`OMNIDECIDE_KEYS_FILE` names another file); containers that
cannot write a file pass `OMNIDECIDE_API_KEYS`, entries `name:scope:sha256hex` separated by commas or whitespace
(`omnidecide keys list --env` prints them). A key is 32 random bytes, so a plain sha256 is enough (nothing to guess
by brute force; a slow password hash would only cost request time).

Scopes: `read` (recommend, similar_items, bid, predict_churn, allocate, models, customer_scores), `ingest` (events,
items) and `admin` (forget_user, promote / rollback / canary). Admin may do everything; ingest does NOT imply read:
the event pipe of a storefront is its own key, so a leaked ingest key can write events but not read customers'
recommendations.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from omnidecide.models.errors import InputError
from omnidecide.store import registry

SCOPES = ("read", "ingest", "admin")
PREFIX = "od_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class Key:
    name: str
    scope: str
    sha256: str
    created: str = ""
    source: str = "file"  # file | env

    def allows(self, scope: str) -> bool:
        return self.scope == scope or self.scope == "admin"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def keys_file() -> Path:
    return Path(os.environ.get("OMNIDECIDE_KEYS_FILE") or registry.home() / "keys.json")


def _read_file(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("keys", {}))
    except (ValueError, AttributeError) as e:
        raise InputError(f"{path}: not a keys file ({e})") from e


def _write_file(path: Path, keys: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": keys}, indent=1))
    os.chmod(tmp, 0o600)
    tmp.replace(path)  # atomic: a running service never reads half a file


def _from_env(text: str) -> list[Key]:
    out = []
    for n, entry in enumerate(x for x in re.split(r"[,\s]+", text.strip()) if x):
        parts = entry.split(":")
        if len(parts) != 3 or parts[1] not in SCOPES or not re.fullmatch(r"[0-9a-f]{64}", parts[2]):
            raise InputError(f"OMNIDECIDE_API_KEYS entry {n + 1} ({entry[:20]}...): expected name:scope:sha256hex with "
                             f"scope one of {', '.join(SCOPES)}")
        out.append(Key(parts[0], parts[1], parts[2], source="env"))
    return out


def load() -> list[Key]:
    """Every configured key: the keys file's, then OMNIDECIDE_API_KEYS'."""
    stored = [Key(name, k["scope"], k["sha256"], k.get("created", "")) for name, k in _read_file(keys_file()).items()]
    return stored + _from_env(os.environ.get("OMNIDECIDE_API_KEYS", ""))


def create(scope: str, name: str | None = None) -> tuple[Key, str]:
    """A new key: stored by hash, returned once in clear (the caller prints it; it cannot be shown again)."""
    if scope not in SCOPES:
        raise InputError(f"--scope {scope!r}: one of {', '.join(SCOPES)}")
    path = keys_file()
    keys = _read_file(path)
    secret = PREFIX + secrets.token_urlsafe(32)
    name = name or f"{scope}-{digest(secret)[:8]}"
    if not NAME.match(name):
        raise InputError(f"--name {name!r}: letters, digits and _ . @ - only, at most 64 characters")
    if name in keys or name in {k.name for k in _from_env(os.environ.get("OMNIDECIDE_API_KEYS", ""))}:
        raise InputError(f"--name {name!r}: a key of that name exists (revoke it first)")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    keys[name] = {"scope": scope, "sha256": digest(secret), "created": created}
    _write_file(path, keys)
    return Key(name, scope, keys[name]["sha256"], created), secret


def revoke(name: str) -> Key:
    path = keys_file()
    keys = _read_file(path)
    if name not in keys:
        env = {k.name for k in _from_env(os.environ.get("OMNIDECIDE_API_KEYS", ""))}
        where = "it comes from OMNIDECIDE_API_KEYS; remove it there" if name in env else f"no key named {name!r} in {path}"
        raise InputError(f"cannot revoke {name!r}: {where}")
    k = keys.pop(name)
    _write_file(path, keys)
    return Key(name, k["scope"], k["sha256"], k.get("created", ""))


class KeyRing:
    """The keys a running service accepts, re-read when the keys file changes (checked at most every `every_s`),
    so a created or revoked key takes effect within a second or two, without a restart."""

    def __init__(self, every_s: float = 1.0) -> None:
        self._every = every_s
        self._lock = threading.Lock()
        self._checked = -1e9
        self._stamp: tuple | None = None
        self._by_hash: dict[str, Key] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._every:
            return
        with self._lock:
            if now - self._checked < self._every:
                return
            path = keys_file()
            try:
                st = path.stat()
                stamp = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = (str(path), None)
            stamp += (os.environ.get("OMNIDECIDE_API_KEYS", ""),)
            if stamp != self._stamp:
                self._by_hash = {k.sha256: k for k in load()}
                self._stamp = stamp
            self._checked = now

    def find(self, secret: str) -> Key | None:
        self._refresh()
        return self._by_hash.get(digest(secret))

    def configured(self) -> bool:
        self._refresh()
        return bool(self._by_hash)
