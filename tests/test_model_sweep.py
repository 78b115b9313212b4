"""Faults an adversarial sweep of the recommender's and churn model's user-facing surface found (a new retailer's own
small, messy or oddly shaped files through `data validate`, `train recommender`, `recommend`, `train churn`,
`predict churn` and the HTTP endpoints), each pinned by the input that showed it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def _events(synth_world: Path) -> pd.DataFrame:
    return pd.read_csv(synth_world / "events.csv", dtype=str, keep_default_na=False)


def test_train_recommender_names_a_missing_or_unreadable_events_file(tmp_path, cli):
    """`--events` that does not exist, or a `.parquet` that is not Parquet, ended in a traceback (FileNotFoundError,
    ArrowInvalid) from the size check that runs before the file is loaded."""
    code, err = cli(["train", "recommender", "--events", str(tmp_path / "nope.csv")])
    assert code == 2 and "nope.csv" in err and "no such file" in err, err
    fake = tmp_path / "events.parquet"
    fake.write_text("user_id,item_id,timestamp,event\nu1,i1,2025-01-01,view\n")
    code, err = cli(["train", "recommender", "--events", str(fake)])
    assert code == 2 and "events.parquet" in err and "not a readable Parquet file" in err, err


@pytest.fixture(scope="module")
def one_customer_tag(tmp_path_factory, synth_world) -> str:
    """A recommender trained on one customer's events (and the world's items and users), through the CLI."""
    from typer.testing import CliRunner

    import omnidecide.cli.recommender  # noqa: F401  (registers the command)
    from omnidecide.cli.app import app

    folder = tmp_path_factory.mktemp("one")
    ev = _events(synth_world)
    ev[ev["user_id"] == ev["user_id"].iloc[0]].to_csv(folder / "events.csv", index=False)
    res = CliRunner().invoke(app, ["train", "recommender", "--events", str(folder / "events.csv"),
                                   "--items", str(synth_world / "items.csv"), "--users", str(synth_world / "users.csv")])
    assert res.exit_code == 0, (res.output, res.exception)
    return res.stdout.strip().splitlines()[-1]


def test_train_recommender_saves_a_version_without_a_second_stage(one_customer_tag):
    """A log too small for the LightGBM stage (one customer's events) trained, then failed to save: the version's
    figures held `purchase_prob_reliability: None`, which the model store refuses (a ValueError traceback)."""
    from omnidecide.store import registry

    meta = registry.get("recommender", one_customer_tag).info.metadata
    assert "purchase_prob_reliability" not in meta["figures"] and meta["n_users"] == 1


def test_recommend_segment_of_an_unknown_column_or_value(tmp_path, cli, one_customer_tag):
    """`--segment member_levle=gold` (a typo) was ignored without a word: every unknown user got the overall popular
    items. Now an unknown column is refused naming the known ones, and a value the model has no popularity for warns."""
    users = tmp_path / "users.txt"
    users.write_text("user_id\nnew-customer\n")
    base = ["recommend", "--users", str(users), "--model", one_customer_tag, "--output", str(tmp_path / "r.csv")]
    code, err = cli([*base, "--segment", "member_levle=gold"])
    assert code == 2 and "unknown column 'member_levle'" in err and "member_level" in err, err
    code, err = cli([*base, "--segment", "member_level=diamond"])
    assert code in (None, 0) and "no popular items for member_level=diamond" in err, err


def test_train_recommender_refuses_a_log_with_one_timestamp_by_name(tmp_path, cli, synth_world):
    """Every event at one moment (a date-only export of one day): the time cut left no training events, and the fit
    went on to `ValueError: need at least one array to concatenate` in the second stage. Now one line saying why."""
    ev = _events(synth_world)
    ev = ev[ev["user_id"].isin(ev["user_id"].unique()[:40])].assign(timestamp="2026-01-01")
    ev.to_csv(tmp_path / "events.csv", index=False)
    code, err = cli(["train", "recommender", "--events", str(tmp_path / "events.csv")])
    assert code == 2 and "every event is at 2026-01-01" in err and "more than one moment" in err, err


def test_choose_serving_skips_the_second_stage_without_validation_users(synth_world):
    """A validation cut with no customer to judge (its fit part empty) crashed building the second stage's rows."""
    from omnidecide.models.recommender.core import Recommender
    from omnidecide.store.io import load
    from omnidecide.training.recommender.pipeline import choose_serving

    ev = load(synth_world / "events.csv", "events").data
    rec = Recommender.build(ev[ev["user_id"].isin(ev["user_id"].unique()[:30])], None)
    val = ev[ev["user_id"].isin(ev["user_id"].unique()[30:60])]  # nobody the model knows
    ss, serve, info = choose_serving(rec, val, 0)
    assert ss is None and serve == "model" and info["second_stage"].startswith("skipped"), info


def test_train_churn_names_a_validation_window_of_one_class(tmp_path, cli, synth_world, monkeypatch):
    """No purchase by anyone in the last 90 days (a feed whose orders stopped, views still coming): the training
    windows hold both classes, the validation window only churners; early stopping never kept a state and the fit
    ended in `TypeError: Expected state_dict to be dict-like, got NoneType`."""
    monkeypatch.setenv("OMNIDECIDE_CHURN_FIT_SECONDS", "2")
    ev = _events(synth_world)
    ts = pd.to_datetime(ev["timestamp"])
    ev[~((ev["event"] == "purchase") & (ts > ts.max() - pd.Timedelta(days=90)))].to_csv(tmp_path / "e.csv", index=False)
    code, err = cli(["train", "churn", "--events", str(tmp_path / "e.csv")])
    assert code == 2 and "validation window" in err and "every one of them churned" in err, err


@pytest.fixture(scope="module")
def churn_tag(synth_world):
    """A churn version of the synthetic world, fit briefly (quality is tested in test_churn_model)."""
    from omnidecide.training.churn import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNIDECIDE_CHURN_FIT_SECONDS", "2")
        return train(synth_world / "events.csv")


def test_predict_churn_as_of_with_an_offset_empty_or_long_after_the_events(tmp_path, cli, synth_world, churn_tag):
    """`--as-of 2026-05-01T00:00:00+08:00` was a TypeError traceback (an aware timestamp against naive UTC events); an
    empty `--as-of` answered "no events before as-of NaT"; an as-of years after the last event scored every customer
    high risk without a word (now a warning naming the gap)."""
    base = ["predict", "churn", "--events", str(synth_world / "events.csv"), "--model", churn_tag]
    code, err = cli([*base, "--as-of", "2026-05-01T08:00:00+08:00", "--output", str(tmp_path / "tz.csv")])
    assert code in (None, 0), err
    code, _ = cli([*base, "--as-of", "2026-05-01", "--output", str(tmp_path / "plain.csv")])
    assert code in (None, 0)
    assert (tmp_path / "tz.csv").read_text() == (tmp_path / "plain.csv").read_text()  # 08:00+08:00 is midnight UTC
    code, err = cli([*base, "--as-of", "", "--output", str(tmp_path / "e.csv")])
    assert code == 2 and "--as-of '': not a date" in err, err
    code, err = cli([*base, "--as-of", "2030-01-01", "--output", str(tmp_path / "late.csv")])
    assert code in (None, 0) and "days after the latest event" in err and "more than the 90-day horizon" in err, err
    code, err = cli([*base, "--as-of", "2026-07-01", "--output", str(tmp_path / "ok.csv")])
    assert code in (None, 0) and "warning" not in err, err


def test_recommend_users_file_with_a_semicolon_header_or_user_id_twice_is_refused(tmp_path, cli):
    """`--users` given as a ';'-separated CSV served the header line "name;user_id" and each whole line as user ids
    (cold-start rows for customers who do not exist); a header naming user_id twice served the first column and
    dropped the other's ids without a word."""
    semi = tmp_path / "semi.csv"
    semi.write_text("name;user_id\nAnn;u0000001\n")
    code, err = cli(["recommend", "--users", str(semi), "--output", str(tmp_path / "a.csv")])
    assert code == 2 and "';'-separated" in err and not (tmp_path / "a.csv").exists(), err
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,user_id\nu1,u2\n")
    code, err = cli(["recommend", "--users", str(twice), "--output", str(tmp_path / "b.csv")])
    assert code == 2 and "user_id 2 times" in err and not (tmp_path / "b.csv").exists(), err


def test_a_first_row_wider_than_the_header_shifts_no_column(tmp_path, cli):
    """A first data row with one field more than the header made pandas read the first column as an index: every row
    of the file was shifted one column left, good rows were quarantined as `unparsable timestamp` and the user ids
    were lost. Now that row alone is `wrong number of fields (5)` and the others load as written."""
    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,timestamp,event\nu1,i1,2025-01-01,view,extra\nu2,i2,2025-01-01,view\n"
                 "u3,i3,2025-01-02,click\n")
    code, _ = cli(["data", "validate", "--events", str(f)])
    rejects = pd.read_csv(tmp_path / "events.rejects.csv", dtype=str)
    assert code == 1 and rejects[["row", "reason"]].values.tolist() == [["2", "wrong number of fields (5)"]]
    from omnidecide.store.io import load

    assert load(f, "events").data["user_id"].tolist() == ["u2", "u3"]


