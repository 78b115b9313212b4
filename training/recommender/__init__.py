"""Training entry point of the recommender (issue B)."""
from __future__ import annotations

from pathlib import Path

from omnidecide.store import registry
from omnidecide.training import progress
from omnidecide.store.io import load
from omnidecide.training.profile import data_end, profile


def train(events: Path, items: Path | None = None, users: Path | None = None, *, seed: int = 0) -> str:
    """Validate the files, tune on validation, evaluate on a holdout, refit on all data, save; returns the tag."""
    from omnidecide.models.errors import InputError
    from omnidecide.training.recommender.pipeline import fit_and_evaluate

    with progress.task("train recommender", 3):
        progress.step(f"load and validate {Path(events).name}")
        ev = load(events, "events").data
        it = load(items, "items").data if items else None
        us = load(users, "users").data if users else None
        if ev["item_id"].notna().sum() < 10:
            raise InputError(f"{events}: fewer than 10 events with an item_id; nothing to learn from")
        progress.step("tune on validation, evaluate on holdout, second stage, refit")
        figures: dict = {}
        rec, metrics, params = fit_and_evaluate(ev, it, us, seed=seed, figures=figures)
        paths = [p for p in (events, items, users) if p]
        params["seed"] = seed
        progress.step("save")
        return registry.save("recommender", rec.save, metrics=metrics, params=params,
                             data_fingerprint=registry.fingerprint(paths),
                             extra={"files": [str(p) for p in paths], "n_users": len(rec.user_ids),
                                    "n_items": len(rec.item_ids), "profile": profile("events", ev),
                                    "data_end": data_end(ev, "timestamp"), "figures": figures})
