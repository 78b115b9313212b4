"""Per-user latent truth (tastes, activity, churn, channel, store) and the two files written from it:
users.csv (what a retailer knows) and truth_users.csv (what tests check models recover)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from omnidecide.training.synth.world import BRANDS_PER_CATEGORY, CATEGORIES, EVENT_CHANNELS, N_STORES, user_ids


@dataclass
class Users:
    uidx: np.ndarray          # global user number (u%07d)
    signup: np.ndarray        # day of signup (negative: before the history starts)
    active_start: np.ndarray
    churn_day: np.ndarray     # inf for users who never churn
    fade_days: np.ndarray
    rate: np.ndarray          # sessions per week
    channel: np.ndarray       # preferred event channel index
    store: np.ndarray         # home store index
    taste: np.ndarray         # users x categories, rows sum to 1
    fav: np.ndarray           # users x 3 favourite categories
    brand_pref: np.ndarray    # users x categories: preferred brand

    def __len__(self) -> int:
        return len(self.uidx)


def users_block(rng: np.random.Generator, first: int, n: int, days: int) -> Users:
    """Tastes: 3 favourite categories (Dirichlet weights) and one brand per category; 40% churn."""
    n_cat = len(CATEGORIES)
    fav = np.argsort(rng.random((n, n_cat)), axis=1)[:, :3]
    taste = np.full((n, n_cat), 0.12 / n_cat)
    np.put_along_axis(taste, fav, 0.88 * rng.dirichlet(np.ones(3) * 1.5, n), axis=1)
    taste /= taste.sum(1, keepdims=True)
    signup = rng.integers(-500, int(days * 0.8), n)
    active_start = np.maximum(signup, 0)
    churner = rng.random(n) < 0.4
    churn_day = np.where(churner, active_start + 45 + rng.exponential(days * 0.6, n), np.inf)
    fade_days = rng.uniform(21, 60, n)
    rate = rng.lognormal(np.log(1.4), 0.6, n)
    channel = rng.integers(0, len(EVENT_CHANNELS), n)
    store = rng.integers(0, N_STORES, n)
    brand_pref = rng.integers(0, BRANDS_PER_CATEGORY, (n, n_cat))
    return Users(np.arange(first, first + n), signup, active_start, churn_day, fade_days, rate, channel, store,
                 taste, fav, brand_pref)


def users_csv(rng: np.random.Generator, users: Users, start: pd.Timestamp) -> pd.DataFrame:
    n = len(users)
    return pd.DataFrame({
        "user_id": user_ids(users.uidx),
        "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55+"], n, p=[0.2, 0.35, 0.25, 0.12, 0.08]),
        "gender": rng.choice(["F", "M"], n, p=[0.6, 0.4]),
        "city": rng.choice(["Shanghai", "Beijing", "Hangzhou", "Chengdu", "Shenzhen", "Wuhan"], n),
        "member_level": rng.choice(["basic", "silver", "gold", "platinum"], n, p=[0.5, 0.3, 0.15, 0.05]),
        "signup_date": (start + pd.to_timedelta(users.signup, unit="D")).strftime("%Y-%m-%d"),
        "consent_personalization": np.where(rng.random(n) < 0.92, "true", "false"),
    })


def truth_users(users: Users, start: pd.Timestamp, days: int) -> pd.DataFrame:
    churn_day = users.churn_day
    finite = np.isfinite(churn_day)

    def to_date(d: np.ndarray) -> pd.Index:
        return (start + pd.to_timedelta(np.where(finite, d, 0), unit="D")).strftime("%Y-%m-%d")

    return pd.DataFrame({
        "user_id": user_ids(users.uidx),
        "top_categories": [";".join(CATEGORIES[c][0] for c in fav) for fav in users.fav],
        "preferred_channel": np.array(EVENT_CHANNELS)[users.channel],
        "home_store": [f"st{x:02d}" for x in users.store],
        "sessions_per_week": pd.Series(users.rate).round(3),
        "churn_date": np.where(finite, to_date(churn_day), ""),
        "fade_start": np.where(finite, to_date(churn_day - users.fade_days), ""),
        "churned_within_data": finite & (churn_day < days),
    })
