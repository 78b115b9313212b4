"""faiss candidate retrieval for the graph filter: inner products equal the filter's scores, the index finds the
exact top-20 among its candidates, and the exact per-user score moments."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF
from omnidecide.models.recommender.retrieval import ItemIndex, filter_vectors, queries, recall_at


def _fit():
    rng = np.random.default_rng(0)
    users, items = 2000, 800
    cluster = rng.integers(0, 10, items)
    rows, cols = [], []
    for u in range(users):
        p = np.where(np.isin(cluster, rng.choice(10, 2, replace=False)), 1.0, 0.05) / (rng.permutation(items) + 1.0)
        picked = rng.choice(items, rng.integers(3, 25), replace=False, p=p / p.sum())
        rows += [u] * len(picked)
        cols += list(picked)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(users, items))
    return X, GraphFilterCF(FilterParams()).fit(X)


def test_index_scores_are_the_filter_scores_and_recall_is_high():
    X, g = _fit()
    E, L, _ = filter_vectors(g.Q, g.lam, g.d_graph, g.params)
    U = queries(X[:300], L)
    assert np.allclose(U @ E.T, g.score(X[:300]), atol=1e-4 * np.abs(g.score(X[:300])).max())
    index = ItemIndex(E)
    assert recall_at(U, E, index, k=20, candidates=200) > 0.95
    mean, sd = index.moments(U)
    full = U.astype(np.float64) @ E.T.astype(np.float64)
    assert np.allclose(mean, full.mean(1), rtol=1e-3, atol=1e-6) and np.allclose(sd, full.std(1), rtol=1e-3)


def test_top_stable_and_groups_match_their_plain_forms():
    """The serving path's partial sorts give what a full stable sort gives, ties in index order included."""
    from omnidecide.models.recommender.retrieval import groups
    from omnidecide.models.recommender.rules import top_stable

    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.integers(0, 6, rng.integers(1, 300)).astype(float)
        v[rng.random(len(v)) < 0.2] = -np.inf
        n = int(rng.integers(1, 40))
        assert np.array_equal(top_stable(v, n), np.argsort(-v, kind="stable")[:n])
        idx = np.sort(rng.choice(1000, len(v), replace=False))
        group = rng.integers(0, 5, len(v))
        want = [i for g in np.unique(group) for i in idx[group == g][:n]]
        got = groups(idx, group, 5)
        assert [g.tolist() for g in got] == [idx[group == g].tolist() for g in range(5)]
        assert sorted(i for g in got for i in g[:n].tolist()) == sorted(want)


def test_one_query_moments_and_the_coded_walk_match_the_float_forms():
    """A request's moments (one triangular float32 product) equal the batch form and float64 arithmetic to ~1e-6,
    and the walk over 8-bit codes finds what the same graph over the float vectors finds."""
    X, g = _fit()
    E, L, _ = filter_vectors(g.Q, g.lam, g.d_graph, g.params)
    U = queries(X[:100], L).astype(np.float64)
    index = ItemIndex(E)
    full = U @ E.T.astype(np.float64)
    mean, sd = index.moments(U)
    assert np.allclose(sd, full.std(1), rtol=1e-5)
    for u, m, s in zip(U[:30], mean, sd):
        m1, s1 = index.moments(u[None, :])
        assert np.allclose(m1, m, rtol=1e-9) and np.allclose(s1, s, rtol=1e-5)
    assert index.searched is not index.index  # the served walk reads the codes
    index.index.hnsw.efSearch = 128
    _, flat = index.index.search(U.astype(np.float32), 50)
    _, coded = index.search(U, 50, 128)
    assert np.mean([len(set(a) & set(b)) / 50 for a, b in zip(flat, coded)]) > 0.95
    assert np.array_equal(index.vectors, E)  # the index's own float32 copy is what requests read
