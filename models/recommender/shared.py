"""One copy of a stored recommender version's arrays for every worker of a batch job.

Why: at 1M customers x 200k items each Ray worker of `recommend --all-users` loaded its own copy of the version
(4.6 GB per worker: 2.3 GB of recommender.npz arrays, 0.4 GB of retrieval vectors, the rest imports, id maps and
the faiss graph). Here the job's driver reads the version's arrays once, one at a time, and hands each to `put`
(Ray's `ray.put`: the node's object store keeps it in shared memory, and `ray.get` in every worker on that node gives a
read-only numpy view of the same pages, no copy); it also makes the moments of the retrieval's item vectors once
(each worker made them itself, with two transient copies of the vectors), the 8-bit codes of those vectors that the
index's search walks (faiss reads them in place from the array: no copy), and TIFU's items x pool-users matrix (a
transpose of part of its user vectors). The vectors themselves every process reads from the version's memory-mapped
faiss index. Each worker builds
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
from omnidecide.models.recommender.baskets import TIFU
from omnidecide.models.recommender.core import SHARED
from omnidecide.models.recommender.graph_filter import FilterParams

T = TypeVar("T")
WRITTEN = ("stock", "price", "titles", "item_cat")  # edited in place by serving/catalogue.apply: copied per worker
# what `put_arrays` puts, as a number: raised when it puts more, so that store/mapped.py writes older folders again
# (2: the retrieval's 8-bit codes and TIFU's items x pool matrix)
FORMAT = 2


def stored_bytes(folder: Path) -> int:
    """Bytes that `put_arrays` puts for the version in `folder`, read from the archive's index (nothing is
    decompressed): the arrays (what `put_arrays` derives beside them is a few percent of it: at 1M
    customers x 200k items 2.3 GB of arrays, 51 MB of 8-bit codes)."""
    with zipfile.ZipFile(Path(folder) / "recommender.npz") as z:
        return sum(i.file_size for i in z.infolist())


def put_arrays(folder: Path, put: Callable[[np.ndarray], T]) -> dict[str, T]:
    """`put(array)` for each array of the version (read one at a time: the caller holds one array, the graph's
    factors and TIFU's user vectors at most), for what its retrieval derives (Retrieval.made_once: the moments of its
    item vectors, the codes its search walks) when it has a retrieval index, and for TIFU's items x pool matrix
    (TIFU.pool_arrays) when it has TIFU; name -> what `put` returned."""
    folder = Path(folder)
    meta = json.loads((folder / "recommender.json").read_text())
    out: dict[str, T] = {}
    keep = dict.fromkeys(("graph_Q", "graph_lam", "graph_d_graph", "tifu_data", "tifu_indices", "tifu_indptr"))
    n_users = n_items = 0
    with np.load(folder / "recommender.npz", allow_pickle=False) as z:
        for name in z.files:
            a = z[name]
            out[name] = put(a)
            if name in keep:
                keep[name] = a
            n_users = len(a) if name == "user_ids" else n_users
            n_items = len(a) if name == "item_ids" else n_items
            del a
    Q = keep["graph_Q"]
    if Q is not None and Q.ndim == 2 and n_items >= retrieval.MIN_ITEMS:  # Retrieval.wanted
        params = FilterParams(**meta["graph_params"])
        made = retrieval.Retrieval.made_once(folder, Q, keep["graph_lam"], keep["graph_d_graph"], params)
        out.update({SHARED + k: put(v) for k, v in made.items()})
    if meta.get("tifu") is not None and keep["tifu_data"] is not None:
        tifu = TIFU.stored(meta["tifu"], {**keep, "tifu_nbrs": None}, (n_users, n_items))
        out.update({SHARED + k: put(v) for k, v in tifu.pool_arrays().items()})
    return out


def views(refs: dict[str, T], get: Callable[[list[T]], list[np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays behind `put_arrays`' answer (`get`: Ray's `ray.get`), for `Recommender.load(folder, arrays)`; the
    catalogue's arrays (WRITTEN) as private, writable copies."""
    arrays = dict(zip(refs, get(list(refs.values()))))
    for name in WRITTEN:
        if name in arrays:
            arrays[name] = np.array(arrays[name])
    return arrays
