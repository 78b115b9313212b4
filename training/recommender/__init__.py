"""Training entry point of the recommender (issue B)."""
from __future__ import annotations

from pathlib import Path

from omnidecide.store import registry, snapshot
from omnidecide.training import progress
from omnidecide.store.io import canonical_file, load
from omnidecide.training.profile import data_end, profile


def train(events: Path, items: Path | None = None, users: Path | None = None, *, seed: int = 0) -> str:
    """Validate the files, tune on validation, evaluate on a holdout, refit on all data, save; returns the tag."""
    from omnidecide.models.errors import InputError
    from omnidecide.training.recommender.pipeline import fit_and_evaluate
    from omnidecide.training.recommender.scale import fit_large, is_large

    with progress.task("train recommender", 3):
        progress.step(f"load and validate {Path(events).name}")
        large = is_large(events)
        ev = load(events, "events", compact=large).data
        it = load(items, "items").data if items else None
        us = load(users, "users").data if users else None
        # store_stock.csv (or .parquet, as the scale world writes it) beside the items file: per-store stock, kept in the
        # version with the items (no paths outside it); only the .csv was looked for, so Parquet's was left out unsaid
        ss_file = canonical_file(Path(items).parent, "store_stock") if items else None
        ss = load(ss_file, "store_stock").data if ss_file is not None and ss_file.exists() else None
        if ev["item_id"].notna().sum() < 10:
            raise InputError(f"{events}: fewer than 10 events with an item_id; nothing to learn from")
        # the frame's figures before the fit, not beside the fitted model (at 50M events its groupbys are GBs)
        ev_profile, ev_end = profile("events", ev), data_end(ev, "timestamp")
        progress.step("tune on validation, evaluate on holdout, second stage, refit")
        figures: dict = {}
        rec, metrics, params = (fit_large if large else fit_and_evaluate)(ev, it, us, seed=seed, figures=figures)
        paths = [p for p in (events, items, users, ss_file if ss is not None else None) if p]
        params["seed"] = seed
        progress.step("save")

        def write(folder: Path) -> None:
            rec.save(folder)
            snapshot.write(folder, it, ss)

        return registry.save("recommender", write, metrics=metrics, params=params,
                             data_fingerprint=registry.fingerprint(paths),
                             extra={"files": [str(p) for p in paths], "n_users": len(rec.user_ids),
                                    "n_items": len(rec.item_ids), "profile": ev_profile, "data_end": ev_end,
                                    "figures": figures})
