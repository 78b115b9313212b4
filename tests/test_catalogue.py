"""Live catalogue: `POST /items` changes stock, per-store stock, prices, margins and adds items; the next
/recommend, /similar_items and /bid honour it. Versions carry the catalogue they were trained with.

In-process service (Starlette test client) with its own online-store file, so the catalogue changes made here do
not reach the other service tests.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def client(own_client):
    return own_client


@pytest.fixture(scope="module")
def world(items_users):
    return items_users


def ids(resp) -> list[str]:
    return [i["item_id"] for i in resp.json()["items"]]


def test_versions_carry_their_catalogue(trained, world):
    from omnidecide.serving.recommender import RecommenderRuntime
    from omnidecide.store import registry, snapshot

    items, _ = world
    held, stock = snapshot.read(registry.path("recommender", trained["recommender"]))
    assert set(held["item_id"]) == set(items["item_id"]) and {"margin", "stock"} <= set(held.columns)
    assert len(stock) and set(stock["store_id"]).issuperset({"st01"})
    rt = RecommenderRuntime(trained["recommender"], live=False)
    sold_out = set(items.loc[items["stock"] <= 0, "item_id"])
    assert {str(i) for i, s in zip(rt.rec.item_ids, rt.rec.stock) if s <= 0} == sold_out
    assert np.isfinite(rt.margin).all() and rt.store_stock["st01"]


def test_sold_out_item_leaves_recommendations_and_similar_items(client, world):
    items, users = world
    user = users.iloc[3]
    before = client.post("/recommend", json={"user_id": user, "k": 10})
    top = ids(before)[0]
    r = client.post("/items", json={"items": [{"item_id": top, "stock": 0}]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    after = ids(client.post("/recommend", json={"user_id": user, "k": 10}))
    assert top not in after and len(after) == 10
    other = items.loc[items["item_id"] != top, "item_id"].iloc[0]
    assert top not in ids(client.post("/similar_items", json={"item_id": other, "k": 50}))
    client.post("/items", json={"items": [{"item_id": top, "stock": 12}]})  # back in stock
    assert top in ids(client.post("/recommend", json={"user_id": user, "k": 10}))


def test_stock_per_store(client, world, synth_world):
    _, users = world
    user = users.iloc[4]
    top = ids(client.post("/recommend", json={"user_id": user, "k": 10}))[0]
    stock = pd.read_csv(synth_world / "store_stock.csv", dtype=str)
    store = stock.loc[(stock["item_id"] == top) & (stock["stock"].astype(float) > 0), "store_id"].iloc[0]
    assert top in ids(client.post("/recommend", json={"user_id": user, "k": 50, "store_id": store}))
    r = client.post("/items", json={"items": [{"item_id": top, "store_id": store, "stock": 0}]})
    assert r.json()["store_stock_rows"] == 1
    assert top not in ids(client.post("/recommend", json={"user_id": user, "k": 50, "store_id": store}))
    assert top in ids(client.post("/recommend", json={"user_id": user, "k": 10}))  # other stores still have it


def test_new_item_with_attributes_is_recommended_at_once(client, world):
    items, _ = world
    cat = items["category"].value_counts().index[0]
    liked = items.loc[(items["category"] == cat) & (items["stock"] > 0), "item_id"].iloc[:4].tolist()
    new = {"item_id": "new-arrival-1", "category": cat, "price": 19.9, "margin": 0.35, "stock": 40,
           "title": "New arrival", "brand": "house"}
    assert client.post("/items", json={"items": [new]}).status_code == 200
    session = [{"item_id": i, "event": "cart"} for i in liked]
    got = client.post("/recommend", json={"user_id": "visitor-new-item", "k": 40, "recent_events": session}).json()
    row = next((i for i in got["items"] if i["item_id"] == "new-arrival-1"), None)
    assert row is not None, got
    assert row["source"] == "new_item" and cat in row["reason"]
    similar = ids(client.post("/similar_items", json={"item_id": "new-arrival-1", "k": 5}))
    assert len(similar) == 5 and set(similar) <= set(items.loc[items["category"] == cat, "item_id"])
    bid = client.post("/bid", json={"user_id": "visitor-new-item", "channel": "douyin", "candidates": ["new-arrival-1"],
                                    "reference_value": 1.0}).json()
    assert bid["unknown_items"] == [] and bid["candidates"][0]["item_value"] == pytest.approx(19.9 * 0.35)


def test_price_and_margin_reach_the_bid(client, world):
    items, users = world
    item = items["item_id"].iloc[7]
    req = {"user_id": users.iloc[1], "channel": "douyin", "candidates": [item], "reference_value": 1.0}
    client.post("/items", json={"items": [{"item_id": item, "price": 100.0, "margin": 0.5}]})
    assert client.post("/bid", json=req).json()["candidates"][0]["item_value"] == pytest.approx(50.0)
    client.post("/items", json={"items": [{"item_id": item, "margin": 0.1}]})  # price kept, margin changed
    assert client.post("/bid", json=req).json()["candidates"][0]["item_value"] == pytest.approx(10.0)


def test_bad_item_rows_are_400_naming_the_row_and_field(client):
    r = client.post("/items", json={"items": [{"item_id": "ok"}, {"item_id": "x", "stock": -3}]})
    assert r.status_code == 400 and "items" in r.text and "stock" in r.text
    r = client.post("/items", json={"items": [{"stock": 3}]})
    assert r.status_code == 400 and "item_id" in r.text
    assert client.post("/items", json={"items": []}).status_code == 400
    for row in ({"item_id": "nul\x00"}, {"item_id": "ok", "category": "dairy\x00"}, {"item_id": "ok", "store_id": "\n"}):
        r = client.post("/items", json={"items": [row]})  # numpy's string arrays would drop a trailing NUL
        assert r.status_code == 400 and next(f for f in row if f != "item_id" or len(row) == 1) in r.text
    r = client.post("/items", json={"items": [{"item_id": f"n{k}"} for k in range(10_001)]})  # was 400, no variable
    assert r.status_code == 422 and r.json()["error"] == "limit_exceeded" and "OMNIDECIDE_MAX_ITEMS" in r.text, r.text
    r = client.post("/items", json={"items": [{"item_id": "nul-title", "title": "a\x00b"}]})  # PostgreSQL: was 500
    assert r.status_code == 400 and r.json()["field"] == "items[0].title" and "NUL" in r.json()["message"], r.text


def test_a_stored_row_with_an_unusable_id_does_not_stop_a_runtime(trained, tmp_path, world):
    """A row stored before ids were checked (an id ending in NUL) is skipped with a warning, not a KeyError at every
    runtime's start; the other rows of the same update still apply."""
    from omnidecide.serving.catalogue import Catalogue, ItemUpdate, LiveOverlay
    from omnidecide.serving.recommender import RecommenderRuntime
    from omnidecide.store.db import Database

    items, _ = world
    item = items.loc[items["stock"] > 0, "item_id"].iloc[0]
    cat = Catalogue(Database(f"sqlite:///{tmp_path / 'c.sqlite3'}"))
    cat.upsert([ItemUpdate.model_construct(item_id="bad\x00", stock=None, store_id=None, price=None, margin=None,
                                           category=None, title=None), ItemUpdate(item_id=item, stock=0)])
    rt = RecommenderRuntime(trained["recommender"], live=False)
    rt.live = LiveOverlay(cat)
    rt.sync()
    assert rt.rec.stock[rt.rec.item_index[item]] == 0 and not any(str(i).startswith("bad") for i in rt.rec.item_ids)


def test_catalogue_changes_reach_another_process_view(trained, tmp_path, world):
    """Two runtimes on one catalogue file (as two workers are): a change written through one is seen by the other."""
    from omnidecide.serving.catalogue import Catalogue, ItemUpdate, LiveOverlay
    from omnidecide.serving.recommender import RecommenderRuntime
    from omnidecide.store.db import Database

    items, _ = world
    item = items.loc[items["stock"] > 0, "item_id"].iloc[0]
    a, b = (RecommenderRuntime(trained["recommender"], live=False) for _ in range(2))
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"  # two connections, as two worker processes have
    a.live, b.live = LiveOverlay(Catalogue(Database(url))), LiveOverlay(Catalogue(Database(url)))
    a.live.catalogue.upsert([ItemUpdate(item_id=item, stock=0)])
    b.sync()
    assert b.rec.stock[b.rec.item_index[item]] == 0
