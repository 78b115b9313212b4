"""Bad input files found in the 12-01 CLI review: each is a clear error (exit 2) or a counted quarantine, never a
crash and never a row that vanishes or is silently re-read (absurd numbers, header-only files, blank spend, duplicate
deliveries, a CSV given as a list of user ids)."""
import numpy as np
import pandas as pd
import pytest

from omnidecide.models.errors import InputError
from omnidecide.store.io import load

EV_HEADER = "user_id,item_id,timestamp,event,quantity,amount,order_id\n"



def _mix(cells: dict | None = None, n: int = 60) -> pd.DataFrame:
    """A weekly marketing-mix history of n rows; cells: {(row, column): text} overrides."""
    df = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="7D").strftime("%Y-%m-%d"),
                       "revenue": np.linspace(1000, 2000, n).round(2).astype(str),
                       "spend_tv": np.linspace(10, 50, n).round(2).astype(str),
                       "spend_search": np.linspace(5, 9, n).round(2).astype(str)})
    for (i, col), v in (cells or {}).items():
        df.loc[i, col] = v
    return df


# 1. finite but absurd numbers --------------------------------------------------------------------------------------

def test_absurd_finite_numbers_are_quarantined_by_row_and_field(tmp_path):
    ev = tmp_path / "events.csv"
    ev.write_text(EV_HEADER + "u1,i1,2025-01-01T10:00:00,purchase,1,1e308,o1\n"
                  "u2,i1,2025-01-01T10:00:00,purchase,1e300,5,o2\nu3,i1,2025-01-01T10:00:00,purchase,2,19.9,o3\n")
    got = load(ev, "events", write=False)
    assert got.n_good == 1 and got.counts == {"impossible amount": 1, "impossible quantity": 1}
    assert list(got.rejects["row"]) == [2, 3]
    it = tmp_path / "items.csv"
    it.write_text("item_id,category,price,margin\ni1,c,1e13,0.2\ni2,c,5,-1e200\ni3,c,5,0.3\n")
    got = load(it, "items", write=False)
    assert got.counts == {"impossible price": 1, "impossible margin": 1} and got.n_good == 1
    mix = tmp_path / "mix.csv"
    _mix({(3, "spend_tv"): "1e308", (4, "revenue"): "1e15"}).to_csv(mix, index=False)
    got = load(mix, "marketing_mix", write=False)
    assert got.counts == {"impossible spend_tv": 1, "impossible revenue": 1}
    assert np.isfinite(got.data[["revenue", "spend_tv", "spend_search"]].to_numpy().sum())


def test_absurd_numbers_in_the_service_fast_path_agree_with_the_validator():
    from omnidecide.models.schema import EVENTS, quick_events, validate_records

    rec = {"user_id": "u", "item_id": "i", "event": "purchase", "timestamp": "2025-01-01T10:00:00", "amount": 1e308}
    assert quick_events([rec]) is None
    with pytest.raises(InputError, match="impossible amount"):
        validate_records([rec], EVENTS)


def test_absurd_lift_test_and_actuals_figures_are_errors_naming_row_and_field():
    from omnidecide.models.allocator.actuals import _numbers
    from omnidecide.models.allocator.lift import parse_lift_tests

    dates = pd.date_range("2024-01-01", periods=60, freq="7D")
    lift = pd.DataFrame({"channel": ["tv"], "start": ["2024-02-01"], "end": ["2024-03-01"],
                         "incremental_revenue": ["1e308"], "ci_low": ["0"], "ci_high": ["1.5e308"]})
    with pytest.raises(InputError, match=r"row 1: incremental_revenue .*1e\+?308"):
        parse_lift_tests(lift, ["tv"], dates)
    with pytest.raises(InputError, match=r"row 2: spend_tv"):
        _numbers(pd.DataFrame({"spend_tv": ["5", "1e300"]}), "spend_tv", "--actuals a.csv", nonneg=True)


# 2. a header-only file ---------------------------------------------------------------------------------------------

def test_header_only_file_fails_validate_with_exit_2(tmp_path, cli):
    ev = tmp_path / "events.csv"
    ev.write_text(EV_HEADER)
    code, err = cli(["data", "validate", "--events", str(ev)])
    assert code == 2 and "events.csv" in err and "no data rows" in err and "Traceback" not in err
    pq = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": pd.Series([], dtype=str), "category": pd.Series([], dtype=str)}).to_parquet(pq)
    code, err = cli(["data", "validate", "--items", str(pq)])
    assert code == 2 and "items.parquet" in err and "no data rows" in err


# 3. blank spend in a marketing-mix history -------------------------------------------------------------------------

def test_blank_spend_is_missing_not_zero(tmp_path, cli):
    mix = tmp_path / "mix.csv"
    _mix({(4, "spend_tv"): "", (9, "spend_tv"): " ", (7, "spend_search"): ""}).to_csv(mix, index=False)
    got = load(mix, "marketing_mix", write=False)
    assert got.counts == {"missing spend_tv": 2, "missing spend_search": 1}
    code, err = cli(["train", "allocator", "--history", str(mix), "--timesteps", "64"])
    assert code == 2 and "mix.csv" in err and "Traceback" not in err
    assert "spend_tv" in err and "6, 11" in err and "spend_search" in err and "9" in err and "not zero" in err


