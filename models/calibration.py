"""Probability calibration on held-out data: Platt scaling, optionally followed by isotonic.

Used by the churn model (on its validation window) and the recommender's purchase probability (on holdout
candidates). The method is chosen by cross-fitted ECE (fit on one half, measure on the other, both ways), so the
reported ECE is not measured on the data the calibrator saw.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import isotonic_regression

from omnidecide.models.metrics import expected_calibration_error


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def fit_platt(logit: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(a, b) minimising log loss of sigmoid(a * logit + b), by Newton's method."""
    x = np.asarray(logit, dtype=float)
    y = np.asarray(y, dtype=float)
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    z = (x - mu) / sd  # standardised: Newton from (0, logit(base rate)) is then well behaved
    X = np.stack([z, np.ones_like(z)], 1)
    ybar = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    theta = np.array([0.0, np.log(ybar / (1 - ybar))])

    def loss(th: np.ndarray) -> float:
        s = X @ th
        return float(np.mean(np.logaddexp(0, s) - y * s))

    current = loss(theta)
    for _ in range(iters):
        p = _sigmoid(X @ theta)
        g = X.T @ (p - y)
        H = X.T @ (X * np.maximum(p * (1 - p), 1e-9)[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-4 and loss(theta - t * step) > current + 1e-12:
            t /= 2  # step halving keeps every iteration a descent step
        theta = theta - t * step
        new = loss(theta)
        if abs(current - new) < 1e-10:
            break
        current = new
    a = theta[0] / sd
    return float(a), float(theta[1] - a * mu)


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increasing step function fitted by pool-adjacent-violators (scipy), as (x knots, y values) for np.interp:
    each pooled block contributes its lowest and highest x at the block's value."""
    order = np.argsort(p, kind="stable")
    x = p[order]
    fitted = isotonic_regression(y[order].astype(float), increasing=True).x
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])  # first index of each block of equal values
    ends = np.r_[starts[1:], len(x)] - 1
    knots_x = np.ravel(np.column_stack([x[starts], x[ends]]))
    knots_y = np.repeat(fitted[starts], 2)
    # keep probabilities away from exactly 0/1
    return knots_x, np.clip(knots_y, 1e-4, 1 - 1e-4)


class Calibrator:
    """Maps raw logits to calibrated probabilities."""

    def __init__(self, a: float = 1.0, b: float = 0.0, iso_x: list | None = None, iso_y: list | None = None):
        self.a, self.b = a, b
        self.iso_x = None if iso_x is None else np.asarray(iso_x, dtype=float)
        self.iso_y = None if iso_y is None else np.asarray(iso_y, dtype=float)

    @property
    def method(self) -> str:
        return "platt+isotonic" if self.iso_x is not None else "platt"

    def __call__(self, logit: np.ndarray) -> np.ndarray:
        p = _sigmoid(self.a * np.asarray(logit, dtype=float) + self.b)
        if self.iso_x is not None:
            p = np.interp(p, self.iso_x, self.iso_y)
        return p

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "iso_x": None if self.iso_x is None else self.iso_x.tolist(),
                "iso_y": None if self.iso_y is None else self.iso_y.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        return cls(d["a"], d["b"], d.get("iso_x"), d.get("iso_y"))

    @classmethod
    def fit(cls, logit: np.ndarray, y: np.ndarray, isotonic: bool) -> "Calibrator":
        a, b = fit_platt(logit, y)
        if not isotonic:
            return cls(a, b)
        ix, iy = fit_isotonic(_sigmoid(a * logit + b), y)
        return cls(a, b, ix, iy)


def fit_calibrator(logit: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Calibrator, dict]:
    """Choose Platt or Platt+isotonic by 2-fold cross-fitted ECE; refit the winner on all of validation."""
    y = np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    fold = rng.random(len(y)) < 0.5
    scores = {}
    for iso in (False, True):
        p = np.empty(len(y))
        for f in (True, False):
            fit_m, test_m = fold == f, fold != f
            p[test_m] = Calibrator.fit(logit[fit_m], y[fit_m], iso)(logit[test_m])
        scores[iso] = (expected_calibration_error(y, p), p)
    best = min(scores, key=lambda k: scores[k][0] + (0.002 if k else 0.0))  # prefer Platt unless isotonic clearly helps
    cal = Calibrator.fit(logit, y, best)
    return cal, {"method": cal.method, "cross_fitted_ece": scores[best][0], "cross_fitted_prob": scores[best][1]}
