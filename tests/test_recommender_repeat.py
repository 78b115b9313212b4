"""Repeat baskets: the next-basket baselines do what their papers say, and on planted data the served model puts a
staple bought in every order first, explains it as a re-buy, and serves nothing worse than buy-again on validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.recommender import rules
import scipy.sparse as sp

from omnidecide.models.recommender.baskets import (TIFU, UPCF, Baskets, buy_again_scores, frequency, neighbours,
                                                   recent_popularity, smooth, tifu_vectors, top_of)


def _bk() -> Baskets:
    # user 0: baskets {0,1}, {1}, {2}, {1,3} (time order); user 1: {0}, {0, 2}
    u = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    i = np.array([0, 1, 1, 2, 1, 3, 0, 0, 2])
    t = np.array([1, 1, 2, 3, 4, 4, 1, 5, 5]) * 86400.0
    key = np.array(["a", "a", "b", "c", "d", "d", "e", "f", "f"])
    return Baskets.from_purchases(u, i, t, key, 2, 4)


def test_baskets_frequency_and_buy_again_ties_by_popularity():
    bk = _bk()
    assert bk.B.shape == (6, 4) and list(bk.user) == [0, 0, 0, 0, 1, 1]
    F = frequency(bk).toarray()
    np.testing.assert_array_equal(F, [[1, 3, 1, 1], [2, 0, 1, 0]])
    s = buy_again_scores(F, pop=np.array([0.0, 0.0, 5.0, 1.0]))
    assert list(np.argsort(-s[0], kind="stable")) == [1, 2, 3, 0]  # 3 baskets first; ties (1 each) by popularity
    assert s[1, 1] < s[1, 2]  # never bought ranks below bought


def test_tifu_weights_recent_baskets_and_groups_more():
    bk = _bk()
    # m = 2: user 0's groups are [b0, b1] and [b2, b3]; inside a group the later basket weighs 1, the earlier r_b
    V = tifu_vectors(bk, m=2, r_b=0.5, r_g=0.25).toarray()
    last_group = (0.5 * np.array([0, 0, 1, 0]) + np.array([0, 1, 0, 1])) / 2
    first_group = (0.5 * np.array([1, 1, 0, 0]) + np.array([0, 1, 0, 0])) / 2
    np.testing.assert_allclose(V[0], (last_group + 0.25 * first_group) / 2)


def test_tifu_top_items_is_the_sparse_row_to_the_bit_with_ties_by_item():
    rng = np.random.default_rng(3)
    V = sp.random(60, 40, density=0.15, random_state=4, format="csr")
    V.data = np.round(V.data * 4) / 4 + 0.25  # coarse values: ties among items are common
    t = TIFU(k=7, alpha=0.7)
    t.V = V
    t.nbrs = np.stack([rng.permutation(np.r_[np.delete(np.arange(60), u), -1, -1])[:7] for u in range(60)])
    for u in range(60):
        row = t.sparse_scores(np.array([u]))
        got = t.top_items(u, 10)
        assert list(got) == list(top_of(row.indices, row.data, 10))
        full = t.top_items(u, 100)
        assert sorted(full) == sorted(row.indices)  # every nonzero item, nothing else
        want = dict(zip(row.indices, row.data))
        vals = [want[j] for j in full]
        assert all(a > b or (a == b and i < j) for (a, i), (b, j) in zip(zip(vals, full), zip(vals[1:], full[1:])))
        np.testing.assert_array_equal(np.sort(vals), np.sort(row.data))  # the same values, not close ones


@pytest.mark.parametrize("pool", [0, 40])
def test_tifu_scores_at_candidates_are_smooths_to_the_bit(pool):
    """A request's TIFU scores come from the candidates' buyers (`TIFU.near_at`), not from the neighbours' rows:
    the same values to the bit (each item's neighbour sum in the same order), with neighbours from a pool or from
    every customer, with items posted live past V, and through `smooth` when a neighbour lies outside the pool."""
    rng = np.random.default_rng(5)
    V = sp.random(120, 50, density=0.3, random_state=6, format="csr")  # float values: the order of sums shows
    t = TIFU(k=30, alpha=0.7, pool=pool)
    t.V, t.nbrs = V, neighbours(V, 30, pool=pool or 0)
    for u in range(120):
        cols = np.sort(rng.choice(50, int(rng.integers(1, 50)), replace=False))
        want = smooth(V, t.nbrs[:, :30], np.array([u]), 0.7, cols)
        assert t.near_at(u, cols) is not None
        np.testing.assert_array_equal(t.scores(np.array([u]), cols), want)
    t.V = sp.csr_matrix((V.data, V.indices, V.indptr), shape=(120, 53))  # three items posted live: no buyers
    cols = np.array([3, 17, 50, 52])
    np.testing.assert_array_equal(t.scores(np.array([4]), cols), smooth(t.V, t.nbrs[:, :30], np.array([4]), 0.7, cols))
    if pool:  # neighbours searched otherwise (outside today's pool): answered by `smooth`
        t.nbrs = np.stack([rng.permutation(120)[:30] for _ in range(120)])
        assert any(t.near_at(u, cols) is None for u in range(120))
        for u in range(120):
            np.testing.assert_array_equal(t.scores(np.array([u]), cols), smooth(t.V, t.nbrs, np.array([u]), 0.7, cols))


def test_upcf_recency_window_and_self_similarity():
    bk = _bk()
    P = recent_popularity(bk, r=1).toarray()
    np.testing.assert_allclose(P[0], [0, 1, 0, 1])  # the last basket {1, 3} only
    np.testing.assert_allclose(recent_popularity(bk, r=None).toarray()[1], [1.0, 0, 0.5, 0])
    m = UPCF(r=1, asym=0.5, q=50).fit(bk)  # q large: similarity to anyone but oneself vanishes
    np.testing.assert_allclose(m.scores(np.array([0]))[0], P[0], atol=1e-6)


def _planted(n_users: int = 120, n_orders: int = 10, n_items: int = 150, seed: int = 0) -> pd.DataFrame:
    """Weekly orders: item 'staple' in every order of every user, plus 4 items from a Zipf catalogue."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)
    rows = []
    for u in range(n_users):
        start = pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(rng.integers(0, 7)))
        for n in range(n_orders):
            t = start + pd.Timedelta(days=7 * n, hours=int(rng.integers(8, 20)))
            for j in {*rng.choice(n_items, 4, p=pop / pop.sum())}:
                rows.append((f"u{u}", f"i{j}", t, "purchase", f"o{u}_{n}"))
            rows.append((f"u{u}", "staple", t, "purchase", f"o{u}_{n}"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "order_id"])


