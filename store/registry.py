"""The model store: versions live in BentoML's store (`BENTOML_HOME`, default `<repo>/model_store`).

Training writes versions here; serving and the CLI read them. Which version serves is a small pointer
per model in the shared database (`store.db`, table `stages`): the promoted version, the ones it replaced (for
rollback) and an optional canary with its traffic share. No pointer means "latest".
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault(
    "BENTOML_HOME",
    str(REPO_ROOT / "model_store") if (REPO_ROOT / "pyproject.toml").exists() else str(Path.cwd() / "model_store"),
)
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

import bentoml  # noqa: E402  (BENTOML_HOME must be set first)
from bentoml.exceptions import BentoMLException, NotFound  # noqa: E402

from omnidecide.models.errors import InputError  # noqa: E402

MODEL_NAMES = ("recommender", "churn", "allocator")


class RegistryError(InputError):
    """A tag or model name that the store does not hold."""


def home() -> Path:
    return Path(os.environ["BENTOML_HOME"])


def without_home(message: str) -> str:
    """`message` with the model store's location on this machine replaced by `<model store>`: what an HTTP caller
    reads (a 503, /models, /readyz, an admin answer) names versions, never the server's paths; the log keeps them."""
    return message.replace(str(home()), "<model store>")


def fingerprint(paths: Iterable[str | Path]) -> str:
    """sha256 over the bytes of the training files, so a version says exactly what it was fit on."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _without_none(obj: Any) -> Any:
    """JSON without None, for a version's metadata: BentoML refuses a None anywhere in it (a ValueError at save,
    after the whole fit), so an absent figure (no second stage, no TIFU) is left out of its dict, and is NaN in a
    list. Readers take a missing key for None (`.get`)."""
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [float("nan") if v is None else _without_none(v) for v in obj]
    return obj


def save(name: str, write: Callable[[Path], None], *, metrics: dict, params: dict, data_fingerprint: str,
         extra: dict | None = None) -> str:
    """Create a new version: `write(folder)` puts the artefacts in; metadata carries metrics/params/data; a report
    with plots (`report.html`) is drawn into it. Returns the tag."""
    if name not in MODEL_NAMES:
        raise RegistryError(f"unknown model name {name!r}; expected one of {MODEL_NAMES}")
    metadata = _without_none(_jsonable({"metrics": metrics, "params": params, "data_fingerprint": data_fingerprint,
                                        **(extra or {})}))
    with bentoml.models.create(name, metadata=metadata, labels={"owner": "omnidecide"}) as model:
        write(Path(model.path))
        from omnidecide.store import reports  # matplotlib: imported only when a version is saved
        reports.write_into(Path(model.path), name, metadata)  # report.html with plots, see store.reports
    return str(model.tag)


def check_name(name: str) -> str:
    """A model name the store can hold; anything else is refused by name (not "train one with `train bogus`")."""
    if name not in MODEL_NAMES:
        raise RegistryError(f"unknown model {name!r}; one of {', '.join(MODEL_NAMES)} (see `omnidecide models list`)")
    return name


def get(name: str, tag: str | None = None) -> bentoml.Model:
    """A version by tag; without one, the promoted version, else the latest."""
    check_name(name)
    tag = tag or stages(name).get("production") or f"{name}:latest"
    if ":" not in tag:
        tag = f"{name}:{tag}"
    try:
        return bentoml.models.get(tag)
    except NotFound as e:
        raise RegistryError(f"no model {tag!r} in the store at {home()}; train one with `omnidecide train {name}`") from e
    except BentoMLException as e:  # a malformed tag ("recommender:", "a:b:c"): BentoML's own parse error
        raise RegistryError(f"tag {tag!r} is not name:version; see `omnidecide models list`") from e


def _by_tag(tag: str) -> bentoml.Model:
    """A version named by its full `name:version` tag (promote and canary never guess a version)."""
    if ":" not in tag:
        raise RegistryError(f"tag {tag!r} must be name:version (see `omnidecide models list`)")
    return get(tag.split(":")[0], tag)


def path(name: str, tag: str | None = None) -> Path:
    return Path(get(name, tag).path)


def versions(name: str | None = None) -> list[dict[str, Any]]:
    """Every version, newest first, with its stage."""
    rows = []
    if name is not None:
        check_name(name)
    try:
        stored = bentoml.models.list(name)
    except NotFound:  # BentoML raises for a name with no versions yet
        stored = []
    for model in stored:
        model_name = model.tag.name
        if model_name not in MODEL_NAMES:
            continue
        st = stages(model_name)
        tag = str(model.tag)
        stage = "production" if st.get("production") == tag else "canary" if st.get("canary", {}).get("tag") == tag else ""
        rows.append({
            "tag": tag, "name": model_name, "created": model.info.creation_time.isoformat(timespec="seconds"),
            "stage": stage, "metrics": dict(model.info.metadata.get("metrics", {})),
            "metadata": dict(model.info.metadata),
        })
    return sorted(rows, key=lambda r: r["created"], reverse=True)


# --- stages ---------------------------------------------------------------------------------------
# Stages and the lifecycle log live in the shared database (`store.db`: PostgreSQL when
# OMNIDECIDE_DATABASE_URL is set, else SQLite in this home), so a promotion reaches every replica at its next check.

def _db() -> Any:
    from omnidecide.store import db

    return _import_files(db.connect())


def _import_files(database: Any) -> Any:
    """Once per store: the stages file and lifecycle log of the file era move into the database (renamed *.imported)."""
    old, log = home() / "stages.json", home() / "lifecycle.log.jsonl"
    if old.exists() or log.exists():
        with database.transaction(lock=True):
            if old.exists():
                for name, body in json.loads(old.read_text()).items():
                    database.execute("INSERT INTO stages (name, body) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                     (name, json.dumps(body)))
                old.replace(old.with_name("stages.json.imported"))
            if log.exists():
                database.executemany("INSERT INTO lifecycle (at, line) VALUES (?, ?)",
                                     [(json.loads(x).get("at", ""), x) for x in log.read_text().splitlines()
                                      if x.strip()])
                log.replace(log.with_name("lifecycle.log.jsonl.imported"))
    return database


def _read_stages() -> dict[str, dict]:
    return {name: json.loads(body) for name, body in _db().query("SELECT name, body FROM stages")}


def _write_stages(all_stages: dict[str, dict]) -> None:
    """Replace every model's stages in one transaction: a reader never sees half a change."""
    database = _db()
    with database.transaction():
        database.execute("DELETE FROM stages")
        database.executemany("INSERT INTO stages (name, body) VALUES (?, ?)",
                             [(name, json.dumps(st)) for name, st in all_stages.items()])