def test_bytes_that_are_not_utf8_quarantine_their_row(tmp_path, cli):
    """A Latin-1 export (`café`, `ié2`) loaded with each such byte replaced by U+FFFD and counted as good: two item
    ids differing only in an accented letter became one item. Now the row is `unparsable <col>`, counted, and the
    rest of the file loads."""
    f = tmp_path / "events.csv"
    f.write_bytes(b"user_id,item_id,timestamp,event,channel\nu1,i1,2025-01-01,view,caf\xe9\nu2,i\xe92,2025-01-01,view,"
                  b"web\nu3,i\xe82,2025-01-01,view,web\nu4,i4,2025-01-01,view,web\n")
    code, _ = cli(["data", "validate", "--events", str(f)])
    rejects = pd.read_csv(tmp_path / "events.rejects.csv", dtype=str)
    assert code == 1 and rejects[["row", "reason"]].values.tolist() == [
        ["2", "unparsable channel"], ["3", "unparsable item_id"], ["4", "unparsable item_id"]]
    from omnidecide.store.io import load

    assert load(f, "events").data["item_id"].tolist() == ["i4"]


def test_header_names_with_spaces_are_read(tmp_path):
    """`user_id ,item_id, timestamp,event` (spaces an export left around the names) was refused as missing user_id and
    timestamp, while the duplicate-header check already read the names stripped."""
    from omnidecide.store.io import load

    f = tmp_path / "events.csv"
    f.write_text("user_id ,item_id, timestamp,event\nu1,i1,2025-01-01,view\n")
    assert load(f, "events").data[["user_id", "timestamp"]].astype(str).values.tolist() == [["u1", "2025-01-01"]]


