"""Media response curves: geometric adstock (carry-over) and Hill saturation.

One definition used by the synthetic world (to plant truth), the marketing-mix fit and the budget
environment, so "recovering the planted curve" compares like with like.
"""
from __future__ import annotations

import numpy as np


def geometric_adstock(spend: np.ndarray, decay: float | np.ndarray, initial: float | np.ndarray = 0.0) -> np.ndarray:
    """a_t = x_t + decay * a_{t-1}, along axis 0 (periods); `decay` may be per channel (last axis)."""
    spend = np.asarray(spend, dtype=np.float64)
    out = np.empty_like(spend)
    carry = np.broadcast_to(np.asarray(initial, dtype=np.float64), spend.shape[1:]).copy()
    for t in range(spend.shape[0]):
        carry = spend[t] + decay * carry
        out[t] = carry
    return out


def hill(x: np.ndarray, half_saturation: float | np.ndarray, slope: float | np.ndarray) -> np.ndarray:
    """x^s / (x^s + k^s): 0 at no spend, 0.5 at x = k, towards 1 when saturated."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    xs = x ** slope
    return xs / (xs + np.asarray(half_saturation, dtype=np.float64) ** slope)


def media_revenue(spend: np.ndarray, decay, half_saturation, slope, beta, initial=0.0, multiplier=1.0) -> np.ndarray:
    """Incremental revenue per period and channel: beta * hill(adstock(spend)) * multiplier (season lift)."""
    stock = geometric_adstock(spend, decay, initial)
    mult = np.asarray(multiplier, dtype=np.float64)
    if mult.ndim == 1:
        mult = mult[:, None]
    return np.asarray(beta) * hill(stock, half_saturation, slope) * mult
