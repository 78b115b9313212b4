"""The marketing-mix fit recovers the planted curves of the synthetic world and does not credit media for the season.

Stated tolerances (seed-0 world, 156 weeks, 6 channels; MAP fit with weakly informative priors):
- adstock decay: mean absolute error over channels <= 0.15;
- saturation: each channel's steady-state response at its typical weekly spend within a factor 2 of the planted
  curve, the median channel within a factor 1.35;
- total media contribution over the history within 25% of the planted one (season and peaks stay in the baseline).
"""
import json

import numpy as np
import pandas as pd
import pytest

from omnidecide.models.allocator.mmm import fit, history_from_frame, peak_flags
from omnidecide.models.errors import InputError
from omnidecide.models.response import hill


@pytest.fixture(scope="module")
def fitted(synth_world):
    df = pd.read_csv(synth_world / "marketing_mix.csv")
    truth = json.loads((synth_world / "truth.json").read_text())["marketing_mix"]
    h = history_from_frame(df)
    return h, fit(h, n_boot=3, seed=0), truth


def _steady(decay, half, slope, beta, x):
    return beta * hill(x / (1 - decay), half, slope)


def test_recovers_planted_adstock_and_saturation(fitted):
    h, res, truth = fitted
    p = res.params
    dec_err, ratios = [], []
    for j, c in enumerate(h.channels):
        t = truth["channels"][c]
        dec_err.append(abs(p.decay[j] - t["decay"]))
        x = t["typical_spend"]
        ratios.append(_steady(p.decay[j], p.half_saturation[j], p.slope[j], p.beta[j], x)
                      / _steady(t["decay"], t["half_saturation"], t["slope"], t["beta"], x))
    ratios = np.array(ratios)
    assert np.mean(dec_err) <= 0.15, dec_err
    assert np.all((ratios > 0.5) & (ratios < 2.0)), ratios
    assert 1 / 1.35 < np.median(ratios) < 1.35, ratios


def test_season_is_not_credited_to_media(fitted):
    h, res, truth = fitted
    true_share = truth["media_revenue_share"]
    assert abs(res.diagnostics["media_share"] / true_share - 1) < 0.25
    # the confounding is real: spend is higher in peak weeks, and a spend-only regression over-credits media
    peak = peak_flags(h.dates).max(1).astype(bool)
    assert h.spend[peak].sum(1).mean() > 1.4 * h.spend[~peak].sum(1).mean()
    X = np.column_stack([np.ones(len(h.revenue)), h.spend])
    coef = np.linalg.lstsq(X, h.revenue, rcond=None)[0]
    naive_share = (h.spend @ coef[1:]).sum() / h.revenue.sum()
    assert naive_share > 1.5 * true_share
    assert res.params.media_peak_mult > 0  # peaks lift the media response too


def test_bootstrap_draws_and_roundtrip(fitted):
    from omnidecide.models.allocator.mmm import MMMParams

    h, res, _ = fitted
    assert len(res.samples) == 3
    for s in res.samples:
        assert np.all(np.isfinite(s.beta)) and np.all((s.decay >= 0) & (s.decay <= 0.9))
    back = MMMParams.from_dict(json.loads(json.dumps(res.params.to_dict())))
    n = len(h.dates)
    fitted_rev = (back.baseline_at(h.dates, np.arange(n)) + back.media(h.spend, peak_flags(h.dates).max(1)).sum(1)
                  + h.controls @ back.gamma)
    assert np.mean(np.abs(fitted_rev - h.revenue)) / h.revenue.mean() < 0.02


def test_platform_reported_revenue_pins_each_channels_response(fitted):
    """Platforms report attributed revenue per channel, biased (x0.8-1.6 per channel, unknown) and noisy (20%). The fit
    trusts only each channel's shape over time (a free level per channel), and the response at typical spend moves
    closer to the planted one in every channel on average; the reports never become controls, and without them the
    fit is exactly the one above."""
    from omnidecide.training.synth import make_marketing_mix

    h0, res0, truth = fitted
    df, _ = make_marketing_mix(0, reported=True)
    rep_cols = [f"revenue_{c}" for c in h0.channels]
    h = history_from_frame(df)
    assert h.control_names == h0.control_names and h.reported.shape == (len(df), len(h.channels))
    assert np.allclose(h.reported, df[rep_cols].to_numpy())
    with pytest.raises(InputError, match="revenue_tiktok"):  # a report for a channel with no spend is an error
        history_from_frame(df.assign(revenue_tiktok=1.0))
    plain = history_from_frame(df.drop(columns=rep_cols))
    assert plain.reported is None
    res_plain = fit(plain, n_boot=0, seed=0)
    for k in ("decay", "half_saturation", "slope", "beta"):
        assert np.array_equal(getattr(res_plain.params, k), getattr(res0.params, k))
    res = fit(h, n_boot=0, seed=0)

    def log_err(p):
        out = []
        for j, c in enumerate(h.channels):
            t = truth["channels"][c]
            x = t["typical_spend"]
            out.append(np.log(_steady(p.decay[j], p.half_saturation[j], p.slope[j], p.beta[j], x)
                              / _steady(t["decay"], t["half_saturation"], t["slope"], t["beta"], x)))
        return np.abs(out)

    with_reports, without = log_err(res.params), log_err(res0.params)
    assert with_reports.mean() < 0.5 * without.mean(), (with_reports, without)
    assert with_reports.max() < without.max()
    assert abs(res.diagnostics["report_sigma"] - 0.2) < 0.05  # the reports' noise, estimated
    dec_true = np.array([truth["channels"][c]["decay"] for c in h.channels])
    assert np.abs(res.params.decay - dec_true).mean() < np.abs(res0.params.decay - dec_true).mean()
