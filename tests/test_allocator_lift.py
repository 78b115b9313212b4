"""Lift tests (`train allocator --lift-tests lift.csv`): they tighten the fit where the history is weak; bad rows are
errors naming the row and field."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import omnidecide.cli.allocator  # noqa: F401  (registers the commands)
from omnidecide.cli.app import app
from omnidecide.models.allocator.lift import anchored, parse_lift_tests
from omnidecide.models.allocator.mmm import fit, history_from_frame, truth_params
from omnidecide.models.errors import InputError

runner = CliRunner()


@pytest.fixture(scope="module")
def world(synth_world):
    df = pd.read_csv(synth_world / "marketing_mix.csv")
    truth = json.loads((synth_world / "truth.json").read_text())
    h = history_from_frame(df)
    return h, truth


def window_contribution(p, h, weeks):
    return p.media(h.spend, h.peaks.max(1))[weeks].sum(0)


def test_lift_tests_pull_the_fit_to_what_was_measured(world):
    """Two 8-week lift tests on the channels the fit gets most wrong in their windows, measured exactly with a +-10%
    interval: the fitted contribution in those windows moves to within the interval, and the bootstrap spread there
    narrows."""
    h, truth = world
    true = truth_params(truth, h.channels)
    weeks = np.zeros(len(h.dates), bool)
    weeks[100:108] = True
    base = fit(h, n_boot=4, n_starts=2, seed=0)
    true_w = window_contribution(true, h, weeks)
    err0 = np.abs(window_contribution(base.params, h, weeks) / true_w - 1)
    worst = np.argsort(-err0)[:2]
    assert err0[worst].min() > 0.1  # the history alone leaves them off by more than the tests' intervals
    lift = pd.DataFrame([{"channel": h.channels[c], "start": h.dates[100].date(), "end": h.dates[107].date(),
                          "incremental_revenue": true_w[c], "ci_low": 0.9 * true_w[c], "ci_high": 1.1 * true_w[c]}
                         for c in worst])
    tests = parse_lift_tests(lift, h.channels, h.dates)
    assert [t.weeks.sum() for t in tests] == [8, 8]
    tight = fit(h, n_boot=4, n_starts=2, seed=0, lift=tests)
    err1 = np.abs(window_contribution(tight.params, h, weeks) / true_w - 1)
    assert np.all(err1[worst] < 0.1) and np.all(err1[worst] < 0.5 * err0[worst])
    sd = lambda res: np.std([window_contribution(s, h, weeks) for s in res.samples], 0) / true_w  # noqa: E731
    assert np.all(sd(tight)[worst] < sd(base)[worst])


def test_planning_draws_keep_the_tests_width_not_the_widened_one(world):
    """Draws widened far beyond what a test measured (x exp(N(0, 0.8)) on every effect size): after `anchored`, a
    tested channel's revenue over its test weeks spreads like the test (mean and sd within sampling error of the
    measurement), while an untested channel and the curve shapes are left exactly as they were."""
    h, truth = world
    true = truth_params(truth, h.channels)
    weeks = np.zeros(len(h.dates), bool)
    weeks[100:104] = True
    measured = window_contribution(true, h, weeks)[0]
    rng = np.random.default_rng(0)
    worlds = []
    for _ in range(400):
        d = true.to_dict()
        d["beta"] = (true.beta * np.exp(rng.normal(0, 0.8, len(true.beta)))).tolist()
        worlds.append(type(true).from_dict(d))
    test = parse_lift_tests(pd.DataFrame([{"channel": h.channels[0], "start": h.dates[100].date(),
                                           "end": h.dates[103].date(), "incremental_revenue": measured,
                                           "ci_low": 0.8 * measured, "ci_high": 1.2 * measured}]), h.channels, h.dates)
    out = anchored(worlds, h, test, np.random.default_rng(1))
    before = np.array([window_contribution(w, h, weeks)[0] for w in worlds]) / measured
    after = np.array([window_contribution(w, h, weeks)[0] for w in out]) / measured
    sd = 0.4 / 3.92
    assert before.std() > 5 * sd  # the widened draws: far wider than the test
    assert abs(after.mean() - 1) < 3 * sd / np.sqrt(len(out)) and abs(after.std() / sd - 1) < 0.15
    assert all(np.array_equal(a.beta[1:], b.beta[1:]) and np.array_equal(a.half_saturation, b.half_saturation)
               and np.array_equal(a.slope, b.slope) for a, b in zip(worlds, out))
    assert anchored(worlds, h, [], np.random.default_rng(1)) == worlds


@pytest.mark.parametrize("row,field", [
    ({"channel": "nochannel"}, "channel"),
    ({"start": "not a date"}, "start"),
    ({"end": "2001-01-01"}, "end"),
    ({"incremental_revenue": "abc"}, "incremental_revenue"),
    ({"ci_low": 9e9}, "ci_low"),
])
def test_bad_lift_rows_name_row_and_field(world, synth_world, tmp_path, row, field):
    h, _ = world
    good = {"channel": h.channels[0], "start": str(h.dates[10].date()), "end": str(h.dates[13].date()),
            "incremental_revenue": 1000.0, "ci_low": 500.0, "ci_high": 1500.0}
    f = tmp_path / "lift.csv"
    pd.DataFrame([good, {**good, **row}]).to_csv(f, index=False)
    res = runner.invoke(app, ["train", "allocator", "--history", str(synth_world / "marketing_mix.csv"),
                              "--lift-tests", str(f), "--timesteps", "0"])
    assert isinstance(res.exception, InputError), res.output
    assert "row 2" in str(res.exception) and field in str(res.exception)
    with pytest.raises(InputError, match="missing column"):
        parse_lift_tests(pd.DataFrame([good]).drop(columns="ci_high"), h.channels, h.dates)


def test_header_only_blank_channel_and_folder_are_refused(world, synth_world, tmp_path):
    """--lift-tests with no rows would train as if it had not been given; a blank channel was reported as 'nan'; a
    folder was a traceback."""
    history = str(synth_world / "marketing_mix.csv")
    head = "channel,start,end,incremental_revenue,ci_low,ci_high\n"
    (tmp_path / "hdr.csv").write_text(head)
    (tmp_path / "blank.csv").write_text(head + ",2024-01-01,2024-02-01,100,50,200\n")
    (tmp_path / "dir.csv").mkdir()
    for name, why in (("hdr.csv", "no lift test rows"), ("blank.csv", "row 1: channel is empty"),
                      ("dir.csv", "is a folder")):
        res = runner.invoke(app, ["train", "allocator", "--history", history, "--lift-tests", str(tmp_path / name),
                                  "--timesteps", "0"])
        assert isinstance(res.exception, InputError) and why in str(res.exception), (name, res.output)


def test_error_text_in_square_brackets_is_printed_whole(world, synth_world, tmp_path, cli):
    """The CLI prints errors through rich: "inside [ci_low, ci_high]" was swallowed as a markup tag."""
    f = tmp_path / "lift.csv"
    f.write_text("channel,start,end,incremental_revenue,ci_low,ci_high\n"
                 f"{world[0].channels[0]},2024-01-01,2024-02-01,100000,200000,50000\n")
    code, err = cli(["train", "allocator", "--history", str(synth_world / "marketing_mix.csv"), "--lift-tests", str(f),
                     "--timesteps", "0"])
    assert code == 2 and "[ci_low, ci_high]" in err and "[200000, 50000]" in err


def test_controls_that_cannot_be_used_are_named_not_dropped_in_silence(synth_world, caplog):
    """A `promo` column written yes/no (or with a blank week) was left out of the controls without a word."""
    df = pd.read_csv(synth_world / "marketing_mix.csv")
    df["promo"] = np.where(df["promo"] > 0, "yes", "no")
    df["flat"] = 1.0
    with caplog.at_level("WARNING"):
        h = history_from_frame(df, "mm.csv")
    assert "promo" not in h.control_names and "flat" not in h.control_names
    assert "mm.csv: column 'promo' has" in caplog.text and "non-numeric" in caplog.text
    assert "column 'flat' is constant" in caplog.text
