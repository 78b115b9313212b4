"""Data profile and drift: named figures of the recent data, and which moved more than ±15%."""
from __future__ import annotations

import pandas as pd
import pytest

from omnidecide.models.errors import InputError
from omnidecide.training.profile import data_end, drift, profile

END = pd.Timestamp("2026-06-28 18:00")


def _events(buyers: int, users: int = 100, weeks: int = 4) -> pd.DataFrame:
    """Each user views 16 and clicks 3 items a week; `buyers` of them also buy once a week for 10."""
    rows = []
    for u in range(users):
        for w in range(weeks):
            t = END - pd.Timedelta(days=7 * w, hours=u % 24)
            rows += [(f"u{u}", f"i{(u + n) % 50}", t, "view", None, "app" if n % 2 else "web") for n in range(16)]
            rows += [(f"u{u}", f"i{n}", t, "click", None, "app") for n in range(3)]
            if u < buyers:
                rows.append((f"u{u}", "i7", t, "purchase", 10.0, "web"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "amount", "channel"])


def test_doubling_the_purchase_share_alerts_on_exactly_that():
    ref, cur = profile("events", _events(buyers=50)), profile("events", _events(buyers=100))
    assert ref["share_event.purchase"] == pytest.approx(2 / 78)  # 2 purchases per 78 events per 4 users-weeks
    assert ref["purchases_per_buyer"] == cur["purchases_per_buyer"] == 4.0
    assert ref["events_per_active_user_week"] == pytest.approx(19.5) and ref["active_users_per_week"] == 100
    alerts = [r for r in drift(ref, cur) if r["alert"]]
    assert [r["attribute"] for r in alerts] == ["share_event.purchase"]
    assert alerts[0]["change"] == pytest.approx(0.05 / (2 / 78) - 1)


def test_unchanged_data_gives_no_alert_and_old_history_is_outside_the_window():
    frame = _events(buyers=50)
    old = _events(buyers=100).assign(timestamp=lambda f: f["timestamp"] - pd.Timedelta(days=90), event="cart")
    with_history = profile("events", pd.concat([old, frame]))
    rows = drift(profile("events", frame), with_history)
    assert [r["attribute"] for r in rows if r["alert"]] == ["share_new_users"]  # everyone was seen before the window
    assert with_history["share_new_users"] == 0.0 and "share_event.cart" not in with_history
    assert not any(r["alert"] for r in drift(profile("events", frame), profile("events", frame.sample(frac=1.0))))


def test_tiny_shares_new_and_gone_attributes():
    rows = {r["attribute"]: r for r in drift(
        {"share_event.return": 0.001, "share_channel.app": 0.5, "share_channel.fax": 0.003, "mean_purchase_amount": 10},
        {"share_event.return": 0.002, "share_channel.web": 0.5, "share_channel.kiosk": 0.004, "mean_purchase_amount": 12})}
    assert rows["share_event.return"]["change"] == pytest.approx(1.0) and not rows["share_event.return"]["alert"]
    assert rows["mean_purchase_amount"]["alert"] and rows["mean_purchase_amount"]["change"] == pytest.approx(0.2)
    assert (rows["share_channel.app"]["status"], rows["share_channel.web"]["status"]) == ("gone", "new")
    assert rows["share_channel.app"]["alert"] and rows["share_channel.web"]["alert"]
    assert not rows["share_channel.fax"]["alert"] and not rows["share_channel.kiosk"]["alert"]  # tiny comes and goes
    assert drift({"mean_spend.sms": 0.0}, {"mean_spend.sms": 5.0})[0]["alert"]  # from nothing to something
    assert not drift({"x": 1.0}, {"x": 1.14})[0]["alert"] and drift({"x": 1.0}, {"x": 0.84})[0]["alert"]


def test_marketing_mix_profile_uses_the_last_13_weeks():
    dates = pd.date_range("2025-01-05", periods=20, freq="W")
    mix = pd.DataFrame({"date": dates, "revenue": [1000.0] * 7 + [2000.0] * 13,
                        "spend_wechat": [0.0] * 7 + [30.0] * 13, "spend_douyin": [99.0] * 7 + [10.0] * 13})
    p = profile("marketing_mix", mix.sample(frac=1.0, random_state=0))
    assert p == {"mean_weekly_revenue": 2000.0, "mean_spend.douyin": 10.0, "mean_spend.wechat": 30.0,
                 "share_spend.douyin": 0.25, "share_spend.wechat": 0.75}
    assert data_end(mix, "date") == "2025-05-18" and data_end(_events(1), "timestamp") == "2026-06-28T18:00:00"
    with pytest.raises(InputError, match="unknown kind"):
        profile("touchpoints", mix)  # type: ignore[arg-type]