def _changing_stages() -> Any:
    """A transaction in which stages are read, changed and written by one process at a time."""
    return _db().transaction(lock=True)


def stages(name: str) -> dict[str, Any]:
    rows = _db().query("SELECT body FROM stages WHERE name = ?", (name,))
    return json.loads(rows[0][0]) if rows else {}


def _log(entry: dict) -> None:
    """Append-only audit log of lifecycle decisions (who serves what, since when, why)."""
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **_jsonable(entry)}
    database = _db()
    with database.transaction():
        database.execute("INSERT INTO lifecycle (at, line) VALUES (?, ?)", (entry["at"], json.dumps(entry)))


def record(action: str, **fields: Any) -> None:
    """Log a lifecycle decision that changes no stage (a rejected retrain, a monitor alert)."""
    _log({"action": action, **fields})


def decisions(name: str | None = None) -> list[dict[str, Any]]:
    """The lifecycle log, oldest first (only `name`'s entries when given)."""
    rows = [json.loads(r[0]) for r in _db().query("SELECT line FROM lifecycle ORDER BY id")]
    return [r for r in rows if name is None or str(r.get("tag") or r.get("name") or "").split(":")[0] == name]


def serving_tag(name: str) -> str | None:
    """The tag production traffic gets: the promoted version, else the latest; None when there is no version."""
    try:
        return str(get(name).tag)
    except RegistryError:
        return None


def _loads(name: str, tag: str) -> None:
    """Refuse to stage a version that does not load (raises VersionLoadError naming it and why)."""
    from omnidecide.store.loader import load  # the loader imports this module

    load(name, tag)


def promote(tag: str, *, reason: str = "manual") -> dict[str, Any]:
    """Make `tag` the production version, once it is shown to load; the one it replaces is kept for rollback.

    The first promotion replaces no pinned version but the latest one, which was serving until then: that one is
    kept for rollback (so the first promotion can be undone), unless it is the promoted version itself."""
    model = _by_tag(tag)
    name, tag = model.tag.name, str(model.tag)
    _loads(name, tag)
    with _changing_stages():
        return _promote(name, tag, reason)


def _promote(name: str, tag: str, reason: str) -> dict[str, Any]:
    all_stages = _read_stages()
    st = all_stages.setdefault(name, {})
    previous = st.get("production") or serving_tag(name)
    if previous and previous != tag:
        st.setdefault("history", []).append(previous)
    st["production"] = tag
    if st.get("canary", {}).get("tag") == tag:
        st.pop("canary")
    _write_stages(all_stages)
    _log({"action": "promote", "tag": tag, "replaced": previous, "reason": reason})
    return st


def rollback(name: str, *, reason: str = "manual") -> dict[str, Any]:
    """Serve the previously promoted version again."""
    check_name(name)
    with _changing_stages():
        return _rollback(name, reason)


def _rollback(name: str, reason: str) -> dict[str, Any]:
    all_stages = _read_stages()
    st = all_stages.get(name, {})
    if not st.get("history"):
        raise RegistryError(f"{name}: no earlier version to roll back to (nothing else served before "
                            f"{st.get('production') or 'the latest version'}); promote another with "
                            f"`omnidecide models promote TAG` (see `omnidecide models list {name}`)")
    bad = st.get("production")
    st["production"] = st["history"].pop()
    st.pop("canary", None)
    _write_stages(all_stages)
    _log({"action": "rollback", "tag": st["production"], "replaced": bad, "reason": reason})
    return st


def end_canary(name: str, *, reason: str = "manual") -> dict[str, Any]:
    """Stop sending traffic to the canary (production keeps serving everyone)."""
    with _changing_stages():
        return _end_canary(name, reason)


def _end_canary(name: str, reason: str) -> dict[str, Any]:
    all_stages = _read_stages()
    st = all_stages.get(name, {})
    canary = st.pop("canary", None)
    if canary is None:
        raise RegistryError(f"{name}: no canary to end")
    _write_stages(all_stages)
    _log({"action": "end_canary", "tag": canary["tag"], "share": canary.get("share"), "reason": reason})
    return st


def set_canary(tag: str, share: float, *, reason: str = "manual") -> dict[str, Any]:
    """Send `share` of traffic (0..1] to `tag` beside the production version."""
    if not 0 < share <= 1:
        raise RegistryError(f"canary share must be in (0, 1], got {share}")
    model = _by_tag(tag)
    _loads(model.tag.name, str(model.tag))
    with _changing_stages():
        all_stages = _read_stages()
        st = all_stages.setdefault(model.tag.name, {})
        st["canary"] = {"tag": str(model.tag), "share": share}
        _write_stages(all_stages)
        _log({"action": "canary", "tag": str(model.tag), "share": share, "reason": reason})
    return st