def test_missing_column_errors_hint_at_case_and_encoding(tmp_path, cli):
    """`User_ID,Item_ID,...` and a UTF-16 export were refused as missing columns with no word of why."""
    upper = tmp_path / "upper.csv"
    upper.write_text("User_ID,Item_ID,Timestamp,Event\nu1,i1,2025-01-01,view\n")
    code, err = cli(["data", "validate", "--events", str(upper)])
    assert code == 2 and "column names are lower case" in err, err
    wide = tmp_path / "wide.csv"
    wide.write_bytes("user_id,item_id,timestamp,event\nu1,i1,2025-01-01,view\n".encode("utf-16"))
    code, err = cli(["data", "validate", "--events", str(wide)])
    assert code == 2 and "not UTF-8" in err, err


def test_a_blank_line_inside_the_file_does_not_shift_reject_rows(tmp_path):
    """A blank line in the middle of an export: the reject after it was named one line too early (row 3 for the row on
    line 4), so a user fixing the file by its rejects edited the wrong line. Trailing blank lines change nothing."""
    from omnidecide.store.io import load

    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,timestamp,event\r\nu1,i1,2025-01-01,view\r\n\r\nu2,i2,2025-01-01,vieww\r\n\r\n\r\n")
    loaded = load(f, "events")
    assert loaded.rejects[["row", "reason"]].values.tolist() == [[4, "unknown event"]]
    assert loaded.data["user_id"].tolist() == ["u1"]


