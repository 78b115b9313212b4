"""The top singular subspace of the normalised interaction matrix, by randomized SVD: the graph filter at scale.

The rational filter (gnn.py) needs the eigenpairs of the item graph P = R~^T R~. Those are the right singular vectors
of R~ and its squared singular values, so the top ones come from R~ alone by sparse products, as GF-CF / BSPM do:
no dense item x item matrix (200k items: 320 GB) and no Lanczos restarts. A randomized range finder with power
iterations (Halko, Martinsson & Tropp 2011, algorithm 4.4, run on P through R~) costs 2q + 4 sparse x (k+p)-column
products. The normalised graph's spectrum decays slowly, so the power iterations matter: tests/test_spectral.py
checks the filter's top items against the exact decomposition; bench/scale.py reports the loss.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from omnidecide.models.recommender.threads import each, workers

log = logging.getLogger(__name__)


def orthonormal(x: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of a tall x (m x l), by Cholesky QR twice (CholeskyQR2, Fukaya et al. 2014):
    two Gram matrices and two products with a small triangular inverse, all matrix-matrix BLAS. Householder QR of
    200k x 512 took 24 s of CPU on one thread (71 s on two busy-waiting threads, loaded machine), this 10 s. The second pass restores the orthogonality the first loses on an ill-conditioned x; when the
    Gram matrix is not numerically positive definite, Householder QR is used instead."""
    q = np.ascontiguousarray(x)
    for _ in range(2):
        g = (q.T @ q).astype(np.float64)
        try:
            c = np.linalg.cholesky(g)
        except np.linalg.LinAlgError:
            return np.linalg.qr(x)[0]
        inv = np.linalg.inv(c).T.astype(q.dtype)  # q = (q R^-1) with R = c^T upper triangular
        q = q @ inv
    return q


def item_graph_eigen(R_norm: sp.spmatrix, k: int, *, oversample: int | None = None, power_iters: int = 4, seed: int = 0,
                     dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenvalues (ascending, like eigsh) and eigenvectors (items x k) of P = R~^T R~, never forming P.

    Subspace iteration on the item side: every step is R~^T (R~ Q), two sparse products, then a QR of items x (k+p);
    the users x (k+p) block is never orthonormalised (at 1M users its QR would cost more than everything else).
    Rayleigh-Ritz on the final basis gives the eigenpairs; P's eigenvalues are R~'s squared singular values.
    Oversampling defaults to p = k: on a test graph (tests/test_spectral.py) the top-20 of the filter agreed with the
    exact top-k eigenpairs' on 0.79 of items with p = 16 and 0.92 with p = k (q = 4). float32 halves the users x (k+p)
    block (1M users x 512: 2 GB)."""
    R = sp.csr_matrix(R_norm, dtype=dtype)
    Rt = R.T.tocsr()
    n = R.shape[1]
    ell = min(k + (k if oversample is None else oversample), n)  # 2k: the eigengaps near rank k are small
    rng = np.random.default_rng(seed)

    spent = {"sparse products": 0.0, "QR": 0.0}

    def P(x: np.ndarray) -> np.ndarray:
        """R~^T (R~ x), 128 columns at a time over all threads (threads.each): the users x columns block is the
        solve's largest array (1M users x 512 float32: 1.9 GB; the peak RSS of a 1M-customer build), and each
        column's result is the same either way."""
        t0 = time.process_time()
        out = np.empty((R.shape[1], x.shape[1]), dtype=np.result_type(R.dtype, x.dtype))
        width = max(16, 128 // workers())

        def cols(c: int) -> None:
            out[:, c: c + width] = Rt @ (R @ np.ascontiguousarray(x[:, c: c + width]))

        each(cols, range(0, x.shape[1], width))
        spent["sparse products"] += time.process_time() - t0
        return out

    def qr(x: np.ndarray) -> np.ndarray:
        t0 = time.process_time()
        q = orthonormal(x)
        spent["QR"] += time.process_time() - t0
        return q

    # the start, drawn in row blocks (the same values as one float64 draw, without its items x ell float64 copy)
    start = np.empty((n, ell), dtype=dtype)
    for s in range(0, n, 16_384):
        start[s: s + 16_384] = rng.standard_normal((min(16_384, n - s), ell))
    Q = qr(P(start))
    del start
    for _ in range(power_iters):
        Q = qr(P(Q))
    T = (Q.T @ P(Q)).astype(np.float64)
    lam, W = np.linalg.eigh((T + T.T) / 2)  # ascending
    lam, W = lam[-k:], W[:, -k:]
    V = np.empty((n, k))
    for s in range(0, n, 16_384):  # Ritz vectors in row blocks: no float64 copy of the whole items x ell basis
        V[s: s + 16_384] = Q[s: s + 16_384].astype(np.float64) @ W
    log.info("item_graph_eigen: %d x %d, %d nonzeros, k %d, ell %d, q %d; CPU seconds: %s", *R.shape, R.nnz, k, ell,
             power_iters, ", ".join(f"{name} {v:.1f}" for name, v in spent.items()))
    V *= np.sign(V[np.abs(V).argmax(0), np.arange(V.shape[1])])[None, :]  # deterministic signs
    return np.clip(lam, 0.0, None), V
