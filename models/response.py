"""Media response curves: geometric adstock (carry-over) and Hill saturation — the ONE definition.

Used by the synthetic world (to plant truth), the marketing-mix fit, the planning curves and the budget
environment, so "recovering the planted curve" compares like with like and a change here changes all of them.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def geometric_adstock(spend: np.ndarray, decay: float | np.ndarray, initial: float | np.ndarray = 0.0) -> np.ndarray:
    """a_t = x_t + decay * a_{t-1}, along axis 0 (periods); `decay` may be per channel (last axis).

    A (periods, channels) spend with one decay per channel runs as one IIR filter per channel (scipy's lfilter:
    the same products and sums as the loop, in C); anything else (e.g. (n, walkers, C) with per-walker decays) loops
    over periods."""
    spend = np.asarray(spend, dtype=np.float64)
    dec = np.asarray(decay, dtype=np.float64)
    init = np.broadcast_to(np.asarray(initial, dtype=np.float64), spend.shape[1:])
    if spend.ndim == 2 and dec.ndim <= 1 and spend.shape[0]:
        dec = np.broadcast_to(dec, spend.shape[1:])
        return np.stack([lfilter([1.0], [1.0, -d], spend[:, j], zi=[d * init[j]])[0] for j, d in enumerate(dec)], axis=1) \
            if spend.shape[1] else spend.copy()
    out = np.empty_like(spend)
    carry = init.copy()
    for t in range(spend.shape[0]):
        carry = spend[t] + decay * carry
        out[t] = carry
    return out


def hill(x: np.ndarray, half_saturation: float | np.ndarray, slope: float | np.ndarray) -> np.ndarray:
    """x^s / (x^s + k^s): 0 at no spend, 0.5 at x = k, towards 1 when saturated."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    xs = x ** slope
    return xs / (xs + np.asarray(half_saturation, dtype=np.float64) ** slope)


def hill_and_derivative(x: np.ndarray, half_saturation: np.ndarray, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """hill(x) and d hill / dx, in the form the optimiser's gradient needs (x floored at 1e-12: the derivative of a
    Hill curve with slope < 1 is infinite at 0)."""
    a = np.maximum(x, 1e-12)
    rs = np.exp(slope * np.log(a / half_saturation))
    inv = 1.0 / (1.0 + rs)
    h = rs * inv
    return h, slope * h * inv / a


def media_revenue(spend: np.ndarray, decay, half_saturation, slope, beta, initial=0.0, multiplier=1.0) -> np.ndarray:
    """Incremental revenue per period and channel: beta * hill(adstock(spend)) * multiplier (season lift)."""
    stock = geometric_adstock(spend, decay, initial)
    mult = np.asarray(multiplier, dtype=np.float64)
    if mult.ndim == 1:
        mult = mult[:, None]
    return np.asarray(beta) * hill(stock, half_saturation, slope) * mult
