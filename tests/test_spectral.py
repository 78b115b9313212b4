"""The randomized item-graph eigenpairs (models/recommender/spectral.py) against the exact decomposition on a small
graph: eigenvalues and the graph filter's top-20 items."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF
from omnidecide.models.recommender.spectral import item_graph_eigen


def _graph(seed: int = 0, users: int = 3000, items: int = 600) -> sp.csr_matrix:
    """Users with tastes over 12 item clusters, Zipf popularity inside a cluster."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 12, items)
    pop = 1.0 / (rng.permutation(items) + 1.0) ** 0.8
    rows, cols = [], []
    for u in range(users):
        likes = rng.choice(12, 2, replace=False)
        p = pop * np.where(np.isin(cluster, likes), 1.0, 0.05)
        picked = rng.choice(items, rng.integers(3, 30), replace=False, p=p / p.sum())
        rows += [u] * len(picked)
        cols += list(picked)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(users, items))


def test_eigenpairs_match_the_exact_ones():
    X = _graph()
    g = GraphFilterCF(FilterParams()).fit(X)  # 600 items: the exact dense decomposition
    lam_ex = np.linalg.eigh((g.R_norm.T @ g.R_norm).toarray())[0][-64:]
    lam, V = item_graph_eigen(g.R_norm, 64, power_iters=8)
    assert np.max(np.abs(lam - lam_ex) / lam_ex) < 0.05
    assert np.allclose(V.T @ V, np.eye(64), atol=1e-3)


def test_filter_top20_close_to_the_exact_truncated_filter():
    """The randomized factors give nearly the same top-20 as the exact top-128 eigenpairs. (Truncation itself costs
    more on a sparse graph, whose spectrum decays slowly: bench/scale.py reports both losses.)"""
    from copy import copy

    X = _graph(1)
    exact = GraphFilterCF(FilterParams()).fit(X)
    truncated, approx = copy(exact), copy(exact)
    truncated.lam, truncated.Q = exact.lam[-128:], exact.Q[:, -128:]
    lam, Q = item_graph_eigen(exact.R_norm, 128)
    approx.lam, approx.Q = lam / lam.max(), Q
    rows = X[:500]
    seen = rows.toarray() > 0
    top = lambda m: np.argsort(-np.where(seen, -np.inf, m.score(rows)), 1)[:, :20]  # noqa: E731
    overlap = np.mean([len(set(x) & set(y)) / 20 for x, y in zip(top(truncated), top(approx))])
    assert overlap > 0.85, overlap
