"""Metrics against hand-computed examples."""
import math

import numpy as np
import pytest

from omnidecide.models import metrics as m

TOPK = [["a", "b", "c", "d"], ["x", "y", "z", "w"], ["p", "q", "r", "s"]]
REL = [{"b", "d", "e"}, {"x"}, set()]  # third user has nothing relevant: ignored


def test_recall_ndcg_hitrate_map_by_hand():
    # user 0: hits at ranks 2 and 4 of 3 relevant; user 1: hit at rank 1 of 1.
    assert m.recall_at_k(TOPK, REL, 4) == pytest.approx((2 / 3 + 1) / 2)
    assert m.recall_at_k(TOPK, REL, 1) == pytest.approx((0 + 1) / 2)
    dcg0 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg_at_k(TOPK, REL, 4) == pytest.approx((dcg0 / idcg0 + 1.0) / 2)
    assert m.hit_rate_at_k(TOPK, REL, 1) == pytest.approx(0.5)
    ap0 = (1 / 2 + 2 / 4) / 3
    assert m.map_at_k(TOPK, REL, 4) == pytest.approx((ap0 + 1.0) / 2)


def test_coverage_and_long_tail():
    assert m.catalog_coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    counts = {"a": 10, "b": 5, "c": 1, "d": 1, "e": 1}
    tail = m.tail_items_by_popularity(counts, head_share=0.2)
    assert tail == {"b", "c", "d", "e"}
    assert m.long_tail_share([["a", "b"], ["a", "c"]], tail) == pytest.approx(0.5)


def test_auc_ap_brier_ece_by_hand():
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.3, 0.1]
    # positive/negative pairs: (0.9>0.8),(0.9>0.1),(0.3<0.8),(0.3>0.1) -> 3/4
    assert m.auc(y, s) == pytest.approx(0.75)
    assert m.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # ties half credit
    assert m.average_precision(y, s) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m.brier(y, s) == pytest.approx(np.mean([0.01, 0.64, 0.49, 0.01]))
    # bins: 0.9 -> bin 9 (y=1), 0.8 -> bin 8 (y=0), 0.3 -> bin 3 (y=1), 0.1 -> bin 1 (y=0)
    assert m.expected_calibration_error(y, s) == pytest.approx((0.1 + 0.8 + 0.7 + 0.1) / 4)
    assert math.isnan(m.auc([1, 1], [0.2, 0.3]))


def test_perfectly_calibrated_has_small_ece():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = rng.random(200_000) < p
    assert m.expected_calibration_error(y, p) < 0.01
    assert m.expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.1
