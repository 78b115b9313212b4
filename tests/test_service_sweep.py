"""Faults an outside-in HTTP sweep found (issue #17), each pinned by the request that showed it: stock set through
`/items` reaches `/bid`; `/allocate` errors name body fields, not CLI flags; an unknown body field is a 400 naming
it on every endpoint; `/similar_items` answers honestly for an item nothing can be compared with; absurd money
amounts are refused, never answered with null figures; admin `reason` is bounded and an unknown version is
answered without the model store's path.

In-process service on a database of its own (its `/items` and admin calls must not reach the other tests' state).
"""
from __future__ import annotations

import pytest

from omnidecide.serving.limits import LIMITS


def refused(r, field: str) -> None:
    """A 4xx in the one error body, naming `field` (at any depth) in `field` and in the message."""
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert set(body) == {"error", "message", "field"} and body["field"] == field and field in body["message"], body


def test_bid_skips_an_item_sold_out_through_items(own_client, items_users):
    items, users = items_users
    on_sale = items.loc[items["stock"] > 0, "item_id"]
    sold, kept = on_sale.iloc[0], on_sale.iloc[1]
    req = {"user_id": users.iloc[2], "channel": "douyin", "candidates": [sold, kept], "reference_value": 1.0}
    assert [c["item_id"] for c in own_client.post("/bid", json=req).json()["candidates"]] == [sold, kept]
    assert own_client.post("/items", json={"items": [{"item_id": sold, "stock": 0}]}).status_code == 200
    body = own_client.post("/bid", json=req).json()
    assert [c["item_id"] for c in body["candidates"]] == [kept] and body["out_of_stock_items"] == [sold], body
    # /bid has no store: a store's stock 0 does not stop the (online) ad; the item-level stock does
    own_client.post("/items", json={"items": [{"item_id": sold, "stock": 5}, {"item_id": kept, "store_id": "st01",
                                                                          "stock": 0}]})
    body = own_client.post("/bid", json=req).json()
    assert [c["item_id"] for c in body["candidates"]] == [sold, kept] and body["out_of_stock_items"] == []


def test_allocate_errors_name_the_body_fields_not_cli_flags(own_client):
    ok = own_client.post("/allocate", json={"budget": 10000, "periods": 2})
    assert ok.status_code == 200, ok.text
    channel = next(iter(ok.json()["per_channel"]))
    cases = [({"min": {"no-such-channel": 1.0}}, "min"), ({"min": {channel: 9000.0}}, "min"),
             ({"min": {channel: 500.0}, "max": {channel: 100.0}}, "min"), ({"roi_floor": {channel: -1.0}}, "roi_floor"),
             ({"actuals_csv": "period,spend_nope\n1,5\n"}, "actuals_csv")]
    for extra, field in cases:
        r = own_client.post("/allocate", json={"budget": 10000, "periods": 2, **extra})
        refused(r, field)
        assert "--" not in r.json()["message"], r.text


