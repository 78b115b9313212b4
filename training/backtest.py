"""Champion/challenger on a fresh time window: how well a version does on data after a cutoff it did not learn from.

`omnidecide retrain` uses it to decide whether a retrained version may replace production; `omnidecide monitor` uses
it to see whether production (or a canary) has lost quality since release. Every version of a model is scored by the
same protocol on the same window, so two versions are compared on exactly the same customers and inputs:

- recommender: the window is the last `RECOMMENDER_WINDOW_DAYS`. Each customer who consumed items in it and was
  active before it is served as in production — the version's own graph plus, as fresh session events, what the
  customer did before the cutoff that the version never saw (the online store keeps the same 200 events) — and judged
  on the items consumed in the window (Recall/NDCG/HitRate/MAP@20).
- churn: as-of is the latest date whose H-day label window fits in the data; customers are scored from events before
  it (AUC, AP, Brier, ECE).
- allocator: the last `ALLOCATOR_WINDOW` periods of revenue predicted from their actual spend, adstock carried in
  from the periods before (accuracy = 1 − MAPE, R²: the standard out-of-sample check of a media-mix model).

A version trained on data that reaches into the window has seen the answers: `seen_window` says so, and the caller
must not read such a comparison as a win.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from omnidecide.models.errors import InputError
from omnidecide.models.metrics import ranking_report

RECOMMENDER_WINDOW_DAYS = 14
ALLOCATOR_WINDOW = 13
MIN_WINDOW_DAYS = 3  # recommender: the shortest window left after production's data that is still judged
MIN_WINDOW_PERIODS = 4  # allocator: the same, in periods
MAX_USERS = 2000  # recommender customers served per version (a seeded sample beyond that): cost stays flat
ONLINE_EVENTS = 200  # fresh events per customer, as `serving.online_store` keeps
K = 20
# the figure each model is judged on, and whether higher is better
# (the allocator's is 1 - MAPE: a relative change of a MAPE of 1% is noise, of an accuracy of 99% it is not)
PRIMARY = {"recommender": ("ndcg@20", True), "churn": ("auc", True), "allocator": ("accuracy", True)}


@dataclass
class Data:
    """Fresh data for one model: events (+ items, users) or a marketing-mix frame."""

    name: str
    frame: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    files: tuple[Path, ...] = ()

    @property
    def time_column(self) -> str:
        return "date" if self.name == "allocator" else "timestamp"

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(pd.to_datetime(self.frame[self.time_column]).max())


def from_folder(folder: Path) -> dict[str, Data]:
    """The models a folder of canonical files (as `data synth` writes) can feed, with their data."""
    from omnidecide.store.io import load

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--data {folder}: not a folder")
    out: dict[str, Data] = {}
    from omnidecide.store.io import canonical_file

    events = canonical_file(folder, "events")  # .csv, or .parquet when only that exists
    if events.exists():
        ev = load(events, "events").data
        side = {t: load(canonical_file(folder, t), t).data if canonical_file(folder, t).exists() else None
                for t in ("items", "users")}
        files = tuple(p for p in (events, canonical_file(folder, "items"), canonical_file(folder, "users")) if p.exists())
        out["recommender"] = Data("recommender", ev, side["items"], side["users"], files)
        out["churn"] = Data("churn", ev, files=(events,))
    mix = folder / "marketing_mix.csv"
    if mix.exists():
        out["allocator"] = Data("allocator", load(mix, "marketing_mix").data, files=(mix,))
    if not out:
        raise InputError(f"--data {folder}: no events.csv or marketing_mix.csv")
    return out


class NothingToJudge(InputError):
    """The version being judged has seen (almost) all the data: no window is left that it did not learn from."""


def cutoff(data: Data, horizon_days: int = 90, seen_until: str | None = None) -> pd.Timestamp:
    """Start of the evaluation window (the churn as-of for churn).

    `seen_until`: where production's training data ends. The window starts after it, so production is judged only
    on data it never saw (a weekly retrain then compares the recipe refitted on the newer data with production on
    the days since production was trained); too little left raises NothingToJudge."""
    seen = pd.Timestamp(seen_until) if seen_until else None
    return _JUDGES[data.name].cutoff(data, horizon_days, seen)


def _recommender_cutoff(data: Data, horizon_days: int, seen: pd.Timestamp | None) -> pd.Timestamp:
    cut = (data.end - pd.Timedelta(days=RECOMMENDER_WINDOW_DAYS)).normalize()
    if seen is not None and seen >= cut:
        cut = (seen + pd.Timedelta(days=1)).normalize()
        if cut > data.end - pd.Timedelta(days=MIN_WINDOW_DAYS):
            raise NothingToJudge(f"production was trained on data up to {seen}; the data ends {data.end}: fewer "
                                 f"than {MIN_WINDOW_DAYS} days it has not seen")
    return cut


def _churn_cutoff(data: Data, horizon_days: int, seen: pd.Timestamp | None) -> pd.Timestamp:
    from omnidecide.models.churn import features as F

    prep = F.prepare(data.frame)
    cut = prep.date(F.default_as_of(prep, horizon_days))
    if seen is not None and seen >= cut:
        raise NothingToJudge(f"production was trained on events up to {seen}, past the start of the newest "
                             f"{horizon_days}-day label window ({cut.date()}): judge it once the data reach "
                             f"{(seen + pd.Timedelta(days=horizon_days)).date()}")
    return cut


def _allocator_cutoff(data: Data, horizon_days: int, seen: pd.Timestamp | None) -> pd.Timestamp:
    dates = pd.DatetimeIndex(pd.to_datetime(data.frame["date"]).sort_values())
    if len(dates) < 52 + ALLOCATOR_WINDOW:
        raise InputError(f"marketing mix: {len(dates)} periods; a backtest needs a year plus {ALLOCATOR_WINDOW} periods")
    cut = dates[-ALLOCATOR_WINDOW]
    if seen is not None and seen >= cut:
        later = dates[dates > seen]
        if len(later) < MIN_WINDOW_PERIODS:
            raise NothingToJudge(f"production was fitted on periods up to {seen.date()}: fewer than "
                                 f"{MIN_WINDOW_PERIODS} periods it has not seen")
        cut = later[0]
    return cut


def before(data: Data, cut: pd.Timestamp) -> Data:
    """The same data restricted to what was known before `cut` (what a challenger may train on)."""
    keep = pd.to_datetime(data.frame[data.time_column]) < cut
    return Data(data.name, data.frame[keep].reset_index(drop=True), data.items, data.users, data.files)


# --- fitting -------------------------------------------------------------------------------------------

def fit(data: Data, *, horizon_days: int = 90, seed: int = 0) -> Any:
    """A challenger fitted by the model's own training pipeline on `data` (not saved)."""
    return _JUDGES[data.name].fit(data, horizon_days, seed)


