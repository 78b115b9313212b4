"""A stored recommender version's arrays as memory-mapped files: one copy per machine for every process serving it.

Why: recommender.npz is a compressed archive, so every process that loads a version decompresses its own copy. At
1M customers x 200k items that is 2.3 GB of arrays per `serve` worker (3.4 GiB per worker in all, docs/BENCHMARKS.md
"Scale"): N workers held N copies, and each spent a minute decompressing at start and at every hot swap. Here the
first process to load a version writes its arrays once, uncompressed, under `<model store home>/mapped/<version>/`
(the arrays models/recommender/shared.py hands a Ray job, with what every process would derive from them alike: the
retrieval's moments and 8-bit codes, TIFU's items x pool matrix) and every process maps them read-only: the page
cache holds one copy for all of them, and a later start reads no archive.

The catalogue's per-item arrays, which a live catalogue change edits in place, stay private copies (shared.WRITTEN).
A version is immutable, so its files never go stale; they are checked against the archive's size and modification
time and against what shared.put_arrays puts (`shared.FORMAT`), and the folders of versions no longer in the store
are removed when a new one is written. Where the home cannot be written (a read-only store), the process loads its
own copy, as before.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
from omnidecide.models.recommender import shared
from omnidecide.store import registry

ARCHIVE = "recommender.npz"
INDEX = "index.json"


def root() -> Path:
    return registry.home() / "mapped"


def arrays(folder: Path) -> dict[str, np.ndarray] | None:
    """The version in `folder` as read-only memory-mapped arrays (the catalogue's as private copies), for
    `Recommender.load(folder, arrays)`; None when they cannot be written here (then load the archive itself)."""
    folder = Path(folder)
    source = folder / ARCHIVE
    if not source.exists():
        return None  # not a stored version's folder: its load reports what is missing
    where = root() / folder.name
    stamp = {"source": str(folder), "size": source.stat().st_size, "mtime_ns": source.stat().st_mtime_ns,
             "format": shared.FORMAT}
    try:
        root().mkdir(parents=True, exist_ok=True)
        with open(root() / f"{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process writes; the others wait for it, then map its files
            index = _index(where)
            if index is None or index.get("stamp") != stamp:
                index = _write(folder, where, stamp)
    except OSError as e:  # a read-only or full disk: serve from a private copy, and say so
        warnings.warn(f"{folder.name}: arrays not mapped from {root()} ({e}); this process loads its own copy",
                      RuntimeWarning, stacklevel=2)
        return None
    return shared.views({k: where / f for k, f in index["files"].items()}, lambda paths: [_mapped(p) for p in paths])


def _mapped(path: Path) -> np.ndarray:
    """The file's array, mapped read-only, as a plain ndarray over the map (the map lives as long as the view). Not
    the np.memmap itself: every index into a memmap and every array derived from one runs numpy's Python-level
    subclass hooks (`__getitem__`, `__array_finalize__`): ~17,000 calls per 600 requests at 10,000 items, about
    0.2 ms of each request's model time (docs/BENCHMARKS.md "Service")."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


def _index(where: Path) -> dict | None:
    try:
        return json.loads((where / INDEX).read_text())
    except (OSError, ValueError):
        return None


def _write(folder: Path, where: Path, stamp: dict) -> dict:
    """Write the version's arrays under `where` (a fresh folder renamed into place once complete, so a process
    killed halfway leaves no half-written version), and remove the folders of versions no longer stored."""
    tmp = where.with_name(where.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    n = itertools.count()

    def put(a: np.ndarray) -> str:
        name = f"{next(n)}.npy"
        np.save(tmp / name, a, allow_pickle=False)
        return name

    index = {"stamp": stamp, "files": shared.put_arrays(folder, put)}
    (tmp / INDEX).write_text(json.dumps(index))
    shutil.rmtree(where, ignore_errors=True)
    tmp.rename(where)
    for other in root().iterdir():
        old = _index(other) if other.is_dir() and other != where else None
        if old is not None and not Path(old["stamp"]["source"]).exists():
            shutil.rmtree(other, ignore_errors=True)
            (root() / f"{other.name}.lock").unlink(missing_ok=True)
    return index
