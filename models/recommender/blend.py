"""The stage-1 score from its parts: the graph filter's z, optionally blended with EASE's (small catalogues), plus
recent popularity, against a due re-buy (learned item cycle) and the TIFU basket score. Every weight is chosen on
validation (training.recommender.tuning); 0 switches a part off."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omnidecide.models.recommender.baselines import EASE

# EASE (item x item, closed form) joins the discovery score only up to this catalogue size: its fit inverts a dense
# items x items matrix and every request multiplies by it, which at 3,000 items is ~1 s and 36 MB; above it the
# model is the graph filter alone, so training and serving at scale cost what they did
EASE_MAX_ITEMS = 3000


def zscore(s: np.ndarray) -> np.ndarray:
    """Each row standardised (a constant row becomes 0)."""
    return (s - s.mean(1, keepdims=True)) / np.maximum(s.std(1, keepdims=True), 1e-12)


def fit_ease(X: sp.csr_matrix, lam: float) -> np.ndarray | None:
    """EASE item weights (float32) on the binary interactions, or None above EASE_MAX_ITEMS items."""
    if X.shape[1] > EASE_MAX_ITEMS or X.shape[1] < 2:
        return None
    return EASE(lam).fit((X > 0).astype(np.float64)).B.astype(np.float32)


def blend_ease(z: np.ndarray, z_ease: np.ndarray | None, w: float, bought: np.ndarray | None = None) -> np.ndarray:
    """The discovery z: graph z and EASE z mixed with weight `w` on EASE, re-standardised. Items the customer has
    bought (`bought`, bool) keep the graph's z: their rank is the re-buy signals' business, and EASE's pull towards
    co-bought popular items put them above a staple bought in every order."""
    if z_ease is None or w <= 0:
        return z
    out = zscore(z + w * z_ease)
    return out if bought is None else np.where(bought, z, out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def combine(z: np.ndarray, rep: np.ndarray, tifu: np.ndarray, stage, pop_z: np.ndarray) -> np.ndarray:
    """The stage-1 score from its parts: the better of discovery (graph, plus recent popularity) and a due re-buy
    (learned item cycle), plus the TIFU basket score scaled to 1 per user."""
    disc = z + stage.pop_w * pop_z[None, :] if stage.pop_w else z
    score = np.maximum(_sigmoid(disc - stage.graph_shift), stage.rep_weight * rep)
    if stage.tifu_w > 0:
        score = score + stage.tifu_w * tifu / np.maximum(tifu.max(1, keepdims=True), 1e-12)
    return score
