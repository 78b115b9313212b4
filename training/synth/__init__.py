"""The synthetic omnichannel world: canonical files with planted, documented structure (docs/data.md).

One module per aspect: `world` (constants, sale peaks, fading activity), `catalogue`, `users`, `touchpoints` (ad
journeys), `events` (sessions, funnel, purchases, money), `mmm` (weekly marketing mix), `generate` (writing the
files), `grocery` (a second, independent repeat-purchase world). What is planted in the default world (and written
to truth.json / truth_users.csv for tests to check that models recover it):

- tastes: each user favours 3 categories (Dirichlet weights) and one brand per category (x4 weight);
- long-tail popularity: Zipf within each category;
- funnel: view -> click -> cart -> purchase with fixed conversion rates;
- repeats: consumable categories are re-bought every ~cycle_days (per user-item jitter); durables once;
- channel and store per event: a preferred channel per user, a home store for in-store events;
- stock-outs: some items sell out on a given day (no purchase after it; stock 0 in items.csv);
- churn: some users fade out (activity declines linearly over `fade_days`) and stop at `churn_date`;
- touchpoint journeys: per-channel conversion lift; truth gives each channel's removal-effect share;
- weekly marketing mix: adstock + Hill per channel, season and 618 / Double 11 peaks, confounded spend.

Imports: models (the media response) and training.progress only.
"""
from __future__ import annotations

from pathlib import Path

from omnidecide.training import progress
from omnidecide.training.synth.generate import CORRUPTIONS, write_default
from omnidecide.training.synth.mmm import make_marketing_mix
from omnidecide.training.synth.world import (BLOCK, CATEGORIES, END, EVENT_CHANNELS, MMM_CHANNELS, TOUCH_CHANNELS,
                                             TOUCH_COST, TOUCH_LIFT, activity, is_peak)

WORLDS = ("default", "grocery")

__all__ = ["generate", "make_marketing_mix", "is_peak", "activity", "CATEGORIES", "CORRUPTIONS", "END", "BLOCK",
           "EVENT_CHANNELS", "MMM_CHANNELS", "TOUCH_CHANNELS", "TOUCH_COST", "TOUCH_LIFT", "WORLDS"]


def generate(out: str | Path, n_users: int = 1000, seed: int = 0, n_items: int = 400, days: int = 365,
             corrupt: float = 0.0, world: str = "default") -> dict:
    """Write the world's canonical files, truth.json (and, for the default world, touchpoints, marketing_mix and
    truth_users.csv) to `out`; returns the truth. `world="grocery"`: the grocery repeat-basket world instead."""
    if world == "grocery":
        from omnidecide.training.synth.grocery import write_grocery
        with progress.task("synth grocery", 1):
            return write_grocery(Path(out), n_users, seed, n_items, days)
    if world != "default":
        raise ValueError(f"unknown world {world!r}; one of {WORLDS}")
    with progress.task("synth", -(-n_users // BLOCK) + 1):
        return write_default(Path(out), n_users, seed, n_items, days, corrupt)