@pytest.fixture(scope="module")
def planted():
    from omnidecide.training.recommender.pipeline import fit_and_evaluate

    ev = _planted()
    items = pd.DataFrame({"item_id": sorted(ev["item_id"].unique())}).assign(category="grocery")
    return fit_and_evaluate(ev, items, None, seed=0)


def test_staple_bought_every_order_ranks_first_as_a_rebuy(planted):
    rec, metrics, params = planted
    assert params["repeat_heavy"]
    for u in rec.user_ids[:25]:
        rows = rules.recommend(rec, str(u), 10)
        assert rows[0].item_id == "staple", [r.item_id for r in rows]
        assert rows[0].source == "repeat" and rows[0].reason.startswith("you buy this about every 7 days (last: ")
        j = rec.user_index[u]
        for r in rows:  # an item the customer bought is never explained by another item
            if rec.n_buy[j, rec.item_index[r.item_id]] > 0:
                assert r.source == "repeat" and "because you" not in r.reason, r


def test_served_ranking_never_below_buy_again_on_validation(planted):
    _, m, _ = planted
    served = {"stage1": "stage1", "stage1+lightgbm": "stage1+lightgbm", "buy_again": "buy_again"}[m["served_ranking"]]
    score = lambda name: m[f"validation_{name}_recall@20"] + m[f"validation_{name}_ndcg@20"]  # noqa: E731
    assert score(served) >= score("buy_again")
    assert score(served) == max(score(n) for n in ("stage1", "buy_again", "stage1+lightgbm") if f"validation_{n}_ndcg@20" in m)