def test_any_quarantined_week_of_a_history_stops_training(tmp_path, cli):
    """A negative or non-numeric week was dropped with only a count: the fit then read the weeks either side of the
    hole as adjacent and carried spend across it."""
    mix = tmp_path / "mix.csv"
    _mix({(4, "spend_tv"): "-5", (20, "revenue"): "n/a"}).to_csv(mix, index=False)
    code, err = cli(["train", "allocator", "--history", str(mix), "--timesteps", "64"])
    assert code == 2 and "mix.csv" in err and "Traceback" not in err
    assert "negative spend_tv in line(s) 6" in err and "line(s) 22" in err and "not zero" not in err
    from omnidecide.models.allocator.mmm import history_from_frame

    with pytest.raises(InputError, match="blank spend.*spend_tv"):  # a frame that skipped validation
        history_from_frame(_mix({(4, "spend_tv"): np.nan}))


# 4. exact duplicate events -----------------------------------------------------------------------------------------

def test_exact_duplicate_events_are_quarantined_and_counted(tmp_path):
    from omnidecide.store import chunks
    from omnidecide.models.schema import TABLES

    ev = tmp_path / "events.csv"
    ev.write_text("user_id,item_id,timestamp,event,quantity,amount,order_id,event_id\n"
                  "u1,i1,2025-01-01T10:00:00,purchase,1,5,o1,\n"
                  "u1,i1,2025-01-01T10:00:00,view,,,,e7\n"
                  "u1,i1,2025-01-01T10:00:00,purchase,1,5,o1,\n"  # a redelivery: same time, same order
                  "u2,i2,2025-01-02,purchase,1,5,,\n"  # no id: two real purchases that day in a date-only log
                  "u2,i2,2025-01-02,purchase,1,5,,\n"
                  "u3,i3,2025-01-01T10:00:00,view,,,,\n"  # no id: two views in one second stay two views
                  "u3,i3,2025-01-01T10:00:00,view,,,,\n"
                  "u1,i1,2025-01-01T10:00:00,view,,,,e7\n")  # a redelivered event id, later in the file
    got = load(ev, "events", write=False)
    assert got.counts == {"duplicate row": 2} and list(got.rejects["row"]) == [4, 9] and got.n_good == 6
    parts = chunks.scan(ev, TABLES["events"], rows=2)  # judged across batches, not within each
    assert parts.counts == got.counts and parts.n_good == 6
    assert load(ev, "events", write=False, columns=["user_id"]).counts == got.counts  # whole rows, whatever is read
    pq = tmp_path / "events.parquet"
    pd.read_csv(ev, dtype=str, keep_default_na=False).to_parquet(pq)
    assert load(pq, "events", write=False, compact=True).counts == got.counts


def test_seen_keys_match_a_set_over_many_batches():
    """The merged runs answer as one set would: first occurrence kept, later copies (in or across batches) flagged,
    0 (a row with no id) never flagged; enough batches for runs of several sizes to merge."""
    from omnidecide.store.chunks import Seen

    rng = np.random.default_rng(3)
    seen, ref = Seen(), set()
    for size in rng.integers(0, 60, 40):
        keys = rng.integers(0, 400, size).astype(np.uint64)  # small range: many repeats, some zeros
        want = []
        for k in keys.tolist():
            want.append(k != 0 and k in ref)
            if k:
                ref.add(k)
        assert seen.repeated(keys).tolist() == want
    assert len(seen.runs) > 1 and sorted(np.concatenate(seen.runs).tolist()) == sorted(ref)


def test_row_hashes_agree_across_text_kinds_and_tell_blank_from_missing():
    """CSV text (Python strings) and Parquet text (Arrow strings) hash a row alike, so copies met through either path
    are caught; a missing cell is not the empty string; a value moved to another column is another row."""
    from omnidecide.store.chunks import _hash_rows

    df = pd.DataFrame({"a": np.array(["x", None, "x", "", "o1"], dtype=object), "order_id": ["o1", "o1", "o1", "o1", "x"]})
    h = _hash_rows(df)
    assert h[0] == h[2] and len(set(h.tolist())) == 4
    assert (_hash_rows(df.astype("string[pyarrow]")) == h).all()


def test_validate_prints_duplicate_count(tmp_path):
    from typer.testing import CliRunner

    from omnidecide.cli.app import app
    import omnidecide.cli.data  # noqa: F401

    ev = tmp_path / "events.csv"
    ev.write_text(EV_HEADER + "u1,i1,2025-01-01T10:00:00,purchase,1,5,o1\n" * 3)
    res = CliRunner().invoke(app, ["data", "validate", "--events", str(ev)])
    assert res.exit_code == 1 and "1 good, 2 rejected" in res.output and "2  duplicate row" in res.output


# 5. recommend --users ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ids", [
    ("u1\n007\nu1\n", ["u1", "007", "u1"]),
    ("user_id\nu1\n007\n", ["u1", "007"]),
    ("USER_ID\n u1 \n\n007\n", ["u1", "007"]),
    ("name,user_id,city\nann,u1,x\nbob,007,y\n", ["u1", "007"]),
    ("\ufeffuser_id,segment\nu1,gold\n", ["u1"]),
])
def test_recommend_users_file_forms(tmp_path, text, ids):
    from omnidecide.cli.recommender import read_user_ids

    f = tmp_path / "users.csv"
    f.write_text(text, encoding="utf-8")
    assert read_user_ids(f) == ids


def test_recommend_users_csv_without_user_id_column_is_an_error(tmp_path, cli):
    f = tmp_path / "users.csv"
    f.write_text("customer,segment\nu1,gold\nu2,silver\n")
    code, err = cli(["recommend", "--users", str(f), "--output", str(tmp_path / "r.csv")])
    assert code == 2 and "users.csv" in err and "user_id" in err and not (tmp_path / "r.csv").exists()
    f.write_text("name,user_id\nann,u1\nbob,\n")
    code, err = cli(["recommend", "--users", str(f), "--output", str(tmp_path / "r.csv")])
    assert code == 2 and "users.csv" in err and "row(s) 2" in err and "user_id is empty" in err
