"""A retail world at scale, streamed to Parquet: ~50 events per customer, 1M customers x 200k items in minutes.

`omnidecide data synth --format parquet` writes it. The CSV world (`training/synth.py`) plants rich structure for
tests of model recovery; this one is for size: it must write ~50M events on 2 cores in <= 10 minutes without holding
them. Customers are generated in blocks of `BLOCK`; each block is one Parquet row group of events, built with numpy
only (ids are dictionary-encoded, so no Python string per row) and dropped once written. Same seed, same files.

The shape, chosen to look like a grocer / marketplace brand (figures are assumptions, not data):
- catalogue: `CATEGORIES` (consumables and durables, with price levels); an item's popularity is Zipf(1.05) over its
  rank in its category, so a few hundred items take most of the traffic and the tail is long (heavy-tailed);
- customers: activity is lognormal (a few heavy buyers, many occasional ones); each favours 3 categories (Dirichlet
  weights, 80% of their browsing, the rest follows overall popularity); 25% lapse at a random day and stop;
- sessions: each views a geometric number of items (mean 3); funnel view -> click 35% -> cart 40% -> purchase 60%;
- repeat purchases: 30% of consumable purchases become a staple, re-bought every ~cycle days (lognormal jitter, 85%
  kept per cycle) while the customer is active;
- channels: each customer has a preferred channel (60% of sessions); in-store sessions carry the customer's home
  store (one of `N_STORES`); store_stock lists each store's assortment (the 4,000 most popular items plus a random
  1,000), stock 0 for 8% of lines;
- purchases carry quantity (1-3 for consumables) and amount = price x quantity.
Not written here: touchpoints, marketing_mix and truth files (the CSV world has them; neither grows with customers).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BLOCK = 20_000
END = pd.Timestamp("2026-07-01")
# name, consumable, re-buy cycle (days; None = durable), median price
CATEGORIES = [
    ("dairy", True, 7, 12), ("diapers", True, 12, 110), ("snacks", True, 10, 15), ("baby_formula", True, 14, 260),
    ("coffee_tea", True, 21, 45), ("pet_food", True, 30, 120), ("cleaning", True, 35, 30), ("shampoo", True, 40, 60),
    ("skincare", True, 45, 180), ("vitamins", True, 60, 150), ("fresh_produce", True, 5, 20),
    ("household_paper", True, 25, 35),
    ("phones", False, None, 3000), ("headphones", False, None, 600), ("small_appliances", False, None, 400),
    ("furniture", False, None, 1500), ("apparel", False, None, 250), ("shoes", False, None, 450),
    ("books", False, None, 50), ("toys", False, None, 150), ("sports", False, None, 300), ("luggage", False, None, 700),
]
CHANNELS = ["app", "mini_program", "web", "store", "tmall", "douyin_shop", "jd", "instant_retail"]
N_STORES = 50
SESSIONS_PER_USER = 14.0    # mean; activity multiplier is lognormal(0, 0.8) normalised to mean 1
VIEWS_PER_SESSION = 3.0
FUNNEL = (0.35, 0.40, 0.60)  # view->click, click->cart, cart->purchase
REBUY_KEEP = 0.85
STAPLE = 0.3  # share of consumable purchases that become a staple re-bought on a cycle
EVENTS = ["view", "click", "cart", "purchase"]
SCHEMA = pa.schema([
    ("user_id", pa.dictionary(pa.int32(), pa.string())), ("item_id", pa.dictionary(pa.int32(), pa.string())),
    ("timestamp", pa.timestamp("s")), ("event", pa.dictionary(pa.int8(), pa.string())),
    ("channel", pa.dictionary(pa.int8(), pa.string())), ("store_id", pa.dictionary(pa.int8(), pa.string())),
    ("quantity", pa.float32()), ("amount", pa.float32()),
])


class Catalogue:
    """Items with category, price, popularity; per-category inverse-CDF tables for fast vectorised draws."""

    def __init__(self, rng: np.random.Generator, n_items: int) -> None:
        n_cat = len(CATEGORIES)
        share = rng.dirichlet(np.full(n_cat, 3.0))  # unequal category sizes
        self.cat = np.sort(np.concatenate([np.arange(n_cat), rng.choice(n_cat, n_items - n_cat, p=share)]))
        self.rank = np.zeros(n_items, dtype=np.int64)
        self.members: list[np.ndarray] = []
        self.cdf: list[np.ndarray] = []
        for c in range(n_cat):
            idx = np.flatnonzero(self.cat == c)
            self.rank[idx] = rng.permutation(len(idx))
            idx = idx[np.argsort(self.rank[idx])]  # by rank
            w = 1.0 / (np.arange(len(idx)) + 1.0) ** 1.05
            self.members.append(idx)
            self.cdf.append(np.cumsum(w) / w.sum())
        cat_mass = np.array([1.0 / (np.arange(len(m)) + 1.0) ** 1.05 for m in self.members], dtype=object)
        self.cat_pop = np.array([m.sum() for m in cat_mass]) * share / share.mean()
        self.cat_pop /= self.cat_pop.sum()
        self.price = np.round(np.array([CATEGORIES[c][3] for c in self.cat]) * rng.lognormal(0, 0.35, n_items), 2)
        self.consumable = np.array([CATEGORIES[c][1] for c in self.cat])
        self.cycle = np.array([CATEGORIES[c][2] or 0 for c in self.cat], dtype=float)
        self.ids = np.array([f"i{i:06d}" for i in range(n_items)])
        self.pop = np.zeros(n_items)
        for c, m in enumerate(self.members):
            self.pop[m] = np.diff(np.concatenate([[0.0], self.cdf[c]])) * self.cat_pop[c]

    def draw(self, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
        """One item per entry of `cats`, Zipf within the category."""
        out = np.empty(len(cats), dtype=np.int64)
        u = rng.random(len(cats))
        for c in np.unique(cats):
            m = cats == c
            out[m] = self.members[c][np.minimum(np.searchsorted(self.cdf[c], u[m]), len(self.members[c]) - 1)]
        return out

    def frame(self, rng: np.random.Generator) -> pd.DataFrame:
        n = len(self.ids)
        brand = rng.integers(0, 8, n)
        return pd.DataFrame({"item_id": self.ids, "category": [CATEGORIES[c][0] for c in self.cat],
                             "brand": [f"{CATEGORIES[c][0]}_b{b}" for c, b in zip(self.cat, brand)],
                             "price": self.price, "margin": np.round(rng.uniform(0.1, 0.45, n), 3),
                             "stock": np.where(rng.random(n) < 0.03, 0, rng.integers(5, 500, n))})


def _users(rng: np.random.Generator, first: int, n: int, days: int) -> dict[str, np.ndarray]:
    act = rng.lognormal(0, 0.8, n)
    signup = np.floor(rng.uniform(-days, days * 0.9, n))
    lapse = np.where(rng.random(n) < 0.25, rng.uniform(np.maximum(signup, 0), days), days)
    return {"ids": np.array([f"u{first + i:07d}" for i in range(n)]), "act": act / np.exp(0.32),
            "signup": signup, "end": lapse, "channel": rng.integers(0, len(CHANNELS), n),
            "store": rng.integers(0, N_STORES, n), "taste": rng.choice(len(CATEGORIES), (n, 3)),
            "taste_w": rng.dirichlet(np.ones(3), n)}


def _events(rng: np.random.Generator, us: dict, cat: Catalogue, days: int) -> pa.Table:
    n = len(us["ids"])
    start = np.maximum(us["signup"], 0)
    n_sess = rng.poisson(SESSIONS_PER_USER * us["act"] * (us["end"] - start) / days)
    su = np.repeat(np.arange(n), n_sess)  # session -> user
    st = start[su] + rng.random(len(su)) * (us["end"][su] - start[su])  # day, fractional
    sch = np.where(rng.random(len(su)) < 0.6, us["channel"][su], rng.integers(0, len(CHANNELS), len(su)))
    n_view = rng.geometric(1.0 / VIEWS_PER_SESSION, len(su))
    vs = np.repeat(np.arange(len(su)), n_view)  # view -> session
    vu = su[vs]
    pick = np.minimum((rng.random(len(vs))[:, None] > np.cumsum(us["taste_w"][vu], 1)).sum(1), 2)
    vcat = np.where(rng.random(len(vs)) < 0.8, us["taste"][vu, pick],
                    rng.choice(len(CATEGORIES), len(vs), p=cat.cat_pop))
    vitem = cat.draw(rng, vcat)
    vt = st[vs] + rng.random(len(vs)) * 0.02  # within ~30 minutes
    stage = np.zeros(len(vs), dtype=np.int8)  # deepest funnel step reached
    alive = np.ones(len(vs), bool)
    for k, p in enumerate(FUNNEL, start=1):
        alive &= rng.random(len(vs)) < p
        stage[alive] = k
    steps = stage.astype(np.int64) + 1  # one event per step reached
    e_of = np.repeat(np.arange(len(vs)), steps)
    e_kind = (np.arange(len(e_of)) - np.repeat(np.cumsum(steps) - steps, steps)).astype(np.int8)
    e_t = vt[e_of] + e_kind * 0.001
    e_u, e_i, e_ch = vu[e_of], vitem[e_of], sch[vs][e_of]
    # re-buys of consumables while the customer is active
    bought = np.flatnonzero(stage == 3)
    bought = bought[cat.consumable[vitem[bought]] & (rng.random(len(bought)) < STAPLE)]
    cyc = cat.cycle[vitem[bought]]
    left = us["end"][vu[bought]] - vt[bought]
    n_re = rng.binomial(np.maximum(np.floor(left / cyc), 0).astype(np.int64), REBUY_KEEP)
    rb = np.repeat(bought, n_re)
    k = np.concatenate([np.arange(1, m + 1) for m in n_re]) if len(n_re) and n_re.sum() else np.zeros(0, np.int64)
    r_t = vt[rb] + k * cat.cycle[vitem[rb]] * rng.lognormal(0, 0.15, len(rb))
    ok = r_t < us["end"][vu[rb]]
    rb, r_t = rb[ok], r_t[ok]
    r_ch = np.where(rng.random(len(rb)) < 0.7, sch[vs[rb]], us["channel"][vu[rb]])
    u = np.concatenate([e_u, vu[rb]])
    it = np.concatenate([e_i, vitem[rb]])
    t = np.concatenate([e_t, r_t])
    kind = np.concatenate([e_kind, np.full(len(rb), 3, np.int8)])
    ch = np.concatenate([e_ch, r_ch])
    order = np.lexsort((t, u))
    u, it, t, kind, ch = u[order], it[order], t[order], kind[order], ch[order]
    is_buy = kind == 3
    qty = np.where(is_buy, np.where(cat.consumable[it], rng.integers(1, 4, len(it)), 1), np.nan).astype(np.float32)
    amount = np.where(is_buy, cat.price[it] * qty, np.nan).astype(np.float32)
    in_store = ch == CHANNELS.index("store")
    store = np.where(in_store, us["store"][u], -1).astype(np.int8)
    secs = (END - pd.Timedelta(days=days)).value // 10**9 + (t * 86400).astype(np.int64)
    stores = pa.array([f"st{s:03d}" for s in range(N_STORES)])
    return pa.Table.from_arrays([
        pa.DictionaryArray.from_arrays(pa.array(u.astype(np.int32)), pa.array(us["ids"])),
        pa.DictionaryArray.from_arrays(pa.array(it.astype(np.int32)), pa.array(cat.ids)),
        pa.array(secs, pa.timestamp("s")),
        pa.DictionaryArray.from_arrays(pa.array(kind), pa.array(EVENTS)),
        pa.DictionaryArray.from_arrays(pa.array(ch.astype(np.int8)), pa.array(CHANNELS)),
        pa.DictionaryArray.from_arrays(pa.array(store, mask=~in_store), stores),
        pa.array(qty, from_pandas=True), pa.array(amount, from_pandas=True),
    ], schema=SCHEMA)


def _users_frame(rng: np.random.Generator, us: dict, days: int) -> pd.DataFrame:
    n = len(us["ids"])
    return pd.DataFrame({
        "user_id": us["ids"], "age_band": np.array(["18-24", "25-34", "35-44", "45-54", "55+"])[rng.choice(5, n, p=[.15, .35, .25, .15, .10])],
        "gender": np.array(["f", "m"])[rng.integers(0, 2, n)],
        "city": np.array([f"city{c:02d}" for c in range(30)])[np.minimum(rng.zipf(1.6, n) - 1, 29)],
        "member_level": np.array(["basic", "silver", "gold", "platinum"])[rng.choice(4, n, p=[.6, .25, .12, .03])],
        "signup_date": (END - pd.Timedelta(days=days) + pd.to_timedelta(us["signup"], unit="D")).normalize(),
        "consent_personalization": rng.random(n) > 0.03,
    })


def generate(out: str | Path, n_users: int, n_items: int, seed: int = 0, days: int = 365,
             block: int = BLOCK) -> dict:
    """Write events/items/users/store_stock .parquet and world.json to `out`; returns the counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 0])
    cat = Catalogue(rng, n_items)
    items = cat.frame(rng)
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), out / "items.parquet")
    top = np.argsort(-cat.pop)[: min(4000, n_items)]
    rows = []
    for s in range(N_STORES):
        srng = np.random.default_rng([seed, 1, s])
        assort = np.union1d(top, srng.choice(n_items, min(1000, n_items), replace=False))
        rows.append(pd.DataFrame({"store_id": f"st{s:03d}", "item_id": cat.ids[assort],
                                  "stock": np.where(srng.random(len(assort)) < 0.08, 0, srng.integers(1, 60, len(assort)))}))
    store_stock = pd.concat(rows, ignore_index=True)
    pq.write_table(pa.Table.from_pandas(store_stock, preserve_index=False), out / "store_stock.parquet")
    n_events = 0
    users_w = None
    with pq.ParquetWriter(out / "events.parquet", SCHEMA, compression="zstd") as ev_w:
        for b, first in enumerate(range(0, n_users, block)):
            brng = np.random.default_rng([seed, 2, b])  # one stream per block: same seed, same files
            us = _users(brng, first, min(block, n_users - first), days)
            table = _events(brng, us, cat, days)
            ev_w.write_table(table)
            n_events += table.num_rows
            ut = pa.Table.from_pandas(_users_frame(brng, us, days), preserve_index=False)
            users_w = users_w or pq.ParquetWriter(out / "users.parquet", ut.schema)
            users_w.write_table(ut)
    users_w.close()
    counts = {"events": n_events, "items": n_items, "users": n_users, "store_stock": len(store_stock)}
    world = {"generator": "omnidecide.training.scale_world", "seed": seed, "days": days, "end": str(END.date()),
             "counts": counts, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "world.json").write_text(json.dumps(world, indent=1))
    return world
