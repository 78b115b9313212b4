"""Train the LSTM churn predictor from an events file and save a version in the model store."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from omnidecide.models.churn import features as F
from omnidecide.models.errors import InputError
from omnidecide.store import history, registry
from omnidecide.training import progress
from omnidecide.training.churn.pipeline import Config, evaluate, fit  # noqa: F401  (re-exported for the bench)
from omnidecide.store.io import load
from omnidecide.training.profile import data_end, profile


def parse_as_of(prep: F.Prepared, as_of: str | None) -> float | None:
    if as_of is None:
        return None
    try:
        return prep.day(as_of)
    except (ValueError, TypeError) as e:
        raise InputError(f"--as-of {as_of!r}: not a date (use YYYY-MM-DD)") from e


def sample_frame(frame: pd.DataFrame, cfg: Config, as_of: str | None) -> tuple[pd.DataFrame, str | None]:
    """The events of `cfg.max_customers` customers drawn at random (all when there are fewer), before the arrays are
    built: at 1M customers and 50M events the arrays of everyone take GBs, and training uses a sample anyway. The
    validation as-of defaults to the one the whole log gives, so sampling never moves it."""
    users = frame["user_id"]
    ids = np.sort(users.dropna().unique().astype(str)) if not isinstance(users.dtype, pd.CategoricalDtype) else \
        np.sort(users.cat.categories[np.unique(users.cat.codes[users.cat.codes >= 0])].astype(str))
    if len(ids) <= cfg.max_customers:
        return frame, as_of
    if as_of is None:
        ts = pd.to_datetime(frame["timestamp"])
        first, last = ts.min().normalize(), ts.max().normalize()
        default = last + pd.Timedelta(days=1 - cfg.horizon_days)
        as_of = str(default.date()) if default > first else None  # None: `fit` names the problem
    rng = np.random.default_rng([cfg.seed, 1])
    chosen = ids[np.sort(rng.choice(len(ids), cfg.max_customers, replace=False))]
    return frame[users.isin(chosen).to_numpy()].reset_index(drop=True), as_of


def train(events: Path, *, horizon_days: int = 90, as_of: str | None = None, seed: int = 0) -> str:
    """Fit on `events`; validation at `as_of` (default: latest date whose label window is inside the events).

    Returns the saved tag (`churn:<version>`); metrics, params and the data fingerprint go in its metadata.
    """
    if horizon_days < 1:
        raise InputError(f"--horizon-days {horizon_days}: must be at least 1")
    with progress.task("train churn", 4):
        progress.step(f"load and validate {Path(events).name}")
        loaded = load(events, "events", columns=list(F.COLUMNS), compact=True)
        if loaded.n_good == 0:  # name the file and the rejects, not the first step that finds nothing ("profile")
            raise InputError(f"{events}: no usable events ({loaded.n_rejected} rows rejected"
                             + (f", reasons in {loaded.rejects_path}" if loaded.rejects_path else "") + ")")
        progress.step("customer sequences")
        cfg = Config(horizon_days=horizon_days, seed=seed)
        prof, end, rejected = profile("events", loaded.data), data_end(loaded.data, "timestamp"), loaded.n_rejected
        frame, as_of = sample_frame(loaded.data, cfg, as_of)
        kept = tempfile.TemporaryDirectory()  # the version's history, written now so the full frame can go
        history.write(Path(kept.name), loaded.data)
        del loaded  # the arrays `prepare` builds are all that is needed from here (the frame is GBs at 50M rows)
        prep = F.prepare(frame)
        del frame
        progress.step("fit the LSTM on stacked windows, calibrate on the latest")
        model, metrics, info = fit(prep, cfg, parse_as_of(prep, as_of))
        metrics["rows_rejected"] = rejected
        params = {k: v for k, v in cfg.__dict__.items() if v is not None}  # the store rejects None
        progress.step("save")

        def write(folder: Path) -> None:
            model.save(folder)
            shutil.move(Path(kept.name) / history.FILE, folder / history.FILE)  # what `/predict_churn` by id reads

        return registry.save("churn", write, metrics=metrics, params=params,
                             data_fingerprint=registry.fingerprint([events]),
                             extra={"figures": info.pop("figures"), "training": info,
                                    "profile": prof, "data_end": end})
