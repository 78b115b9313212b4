"""The constants of the default synthetic world (catalogue categories, channels, funnel, journeys) and the two
time shapes every aspect shares: sale peaks and a churning user's fading activity."""
from __future__ import annotations

import numpy as np
import pandas as pd

BLOCK = 10_000
END = pd.Timestamp("2026-07-01")  # exclusive end of the event history; start = END - days
# name, consumable, re-buy cycle in days (None for durables), median price
CATEGORIES = [
    ("dairy", True, 7, 12), ("diapers", True, 12, 110), ("snacks", True, 10, 15), ("baby_formula", True, 14, 260),
    ("coffee_tea", True, 21, 45), ("pet_food", True, 30, 120), ("cleaning", True, 35, 30), ("shampoo", True, 40, 60),
    ("skincare", True, 45, 180), ("vitamins", True, 60, 150),
    ("phones", False, None, 3000), ("headphones", False, None, 600), ("small_appliances", False, None, 400),
    ("furniture", False, None, 1500), ("apparel", False, None, 250), ("shoes", False, None, 450),
    ("books", False, None, 50), ("toys", False, None, 150), ("sports", False, None, 300), ("luggage", False, None, 700),
]
EVENT_CHANNELS = ["app", "mini_program", "web", "store", "tmall", "douyin_shop"]
N_STORES = 20
BRANDS_PER_CATEGORY = 4
FUNNEL = {"view_to_click": 0.35, "click_to_cart": 0.4, "cart_to_purchase": 0.6}
REBUY_KEEP = 0.85  # chance a consumable re-buy happens at each cycle while the user is active
TOUCH_CHANNELS = ["xiaohongshu", "douyin", "kol_live", "wechat_moments", "tmall_ads", "search", "sms"]
TOUCH_LIFT = {"xiaohongshu": 0.08, "douyin": 0.10, "kol_live": 0.12, "wechat_moments": 0.05,
              "tmall_ads": 0.06, "search": 0.03, "sms": 0.01}
TOUCH_COST = {"xiaohongshu": 0.8, "douyin": 0.6, "kol_live": 1.5, "wechat_moments": 0.5, "tmall_ads": 0.7,
              "search": 1.2, "sms": 0.05}
TOUCH_BASE_RATE = 0.02
# Upper-funnel channels tend to come first in a journey, lower-funnel (search, sms) last.
TOUCH_POSITION = np.array([0.9, 0.8, 0.6, 0.5, 0.2, -0.6, -0.8])
MMM_CHANNELS = ["douyin", "wechat_moments", "tmall_ads", "search", "kol_live", "sms"]
PEAK_MEDIA_MULTIPLIER = 1.5


def is_peak(dates: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """Sale peaks: the 618 run-up (1-18 June) and Double 11 (1-11 November)."""
    d = pd.DatetimeIndex(dates)
    return ((d.month == 6) & (d.day <= 18)) | ((d.month == 11) & (d.day <= 11))


def activity(day: np.ndarray, churn_day: np.ndarray, fade_days: np.ndarray) -> np.ndarray:
    """1 while healthy, falling linearly to 0.15 over the fade, 0 from the churn day on."""
    into_fade = (day - (churn_day - fade_days)) / fade_days
    level = np.clip(1.0 - 0.85 * into_fade, 0.15, 1.0)
    return np.where(day >= churn_day, 0.0, level)


def user_ids(uidx: np.ndarray) -> list[str]:
    return [f"u{x:07d}" for x in uidx]
