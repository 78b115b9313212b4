"""The item catalogue (category, brand, Zipf popularity within the category, price, margin) and the samplers
that pick items for a user's category and preferred brand."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.training.synth.world import BRANDS_PER_CATEGORY, CATEGORIES


@dataclass
class Catalogue:
    items: pd.DataFrame       # items.csv columns (stock is added by the caller)
    cat_of: np.ndarray        # category index per item
    brand: np.ndarray         # brand index (within the category) per item
    popularity: np.ndarray    # Zipf weight within the category


def catalogue(rng: np.random.Generator, n_items: int) -> Catalogue:
    n_cat = len(CATEGORIES)
    cat_of = np.sort(np.concatenate([np.arange(n_cat), rng.integers(0, n_cat, n_items - n_cat)]))
    rank = np.zeros(n_items, dtype=int)
    for c in range(n_cat):
        idx = np.flatnonzero(cat_of == c)
        rank[idx] = rng.permutation(len(idx))
    popularity = 1.0 / (rank + 1.0) ** 1.1  # Zipf within the category
    brand = rng.integers(0, BRANDS_PER_CATEGORY, n_items)
    median_price = np.array([CATEGORIES[c][3] for c in cat_of], dtype=float)
    price = np.round(median_price * rng.lognormal(0, 0.35, n_items), 2)
    items = pd.DataFrame({
        "item_id": [f"i{i:05d}" for i in range(n_items)],
        "category": [CATEGORIES[c][0] for c in cat_of],
        "brand": [f"{CATEGORIES[c][0]}_b{b}" for c, b in zip(cat_of, brand)],
        "price": price,
        "margin": np.round(rng.uniform(0.1, 0.45, n_items), 3),
    })
    return Catalogue(items, cat_of, brand, popularity)


Samplers = dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


def item_samplers(cat: Catalogue) -> Samplers:
    """For each (category, preferred brand): the category's items and their cumulative pick probabilities."""
    out = {}
    for c in range(len(CATEGORIES)):
        idx = np.flatnonzero(cat.cat_of == c)
        for b in range(BRANDS_PER_CATEGORY):
            w = cat.popularity[idx] * np.where(cat.brand[idx] == b, 4.0, 1.0)
            out[(c, b)] = (idx, np.cumsum(w) / w.sum())
    return out


def pick_items(rng: np.random.Generator, cats: np.ndarray, brands: np.ndarray, samplers: Samplers) -> np.ndarray:
    """One item per row from the row's category, favouring its brand."""
    out = np.empty(len(cats), dtype=int)
    u = rng.random(len(cats))
    key = cats * BRANDS_PER_CATEGORY + brands
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        idx, cdf = samplers[(k // BRANDS_PER_CATEGORY, k % BRANDS_PER_CATEGORY)]
        out[rows] = idx[np.minimum(np.searchsorted(cdf, u[rows]), len(idx) - 1)]
    return out


def choice_rows(rng: np.random.Generator, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row from weights[rows] (each row's weights sum to 1)."""
    cdf = np.cumsum(weights[rows], axis=1)
    return np.minimum((rng.random(len(rows))[:, None] > cdf).sum(1), weights.shape[1] - 1)
