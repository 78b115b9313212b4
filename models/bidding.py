"""Ad-bidder value: what one impression of an item to a user is worth, and the multiplier on the base bid.

value = P(purchase | user, item, channel) × (item value + retention credit), where the retention credit is the share
`retention_weight` of the customer's expected spend that is at risk (churn probability × expected spend): a
conversion now from a fading customer is worth more than the basket alone. The multiplier is that value over a
reference value (an average recommended impression on the channel, or the bidder's own target), clipped to
[floor, cap] so one noisy estimate cannot blow a budget. `retention_weight` is a policy choice, not a measured fact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BidPolicy:
    retention_weight: float = 0.2
    floor: float = 0.2
    cap: float = 5.0


def impression_value(p_purchase: np.ndarray, item_value: np.ndarray, churn_probability: float = 0.0,
                     expected_spend: float = 0.0, retention_weight: float = BidPolicy.retention_weight) -> np.ndarray:
    """Expected value of showing each candidate once (same currency as item values and expected spend)."""
    credit = retention_weight * churn_probability * expected_spend
    return np.asarray(p_purchase, float) * (np.asarray(item_value, float) + credit)


def multiplier(value: np.ndarray, reference: float, policy: BidPolicy = BidPolicy()) -> np.ndarray:
    if not reference > 0:
        raise ValueError(f"reference value must be positive, got {reference}")
    return np.clip(np.asarray(value, float) / reference, policy.floor, policy.cap)
