"""Evaluation and tuning above evaluation.CANDIDATE_MIN_ITEMS: stage 1 scored on each customer's candidates (as
`/recommend` does on big catalogues), not on dense rows over the catalogue. Forced here on a small world by lowering
the threshold, and checked against full scoring."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.recommender.core import Recommender, StageParams
from omnidecide.training.recommender import evaluation
from omnidecide.training.recommender.evaluation import K, baseline_topk, topk_stage1
from omnidecide.training.recommender.pipeline import second_stage_data

N_ITEMS = 1500  # far more than the ~200 graph candidates a customer gets, so the candidates are a real cut


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    pop /= pop.sum()
    cat = rng.integers(0, 6, N_ITEMS)
    rows = []
    for u in range(400):
        fav = rng.choice(N_ITEMS, 4, replace=False, p=pop)
        for n in range(5):
            t = pd.Timestamp("2026-01-01") + pd.Timedelta(days=6 * n + int(rng.integers(0, 3)))
            # taste: the customer's favourite categories
            for j in {*rng.choice(N_ITEMS, 3, p=pop), fav[n % 4], *rng.choice(np.flatnonzero(cat == cat[fav[0]]), 2)}:
                rows.append((f"u{u}", f"i{j}", t, "purchase"))
            rows.append((f"u{u}", f"i{rng.integers(N_ITEMS)}", t, "view"))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(N_ITEMS + 200)],  # 200+ never bought: cold items
                          "category": [f"c{c}" for c in cat] + [f"c{c}" for c in rng.integers(0, 6, 200)]})
    rec = Recommender.build(ev, items)
    return rec, ev


def _both(monkeypatch, fn):
    monkeypatch.setattr(evaluation, "CANDIDATE_MIN_ITEMS", 10**9)
    dense = fn()
    monkeypatch.setattr(evaluation, "CANDIDATE_MIN_ITEMS", 0)
    return dense, fn()


def _agreement(a: list, b: list) -> float:
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / len(x) for x, y in zip(a, b)]))


@pytest.mark.parametrize("stage", [StageParams(), StageParams(pop_w=1.0, tifu_w=1.0, rep_weight=2.0),
                                   StageParams(serve="buy_again")])
def test_candidate_scoring_ranks_as_full_scoring(world, monkeypatch, stage):
    rec, _ = world
    rec.stage = stage
    uidx = np.arange(len(rec.user_ids))
    now = np.full(len(uidx), rec.t_end)
    dense, cand = _both(monkeypatch, lambda: topk_stage1(rec, uidx, now))
    assert all(len(c) == K for c in cand)
    assert _agreement(dense, cand) >= 0.99
    rec.stage = StageParams()


def test_candidate_scoring_never_builds_dense_rows(world, monkeypatch):
    """The point of the path: no users x catalogue state (the cost that made tuning at 200k items ~20 s a setting)."""
    rec, ev = world
    calls = []
    real = Recommender.batch_state
    monkeypatch.setattr(Recommender, "batch_state",
                        lambda self, u, cols=None, tifu=True: calls.append(cols) or real(self, u, cols, tifu))
    monkeypatch.setattr(evaluation, "CANDIDATE_MIN_ITEMS", 0)
    uidx = np.arange(len(rec.user_ids))
    topk_stage1(rec, uidx, np.full(len(uidx), rec.t_end))
    test = ev.groupby("user_id").tail(2)
    baseline_topk(rec, test, "popularity")
    assert calls and all(c is not None and len(c) < len(rec.item_ids) for c in calls)


def test_baselines_and_second_stage_rows_match_full_scoring(world, monkeypatch):
    rec, ev = world
    test = ev.groupby("user_id").tail(3)
    for kind in ("popularity", "buy_again"):
        dense, cand = _both(monkeypatch, lambda: baseline_topk(rec, test, kind))
        assert dense == pytest.approx(cand)
    uidx = np.arange(0, len(rec.user_ids), 3)
    rel = [set(np.flatnonzero(rec.X[u].toarray().ravel())[:3].tolist()) for u in uidx]
    now = np.full(len(uidx), rec.t_end)
    dense, cand = _both(monkeypatch, lambda: second_stage_data(rec, uidx, rel, now, [None] * len(uidx)))
    assert cand[0].shape[1] == dense[0].shape[1] and len(cand[3]) == len(dense[3])
    assert _agreement(dense[3], cand[3]) >= 0.99  # the same candidates, as catalogue items
    assert abs(cand[1].sum() - dense[1].sum()) <= 0.01 * max(dense[1].sum(), 1)


def test_scale_path_runs_end_to_end_on_candidates(monkeypatch):
    """fit_large with every evaluation on candidates (tuning grid, second stage, calibration, holdout), as at 200k
    items: the same kind of model and metrics as the full-scoring run."""
    from omnidecide.training.recommender.scale import fit_large

    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{j}", pd.Timestamp("2026-01-01") + pd.Timedelta(days=5 * n + int(rng.integers(0, 3))),
             "purchase") for u in range(160) for n in range(4) for j in {int(u % 40), *rng.integers(0, 300, 3)}]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(300)], "category": "grocery"})
    calls = []
    real = Recommender.batch_state
    monkeypatch.setattr(Recommender, "batch_state",
                        lambda self, u, cols=None, tifu=True: calls.append(cols is None) or real(self, u, cols, tifu))
    monkeypatch.setattr(evaluation, "CANDIDATE_MIN_ITEMS", 0)
    _, metrics, _ = fit_large(ev, items, None, seed=0, sample_users=120, tifu_pool=50)
    assert 0 < metrics["holdout_ndcg@20"] <= 1 and "validation_ndcg@20" in metrics
    # only the stage-weight and TIFU search (tuning.Parts, a few hundred users) still builds dense rows
    assert calls.count(False) > calls.count(True) > 0


def test_graph_filter_builds_its_adjacency_on_first_use():
    """The torch adjacency (similar items) was the 1M build's 1.6 GB spike: fit and load leave it unbuilt."""
    import scipy.sparse as sp

    from omnidecide.models.recommender.graph_filter import FilterParams, GraphFilterCF

    X = sp.random(60, 30, density=0.2, random_state=0, format="csr")
    g = GraphFilterCF(FilterParams(k=4)).fit(X)
    assert g._adj is None
    loaded = GraphFilterCF.from_state(g.params.as_dict(), g.state())
    assert loaded._adj is None
    sig = np.eye(30)[:, :3]
    out = g.propagate(sig, 2)
    assert g._adj is not None and out.shape == (30, 3) and np.abs(out).sum() > 0
    np.testing.assert_allclose(loaded.propagate(sig, 2), out)
