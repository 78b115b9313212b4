"""The catalogue a model version was trained with, kept inside the version (`catalogue/` in its folder).

Serving reads stock, prices, margins and per-store stock from here, never from the training files' paths, so a
version served from a Bento or on another machine applies the same rules it was trained with; the live catalogue
(`POST /items`) then overrides what changed since.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

FOLDER = "catalogue"


def write(version_folder: Path, items: pd.DataFrame | None, store_stock: pd.DataFrame | None) -> None:
    out = Path(version_folder) / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    if items is not None:
        items.to_csv(out / "items.csv", index=False)
    if store_stock is not None:
        store_stock.to_csv(out / "store_stock.csv", index=False)


def read(version_folder: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(items, store_stock) of the version; None for a table it was trained without."""
    folder = Path(version_folder) / FOLDER
    ids = {"item_id": str, "store_id": str, "category": str, "title": str}
    items, stock = folder / "items.csv", folder / "store_stock.csv"
    return (pd.read_csv(items, dtype=ids, keep_default_na=True) if items.exists() else None,
            pd.read_csv(stock, dtype=ids) if stock.exists() else None)
