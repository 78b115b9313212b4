"""marketing_mix.csv: weekly revenue as a baseline (trend, season, 618 / Double 11 peaks, promos) plus per-channel
adstock + Hill media effects (models/response.py), with spend confounded with the peaks on purpose."""
from __future__ import annotations

import numpy as np
import pandas as pd

from omnidecide.models.response import media_revenue
from omnidecide.training.synth.world import END, MMM_CHANNELS, PEAK_MEDIA_MULTIPLIER, is_peak


def make_marketing_mix(seed: int, channels: list[str] | None = None, weeks: int = 156,
                       end: pd.Timestamp = END, reported: bool = False,
                       reported_bias: tuple[float, float] = (0.8, 1.6), reported_noise: float = 0.2) -> tuple[pd.DataFrame, dict]:
    """Weekly revenue = baseline(trend, season, peaks, promo) + sum of per-channel adstock/Hill media effects.

    Spend is confounded on purpose: marketers spend more in peak weeks, when the baseline is high too.
    reported (opt-in; off leaves every column and the truth unchanged): also write `revenue_<channel>`, the
    platform-reported revenue a marketer gets from Douyin / Tmall / WeChat: bias_c x the channel's true incremental
    revenue that week x lognormal(0, reported_noise), bias_c ~ U(reported_bias) per channel (platforms over-claim),
    drawn from its own generator so the other columns do not move.
    """
    rng = np.random.default_rng([seed, 7])
    channels = channels or MMM_CHANNELS
    weeks_idx = pd.date_range(end=end - pd.Timedelta(days=1), periods=weeks, freq="W-MON")
    peak = is_peak(weeks_idx) | is_peak(weeks_idx + pd.Timedelta(days=6))
    t = np.arange(weeks)
    woy = weeks_idx.isocalendar().week.to_numpy().astype(float)
    level, trend, amp, phase = 6_000_000.0, 0.002, 0.12, rng.uniform(0, 2 * np.pi)
    peak_lift, promo_lift, noise_sd = 0.8, 0.06, 0.02
    promo = (rng.random(weeks) < 0.1).astype(int)
    seasonal = np.sin(2 * np.pi * woy / 52 + phase)
    baseline = level * (1 + trend * t) * (1 + amp * seasonal) * (1 + peak_lift * peak) + promo_lift * level * promo
    params = {}
    spend = np.zeros((weeks, len(channels)))
    for j, ch in enumerate(channels):
        typical = rng.uniform(20_000, 150_000)
        decay = rng.uniform(0.1, 0.7)
        half = typical / (1 - decay) * rng.uniform(0.8, 2.0)
        slope = rng.uniform(1.0, 2.5)
        roi = rng.uniform(1.5, 7.0)  # ROI at typical spend, steady state
        steady = typical / (1 - decay)
        beta = roi * typical / (steady**slope / (steady**slope + half**slope))
        spend[:, j] = typical * (1 + 0.7 * peak + 0.25 * seasonal) * rng.lognormal(0, 0.3, weeks)
        params[ch] = {"decay": decay, "half_saturation": half, "slope": slope, "beta": beta,
                      "typical_spend": typical, "roi_at_typical": roi}
    spend = np.round(spend, 2)
    mult = 1 + (PEAK_MEDIA_MULTIPLIER - 1) * peak
    media = media_revenue(spend, [params[c]["decay"] for c in channels], [params[c]["half_saturation"] for c in channels],
                          [params[c]["slope"] for c in channels], [params[c]["beta"] for c in channels], multiplier=mult)
    revenue = baseline + media.sum(1) + rng.normal(0, noise_sd * level, weeks)
    df = pd.DataFrame({"date": weeks_idx.strftime("%Y-%m-%d"), "revenue": np.round(revenue, 2)})
    for j, ch in enumerate(channels):
        df[f"spend_{ch}"] = spend[:, j]
    df["promo"] = promo
    if reported:
        rep, bias = reported_revenue(media, np.random.default_rng([seed, 7, 1]), reported_bias, reported_noise)
        for j, ch in enumerate(channels):
            df[f"revenue_{ch}"] = np.round(rep[:, j], 2)
            params[ch]["reported_bias"] = float(bias[j])
    truth = {
        "channels": params,
        "baseline": {"level": level, "trend_per_week": trend, "season_amplitude": amp, "season_phase": phase,
                     "peak_lift": peak_lift, "promo_lift": promo_lift, "noise_sd_share": noise_sd,
                     "formula": "level*(1+trend*t)*(1+amp*sin(2*pi*isoweek/52+phase))*(1+peak_lift*peak)+promo_lift*level*promo"},
        "peak_media_multiplier": PEAK_MEDIA_MULTIPLIER,
        "peak_weeks": list(df["date"][peak]),
        "media_formula": "beta*hill(geometric_adstock(spend,decay),half_saturation,slope)*(1+(mult-1)*peak) (models/response.py)",
        "media_revenue_share": float(media.sum() / revenue.sum()),
    }
    return df, truth


def reported_revenue(media: np.ndarray, rng: np.random.Generator, bias: tuple[float, float] = (0.8, 1.6),
                     noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(platform-reported revenue, bias per channel) for the channels' TRUE media revenue `media` (weeks x channels):
    bias_c x media x lognormal(0, noise), bias_c ~ U(bias) per channel (platforms over-claim). Draws from `rng`, the
    biases first, then the noise week by week. One formula for every world family that carries reports (ours above,
    bench/allocator.py's seasonal histories)."""
    b = rng.uniform(*bias, media.shape[1])
    return media * b * rng.lognormal(0, noise, media.shape), b
