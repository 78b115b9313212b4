"""Parquet canonical files: the same accepted rows, rejects and quarantine counts as the same rows in CSV, batch by
batch (batches smaller than the file, so rows cross batch boundaries)."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from omnidecide.cli.app import app
import omnidecide.cli.data  # noqa: F401  (registers the commands)
from omnidecide.models.schema import TABLES
from omnidecide.store import chunks
from omnidecide.store.io import load

EVENTS = pd.DataFrame({
    "user_id": ["u1", "u1", "", "u2", "u3", "u3", "u4", "u5", "u5", "u6", "u7"],
    "item_id": ["i1", "i2", "i3", "", "i1", "i4", "i2", "i9", "", "i3", "i1"],
    "timestamp": ["2024-01-02T10:00:00", "2024-01-03", "2024-01-03", "2024-01-04", "not a date", "1704067200",
                  "1890-01-01", "2024-02-01T08:30:00", "2024-02-02", "2024-02-03", "2024-02-04"],
    "event": ["view", "purchase", "view", "view", "cart", "purchase", "view", "teleport", "purchase", "view", "click"],
    "amount": ["", "12.5", "", "", "", "-3", "", "", "40", "abc", ""],
    "channel": ["app", "store", "web", "app", "app", "store", "web", "app", "store", "web", "app"],
})


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(chunks, "BATCH_ROWS", 3)


def _both(tmp_path, frame: pd.DataFrame, name: str = "events"):
    csv_path, pq_path = tmp_path / f"{name}.csv", tmp_path / f"{name}.parquet"
    frame.to_csv(csv_path, index=False)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), pq_path, row_group_size=4)
    return load(csv_path, name), load(pq_path, name)


def test_csv_and_parquet_give_the_same_rows_rejects_and_counts(tmp_path, small_batches):
    c, p = _both(tmp_path, EVENTS)
    assert c.n_good == p.n_good == 4
    assert c.counts == p.counts
    assert c.counts == {"missing user_id": 1, "missing item_id": 1, "unparsable timestamp": 1, "negative amount": 1,
                        "impossible timestamp": 1, "unknown event": 1, "non-numeric amount": 1}
    pd.testing.assert_frame_equal(c.data, p.data)
    pd.testing.assert_frame_equal(c.rejects, p.rejects)
    assert list(c.rejects["row"]) == [4, 5, 6, 7, 8, 9, 11]  # CSV lines (header = 1), the same for Parquet
    assert c.rejects_path.name == "events.rejects.csv" and p.rejects_path.exists()


def test_batched_equals_one_pass(tmp_path):
    path = tmp_path / "events.csv"
    EVENTS.to_csv(path, index=False)
    whole = load(path, "events")
    parts = chunks.scan(path, TABLES["events"], rows=2)
    assert sum(len(x) for x in parts.clean) == whole.n_good
    pd.testing.assert_frame_equal(pd.concat(parts.rejects, ignore_index=True), whole.rejects)


def test_typed_parquet_columns_read_as_their_text(tmp_path):
    """A Parquet written with real types (timestamps, floats with nulls) validates like its CSV text."""
    typed = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["i1", "i2", None],
                          "timestamp": pd.to_datetime(["2024-01-02 10:00", "2024-01-03", "2024-01-04"], format="ISO8601"),
                          "event": ["view", "purchase", "purchase"], "amount": [None, 12.5, float("nan")]})
    pq.write_table(pa.Table.from_pandas(typed, preserve_index=False), tmp_path / "events.parquet")
    got = load(tmp_path / "events.parquet", "events")
    assert got.n_rejected == 0 and got.n_good == 3
    assert got.data["timestamp"].tolist() == list(typed["timestamp"])
    assert got.data["amount"].isna().tolist() == [True, False, True]


def test_unique_keys_and_malformed_csv_rows(tmp_path, small_batches):
    items = pd.DataFrame({"item_id": ["i1", "i2", "i1", "i3", "i2"], "category": ["a", "b", "a", "", "b"],
                          "price": ["1", "x", "2", "3", "4"]})
    c, p = _both(tmp_path, items, "items")
    assert c.counts == p.counts == {"duplicate item_id": 2, "missing category": 1, "non-numeric price": 1}
    pd.testing.assert_frame_equal(c.data, p.data)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp,event\nu1,i1,2024-01-01,view\nu2,i2,2024-01-01\n"
                   "u3,i3,2024-01-01,view\nu4,i4,2024-01-01,view,extra\nu5,i5,2024-01-01,view\n")
    got = load(bad, "events")
    assert got.n_good == 3 and got.counts == {"missing event": 1, "wrong number of fields (5)": 1}
    assert sorted(got.rejects["row"]) == [3, 5]


def test_empty_and_unreadable_files_are_errors(tmp_path):
    from omnidecide.models.schema import SchemaError

    (tmp_path / "e.csv").write_text("")
    (tmp_path / "e.parquet").write_bytes(b"not parquet")
    for name in ("e.csv", "e.parquet"):
        with pytest.raises(SchemaError, match=name):
            load(tmp_path / name, "events")
    pq.write_table(pa.table({"user_id": ["u1"]}), tmp_path / "m.parquet")
    with pytest.raises(SchemaError, match="missing required column"):
        load(tmp_path / "m.parquet", "events")


def test_validate_cli_reads_parquet(tmp_path):
    pq.write_table(pa.Table.from_pandas(EVENTS, preserve_index=False), tmp_path / "events.parquet")
    res = CliRunner().invoke(app, ["data", "validate", "--events", str(tmp_path / "events.parquet")])
    assert res.exit_code == 1, res.output
    assert "events: 4 good, 7 rejected" in res.output


def _as_plain(frame: pd.DataFrame) -> pd.DataFrame:
    """A compact frame's categoricals back as the text path's strings, for comparison."""
    return pd.DataFrame({c: frame[c].astype("string") if isinstance(frame[c].dtype, pd.CategoricalDtype) else frame[c]
                         for c in frame.columns})


def test_compact_load_keeps_and_rejects_the_same_rows(tmp_path, small_batches):
    """Typed, dictionary-encoded Parquet (as `data synth --format parquet` writes) checked on its Arrow values gives
    the text path's rows, values and rejects; so does a text-only Parquet and a CSV through the compact loader."""
    typed = pd.DataFrame({
        "user_id": pd.Categorical(["u1", " u1", "", "u2", None, "u3", "u4", "u5", "u5", "u6", "u7", "u8"]),
        "item_id": pd.Categorical(["i1", "i2", "i3", "", "i1", "i4", "i2", "i9", None, "i3", "i1", "i2"]),
        "timestamp": pd.to_datetime(["2024-01-02 10:00", "2024-01-03", "2024-01-03", "2024-01-04", "2024-01-05",
                                     "2024-01-05 00:00:00.250", "1890-01-01", "2024-02-01 08:30", "2024-02-02",
                                     "2030-02-03", None, "2024-02-05"], format="ISO8601"),
        "event": pd.Categorical(["view", "Purchase", "view", "view", "cart", "purchase ", "view", "teleport",
                                 "purchase", "view", "click", "purchase"]),
        "amount": pd.array([None, 12.1, None, None, None, -3.0, None, None, 40.0, float("inf"), None, 0.1],
                           dtype="float32"),
        "channel": ["app", "store", "web", "app", "app", None, "web", "app", "store", "web", "app", " "],
        "store_id": ["s1"] * 12,
    })
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pandas(typed, preserve_index=False), path, row_group_size=5)
    cols = ["user_id", "timestamp", "event", "amount", "item_id", "channel"]
    text = load(path, "events", columns=cols, write=False)
    got = load(path, "events", columns=cols, compact=True, write=False)
    assert text.n_good == got.n_good == 4 and text.n_rejected == 8
    assert text.counts == got.counts
    pd.testing.assert_frame_equal(got.rejects, text.rejects)
    pd.testing.assert_frame_equal(_as_plain(got.data), text.data, check_dtype=False)
    assert isinstance(got.data["user_id"].dtype, pd.CategoricalDtype) and "store_id" not in got.data
    assert got.data["amount"].tolist()[1] == 12.1  # float32 12.1 read as the text "12.1", as the text path does
    csv = tmp_path / "events.csv"
    text.data.to_csv(csv, index=False)
    pd.testing.assert_frame_equal(_as_plain(load(csv, "events", compact=True).data), load(csv, "events").data,
                                  check_dtype=False)