def test_predict_churn_horizon_error_names_the_body_field(own_client):
    event = {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": 20}
    for body in ({"as_of": "2026-03-01", "events": [event]}, {"user_ids": ["a"]}):
        r = own_client.post("/predict_churn", json={**body, "horizon_days": 7})
        refused(r, "horizon_days")
        assert r.json()["message"].startswith("horizon_days 7:"), r.text  # (the fix it names is a command: kept)


def test_allocate_cli_keeps_its_flag_names():
    from omnidecide.models.allocator.constraints import request_constraints
    from omnidecide.models.errors import InputError

    with pytest.raises(InputError, match="^--min is above --max"):
        request_constraints(["a"], 1e6, 4, 0.0, {"a": 2e5}, {"a": 1e5}, None)


def _example(route: str) -> dict:
    from omnidecide.serving.openapi import document

    op = document()["paths"][route]["post"]
    return dict(op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example") or {})


def test_an_unknown_field_is_refused_by_name_on_every_endpoint(own_client, items_users):
    from omnidecide.serving.service import OmniDecide

    # /noop is the throughput bench's floor: a bare @bentoml.api, as issue H's target defines it
    routes = [api.route for api in OmniDecide.apis.values() if api.route != "/noop"]
    assert {"/recommend", "/items", "/admin/promote", "/models"} <= set(routes)
    for route in routes:
        r = own_client.post(route, json={**_example(route), "no_such_field": 1})
        assert r.status_code == 400, (route, r.text)
        refused(r, "no_such_field")
    user = items_users[1].iloc[0]
    refused(own_client.post("/recommend", json={"user_id": user, "exclude_item": ["i1"]}), "exclude_item")
    refused(own_client.post("/recommend", json={"user_id": user, "recent_events": [{"item_id": "i1", "evnt": "cart"}]}),
            "recent_events[0].evnt")
    refused(own_client.post("/items", json={"item": [{"item_id": "i1"}]}), "item")
    # catalogue rows keep other attributes (brand, ...) as documented; numbers as text are still numbers
    assert own_client.post("/items", json={"items": [{"item_id": "i-brand", "brand": "house"}]}).status_code == 200
    assert len(own_client.post("/recommend", json={"user_id": user, "k": "3"}).json()["items"]) == 3
    # the events file's other id columns (docs/data.md) are known fields, not refused: a feed sends them
    event = {"user_id": user, "item_id": items_users[0]["item_id"].iloc[0], "event": "purchase",
             "timestamp": "2026-01-01T10:00:00", "amount": 9.9, "order_id": "o1", "session_id": "s1", "event_id": "e1"}
    r = own_client.post("/events", json={"events": [event]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def test_an_unknown_field_is_named_before_the_required_one_it_misspells(own_client):
    refused(own_client.post("/similar_items", json={"itemid": "i1"}), "itemid")


def test_similar_items_of_a_new_item_nothing_resembles_is_an_empty_honest_answer(own_client, items_users):
    items, _ = items_users
    new = {"item_id": "new-odd-1", "category": "a-category-nobody-sells", "stock": 3}
    assert own_client.post("/items", json={"items": [new]}).status_code == 200
    r = own_client.post("/similar_items", json={"item_id": "new-odd-1", "k": 5})
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    assert "new-odd-1" in r.json()["note"] and "a-category-nobody-sells" in r.json()["note"]
    # a second new item of that category is like it by category, and says so
    own_client.post("/items", json={"items": [{**new, "item_id": "new-odd-2"}]})
    got = own_client.post("/similar_items", json={"item_id": "new-odd-1", "k": 5}).json()
    assert [i["item_id"] for i in got["items"]] == ["new-odd-2"] and "category" in got["items"][0]["reason"], got
    warm = own_client.post("/similar_items", json={"item_id": items["item_id"].iloc[0], "k": 5}).json()
    assert len(warm["items"]) == 5 and warm["note"] is None


TOO_MUCH = 1e308


@pytest.mark.parametrize("route, body, field", [
    ("/predict_churn", {"as_of": "2026-03-01", "events": [
        {"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": TOO_MUCH}]}, "events[0].amount"),
    ("/events", {"events": [{"user_id": "a", "timestamp": "2026-01-10", "event": "purchase", "amount": TOO_MUCH}]},
     "events[0].amount"),
    ("/items", {"items": [{"item_id": "i-rich", "price": TOO_MUCH}]}, "items[0].price"),
    ("/bid", {"user_id": "a", "channel": "douyin", "candidates": ["i1"], "expected_spend": TOO_MUCH}, "expected_spend"),
    ("/bid", {"user_id": "a", "channel": "douyin", "candidates": ["i1"], "reference_value": TOO_MUCH},
     "reference_value"),
    ("/allocate", {"budget": TOO_MUCH, "periods": 2}, "budget"),
    ("/allocate", {"budget": 10000, "periods": 2, "max": {"x": TOO_MUCH}}, "max.x"),
])
def test_absurd_money_amounts_are_refused_naming_the_field_and_the_limit(own_client, route, body, field):
    r = own_client.post(route, json=body)
    refused(r, field)
    assert "OMNIDECIDE_MAX_AMOUNT" in r.json()["message"], r.text


def test_money_at_the_limit_gives_finite_figures(own_client, items_users):
    events = [{"user_id": "rich", "timestamp": "2026-01-10", "event": "purchase", "amount": LIMITS.amount},
              {"user_id": "rich", "timestamp": "2026-02-10", "event": "purchase", "amount": LIMITS.amount}]
    r = own_client.post("/predict_churn", json={"as_of": "2026-03-01", "events": events})
    assert r.status_code == 200, r.text
    row = r.json()["customers"][0]
    assert row["risk_tier"] in {"high", "medium", "low"} and row["expected_spend"] is not None, row
    item = items_users[0].loc[items_users[0]["stock"] > 0, "item_id"].iloc[5]
    own_client.post("/items", json={"items": [{"item_id": item, "price": LIMITS.amount}]})
    r = own_client.post("/bid", json={"user_id": "a", "channel": "douyin", "candidates": [item],
                                  "expected_spend": LIMITS.amount, "churn_probability": 1.0})
    assert r.status_code == 200 and None not in r.json()["candidates"][0].values(), r.text


def test_admin_reason_is_bounded_and_an_unknown_version_shows_no_path(own_client, trained, own_stages):
    from omnidecide.store import registry

    before = registry.stages("churn")
    r = own_client.post("/admin/promote", json={"model": "churn", "version": trained["churn"], "reason": "x" * 10_000})
    assert r.status_code in (400, 422) and r.json()["field"] == "reason" and "at most" in r.text, r.text
    assert "ids are limited" not in r.text  # a note, not an id
    r = own_client.post("/admin/promote", json={"model": "churn", "version": "no-such"})
    refused(r, "version")
    message = r.json()["message"]
    assert "churn:no-such" in message and str(registry.home()) not in message and "/" not in message, message
    assert trained["churn"].split(":")[1] in message  # the versions there are
    assert registry.stages("churn") == before
