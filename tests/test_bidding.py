"""The bidder's value and multiplier arithmetic, against hand-computed figures."""
import numpy as np
import pytest

from omnidecide.models.bidding import BidPolicy, impression_value, multiplier


def test_value_is_probability_times_basket_plus_retention_credit():
    v = impression_value(np.array([0.1, 0.5]), np.array([20.0, 4.0]), churn_probability=0.5, expected_spend=100.0,
                         retention_weight=0.2)
    assert v == pytest.approx([0.1 * (20 + 10), 0.5 * (4 + 10)])
    assert impression_value(np.array([0.1]), np.array([20.0])) == pytest.approx([2.0])


def test_multiplier_is_relative_to_the_reference_and_clipped():
    m = multiplier(np.array([0.0, 1.0, 3.0, 100.0]), reference=2.0, policy=BidPolicy(floor=0.25, cap=4.0))
    assert m == pytest.approx([0.25, 0.5, 1.5, 4.0])
    with pytest.raises(ValueError):
        multiplier(np.array([1.0]), reference=0.0)
