"""Splitters: no row lost or duplicated, right rows on each side."""
import pandas as pd

from omnidecide.training import splits


def events():
    rows = []
    for u in ("a", "b", "c"):
        for d in range(10):
            rows.append((u, f"i{d}", pd.Timestamp("2025-01-01") + pd.Timedelta(days=d), "purchase", f"{u}{d // 2}"))
    rows.append(("solo", "i0", pd.Timestamp("2025-01-05"), "purchase", "s"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "order_id"])


def test_per_user_random_partitions_and_is_seeded():
    e = events()
    tr, te = splits.per_user_random(e, 0.2, seed=1)
    assert len(tr) + len(te) == len(e) and not set(tr.index) & set(te.index)
    assert te.groupby("user_id").size().to_dict() == {"a": 2, "b": 2, "c": 2}
    assert "solo" in set(tr["user_id"]) and "solo" not in set(te["user_id"])
    assert splits.per_user_random(e, 0.2, seed=1)[1].index.equals(te.index)
    assert not splits.per_user_random(e, 0.2, seed=2)[1].index.equals(te.index)


def test_temporal_takes_latest():
    tr, te = splits.per_user_temporal(events(), 0.2)
    assert (te.groupby("user_id")["timestamp"].min() > tr[tr.user_id != "solo"].groupby("user_id")["timestamp"].max()).all()


def test_last_basket_uses_orders_and_keeps_history_before():
    tr, te = splits.last_basket(events())
    assert set(te["order_id"]) == {"a4", "b4", "c4"} and len(te) == 6
    assert tr.groupby("user_id")["timestamp"].max().loc["a"] < te.groupby("user_id")["timestamp"].min().loc["a"]
    assert "solo" in set(tr["user_id"])


def test_last_basket_with_no_second_basket_keeps_everything_in_train():
    e = events()
    e = e[e["user_id"] == "solo"]
    tr, te = splits.last_basket(e)
    assert te.empty and len(tr) == len(e)


def test_global_time():
    tr, te = splits.global_time(events(), "2025-01-06")
    assert tr["timestamp"].max() < pd.Timestamp("2025-01-06") <= te["timestamp"].min()
