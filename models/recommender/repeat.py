"""Repeat purchases learned from the data: how often buyers re-buy each item/category, and after how long.

Nothing here is switched by a flag. On rating data (no purchase is ever repeated) every re-buy share is 0,
so seen items are excluded; on grocery-like data the shares and cycles say which seen items are due again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from omnidecide.models.recommender.memo import memo

DAY = 86400.0
MIN_REBUY_SHARE = 0.05  # below this an item is treated as buy-once (durable, or rating data)



def personal_gap(nb: np.ndarray, lb: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Mean days between a customer's purchases of each item, from their purchase count `nb` and first / last
    purchase times `fb` / `lb` (nan below two purchases). Elementwise: a request gathers its candidates' values first."""
    return np.where(nb >= 2, (lb - fb) / DAY / np.maximum(nb - 1, 1), np.nan)

@dataclass
class RepeatModel:
    item_share: np.ndarray = field(default_factory=lambda: np.zeros(0))  # P(buyer re-buys), shrunk to category
    item_cycle: np.ndarray = field(default_factory=lambda: np.zeros(0))  # median days between re-buys
    global_share: float = 0.0
    prior: float = 10.0  # pseudo-buyers for shrinkage towards the category

    def fit(self, buys: pd.DataFrame, n_items: int, item_cat: np.ndarray) -> "RepeatModel":
        """`buys`: columns u, i (ints), t (seconds) — one row per purchase event. item_cat: category index per item."""
        share = np.zeros(n_items)
        cycle = np.full(n_items, np.nan)
        if len(buys):
            b = buys.sort_values(["u", "i", "t"], kind="stable")
            per_pair = b.groupby(["u", "i"]).size()
            pair_items = per_pair.index.get_level_values("i").to_numpy()
            n_buyers = np.bincount(pair_items, minlength=n_items).astype(float)
            n_rebuy = np.bincount(pair_items, weights=(per_pair.to_numpy() >= 2), minlength=n_items)
            same = (b["u"].to_numpy()[1:] == b["u"].to_numpy()[:-1]) & (b["i"].to_numpy()[1:] == b["i"].to_numpy()[:-1])
            gaps = (b["t"].to_numpy()[1:] - b["t"].to_numpy()[:-1]) / DAY
            ok = same & (gaps >= 0.5)  # same-day duplicates are one basket, not a re-buy
            gap_df = pd.DataFrame({"i": b["i"].to_numpy()[1:][ok], "g": gaps[ok]})
            item_gap = gap_df.groupby("i")["g"].median()
            n_cat = int(item_cat.max()) + 1 if len(item_cat) else 1
            cat_buyers = np.bincount(item_cat, weights=n_buyers, minlength=n_cat)
            cat_rebuy = np.bincount(item_cat, weights=n_rebuy, minlength=n_cat)
            self.global_share = float(n_rebuy.sum() / max(n_buyers.sum(), 1))
            cat_share = np.where(cat_buyers > 0, cat_rebuy / np.maximum(cat_buyers, 1), self.global_share)
            share = (n_rebuy + self.prior * cat_share[item_cat]) / (n_buyers + self.prior)
            gap_df["c"] = item_cat[gap_df["i"].to_numpy()]
            cat_gap = gap_df.groupby("c")["g"].median()
            cycle = np.full(n_items, float(gap_df["g"].median()) if len(gap_df) else np.nan)
            cyc_cat = item_cat.astype(float) * np.nan
            cyc_cat[:] = [cat_gap.get(c, np.nan) for c in item_cat]
            cycle = np.where(np.isnan(cyc_cat), cycle, cyc_cat)
            has = item_gap.index.to_numpy()
            cycle[has] = item_gap.to_numpy()
        self.item_share = np.where(share >= MIN_REBUY_SHARE, share, 0.0)
        self.item_cycle = cycle
        return self

    @property
    def has_repeats(self) -> bool:
        """Any item re-bought; kept per `item_share` array (asked on every request: a scan of the catalogue)."""
        return memo(self, "has repeats", (self.item_share,), lambda: bool((self.item_share > 0).any()))

    def score(self, items: np.ndarray, n_bought: np.ndarray, last_t: np.ndarray, now: float) -> np.ndarray:
        """P-like score that the user re-buys each item now: re-buy share x timing around the learned cycle x habit."""
        share = self.item_share[items]
        cyc = self.item_cycle[items]
        due = (now - last_t) / DAY / np.where(np.isnan(cyc) | (cyc <= 0), np.inf, cyc)
        timing = np.exp(-0.5 * (np.log(np.clip(due, 1e-3, None)) / 0.5) ** 2)
        habit = 1.0 - 0.5 ** np.maximum(n_bought, 1)  # 0.5 after one purchase, 0.75 after two, ...
        return np.where(np.isfinite(due), share * timing * habit, 0.0)

    def state(self) -> dict[str, np.ndarray]:
        return {"rep_share": self.item_share, "rep_cycle": self.item_cycle, "rep_global": np.array([self.global_share])}

    @classmethod
    def from_state(cls, st: dict) -> "RepeatModel":
        return cls(item_share=st["rep_share"], item_cycle=st["rep_cycle"], global_share=float(st["rep_global"][0]))
