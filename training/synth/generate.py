"""Writing the default world: the catalogue and stock, then users in blocks of BLOCK (each with its own seed stream,
so memory stays bounded and the files are identical for a seed), then the weekly marketing mix and truth.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.training import progress
from omnidecide.training.synth.catalogue import catalogue, item_samplers
from omnidecide.training.synth.events import events_block
from omnidecide.training.synth.mmm import make_marketing_mix
from omnidecide.training.synth.touchpoints import journeys_block
from omnidecide.training.synth.users import truth_users, users_block, users_csv
from omnidecide.training.synth.world import (BLOCK, CATEGORIES, END, EVENT_CHANNELS, FUNNEL, N_STORES, REBUY_KEEP,
                                             TOUCH_BASE_RATE, TOUCH_CHANNELS, TOUCH_LIFT)

CORRUPTIONS = [  # (column, bad value, reason exactly as models/schema.validate words it)
    ("user_id", "", "missing user_id"),
    ("timestamp", "not-a-time", "unparsable timestamp"),
    ("timestamp", "1970-01-02T00:00:00", "impossible timestamp"),
    ("event", "teleport", "unknown event"),
    ("quantity", "-1", "negative quantity"),
    ("amount", "-5.00", "negative amount"),
    ("item_id", "", "missing item_id"),  # only on view/click/cart rows (purchases, coupons may be item-less)
]


def _corrupt(rng, events: pd.DataFrame, share: float, counts: dict[str, int]) -> pd.DataFrame:
    n_bad = int(round(share * len(events)))
    if not n_bad:
        return events
    events = events.astype({"quantity": object, "amount": object})
    candidates = np.flatnonzero(events["event"].isin(["view", "click", "cart"]).to_numpy())
    rows = rng.choice(candidates, size=min(n_bad, len(candidates)), replace=False)
    for k, r in enumerate(rows):
        col, value, reason = CORRUPTIONS[k % len(CORRUPTIONS)]
        events.iat[r, events.columns.get_loc(col)] = value
        counts[reason] = counts.get(reason, 0) + 1
    return events


def write_default(out: Path, n_users: int, seed: int, n_items: int, days: int, corrupt: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    start = END - pd.Timedelta(days=days)
    rng = np.random.default_rng([seed, 0])
    cat = catalogue(rng, n_items)
    items = cat.items
    samplers = item_samplers(cat)
    stockout_day = np.where(rng.random(n_items) < 0.05, rng.integers(days // 3, days, n_items), np.iinfo(np.int64).max)
    sold_out = stockout_day < days
    items["stock"] = np.where(sold_out, 0, rng.integers(5, 500, n_items))
    items.to_csv(out / "items.csv", index=False)
    store_stock = pd.DataFrame([(f"st{s:02d}", items["item_id"][i], 0 if sold_out[i] or rng.random() < 0.1 else int(rng.integers(1, 40)))
                                for s in range(N_STORES) for i in range(n_items)], columns=["store_id", "item_id", "stock"])
    store_stock.to_csv(out / "store_stock.csv", index=False)

    paths = {name: out / f"{name}.csv" for name in ("events", "users", "touchpoints", "truth_users")}
    for p in paths.values():
        p.unlink(missing_ok=True)
    bad_counts: dict[str, int] = {}
    removal = np.zeros(len(TOUCH_CHANNELS))
    n_events = n_touch = n_journeys = n_conv = 0
    for b, first in enumerate(range(0, n_users, BLOCK)):
        progress.step(f"users {first + 1:,}-{min(first + BLOCK, n_users):,} of {n_users:,}")
        brng = np.random.default_rng([seed, 1, b])
        users = users_block(brng, first, min(BLOCK, n_users - first), days)
        events, jour = events_block(brng, users, days, start, cat, samplers, stockout_day,
                                    lambda r: journeys_block(r, users, days, start, samplers))
        events = _corrupt(brng, events, corrupt, bad_counts)
        header = b == 0
        events.to_csv(paths["events"], mode="a", header=header, index=False)
        jour.touchpoints.to_csv(paths["touchpoints"], mode="a", header=header, index=False)
        removal += jour.removal
        n_events, n_touch = n_events + len(events), n_touch + len(jour.touchpoints)
        n_journeys, n_conv = n_journeys + jour.n_journeys, n_conv + jour.n_converted
        users_csv(brng, users, start).to_csv(paths["users"], mode="a", header=header, index=False)
        truth_users(users, start, days).to_csv(paths["truth_users"], mode="a", header=header, index=False)

    progress.step("marketing mix")
    mmm, mmm_truth = make_marketing_mix(seed)
    mmm.to_csv(out / "marketing_mix.csv", index=False)
    truth = {
        "seed": seed, "n_users": n_users, "n_items": n_items, "days": days,
        "start": str(start.date()), "end_exclusive": str(END.date()),
        "counts": {"events": n_events, "touchpoints": n_touch, "items": n_items, "users": n_users, "marketing_mix_weeks": len(mmm)},
        "categories": {name: {"consumable": cons, "cycle_days": cyc, "median_price": price} for name, cons, cyc, price in CATEGORIES},
        "consumable_categories": [c[0] for c in CATEGORIES if c[1]],
        "funnel": FUNNEL, "rebuy_keep_probability": REBUY_KEEP,
        "stockouts": {"sold_out_items": list(items["item_id"][sold_out]),
                      "sold_out_day": {items["item_id"][i]: str((start + pd.Timedelta(days=int(stockout_day[i]))).date()) for i in np.flatnonzero(sold_out)}},
        "event_channels": EVENT_CHANNELS,
        "churn": {"share_of_churners": 0.4, "definition": "no activity from churn_date on; activity fades linearly to 15% over fade_days before it",
                  "per_user": "truth_users.csv"},
        "attribution": {
            "channels": TOUCH_CHANNELS, "lift": TOUCH_LIFT, "base_rate": TOUCH_BASE_RATE,
            "contribution_share": dict(zip(TOUCH_CHANNELS, (removal / removal.sum()).round(6).tolist())),
            "journeys": n_journeys, "converted": n_conv, "conversion_event": "purchase with order_id starting 'tp'",
            "window_days": 16,
        },
        "marketing_mix": mmm_truth,
        "bad_rows": {"events": bad_counts},
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2, default=float))
    return truth
