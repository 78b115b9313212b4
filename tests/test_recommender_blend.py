"""Stage-1 parts added for issue 13: EASE in the discovery blend (gated by catalogue size, persisted, grown with the
live catalogue), several validation windows on time-split data, and finite second-stage features when an item's
personal purchase gap is 0."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.recommender import blend
from omnidecide.models.recommender.core import Recommender, StageParams
from omnidecide.models.recommender.extend import with_items
from omnidecide.models.recommender.graph_filter import FilterParams


def _ratings(n_users: int = 60, n_items: int = 80, n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = {(int(rng.integers(0, n_users)), int(rng.integers(0, n_items))) for _ in range(n)}
    rows = [(f"u{u}", f"m{m}", 1_600_000_000 + 3600 * k, "rating") for k, (u, m) in enumerate(sorted(pairs))]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    ev["timestamp"] = pd.to_datetime(ev["timestamp"], unit="s")
    return ev.sample(frac=1.0, random_state=seed)  # timestamps not in user order


def test_ease_blend_changes_scores_and_survives_save_and_growth(tmp_path):
    ev = _ratings()
    plain = Recommender.build(ev, params=FilterParams(k=8))
    mixed = Recommender.build(ev, params=FilterParams(k=8), stage=StageParams(ease_w=1.0, ease_lam=50.0))
    assert plain.ease is None and mixed.ease is not None and mixed.ease.shape == (80, 80)
    st = mixed.batch_state(np.arange(10))
    z_plain, z_mixed = plain.stage1(st)[1], mixed.stage1(st)[1]
    assert np.abs(z_plain - z_mixed).max() > 0.05  # EASE moved the discovery score
    mixed.save(tmp_path)
    again = Recommender.load(tmp_path)
    np.testing.assert_allclose(again.stage1(again.batch_state(np.arange(10)))[1], z_mixed, rtol=1e-6, atol=1e-6)
    grown = with_items(again, ["new-1", "new-2"], ["unknown", "unknown"])
    assert grown.ease.shape == (80, 80)  # not grown: 10,000 posted items must not make it 10,000 x 10,000
    score = grown.stage1(grown.batch_state(np.arange(3)))[0]
    assert score.shape == (3, 82) and np.isfinite(score).all()


def test_ease_is_gated_off_for_large_catalogues(monkeypatch):
    monkeypatch.setattr(blend, "EASE_MAX_ITEMS", 50)
    rec = Recommender.build(_ratings(), params=FilterParams(k=8), stage=StageParams(ease_w=1.0))
    assert rec.ease is None  # 80 items > 50: the graph filter alone, nothing items x items is fitted


def test_time_split_validation_has_several_disjoint_windows():
    from omnidecide.training.recommender.tuning import VAL_WINDOWS, validation_cuts

    ev = _ratings(n=3000)
    cuts = validation_cuts(ev, seed=0, has_repeats=False, protocol="time")
    assert len(cuts) == VAL_WINDOWS >= 2
    ends = []
    for fit, val in cuts:
        assert fit["timestamp"].max() < val["timestamp"].min()  # each window is predicted from its past only
        assert len(fit) + len(val) <= len(ev)
        ends.append((val["timestamp"].min(), val["timestamp"].max()))
    for (lo_a, _), (_, hi_b) in zip(ends, ends[1:]):
        assert hi_b < lo_a  # latest first, no overlap
    assert len(validation_cuts(ev, 0, has_repeats=False, protocol="random")) == 1


def test_large_data_keeps_one_validation_window(monkeypatch):
    from omnidecide.training.recommender import tuning

    monkeypatch.setattr(tuning, "MULTI_WINDOW_MAX_EVENTS", 1000)
    assert len(tuning.validation_cuts(_ratings(n=3000), 0, has_repeats=False)) == 1


def test_second_stage_features_finite_when_an_item_is_bought_twice_in_one_basket():
    from omnidecide.models.recommender.ranker import FEATURES, features

    t = pd.Timestamp("2026-01-01 10:00")
    rows = [("u0", "a", t, "purchase", "o1"), ("u0", "a", t, "purchase", "o1"), ("u0", "b", t, "purchase", "o1")]
    rows += [(f"u{u}", i, t + pd.Timedelta(days=d), "purchase", f"o{u}_{d}") for u in range(1, 6) for d in (0, 7)
             for i in ("a", "c")]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "order_id"])
    rec = Recommender.build(ev, params=FilterParams(k=1))
    st = rec.batch_state(np.array([rec.user_index["u0"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning either
        score, z, rep, allowed = rec.stage1(st, model=True)
        cand = np.array([[rec.item_index["a"], rec.item_index["b"], rec.item_index["c"]]])
        F = features(rec, cand, score, z, rep, st, None, [None])
    assert st.personal_gap()[0, rec.item_index["a"]] == 0.0
    due = F[0, :, FEATURES.index("due_personal")]
    assert not np.isinf(due).any(), due


@pytest.mark.parametrize("w", [0.0, 2.0])
def test_blend_ease_is_standardised_and_off_at_zero(w):
    rng = np.random.default_rng(1)
    z, ze = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    out = blend.blend_ease(z, ze, w)
    if w == 0:
        assert out is z
    else:
        np.testing.assert_allclose(out.mean(1), 0, atol=1e-12)
        np.testing.assert_allclose(out.std(1), 1, atol=1e-12)


def _trending(n_users: int = 150, n_items: int = 200, days: int = 120, seed: int = 0) -> pd.DataFrame:
    """Ratings where what is popular moves: every 30 days 15 other items are in fashion and take 70% of the
    ratings; the rest are spread over the catalogue. A global time cut then rewards popularity with a short memory."""
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    for _ in range(n_users * 30):
        u, d = int(rng.integers(n_users)), float(rng.uniform(0, days))
        block = int(d // 30)
        i = 15 * block + int(rng.integers(15)) if rng.random() < 0.7 else int(rng.integers(60, n_items))
        if (u, i) not in seen:
            seen.add((u, i))
            rows.append((f"u{u}", f"m{i}", pd.Timestamp("2026-01-01") + pd.Timedelta(days=d), "rating"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])


def test_recent_popularity_half_life_moves_scores_and_only_the_chosen_one_is_saved(tmp_path):
    from omnidecide.models.recommender.core import POP_HALF_LIVES

    ev = _trending()
    short = Recommender.build(ev, params=FilterParams(k=8), stage=StageParams(pop_w=2.0, pop_hl=min(POP_HALF_LIVES)))
    long_ = Recommender.build(ev, params=FilterParams(k=8), stage=StageParams(pop_w=2.0, pop_hl=max(POP_HALF_LIVES)))
    now_in_fashion = short.item_index["m45"]  # the last 30-day block's items are m45..m59
    first_block = short.item_index["m0"]
    assert short.pop_z()[now_in_fashion] > short.pop_z()[first_block]
    assert short.pop_z()[now_in_fashion] - short.pop_z()[first_block] > long_.pop_z()[now_in_fashion] - long_.pop_z()[first_block]
    st = short.batch_state(np.arange(5))
    assert np.abs(short.stage1(st)[0] - long_.stage1(st)[0]).max() > 1e-3
    short.save(tmp_path)
    again = Recommender.load(tmp_path)
    assert {k for k in again.pop if k.startswith("recent:")} == {f"recent:{min(POP_HALF_LIVES):g}"}
    np.testing.assert_allclose(again.stage1(again.batch_state(np.arange(5)))[0], short.stage1(st)[0], rtol=1e-6)


def test_tuning_picks_recent_popularity_when_fashion_moves():
    from omnidecide.models.recommender.core import POP_HALF_LIFE_DAYS
    from omnidecide.training.recommender.tuning import tune

    _, stage, info = tune(_trending(), None, seed=0, has_repeats=False, protocol="time")
    assert stage.pop_w > 0 and stage.pop_hl < POP_HALF_LIFE_DAYS, stage


def test_reason_says_popular_right_now_only_when_recent_popularity_ranks_it():
    from omnidecide.models.recommender.rules import recommend

    ev = _trending()
    for pop_w, expect in ((16.0, True), (0.0, False)):
        rec = Recommender.build(ev, params=FilterParams(k=8), stage=StageParams(pop_w=pop_w, pop_hl=3.0))
        reasons = [r.reason for u in rec.user_ids[:5] for r in recommend(rec, u, k=10)]
        assert any(r.startswith("popular right now") for r in reasons) == expect, reasons[:10]


def test_retrieval_candidates_follow_the_stages_popularity_half_life():
    """Above retrieval.MIN_ITEMS, stage 1's popularity reaches the candidates through `Retrieval.by_popularity`: with
    a 3-day half-life chosen, the items in fashion in the last days join them, not the 30-day favourites."""
    from omnidecide.models.recommender.retrieval import Retrieval

    rec = Recommender.build(_trending(), params=FilterParams(k=8), stage=StageParams(pop_w=2.0, pop_hl=3.0))
    ret = Retrieval.build(rec)
    recent = np.argsort(-rec.pop["recent:3"], kind="stable")
    assert not np.array_equal(recent[:10], np.argsort(-rec.pop["global"], kind="stable")[:10])  # the orders differ
    assert np.array_equal(ret.by_popularity(rec), recent)
    u = 0
    hist = np.flatnonzero(rec.X[u].toarray()[0])
    cols = ret.candidates(rec, u, hist, rec.X[u].toarray()[:, hist], np.ones(len(rec.item_ids), bool), n_rank=5, k=3)
    assert set(recent[:5]) <= set(cols)
