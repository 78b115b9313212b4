"""The synthetic world is deterministic and really contains the structure truth.json claims."""
import json

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.response import media_revenue
from omnidecide.store.io import load
from omnidecide.training.synth import generate, is_peak


@pytest.fixture(scope="module")
def world(synth_world):
    truth = json.loads((synth_world / "truth.json").read_text())
    events = load(synth_world / "events.csv", "events").data
    return synth_world, truth, events


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, n_users=120, seed=3)
    generate(b, n_users=120, seed=3)
    generate(c, n_users=120, seed=4)
    for name in ("events.csv", "items.csv", "users.csv", "touchpoints.csv", "marketing_mix.csv", "truth.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "events.csv").read_bytes() != (c / "events.csv").read_bytes()


def test_all_files_valid_and_counts_match(world):
    folder, truth, events = world
    assert len(events) == truth["counts"]["events"]
    for table in ("items", "users", "touchpoints", "marketing_mix", "store_stock"):
        assert load(folder / f"{table}.csv", table).n_rejected == 0, table
    assert events["user_id"].nunique() <= truth["n_users"]
    raw = pd.read_csv(folder / "events.csv", dtype=str, keep_default_na=False)
    assert not raw.duplicated().any()  # an exact copy of a purchase row (same order id) would be quarantined
    views = raw[raw["event"] == "view"]
    assert not views.duplicated(["session_id", "timestamp"]).any()  # a session's views follow one another


def test_planted_bad_rows_are_counted_exactly(tmp_path):
    truth = generate(tmp_path, n_users=150, seed=1, corrupt=0.02)
    loaded = load(tmp_path / "events.csv", "events")
    assert loaded.counts == truth["bad_rows"]["events"]
    assert loaded.n_rejected == sum(truth["bad_rows"]["events"].values()) > 0


def test_consumables_are_rebought_durables_are_not(world):
    _, truth, events = world
    items = pd.read_csv(world[0] / "items.csv", dtype=str)
    buys = events[events["event"] == "purchase"].merge(items[["item_id", "category"]], on="item_id")
    per_pair = buys.groupby(["user_id", "item_id", "category"]).size().reset_index(name="n")
    consumable = per_pair["category"].isin(truth["consumable_categories"])
    assert per_pair.loc[consumable, "n"].mean() > 2.0
    assert per_pair.loc[~consumable, "n"].max() == 1
    # re-buy gaps follow the category cycle (median within 25%)
    dairy = buys[buys["category"] == "dairy"].sort_values("timestamp")
    gaps = dairy.groupby(["user_id", "item_id"])["timestamp"].diff().dt.total_seconds().dropna() / 86400
    assert abs(np.median(gaps) - truth["categories"]["dairy"]["cycle_days"]) < 0.25 * 7


def test_tastes_are_planted(world):
    folder, _, events = world
    items = pd.read_csv(folder / "items.csv", dtype=str)
    tu = pd.read_csv(folder / "truth_users.csv", dtype=str)
    views = events[events["event"] == "view"].merge(items[["item_id", "category"]], on="item_id")
    top = dict(zip(tu["user_id"], tu["top_categories"].str.split(";")))
    in_top = views.apply(lambda r: r["category"] in top[r["user_id"]], axis=1).mean()
    assert in_top > 0.8  # 3 of 20 categories would give 0.15 by chance


def test_no_purchase_after_stockout_and_stock_zero(world):
    folder, truth, events = world
    items = pd.read_csv(folder / "items.csv", dtype={"item_id": str})
    sold_out = set(truth["stockouts"]["sold_out_items"])
    assert sold_out and set(items.loc[items["stock"] == 0, "item_id"]) == sold_out
    buys = events[(events["event"] == "purchase") & events["item_id"].isin(sold_out)]
    day = buys["item_id"].map(lambda i: pd.Timestamp(truth["stockouts"]["sold_out_day"][i]))
    assert (buys["timestamp"] < day + pd.Timedelta(days=1)).all()


def test_churners_go_silent_after_churn_date(world):
    folder, _, events = world
    tu = pd.read_csv(folder / "truth_users.csv", dtype=str, keep_default_na=False)
    churned = tu[tu["churned_within_data"] == "True"]
    assert 0.15 < len(churned) / len(tu) < 0.45
    last = events.groupby("user_id")["timestamp"].max()
    after = [last.get(u, pd.Timestamp.min) >= pd.Timestamp(d) + pd.Timedelta(days=1) for u, d in zip(churned["user_id"], churned["churn_date"])]
    # the only activity allowed after churn is a pending return of an earlier purchase
    late = events[events["user_id"].isin(churned["user_id"][after])]
    assert sum(after) <= 0.02 * len(churned) or set(late[late["timestamp"] > late["user_id"].map(dict(zip(churned["user_id"], pd.to_datetime(churned["churn_date"]))))]["event"]) <= {"return"}


def test_marketing_mix_follows_its_truth(world):
    folder, truth, _ = world
    mmm = pd.read_csv(folder / "marketing_mix.csv")
    t = truth["marketing_mix"]
    chans = list(t["channels"])
    spend = mmm[[f"spend_{c}" for c in chans]].to_numpy()
    peak = np.array([d in set(t["peak_weeks"]) for d in mmm["date"]])
    mult = 1 + (t["peak_media_multiplier"] - 1) * peak
    p = t["channels"]
    media = media_revenue(spend, [p[c]["decay"] for c in chans], [p[c]["half_saturation"] for c in chans],
                          [p[c]["slope"] for c in chans], [p[c]["beta"] for c in chans], multiplier=mult).sum(1)
    b = t["baseline"]
    woy = pd.to_datetime(mmm["date"]).dt.isocalendar().week.to_numpy().astype(float)
    base = b["level"] * (1 + b["trend_per_week"] * np.arange(len(mmm))) * (1 + b["season_amplitude"] * np.sin(2 * np.pi * woy / 52 + b["season_phase"])) \
        * (1 + b["peak_lift"] * peak) + b["promo_lift"] * b["level"] * mmm["promo"]
    resid = mmm["revenue"] - base - media
    assert np.std(resid) < 2 * b["noise_sd_share"] * b["level"]
    # spend is confounded with the peaks on purpose
    assert spend[peak].sum(1).mean() > 1.3 * spend[~peak].sum(1).mean()
    assert peak.sum() >= 4 and is_peak(pd.DatetimeIndex(["2025-06-18", "2025-11-11"])).all()


def test_attribution_truth_shares(world):
    folder, truth, _ = world
    a = truth["attribution"]
    shares = a["contribution_share"]
    assert sum(shares.values()) == pytest.approx(1, abs=1e-4)
    # removal-effect truth follows the planted lifts (higher lift, larger share) for the frequent channels
    assert shares["kol_live"] > shares["search"] > shares["sms"]
    tp = load(folder / "touchpoints.csv", "touchpoints").data
    assert set(tp["channel"]) == set(a["channels"])


def test_grocery_world_matches_its_published_facts(tmp_path):
    from omnidecide.training import splits

    a, b = tmp_path / "a", tmp_path / "b"
    truth = generate(a, n_users=300, seed=2, n_items=500, world="grocery")
    generate(b, n_users=300, seed=2, n_items=500, world="grocery")
    assert (a / "events.csv").read_bytes() == (b / "events.csv").read_bytes()
    ev = load(a / "events.csv", "events").data
    assert len(ev) == truth["counts"]["events"] and (ev["event"] == "purchase").all() and ev["order_id"].notna().all()
    orders = ev.groupby("order_id").agg(u=("user_id", "first"), t=("timestamp", "min"), n=("item_id", "size"))
    orders = orders.sort_values(["u", "t"])
    gaps = orders.groupby("u")["t"].diff().dropna().dt.total_seconds() / 86400
    assert gaps.max() <= 31 and 4 <= gaps.median() <= 12  # capped at 30 days (+ time of day); about a week
    assert orders.groupby("u").size().min() >= 2
    first_time = ~ev.sort_values("timestamp", kind="stable").duplicated(["user_id", "item_id"])
    assert 0.45 <= 1 - first_time.mean() <= 0.7  # most lines are reorders (Instacart: 59%)
    pairs = ev.groupby(["user_id", "item_id"])["order_id"].nunique()
    assert (pairs == 1).mean() > 0.4  # many items bought once
    share = ev.groupby("item_id").size().sort_values(ascending=False) / len(ev)
    assert share.iloc[:5].sum() > 10 * share.iloc[-250:].mean() * 5  # heavy-tailed popularity
    # staples: most customers have an item in at least 70% of their orders
    per_user_orders = orders.groupby("u").size()
    top_share = pairs.groupby("user_id").max() / per_user_orders
    assert (top_share >= 0.7).mean() > 0.5
    assert splits.last_basket(ev)[1]["user_id"].nunique() == ev["user_id"].nunique()


def test_cli_synth_world_option(tmp_path):
    from typer.testing import CliRunner

    import omnidecide.cli.data  # noqa: F401  (registers the commands)
    from omnidecide.cli.app import app
    from omnidecide.models.errors import InputError

    r = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "g"), "--world", "grocery", "--users", "30",
                                 "--items", "100"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "g" / "truth.json").read_text())["world"] == "grocery"
    bad = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--world", "moon"])
    assert isinstance(bad.exception, InputError) and "--world" in str(bad.exception)
