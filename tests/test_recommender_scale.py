"""The recommender's scale path (training/recommender/scale.py) on a tiny world: choices on a customer sample, one
build on every event, TIFU neighbours from a pool; and the dense-batch caps that keep 200k-item scoring in memory."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omnidecide.models.recommender.baskets import neighbours


def _world(n_users: int = 160, n_items: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)
    rows = []
    for u in range(n_users):
        fav = rng.choice(n_items, 3, replace=False)
        for n in range(6):
            t = pd.Timestamp("2026-01-01") + pd.Timedelta(days=7 * n + int(rng.integers(0, 3)))
            for j in {*rng.choice(n_items, 2, p=pop / pop.sum()), fav[n % 3]}:
                rows.append((f"u{u}", f"i{j}", t, "purchase"))
            rows.append((f"u{u}", f"i{rng.integers(n_items)}", t, "view"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])


def test_neighbours_from_a_pool_are_pool_members_and_never_oneself():
    rng = np.random.default_rng(1)
    V = sp.random(300, 40, density=0.1, random_state=2, format="csr")
    full = neighbours(V, 5)
    pooled = neighbours(V, 5, pool=50, seed=3)
    assert (neighbours(V, 5, pool=1000) == full).all()  # a pool at least as large as the users: all of them
    pool = np.sort(np.random.default_rng(3).choice(300, 50, replace=False))
    assert pooled.shape == full.shape
    assert np.isin(pooled[pooled >= 0], pool).all()
    assert not (pooled == np.arange(300)[:, None]).any()
    # each pooled neighbour is as similar as the best pool members: the pool's exact top-k
    Vn = sp.diags(1 / np.maximum(np.sqrt(np.asarray(V.multiply(V).sum(1)).ravel()), 1e-12)) @ V
    S = (Vn @ Vn[pool].T).toarray()
    S[pool[None, :] == np.arange(300)[:, None]] = -np.inf
    u = int(rng.integers(300))
    best = np.sort(S[u])[::-1][:5]
    got = np.sort([S[u, np.searchsorted(pool, j)] for j in pooled[u] if j >= 0])[::-1]
    np.testing.assert_allclose(got, best[: len(got)][best[: len(got)] > 0])


def test_scale_path_chooses_on_a_sample_and_builds_once_on_everyone():
    from omnidecide.training.recommender.scale import fit_large

    ev = _world()
    items = pd.DataFrame({"item_id": sorted(ev["item_id"].unique())}).assign(category="grocery")
    rec, metrics, params = fit_large(ev, items, None, seed=0, sample_users=80, tifu_pool=40)
    assert len(rec.user_ids) == 160 and metrics["sample_users"] == 80 and metrics["users"] == 160
    assert params["scale"] == {"sample_users": 80, "tifu_pool": 40, "users": 160}
    assert rec.tifu is not None and rec.tifu.pool == 40 and params["tifu"]["pool"] == 40
    assert len(np.unique(rec.tifu.nbrs[rec.tifu.nbrs >= 0])) <= 40
    # mu moved only by edges per customer: the sample's graph has about half the edges, the same edges per customer
    assert 0.5 < params["graph"]["mu"] / metrics["tuned_mu"] < 2.0
    assert "holdout_ndcg@20" in metrics


def test_dense_batches_and_scored_users_shrink_with_the_catalogue():
    from omnidecide.training.recommender.evaluation import batch_rows, tuning_users

    assert batch_rows(400) == 1024 and batch_rows(20_000) == 1024 and batch_rows(200_000) == 102
    assert tuning_users(20_000) == 3000 and tuning_users(200_000) == 300
