"""A second repeat-purchase world, shaped by published facts about online grocery baskets rather than by our model.

Facts it is built to match (Instacart Online Grocery Shopping Dataset 2017, as described by its publisher and in
public analyses of it; figures rounded): about 59% of order lines are reorders of an item the customer bought
before; item popularity is heavy-tailed (a few staples such as bananas are in a large share of all orders; most
products are rare); customers place 4 to 100 orders; the days since the previous order are irregular, most often
about a week, and capped at 30 (longer gaps are recorded as 30); a typical basket holds about 10 items; many
products a customer buys are bought only once; a few personal staples are in almost every order.

How it is generated (no re-buy cycle per item is planted, unlike the default world):
- each customer has a drifting shopping rhythm: a base gap (lognormal around 8 days) that moves as a random walk,
  each actual gap = base x lognormal noise, capped at 30 days;
- each customer has a repertoire of items, each with its own probability of being in any given order, drifting on
  the logit scale from order to order (tastes change; items fall out of favour); 1-3 staples start near 0.9;
- the rest of a basket is exploration: items drawn from a Zipf popularity over the catalogue, tilted to the
  customer's favourite departments; an explored item joins the repertoire with a probability that depends on its
  department (produce and dairy are re-bought more than household goods), otherwise it stays a one-off;
- the share of reorder lines is measured and written to truth.json (with the other facts), not forced.
Files: events.csv (purchases with order_id), items.csv, users.csv, truth.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.training import progress
from omnidecide.training.synth.world import END, user_ids

# department, share of the catalogue, chance an explored item joins the repertoire, median price
DEPARTMENTS = [("produce", 0.10, 0.45, 8), ("dairy_eggs", 0.08, 0.45, 12), ("bakery", 0.05, 0.35, 10),
               ("beverages", 0.10, 0.30, 9), ("snacks", 0.12, 0.25, 7), ("frozen", 0.10, 0.25, 15),
               ("pantry", 0.13, 0.15, 11), ("deli", 0.05, 0.30, 14), ("breakfast", 0.05, 0.30, 10),
               ("household", 0.10, 0.10, 20), ("personal_care", 0.08, 0.08, 25), ("babies", 0.04, 0.35, 30)]
MAX_GAP_DAYS = 30


def _catalogue(rng: np.random.Generator, n_items: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    share = np.array([d[1] for d in DEPARTMENTS])
    dept = np.sort(rng.choice(len(DEPARTMENTS), n_items, p=share / share.sum()))
    pop = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.75  # Zipf over the whole catalogue
    pop *= np.where(np.isin(dept, [0, 1]), 1.5, 1.0)      # produce and dairy top the charts
    price = np.round(np.array([DEPARTMENTS[d][3] for d in dept]) * rng.lognormal(0, 0.4, n_items), 2)
    items = pd.DataFrame({"item_id": [f"g{i:05d}" for i in range(n_items)],
                          "category": [DEPARTMENTS[d][0] for d in dept], "price": price,
                          "stock": rng.integers(20, 500, n_items)})
    return items, dept, pop / pop.sum()


def _customer(rng: np.random.Generator, pop: np.ndarray, dept: np.ndarray, join: np.ndarray, days: int,
              record: list | None = None):
    """One customer's orders: list of (day, items). `record`, when given, receives per order the generator's own
    chance of each item being in it (bench/grocery_ceiling.py: what a model that knew the world could reach); it
    draws nothing, so the orders are the same with or without it."""
    n_dept = len(DEPARTMENTS)
    tilt = rng.dirichlet(np.ones(n_dept) * 0.7) * n_dept
    w = pop * tilt[dept]
    cdf = np.cumsum(w) / w.sum()
    n_orders = int(min(4 + rng.negative_binomial(1.2, 0.08), 100))
    base = rng.lognormal(np.log(8.0), 0.45)
    size_mean = rng.lognormal(np.log(8.0), 0.45)
    rep_items: list[int] = []
    rep_logit: list[float] = []
    sw = np.sqrt(w)  # staples: popular items, but less concentrated than single purchases
    for j in rng.choice(len(pop), rng.integers(1, 4), p=sw / sw.sum(), replace=False):  # staples
        rep_items.append(int(j))
        rep_logit.append(float(rng.normal(1.4, 0.6)))
    gaps = []
    for _ in range(n_orders - 1):
        base *= rng.lognormal(0, 0.12)  # the rhythm drifts
        gaps.append(min(MAX_GAP_DAYS, max(1, int(round(base * rng.lognormal(0, 0.45))))))
    day = np.concatenate([[0], np.cumsum(gaps)])
    day = day + int(rng.integers(0, max(1, days - int(day[-1])))) if day[-1] < days else day - int(day[-1]) + days - 1
    orders = []
    for d in day:
        if d < 0:
            continue
        if record is not None:
            record.append(_chances(w / w.sum(), rep_items, rep_logit, size_mean))
        size = 1 + rng.poisson(size_mean)
        logit = np.array(rep_logit)
        take = rng.random(len(rep_items)) < 1.0 / (1.0 + np.exp(-logit))
        basket = [rep_items[k] for k in np.flatnonzero(take)][:size]
        n_new = max(0, size - len(basket)) if rng.random() < 0.9 else 0
        n_new = max(n_new, 0 if basket else 1)  # an order holds at least one item
        for j in np.minimum(np.searchsorted(cdf, rng.random(n_new)), len(pop) - 1):
            j = int(j)
            if j in basket:
                continue
            basket.append(j)
            if j not in rep_items and rng.random() < min(0.95, 4 * join[dept[j]]):
                rep_items.append(j)
                rep_logit.append(float(rng.normal(-3.3, 1.0)))
        orders.append((int(d), basket))
        # tastes drift: every repertoire item's logit moves; a few fall out of favour for good
        rep_logit = list(np.array(rep_logit) + rng.normal(0, 0.35, len(rep_logit)) - 0.6 * (rng.random(len(rep_logit)) < 0.02))
    return orders


def _chances(w: np.ndarray, rep_items: list[int], rep_logit: list[float], size_mean: float) -> np.ndarray:
    """Approximate chance of each item in the next order: its repertoire probability, or else being among the
    exploration draws (about the basket size left after the expected repertoire items, in 90% of orders)."""
    p_rep = 1.0 / (1.0 + np.exp(-np.array(rep_logit)))
    n_draws = 0.9 * max(0.5, 1.0 + size_mean - float(p_rep.sum()))
    out = 1.0 - (1.0 - w) ** n_draws
    if rep_items:
        out[rep_items] = 1.0 - (1.0 - p_rep) * (1.0 - out[rep_items])
    return out


def write_grocery(out: Path, n_users: int, seed: int, n_items: int, days: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 20])
    items, dept, pop = _catalogue(rng, n_items)
    join = np.array([d[2] for d in DEPARTMENTS])
    start = END - pd.Timedelta(days=days)
    progress.step(f"{n_users:,} customers")
    rows = []
    for u in range(n_users):
        crng = np.random.default_rng([seed, 21, u])
        for n, (d, basket) in enumerate(_customer(crng, pop, dept, join, days)):
            sec = d * 86400 + int(crng.integers(7 * 3600, 22 * 3600))
            rows.extend((u, j, sec, n) for j in basket)
    ev = pd.DataFrame(rows, columns=["u", "i", "t", "n"])
    price = items["price"].to_numpy()
    qty = 1 + np.random.default_rng([seed, 22]).poisson(0.4, len(ev))
    uid = np.array(user_ids(np.arange(n_users)))
    events = pd.DataFrame({
        "user_id": uid[ev["u"]], "item_id": items["item_id"].to_numpy()[ev["i"]],
        "timestamp": (start + pd.to_timedelta(ev["t"], unit="s")).dt.strftime("%Y-%m-%dT%H:%M:%S"),
        "event": "purchase", "quantity": qty, "amount": np.round(qty * price[ev["i"]], 2), "channel": "app",
        "order_id": [f"go{u:07d}_{n}" for u, n in zip(ev["u"], ev["n"])]})
    events.to_csv(out / "events.csv", index=False)
    items.to_csv(out / "items.csv", index=False)
    pd.DataFrame({"user_id": uid, "consent_personalization": "true"}).to_csv(out / "users.csv", index=False)

    # the facts, measured on what was written
    seen = ev.sort_values(["u", "t"], kind="stable").duplicated(["u", "i"])
    per_order = ev.groupby(["u", "n"]).agg(t=("t", "first"), size=("i", "size")).reset_index()
    gaps = per_order.groupby("u")["t"].diff().dropna() / 86400
    pair_orders = ev.groupby(["u", "i"]).size()
    order_share = ev.groupby("i")["n"].size() / len(per_order)
    truth = {"world": "grocery", "seed": seed, "n_users": n_users, "n_items": n_items, "days": days,
             "start": str(start.date()), "end_exclusive": str(END.date()),
             "counts": {"events": len(events), "orders": len(per_order), "items": n_items, "users": n_users},
             "facts": {"reorder_line_share": round(float(seen.mean()), 4),
                       "orders_per_customer_median": float(per_order.groupby("u").size().median()),
                       "gap_days_median": float(gaps.median()), "gap_days_max": float(gaps.max()),
                       "basket_size_mean": round(float(per_order["size"].mean()), 2),
                       "customer_item_pairs_bought_once": round(float((pair_orders == 1).mean()), 4),
                       "top_item_order_share": round(float(order_share.max()), 4),
                       "items_in_top_1pct_share_of_lines": round(float(
                           np.sort(ev["i"].value_counts().to_numpy())[::-1][: max(1, n_items // 100)].sum() / len(ev)), 4)}}
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth
