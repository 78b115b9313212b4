"""Faults an adversarial sweep of the budget allocator's user-facing surface found, each pinned by the input that
showed it (a planner's own, messy files and flags): the answer is a sensible plan or an InputError naming the
flag/field, row and reason, never a traceback (CLI) or a 5xx (HTTP).

Plan-level faults are checked on a small hand-built allocator (no fit: milliseconds); the history checks on frames.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.allocator.artifact import Allocator
from omnidecide.models.allocator.constraints import HTTP_FIELDS
from omnidecide.models.allocator.mmm import History, MMMParams
from omnidecide.models.errors import InputError

CH = ["a", "b", "c"]
N = 104


def allocator(spread: float = 0.05) -> Allocator:
    """Three channels with equal historical spend and draws that (nearly) agree on all of them."""
    rng = np.random.default_rng(0)
    dates = pd.date_range("2024-01-01", periods=N, freq="7D")
    spend = np.full((N, 3), 20_000.0) * np.exp(rng.normal(0, 0.1, (N, 3)))
    h = History(dates=dates, revenue=np.full(N, 1e6), spend=spend, channels=CH, controls=np.zeros((N, 0)),
                control_names=[], step_days=7)
    worlds = [MMMParams(channels=CH, decay=np.full(3, 0.3), half_saturation=np.full(3, 30_000.0), slope=np.full(3, 1.2),
                        beta=np.array([60_000.0, 50_000.0, 40_000.0]) * np.exp(rng.normal(0, spread, 3)),
                        media_peak_mult=0.0) for _ in range(16)]
    return Allocator(params=worlds[0], samples=worlds, history=h, worlds=worlds, info={"agent_enabled": False})


@pytest.fixture(scope="module")
def alloc() -> Allocator:
    return allocator()


def test_every_channel_capped_at_zero_is_a_plan_of_nothing_not_a_crash(alloc):
    """`--max CH=0` for every channel: a ZeroDivisionError in the capped solver (CLI traceback, HTTP 500) before."""
    for robust in (True, False):
        res = alloc.plan(10_000, 2, reserve=0.0, hi={c: 0.0 for c in CH}, robust=robust)
        assert res.table["spend"].sum() == 0.0
        assert res.summary["unallocated"] == pytest.approx(10_000)
    res = alloc.plan(10_000, 2, reserve=0.0, hi={"a": 0.0, "b": 0.0, "c": 5.0})
    assert res.spend[:, 2].sum() == pytest.approx(5.0) and res.spend[:, :2].sum() == 0.0


def test_an_roi_floor_no_spend_can_meet_cuts_the_channel_and_never_blames_a_min_nobody_set(alloc):
    """`--roi-floor CH=1000` on every channel: the robust planner's trust region around last year's mix (a derived
    lower bound) was enforced as if it were the user's `--min`, so the request failed with "cannot be met together
    with --min a=..." although no --min was given. The documented rule is "else less or no spend"."""
    res = alloc.plan(100_000, 4, reserve=0.0, roi_floor={c: 1000.0 for c in CH})
    assert res.table["spend"].sum() == 0.0 and res.summary["unallocated"] == pytest.approx(100_000)
    one = alloc.plan(100_000, 4, reserve=0.0, roi_floor={"a": 1000.0})
    assert one.spend[:, 0].sum() == 0.0 and one.spend.sum() > 0.99 * 100_000
    # a --min the user did set still stops the request, naming both flags
    with pytest.raises(InputError, match=r"--roi-floor a=1000 cannot be met together with --min a="):
        alloc.plan(100_000, 4, reserve=0.0, roi_floor={"a": 1000.0}, lo={"a": 10_000.0})


def test_a_channel_given_twice_in_one_flag_is_an_error_not_the_last_one_silently():
    """`--min a=100 --min a=200` kept 200 and dropped 100 without a word."""
    from omnidecide.cli.allocator import _pairs

    assert _pairs(["a=100", " b = 5"], "--min") == {"a": 100.0, "b": 5.0}
    with pytest.raises(InputError, match=r"--min: channel 'a' is given twice \(a=100, a=200\)"):
        _pairs(["a=100", "a=200"], "--min")


def test_actuals_with_only_a_header_are_an_error_not_a_plan_without_them(alloc):
    """An --actuals file (or /allocate actuals_csv) with a header but no rows planned the whole horizon as if no
    period had elapsed, silently."""
    for names, field in ((None, "--actuals"), (HTTP_FIELDS, "actuals_csv")):
        kw = {"names": names} if names else {}
        with pytest.raises(InputError, match=rf"^{field}: no rows"):
            alloc.plan(10_000, 4, actuals=pd.DataFrame(columns=["period", "spend_a"]), **kw)


def test_actuals_dates_are_read_as_dates_and_a_bad_one_is_named():
    """Rows were sorted by the date *text*: `2026-7-6` sorted after `2026-07-13` (and `06/07/2026`-style dates
    any which way), so the periods were replanned in the wrong order; `foo` was accepted as a date."""
    from omnidecide.models.allocator.actuals import parse_actuals

    df = pd.DataFrame({"date": ["2026-07-13", "2026-7-6"], "spend_a": [2.0, 1.0]})
    assert parse_actuals(df, CH, 4).spend[:, 0].tolist() == [1.0, 2.0]
    with pytest.raises(InputError, match=r"--actuals: row 2: date 'foo' is not a date"):
        parse_actuals(pd.DataFrame({"date": ["2026-07-06", "foo"], "spend_a": [1.0, 2.0]}), CH, 4)


def test_a_blank_actuals_cell_is_named_blank_not_nan():
    from omnidecide.models.allocator.actuals import parse_actuals

    with pytest.raises(InputError, match=r"--actuals: row 2: spend_a is blank"):
        parse_actuals(pd.DataFrame({"period": [1, 2], "spend_a": [1.0, np.nan]}), CH, 4)


def _history(n: int = 104, freq: str = "7D") -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq=freq).strftime("%Y-%m-%d"),
                         "revenue": rng.uniform(1e5, 2e5, n), "spend_a": rng.uniform(1e3, 2e3, n),
                         "spend_b": rng.uniform(1e3, 2e3, n)})


def test_history_with_missing_weeks_is_an_error_naming_the_gap():
    """A history with 8 weeks cut out was fitted as if the weeks either side were adjacent (the adstock carried
    across the hole), although `train allocator` refuses a quarantined week for exactly that reason."""
    from omnidecide.models.allocator.mmm import history_from_frame

    history_from_frame(_history())  # whole: fine
    df = _history().drop(index=range(40, 48))
    with pytest.raises(InputError, match=r"h.csv: dates jump from 2024-09-30 to 2024-12-02 \(63 days; the history's "
                                         r"period is 7 days\): 8 period\(s\) missing"):
        history_from_frame(df, "h.csv")
    shuffled = _history().sample(frac=1.0, random_state=0)  # rows out of order are sorted, not a gap
    assert history_from_frame(shuffled).dates.is_monotonic_increasing


def test_a_daily_history_must_cover_a_year_not_52_rows():
    """`at least 52 (a year)` counted rows: 156 days of daily rows (five months) passed as three years' worth."""
    from omnidecide.models.allocator.mmm import history_from_frame

    with pytest.raises(InputError, match=r"156 periods of 1 day\(s\) cover 156 days; at least a year"):
        history_from_frame(_history(156, "D"), "h.csv")
    assert history_from_frame(_history(370, "D")).step_days == 1


def test_a_spend_column_without_a_channel_name_is_an_error():
    """`spend_` (a spreadsheet column whose channel name was lost) became a channel named '' that no --min/--max
    can name."""
    from omnidecide.models.allocator.mmm import history_from_frame

    with pytest.raises(InputError, match=r"h.csv: column 'spend_' has no channel name"):
        history_from_frame(_history().assign(spend_=5.0), "h.csv")


LIFT_HEAD = "channel,start,end,incremental_revenue,ci_low,ci_high\n"


def _lift(text: str, channels=("a", "抖音", "tmall ads")):
    import io

    from omnidecide.models.allocator.lift import parse_lift_tests

    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return parse_lift_tests(df, list(channels), pd.date_range("2024-01-01", periods=104, freq="7D"))


def test_lift_test_dates_follow_the_documented_timestamp_forms():
    """Dates were read by pandas' guesser: `01/02/2024` became 2 January (month first) but `13/02/2024` 13 February,
    so one file's rows were read in two conventions; an ISO date with an offset crashed the comparison with the
    history (TypeError traceback); unix seconds (a documented timestamp form) were refused."""
    assert int(_lift(LIFT_HEAD + "a,2024-02-01,2024-03-01,100,50,150\n")[0].weeks.sum()) == 4
    assert int(_lift(LIFT_HEAD + "抖音,2024-02-01T00:00:00+08:00,2024-03-01,100,50,150\n")[0].weeks.sum()) == 4
    assert int(_lift(LIFT_HEAD + "tmall ads,1706745600,1709251200,100,50,150\n")[0].weeks.sum()) == 4
    with pytest.raises(InputError, match=r"row 1: start '01/02/2024' is not a date .*2024-02-01"):
        _lift(LIFT_HEAD + "a,01/02/2024,01/03/2024,100,50,150\n")


def test_a_lift_test_reaching_past_the_history_is_an_error():
    """A test from 2025-12-01 to 2026-03-01 on a history ending 2025-12-22 was matched to the history's 4 weeks
    inside it, although its measured revenue covers 13: the channel was silently credited with 3x its weekly lift."""
    with pytest.raises(InputError, match=r"row 1: the test runs .*2026-03-01.* past the history's last period"):
        _lift(LIFT_HEAD + "a,2025-12-01,2026-03-01,100,50,150\n")
    with pytest.raises(InputError, match=r"row 1: the test runs .*2023-12-01.* before the history's first period"):
        _lift(LIFT_HEAD + "a,2023-12-01,2024-02-01,100,50,150\n")
    assert _lift(LIFT_HEAD + "a,2025-12-01,2025-12-28,100,50,150\n")  # the last week's own days are inside


def test_attribute_with_no_purchase_after_any_touch_is_an_error_not_a_table_of_zeros(tmp_path, cli):
    """Purchases exist, but none follows a touch of the same customer (ids written differently in the two files,
    dates that do not overlap): every share was written as 0.0 with exit 0, a table that attributes nothing."""
    tp, ev, out = tmp_path / "tp.csv", tmp_path / "ev.csv", tmp_path / "a.csv"
    tp.write_text("user_id,timestamp,channel\n007,2026-01-01T00:00:00,douyin\n008,2026-01-02T00:00:00,search\n")
    ev.write_text("user_id,item_id,timestamp,event\n7,i1,2026-01-02T00:00:00,purchase\n")
    code, err = cli(["attribute", "--touchpoints", str(tp), "--events", str(ev), "--output", str(out)])
    assert code == 2 and "no purchase in" in err and "follows a touch" in err and "user_id" in err, err
    assert not out.exists()


def test_a_channel_whose_spend_never_varied_is_not_identified_and_keeps_its_historical_spend():
    """`spend_sms` at 50,000 every week: its response is collinear with the baseline, so the history says nothing
    about it, yet its draws agreed (they share the fit's prior) and it was reported as identified (0.41 on the
    synthetic world) and planned at 3.6x its historical spend on that credit. Held at history, identification 0."""
    a = allocator()
    a.history.spend[:, 2] = 20_000.0  # c: the same spend every week
    for w in a.worlds:
        w.beta[2] = 120_000.0  # ... and the fit credits it most: an expected-revenue planner pours budget into it
    res = a.plan(20_000.0 * 3 * 8, 8, reserve=0.0)
    pc = res.summary["per_channel"]
    assert pc["c"]["identification"] == 0.0 and pc["a"]["identification"] > 0.5
    assert pc["c"]["spend"] == pytest.approx(pc["c"]["historical_spend"], rel=0.01)
    assert (res.table.loc[res.table["channel"] == "c", "identification"] == 0.0).all()


def test_allocate_endpoint_answers_a_plan_of_nothing_and_names_body_fields(own_client):
    """/allocate with every channel's `max` at 0 was a 500 (the capped solver divided by zero); an actuals_csv with
    only a header was silently ignored."""
    ok = own_client.post("/allocate", json={"budget": 10000, "periods": 2})
    assert ok.status_code == 200, ok.text
    channels = list(ok.json()["per_channel"])
    r = own_client.post("/allocate", json={"budget": 10000, "periods": 2, "max": {c: 0 for c in channels}})
    assert r.status_code == 200, r.text
    assert r.json()["planned_spend"] == 0.0
    r = own_client.post("/allocate", json={"budget": 10000, "periods": 2, "actuals_csv": f"period,spend_{channels[0]}\n"})
    assert r.status_code == 400 and r.json()["field"] == "actuals_csv" and "no rows" in r.json()["message"], r.text


