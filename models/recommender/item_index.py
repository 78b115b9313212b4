"""The faiss index over a version's item vectors, and the exact moments that go with it (models/recommender/retrieval.py
explains why ranking by the graph filter is maximum-inner-product search over these vectors).

Kept apart from Retrieval so that tuning (training/recommender/evaluation.py), benchmarks and tests can build and
measure an index over any factors without a whole recommender version.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import strmv
from omnidecide.models.recommender.graph_filter import FilterParams

# above this many items the served search is wider (retrieval.N_ANN_LARGE, EF_SEARCH_LARGE)
LARGE_ITEMS = 50_000


def filter_vectors(Q: np.ndarray, lam: np.ndarray, d: np.ndarray,
                   p: FilterParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item vectors e (items x m), left factor L (items x m) with u = r @ L, indices of the kept components) of the
    rational filter s = ((r d^-c) Q h(lam) Q^T) d^c over the components `p.kept` keeps."""
    keep, h = p.kept(lam)
    Qk = Q[:, keep]
    E = (Qk * (d ** p.c)[:, None]).astype(np.float32)
    L = Qk * (d ** -p.c)[:, None] * h[None, :]
    return E, L.astype(np.float32), keep


class ItemIndex:
    """HNSW (inner product) over item vectors E; `search(U, n)` -> (inner products, item indices), best first.
    `ef_search` 0: twice the number of candidates asked for, at least 256. `index`: a built one (loaded)."""

    def __init__(self, E: np.ndarray | None, links: int = 32, ef_construction: int = 80, ef_search: int = 0,
                 index=None, moments: tuple[np.ndarray, np.ndarray] | None = None,
                 codes: np.ndarray | None = None) -> None:
        """Built over `E`, or `index` (a loaded one: `E` None, its vectors are read from it). `moments`:
        `moments_of` the vectors, `codes`: `codes_of` them, both made once elsewhere (models/recommender/shared.py)."""
        import faiss

        if index is None:
            index = faiss.IndexHNSWFlat(E.shape[1], links, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.add(np.ascontiguousarray(E, dtype=np.float32))
        self.index, self.ef_search = index, ef_search
        # the vectors the index holds (float32), read where their rows are needed (Retrieval.vectors): the rows a
        # search just visited are the candidates' rows, still in cache, and no float64 copy is kept beside them
        self.vectors = self.stored_vectors(index)
        self.n = index.ntotal
        # for the exact mean of <u, e_j> over the catalogue and for its spread
        self.total, self.second_total = self.moments_of(self.vectors) if moments is None else moments
        self.spread = spread_factor(self.second_total)
        self.searched = index  # what `search` walks: the stored graph, over 8-bit codes of the vectors
        if isinstance(index, faiss.IndexHNSW) and self.vectors.shape[1] > 0:
            self._codes = self.read_codes(codes, *self.vectors.shape) if codes is not None else None
            if self._codes is None:
                self._codes = self.quantized(self.vectors)
            self.searched = faiss.IndexHNSW(self._codes)
            self.searched.hnsw = index.hnsw  # a copy of the stored graph (the build is not reproducible)
            self.searched.ntotal, self.searched.own_fields = index.ntotal, False

    @staticmethod
    def stored_vectors(index) -> np.ndarray:
        """The float32 vectors a (loaded) index holds, as a view of its storage where it has a flat one (a memory-mapped
        index: the file's pages, shared by every process that maps it)."""
        import faiss

        storage = faiss.downcast_index(index.storage) if hasattr(index, "storage") else None
        if isinstance(storage, faiss.IndexFlat):
            return faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * storage.d).reshape(storage.ntotal, -1)
        return index.reconstruct_n(0, index.ntotal)

    @staticmethod
    def quantized(E: np.ndarray):
        """A flat index over 8-bit codes of the (float32) vectors, for `search`'s walk: per-dimension range, then one
        byte per dimension and item (51 MB at 200k items x 256)."""
        import faiss

        codes = faiss.IndexScalarQuantizer(E.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        codes.train(E)
        codes.add(E)
        return codes

    @staticmethod
    def codes_of(E: np.ndarray) -> np.ndarray:
        """`quantized(E)` as faiss serialises it: an array, so that a version's processes can share one copy of the
        codes (models/recommender/shared.py) instead of each making its own."""
        import faiss

        return faiss.serialize_index(ItemIndex.quantized(E))

    def read_codes(self, codes: np.ndarray, n: int, d: int):
        """The index `codes_of` serialised, over `codes`' own bytes (faiss's zero-copy reader: a memory-mapped or
        shared array stays one copy for every process; kept referenced here, faiss does not own it); None when it
        is not over n vectors of d dimensions (made for other vectors)."""
        import faiss

        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        out = faiss.read_index(faiss.ZeroCopyIOReader(faiss.swig_ptr(codes), codes.nbytes))
        if (out.ntotal, out.d) != (n, d):
            return None
        self._code_bytes = codes
        return out

    @staticmethod
    def moments_of(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum and second-moment matrix of the indexed (float32) vectors, in float64. Two transient copies of E
        (0.6 GB at 200k items x 256): what a batch job's driver makes once for all its workers."""
        E64 = np.ascontiguousarray(E, dtype=np.float32).astype(np.float64)
        return E64.sum(0), E64.T @ E64

    def search(self, U: np.ndarray, n: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(inner products, item indices) of the `n` nearest, best first. The walk reads 8-bit codes of the vectors
        (a quarter of the bytes: the search was a quarter of a request's model time, most of it memory reads) over
        the same graph; the inner products are then approximate, the candidates' scores are computed exactly
        afterwards (`graph_z`). Index recall of the exact top-20 at 10,000 items: 0.9996, as with the float vectors;
        at 200,000 items 0.9875 against 0.9894 (200 candidates at efSearch 256), for ~0.26 ms less per request
        (docs/BENCHMARKS.md)."""
        self.searched.hnsw.efSearch = max(ef or self.ef_search or max(2 * n, 256), n)
        scores, idx = self.searched.search(np.ascontiguousarray(U, dtype=np.float32), n)
        scores[idx < 0] = -np.inf
        return scores, idx

    def moments(self, U: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per user: mean and standard deviation of <u, e_j> over a catalogue of `n` items (default: the indexed
        ones; items beyond them have e_j = 0), exact."""
        U = np.asarray(U, dtype=np.float64)
        n = n or self.n
        mean = U @ self.total / n
        spread = getattr(self, "spread", None)  # training's _Moments has none: the Gram matrix itself
        if spread is None:
            second = ((U @ self.second_total) * U).sum(1)  # BLAS; einsum's loop took ~2 ms at 512 dims
        elif len(U) == 1:  # a request: one triangular product, half the factor read
            w = strmv(spread, U[0].astype(np.float32)).astype(np.float64)
            second = np.array([w @ w])
        else:
            w = (U.astype(np.float32) @ spread.T).astype(np.float64)
            second = (w * w).sum(1)
        var = second / n - mean ** 2
        return mean, np.sqrt(np.maximum(var, 0.0))


def spread_factor(second: np.ndarray) -> np.ndarray | None:
    """R (upper triangular, float32, Fortran order) with R^T R = `second`, so that u' second u = |R u|^2: a request
    reads a quarter of the bytes of the float64 Gram matrix (2 MB at 512 components, mostly not in cache between
    requests, and this product was ~10% of a request's model time). The spread comes out within ~1e-7 of the float64
    one (mean^2 is under 3% of the second moment on the benchmark's customers, so nothing cancels). None when the Gram
    matrix is not positive definite (a component no item carries)."""
    try:
        L = np.linalg.cholesky(second)
    except np.linalg.LinAlgError:
        return None
    return np.asfortranarray(L.T.astype(np.float32))


def queries(rows: sp.csr_matrix, L: np.ndarray) -> np.ndarray:
    """Query vectors u = r @ L for user item signals `rows` (b x items)."""
    return np.asarray(sp.csr_matrix(rows, dtype=np.float32) @ L)


def recall_at(U: np.ndarray, E: np.ndarray, index: ItemIndex, k: int = 20, candidates: int = 300,
              batch: int = 100, ef: int | None = None) -> float:
    """Mean share of each user's exact top-k (by <u, e_j> over every item) found among the top-k of the index's
    `candidates` (searched with breadth `ef`; None: the index's default), those ranked by their exact inner products
    as serving ranks them (the walk's own are approximate over 8-bit codes). The exact side scores the whole
    catalogue, batch by batch."""
    hits = []
    for s in range(0, len(U), batch):
        Ub = U[s: s + batch]
        exact = np.argpartition(-(Ub @ E.T), k, axis=1)[:, :k]
        _, idx = index.search(Ub, candidates, ef)
        scores = np.stack([E[np.maximum(i, 0)] @ u for u, i in zip(Ub, idx)])
        scores[idx < 0] = -np.inf
        top = np.take_along_axis(idx, np.argsort(-scores, 1)[:, :k], 1)
        hits += [len(set(a) & set(b)) / k for a, b in zip(exact, top)]
    return float(np.mean(hits))