def test_predict_churn_with_no_event_before_as_of_names_the_field(churn_tag):
    """`/predict_churn` with every event on or after `as_of` answered 400 with `field: null` ("no events before
    as-of ..."): the caller could not tell which part of the body to fix."""
    from omnidecide.serving.churn import ChurnRequest, ChurnService
    from omnidecide.serving.errors import bad_input
    from omnidecide.models.errors import InputError

    req = ChurnRequest(as_of="2026-01-01", events=[{"user_id": "a", "timestamp": "2026-01-10", "event": "purchase"}])
    with pytest.raises(InputError) as e:
        ChurnService(churn_tag).score(req)
    err = bad_input(e.value, set(ChurnRequest.model_fields))
    assert err.status == 400 and err.field == "as_of" and "2026-01-10" in err.message, err.message


def test_train_recommender_keeps_a_parquet_store_stock_beside_parquet_items(tmp_path, cli, synth_world):
    """`--items items.parquet` with `store_stock.parquet` beside it (what `data synth --format parquet` writes): only
    `store_stock.csv` was looked for, so the version served without per-store stock and said nothing."""
    from omnidecide.store import registry, snapshot

    ev = _events(synth_world)
    ev[ev["user_id"].isin(ev["user_id"].unique()[:3])].to_parquet(tmp_path / "events.parquet", index=False)
    for name in ("items", "store_stock"):
        pd.read_csv(synth_world / f"{name}.csv", dtype=str).to_parquet(tmp_path / f"{name}.parquet", index=False)
    code, err = cli(["train", "recommender", "--events", str(tmp_path / "events.parquet"),
                     "--items", str(tmp_path / "items.parquet")])
    assert code in (None, 0), err
    _, stock = snapshot.read(registry.path("recommender", registry.versions("recommender")[0]["tag"]))  # newest
    assert stock is not None and len(stock) == len(pd.read_csv(synth_world / "store_stock.csv"))


def test_parquet_with_nested_or_binary_extra_columns_loads(tmp_path, cli):
    """An events.parquet with an extra list column (tags), a struct or raw bytes: casting them to text raised
    ArrowNotImplementedError, a traceback for the whole file. Extra columns are kept and ignored, as docs/data.md says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from omnidecide.store.io import load

    f = tmp_path / "events.parquet"
    pq.write_table(pa.table({
        "user_id": ["u1", "u2"], "item_id": pa.array([1, 2], pa.int64()), "timestamp": ["2025-01-01", "2025-01-02"],
        "event": ["view", "cart"], "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
        "meta": pa.array([{"x": 1}, {"x": 2}]), "blob": pa.array([b"\xff", b"ok"], pa.binary())}), f)
    code, err = cli(["data", "validate", "--events", str(f)])
    assert code == 0, err
    data = load(f, "events").data
    assert data["item_id"].tolist() == ["1", "2"] and data["tags"].tolist() == ['["a", "b"]', ""]


def test_bid_on_a_version_without_second_stage_says_why(one_customer_tag):
    """`/bid` on a version trained on too little data to fit the second stage answered "...; retrain it": retraining
    on the same log gives the same version. The 400 now says why there is none and what the version needs."""
    from omnidecide.models.errors import InputError
    from omnidecide.serving.bidder import Bidder, BidRequest
    from omnidecide.serving.recommender import RecommenderRuntime

    bidder = Bidder(RecommenderRuntime(one_customer_tag, live=False))
    with pytest.raises(InputError) as e:
        bidder.bid(BidRequest(user_id="u1", channel="douyin", candidates=["i00001"]))
    assert "fewer than 20 validation users" in str(e.value) and "more customers and purchases" in str(e.value)
