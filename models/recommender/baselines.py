"""Non-graph baselines used by the benchmark and as fallbacks: popularity, ItemKNN (cosine), EASE (Steck 2019).

All take a user x item interaction matrix X (scipy CSR, weights >= 0) and return dense scores for a batch of users.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class Popularity:
    def __init__(self) -> None:
        self.pop: np.ndarray | None = None

    def fit(self, X: sp.csr_matrix) -> "Popularity":
        self.pop = np.asarray((X > 0).sum(0)).ravel().astype(np.float64)
        return self

    def scores(self, X_users: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.pop, (X_users.shape[0], 1))


class ItemKNN:
    """Item-item cosine similarity restricted to each item's `k` nearest neighbours."""

    def __init__(self, k: int = 100, shrink: float = 10.0) -> None:
        self.k, self.shrink = k, shrink
        self.S: sp.csr_matrix | None = None

    def fit(self, X: sp.csr_matrix) -> "ItemKNN":
        Xb = (X > 0).astype(np.float64).tocsc()
        norms = np.sqrt(np.asarray(Xb.multiply(Xb).sum(0)).ravel())
        G = (Xb.T @ Xb).toarray()
        np.fill_diagonal(G, 0.0)
        S = G / (np.outer(norms, norms) + self.shrink + 1e-12)
        k = min(self.k, S.shape[0] - 1)
        if k < S.shape[0] - 1:
            cut = -np.partition(-S, k, axis=1)[:, k][:, None]
            S = np.where(S > cut, S, 0.0)
        self.S = sp.csr_matrix(S)
        return self

    def scores(self, X_users: sp.csr_matrix) -> np.ndarray:
        return np.asarray((X_users @ self.S).todense()) if sp.issparse(X_users @ self.S) else X_users @ self.S


class EASE:
    """Embarrassingly shallow autoencoder: B = I - P diagMat(1/diag(P)), P = (X^T X + lambda I)^-1, diag(B) = 0."""

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam
        self.B: np.ndarray | None = None

    def fit(self, X: sp.csr_matrix) -> "EASE":
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        np.fill_diagonal(B, 0.0)
        self.B = B
        return self

    def scores(self, X_users: sp.csr_matrix) -> np.ndarray:
        return np.asarray(X_users @ self.B)
