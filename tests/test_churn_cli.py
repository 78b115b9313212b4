"""`omnidecide train churn` / `predict churn` as a user runs them, and the runtime class behind them."""
import pandas as pd
import pytest
from typer.testing import CliRunner

import omnidecide.cli.churn  # noqa: F401  (registers the commands)
from omnidecide.cli.app import app
from omnidecide.models.churn.model import OUTPUT_COLUMNS

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def quick_fit():
    """Cap the LSTM's optimisation budget so the suite stays fast (quality is tested in test_churn_model)."""
    import os

    old = os.environ.get("OMNIDECIDE_CHURN_FIT_SECONDS")
    os.environ["OMNIDECIDE_CHURN_FIT_SECONDS"] = "4"
    yield
    if old is None:
        os.environ.pop("OMNIDECIDE_CHURN_FIT_SECONDS")
    else:
        os.environ["OMNIDECIDE_CHURN_FIT_SECONDS"] = old


@pytest.fixture(scope="module")
def trained(synth_world):
    res = runner.invoke(app, ["train", "churn", "--events", str(synth_world / "events.csv"), "--horizon-days", "90"])
    assert res.exit_code == 0, res.output
    tag = res.stdout.strip().splitlines()[-1]
    assert tag.startswith("churn:")
    return tag


def test_train_saves_metrics_params_fingerprint(trained):
    from omnidecide.store import registry

    meta = registry.get("churn", trained).info.metadata
    assert meta["params"]["horizon_days"] == 90
    assert {"val_auc", "val_ap", "val_brier", "val_ece"} <= set(meta["metrics"])
    assert len(meta["data_fingerprint"]) == 16
    assert meta["training"]["validation_as_of"] == "2026-04-02"  # default: latest with a full label window


def test_predict_one_row_per_customer_with_history(trained, synth_world, tmp_path):
    out = tmp_path / "churn.csv"
    res = runner.invoke(app, ["predict", "churn", "--events", str(synth_world / "events.csv"), "--as-of", "2026-05-01",
                              "--horizon-days", "90", "--output", str(out), "--model", trained])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out, dtype={"user_id": str}, keep_default_na=False)
    assert list(table.columns) == OUTPUT_COLUMNS
    events = pd.read_csv(synth_world / "events.csv", usecols=["user_id", "timestamp"])
    expected = set(events.loc[events["timestamp"] < "2026-05-01", "user_id"])
    assert set(table["user_id"]) == expected and len(table) == len(expected)
    assert table["churn_probability"].between(0, 1).all() and (table["expected_spend"] >= 0).all()
    assert set(table["risk_tier"]) <= {"high", "medium", "low"} and table["reason"].str.len().gt(0).all()


