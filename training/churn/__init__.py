"""Train the LSTM churn predictor from an events file and save a version in the model store."""
from __future__ import annotations

from pathlib import Path

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


def train(events: Path, *, horizon_days: int = 90, as_of: str | None = None, seed: int = 0) -> str:
    """Fit on `events`; validation at `as_of` (default: latest date whose label window is inside the events).

    Returns the saved tag (`churn:<version>`); metrics, params and the data fingerprint go in its metadata.
    """
    if horizon_days < 1:
        raise InputError(f"--horizon-days {horizon_days}: must be at least 1")
    with progress.task("train churn", 4):
        progress.step(f"load and validate {Path(events).name}")
        loaded = load(events, "events")
        progress.step("customer sequences")
        prep = F.prepare(loaded.data)
        cfg = Config(horizon_days=horizon_days, seed=seed)
        progress.step("fit the LSTM on stacked windows, calibrate on the latest")
        model, metrics, info = fit(prep, cfg, parse_as_of(prep, as_of))
        metrics["rows_rejected"] = loaded.n_rejected
        params = {k: v for k, v in cfg.__dict__.items() if v is not None}  # the store rejects None
        progress.step("save")

        def write(folder: Path) -> None:
            model.save(folder)
            history.write(folder, loaded.data)  # what `/predict_churn {"user_ids": [...]}` scores from

        return registry.save("churn", write, metrics=metrics, params=params,
                             data_fingerprint=registry.fingerprint([events]),
                             extra={"figures": info.pop("figures"), "training": info,
                                    "profile": profile("events", loaded.data),
                                    "data_end": data_end(loaded.data, "timestamp")})
