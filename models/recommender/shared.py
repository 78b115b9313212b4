"""One copy of a stored recommender version's arrays for every worker of a batch job.

Why: at 1M customers x 200k items each Ray worker of `recommend --all-users` loaded its own copy of the version
(4.6 GB per worker: 2.3 GB of recommender.npz arrays, 0.4 GB of retrieval vectors, the rest imports, id maps and
the faiss graph). Here the job's driver reads the version's arrays once, one at a time, and hands each to `put`
(Ray's `ray.put`: the node's object store keeps it in shared memory, and `ray.get` in every worker on that node gives a
read-only numpy view of the same pages, no copy); it also makes the moments of the retrieval's item vectors once
(each worker made them itself, with two transient copies of the vectors). The vectors themselves every process reads
from the version's memory-mapped faiss index. Each worker builds
the Recommender over those views (`Recommender.load(folder, arrays)`): the same arrays, so the same rows.

Kept private per worker: the catalogue's own per-item arrays, which a live catalogue change edits in place
(serving/catalogue.apply) and which are small (one value per item). Plain callables keep this module free of Ray.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from omnidecide.models.recommender import retrieval
from omnidecide.models.recommender.core import SHARED
from omnidecide.models.recommender.graph_filter import FilterParams

T = TypeVar("T")
WRITTEN = ("stock", "price", "titles", "item_cat")  # edited in place by serving/catalogue.apply: copied per worker


def stored_bytes(folder: Path) -> int:
    """Bytes that `put_arrays` puts for the version in `folder`, read from the archive's index (nothing is
    decompressed): the arrays (the retrieval's moments beside them are small)."""
    with zipfile.ZipFile(Path(folder) / "recommender.npz") as z:
        return sum(i.file_size for i in z.infolist())


def put_arrays(folder: Path, put: Callable[[np.ndarray], T]) -> dict[str, T]:
    """`put(array)` for each array of the version (read one at a time: the caller holds one array and the graph's
    factors at most) and for the moments of its retrieval's item vectors when it has a retrieval index
    (Retrieval.made_once); name -> what `put` returned."""
    folder = Path(folder)
    out: dict[str, T] = {}
    keep = {"graph_Q": None, "graph_lam": None, "graph_d_graph": None}
    n_items = 0
    with np.load(folder / "recommender.npz", allow_pickle=False) as z:
        for name in z.files:
            a = z[name]
            out[name] = put(a)
            if name in keep:
                keep[name] = a
            n_items = len(a) if name == "item_ids" else n_items
            del a
    Q = keep["graph_Q"]
    if Q is not None and Q.ndim == 2 and n_items >= retrieval.MIN_ITEMS:  # Retrieval.wanted
        params = FilterParams(**json.loads((folder / "recommender.json").read_text())["graph_params"])
        made = retrieval.Retrieval.made_once(folder, Q, keep["graph_lam"], keep["graph_d_graph"], params)
        out.update({SHARED + k: put(v) for k, v in made.items()})
    return out


def views(refs: dict[str, T], get: Callable[[list[T]], list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays behind `put_arrays`' answer (`get`: Ray's `ray.get`), for `Recommender.load(folder, arrays)`; the
    catalogue's arrays (WRITTEN) as private, writable copies."""
    arrays = dict(zip(refs, get(list(refs.values()))))
    for name in WRITTEN:
        if name in arrays:
            arrays[name] = np.array(arrays[name])
    return arrays