def test_previous_scores_flag_customers_whose_score_moved_more_than_15_points(trained, synth_world, tmp_path):
    """CRM's alert: a score that moved > 15 points since the last run; the contract's columns stay first."""
    base = ["predict", "churn", "--events", str(synth_world / "events.csv"), "--horizon-days", "90", "--model", trained]
    first = tmp_path / "march.csv"
    assert runner.invoke(app, [*base, "--as-of", "2026-03-01", "--output", str(first)]).exit_code == 0
    prev = pd.read_csv(first, dtype={"user_id": str})
    prev.loc[0, "churn_probability"] = 0.0 if prev.loc[0, "churn_probability"] >= 0.5 else 1.0  # edit one customer
    prev.to_csv(first, index=False)
    out = tmp_path / "april.csv"
    res = runner.invoke(app, [*base, "--as-of", "2026-04-01", "--output", str(out), "--previous", str(first)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out, dtype={"user_id": str}, keep_default_na=False)
    assert list(table.columns) == [*OUTPUT_COLUMNS, "previous_probability", "change", "alert"]
    known = table[table["previous_probability"] != ""].astype({"previous_probability": float, "change": float})
    assert len(known) == len(set(table["user_id"]) & set(prev["user_id"]))
    moved = (known["churn_probability"] - known["previous_probability"]).abs() > 0.15 + 1e-9
    assert (known["alert"].astype(str) == "True").eq(moved).all()
    assert known.set_index("user_id").loc[prev.loc[0, "user_id"], "alert"] in (True, "True")  # the edited one
    assert "score alerts" in res.output
    from omnidecide.training import exports
    last = exports.read()[-1]  # the export audit saw it: who, what, how many customers
    assert last["command"] == "predict churn" and last["output"] == str(out) and last["customers"] == len(table)
    prev = prev.astype({"churn_probability": object})
    prev.loc[3, "churn_probability"] = "abc"
    prev.to_csv(first, index=False)
    res = runner.invoke(app, [*base, "--as-of", "2026-04-01", "--output", str(out), "--previous", str(first)])
    assert res.exit_code != 0 and "row 5" in str(res.exception)


def test_horizon_mismatch_is_a_clear_error(trained, synth_world, tmp_path):
    res = runner.invoke(app, ["predict", "churn", "--events", str(synth_world / "events.csv"), "--as-of", "2026-05-01",
                              "--horizon-days", "30", "--output", str(tmp_path / "x.csv"), "--model", trained])
    assert res.exit_code != 0 and "trained for 90 days" in str(res.exception)


def test_item_less_purchase_log_end_to_end(tmp_path):
    """An order log with empty item ids (date, quantity, amount) trains and predicts."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for u in range(300):
        gap = rng.uniform(5, 40)
        stop = rng.uniform(60, 500)
        t = rng.uniform(0, 30)
        while t < min(stop, 480):
            rows.append((f"c{u}", (pd.Timestamp("2024-01-01") + pd.Timedelta(days=t)).date().isoformat(), "purchase", "",
                         int(rng.integers(1, 4)), round(float(rng.gamma(2, 20)), 2)))
            t += rng.exponential(gap)
    f = tmp_path / "orders.csv"
    pd.DataFrame(rows, columns=["user_id", "timestamp", "event", "item_id", "quantity", "amount"]).to_csv(f, index=False)
    res = runner.invoke(app, ["train", "churn", "--events", str(f), "--horizon-days", "60"])
    assert res.exit_code == 0, res.output
    tag = res.stdout.strip().splitlines()[-1]
    out = tmp_path / "p.csv"
    res = runner.invoke(app, ["predict", "churn", "--events", str(f), "--as-of", "2025-04-01", "--horizon-days", "60",
                              "--output", str(out), "--model", tag])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert len(table) == 300 and list(table.columns) == OUTPUT_COLUMNS


def test_service_scores_request(trained):
    from omnidecide.serving.churn import ChurnRequest, ChurnService

    svc = ChurnService(trained)
    req = ChurnRequest(as_of="2026-05-01", horizon_days=90, events=[
        {"user_id": "x1", "timestamp": "2026-04-20T10:00:00", "event": "purchase", "item_id": "", "amount": 30, "quantity": 1},
        {"user_id": "x1", "timestamp": "2026-03-20T10:00:00", "event": "purchase", "item_id": "", "amount": 25, "quantity": 1},
        {"user_id": "x2", "timestamp": "2025-09-01T10:00:00", "event": "view", "item_id": "i00001"},
        {"user_id": "x3", "timestamp": "2026-06-01T10:00:00", "event": "view", "item_id": "i00001"},  # after as-of
    ])
    resp = svc.score(req)
    assert [c.user_id for c in resp.customers] == ["x1", "x2"]
    x1, x2 = resp.customers
    assert x1.churn_probability < x2.churn_probability
    assert x2.segment == "prospect"


def test_previous_file_that_is_empty_or_lists_a_customer_twice_is_refused(tmp_path):
    """An empty --previous file was a pandas traceback; a customer listed twice silently took one of the scores."""
    from omnidecide.cli.churn import read_previous
    from omnidecide.models.errors import InputError

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="not a readable CSV"):
        read_previous(tmp_path / "empty.csv")
    (tmp_path / "twice.csv").write_text("user_id,churn_probability\nu1,0.5\nu1,0.7\n")
    with pytest.raises(InputError, match="row 3: user_id 'u1' is listed again"):
        read_previous(tmp_path / "twice.csv")
    (tmp_path / "high.csv").write_text("user_id,churn_probability\nu1,1.5\n")
    with pytest.raises(InputError, match="row 2: churn_probability '1.5' is not a probability"):
        read_previous(tmp_path / "high.csv")


def test_train_on_a_file_with_no_usable_events_names_the_file(tmp_path):
    """A header-only events file answered "profile: no events to profile" (neither the file nor the rejects)."""
    from omnidecide.models.errors import InputError

    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,timestamp,event\nu1,i1,not-a-date,view\n")
    res = runner.invoke(app, ["train", "churn", "--events", str(f)])
    assert isinstance(res.exception, InputError)
    assert "events.csv: no usable events (1 rows rejected" in str(res.exception)
