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

from models.allocator.mmm import fit, history_from_frame, peak_flags
from models.response import hill


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
    from models.allocator.mmm import MMMParams

    h, res, _ = fitted
    assert len(res.samples) == 3
    for s in res.samples:
        assert np.all(np.isfinite(s.beta)) and np.all((s.decay >= 0) & (s.decay <= 0.9))
    back = MMMParams.from_dict(json.loads(json.dumps(res.params.to_dict())))
    n = len(h.dates)
    fitted_rev = (back.baseline_at(h.dates, np.arange(n)) + back.media(h.spend, peak_flags(h.dates).max(1)).sum(1)
                  + h.controls @ back.gamma)
    assert np.mean(np.abs(fitted_rev - h.revenue)) / h.revenue.mean() < 0.02