def _fit_recommender(data: Data, horizon_days: int, seed: int) -> Any:
    from omnidecide.training.recommender.pipeline import fit_and_evaluate
    return fit_and_evaluate(data.frame, data.items, data.users, seed=seed)[0]


def _fit_churn(data: Data, horizon_days: int, seed: int) -> Any:
    from omnidecide.models.churn import features as F
    from omnidecide.training.churn.pipeline import Config, fit as fit_churn
    return fit_churn(F.prepare(data.frame), Config(horizon_days=horizon_days, seed=seed))[0]


def _fit_allocator(data: Data, horizon_days: int, seed: int) -> Any:
    from omnidecide.models.allocator.mmm import history_from_frame
    from omnidecide.training.allocator.pipeline import Config, run
    return run(history_from_frame(data.frame, "marketing mix"), Config(seed=seed))[0]


# --- scoring ---------------------------------------------------------------------------------------

def evaluate(data: Data, model: Any, cut: pd.Timestamp, *, data_end: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Quality of `model` on the window starting at `cut`. `data_end`: the end of the version's training data (what it
    has seen; None = unknown). Returns the metrics plus `n` (customers or periods judged) and `seen_window`."""
    seen = data_end is not None and pd.Timestamp(data_end) >= cut
    out = _JUDGES[data.name].evaluate(data, model, cut, data_end, seed)
    return {**out, "window_start": str(cut.date()), "window_end": str(data.end.date()), "seen_window": bool(seen)}


def _recommender(data: Data, rec: Any, cut: pd.Timestamp, data_end: str | None, seed: int) -> dict[str, Any]:
    from omnidecide.models.recommender import rules
    from omnidecide.models.recommender.core import CONSUMED, seconds

    ev = data.frame[data.frame["item_id"].notna()]
    after = ev[(ev["timestamp"] >= cut) & ev["event"].isin(CONSUMED)]
    if not len(after):  # a log without purchases/ratings: any item event in the window counts
        after = ev[ev["timestamp"] >= cut]
    hist = ev[ev["timestamp"] < cut]
    users = np.array(sorted(set(after["user_id"]) & set(hist["user_id"])), dtype=object)
    if not len(users):
        raise InputError(f"recommender backtest: nobody active both before and after {cut.date()}")
    if len(users) > MAX_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, MAX_USERS, replace=False))
    unseen = hist if data_end is None else hist[hist["timestamp"] > pd.Timestamp(data_end)]
    fresh = {u: g.tail(ONLINE_EVENTS)[["item_id", "event", "timestamp"]]
             for u, g in unseen[unseen["user_id"].isin(set(users))].sort_values("timestamp").groupby("user_id")}
    relevant = after.groupby("user_id")["item_id"].agg(set)
    now = float(seconds(pd.Series([cut]))[0] - rec.t0)
    tops, rel = [], []
    for u in users:
        rows = rules.recommend(rec, str(u), K, recent=fresh.get(u), now=now)
        # an item unknown to this version can never be recommended by it: it stays relevant (and missed)
        tops.append(np.array([rec.item_index[r.item_id] for r in rows], dtype=int))
        rel.append({rec.item_index.get(i, -1 - n) for n, i in enumerate(relevant[u])})
    return {**ranking_report(tops, rel, K), "n": len(users)}


def _churn(data: Data, model: Any, cut: pd.Timestamp, data_end: str | None, seed: int) -> dict[str, Any]:
    from omnidecide.models.churn import features as F
    from omnidecide.training.churn.pipeline import evaluate as evaluate_churn

    prep = F.prepare(data.frame, model.target_events)
    as_of = prep.day(cut)
    if as_of + model.horizon_days > prep.last_day + 1:
        raise InputError(f"churn backtest: the {model.horizon_days}-day label window after {cut.date()} is not in the data yet")
    metrics, table = evaluate_churn(model, prep, as_of)
    return {**metrics, "n": len(table), "churn_rate": float(table["y"].mean()), "mean_probability": float(table["p"].mean())}


def _allocator(data: Data, alloc: Any, cut: pd.Timestamp, data_end: str | None, seed: int) -> dict[str, Any]:
    from omnidecide.models.allocator.mmm import history_from_frame, peak_flags

    h = history_from_frame(data.frame, "marketing mix")
    missing = sorted(set(alloc.channels) - set(h.channels))
    if missing:
        raise InputError(f"allocator backtest: the marketing mix has no spend_ column for {missing}")
    p = alloc.params
    spend = h.spend[:, [h.channels.index(c) for c in alloc.channels]]
    index = (h.dates - alloc.history.dates[0]).days.to_numpy() / alloc.history.step_days
    pred = p.baseline_at(h.dates, index, h.step_days)
    if len(p.gamma):
        ctrl = np.column_stack([h.controls[:, h.control_names.index(c)] if c in h.control_names else np.zeros(len(h.dates))
                                for c in p.controls])
        pred = pred + ctrl @ p.gamma
    pred = pred + p.media(spend, peak_flags(h.dates, h.step_days).max(1)).sum(1)  # adstock runs through every period
    w = h.dates >= cut
    y, yhat = h.revenue[w], pred[w]
    mape = float(np.mean(np.abs(yhat - y) / np.maximum(np.abs(y), 1e-9)))
    r2 = float(1 - np.sum((y - yhat) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    bias = float(np.mean(yhat - y) / max(np.mean(np.abs(y)), 1e-9))
    return {"accuracy": 1 - mape, "mape": mape, "r2": r2, "bias": bias, "n": int(w.sum())}


@dataclass(frozen=True)
class _Judge:
    """How one model is backtested: where its window starts, how a challenger is fitted, how a version is scored."""

    cutoff: Callable[[Data, int, pd.Timestamp | None], pd.Timestamp]
    fit: Callable[[Data, int, int], Any]
    evaluate: Callable[[Data, Any, pd.Timestamp, str | None, int], dict[str, Any]]


_JUDGES = {
    "recommender": _Judge(_recommender_cutoff, _fit_recommender, _recommender),
    "churn": _Judge(_churn_cutoff, _fit_churn, _churn),
    "allocator": _Judge(_allocator_cutoff, _fit_allocator, _allocator),
}


def primary(name: str, metrics: dict[str, Any]) -> float:
    return float(metrics[PRIMARY[name][0]])


def relative_change(name: str, new: dict[str, Any], old: dict[str, Any]) -> float:
    """How much better `new` is than `old` on the primary figure, as a fraction (negative = worse)."""
    key, higher = PRIMARY[name]
    a, b = float(new[key]), float(old[key])
    if not np.isfinite(a) or not np.isfinite(b):
        return float("nan")
    if b == 0:  # from nothing: any gain is infinitely better
        return 0.0 if a == 0 else float(np.inf if (a > 0) == higher else -np.inf)
    return (a - b) / abs(b) if higher else (b - a) / abs(b)