def test_allocate_output_flags_must_name_distinct_files_before_anything_is_written(tmp_path, cli):
    """`--report` equal to `--output` overwrote the plan with the HTML page (exit 0); a folder given to --report
    failed only after the plan had been written."""
    plan = tmp_path / "plan.csv"
    code, err = cli(["allocate", "--budget", "1000", "--periods", "2", "--output", str(plan), "--report", str(plan)])
    assert code == 2 and "--report" in err and "the same file as --output" in err, err
    code, err = cli(["allocate", "--budget", "1000", "--periods", "2", "--output", str(plan), "--explore",
                     str(tmp_path)])
    assert code == 2 and "--explore" in err and "is a folder" in err, err
    assert not plan.exists()


def test_a_channel_the_plan_or_its_flags_cannot_tell_apart_is_refused_at_training():
    """`spend_reserve` trained a channel named like the plan's held-back row (one `channel=reserve` column in PLAN
    for both); `spend_a=b` a channel no `--min CH=AMOUNT` can name."""
    from omnidecide.models.allocator.mmm import history_from_frame
    from omnidecide.models.allocator.planning import RESERVE

    assert RESERVE == "reserve"
    with pytest.raises(InputError, match=r"h.csv: column 'spend_reserve': 'reserve' is the plan's row"):
        history_from_frame(_history().rename(columns={"spend_b": "spend_reserve"}), "h.csv")
    with pytest.raises(InputError, match=r"h.csv: column 'spend_a=b': a channel name cannot contain '='"):
        history_from_frame(_history().rename(columns={"spend_b": "spend_a=b"}), "h.csv")
    history_from_frame(_history().rename(columns={"spend_b": "spend_抖音 live"}))  # any other name is fine


def test_side_file_headers_with_spaces_after_the_commas_are_read():
    """`period, spend_a` (spaces after the commas, as spreadsheets and hand-typed files often have) was "no
    spend_<channel> columns" in --actuals and "missing column(s) start, end, ..." in --lift-tests."""
    from omnidecide.models.allocator.actuals import parse_actuals

    act = parse_actuals(pd.DataFrame({"period": [1], " spend_a": [5.0]}), CH, 4)
    assert act.spend[0].tolist() == [5.0, 0.0, 0.0]
    assert _lift("channel, start, end, incremental_revenue, ci_low, ci_high\na,2024-02-01,2024-03-01,100,50,150\n")
    with pytest.raises(InputError, match=r"--actuals: column\(s\) spend_a appear more than once"):
        parse_actuals(pd.DataFrame([[1, 5.0, 6.0]], columns=["period", "spend_a", " spend_a"]), CH, 4)


def test_a_negative_seed_or_timesteps_is_a_usage_error_not_a_traceback(tmp_path, cli):
    """`--seed -1` reached numpy's generator and died with a ValueError traceback (after the fit, in training)."""
    tp, ev = tmp_path / "tp.csv", tmp_path / "ev.csv"
    tp.write_text("user_id,timestamp,channel\nu1,2026-01-01T00:00:00,douyin\nu2,2026-01-01T00:00:00,search\n")
    ev.write_text("user_id,item_id,timestamp,event\nu1,i1,2026-01-02T00:00:00,purchase\n")
    code, err = cli(["attribute", "--touchpoints", str(tp), "--events", str(ev), "--output", str(tmp_path / "a.csv"),
                     "--seed", "-1"])
    assert code == 2 and "--seed" in err, err
    for flag in ("--seed", "--timesteps"):
        code, err = cli(["train", "allocator", "--history", str(tmp_path / "mm.csv"), flag, "-1"])
        assert code == 2 and flag in err, err


def test_an_unreadable_file_at_output_does_not_stop_the_report(tmp_path, monkeypatch):
    """`--report` reads the plan already at --output for "what changed": an empty or cut-off file there was a pandas
    traceback (EmptyDataError / ParserError) before any plan was written."""
    from omnidecide.cli.allocator import _previous_plan

    empty, cut = tmp_path / "empty.csv", tmp_path / "cut.csv"
    empty.write_text("")
    cut.write_text('period,channel,spend\n1,a,5\n"x\n')
    assert _previous_plan(empty) is None and _previous_plan(cut) is None
    good = tmp_path / "plan.csv"
    good.write_text("period,channel,spend\n1,a,5\n")
    assert _previous_plan(good)["spend"].tolist() == [5]
