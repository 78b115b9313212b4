"""The live catalogue: stock, prices, margins and new items as they change, without retraining.

`POST /items` upserts items (every field but `item_id` optional; a field left out keeps its value; `store_id` makes
`stock` that store's). Updates are stored where the online store lives (a table of their own in its SQLite file,
behind `Catalogue`, so every worker and replica sees them and the storage can move with the online store) under a
rising catalogue version. Each serving runtime starts from the catalogue snapshot inside its model version and
applies the live changes newer than the last it saw before answering (`LiveOverlay.sync`: one indexed read per
request when nothing changed). An item the version does not know joins its catalogue as a cold item, scored by
content: its category (models/recommender/extend.py).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.serving.online_store import default_path

KNOWN = ("item_id", "store_id", "stock", "price", "margin", "category", "title")


class ItemUpdate(BaseModel):
    """One catalogue row; other attributes (brand, ...) are kept as given."""

    model_config = ConfigDict(extra="allow")
    item_id: str = Field(..., min_length=1, max_length=200)
    stock: Optional[float] = Field(None, ge=0, allow_inf_nan=False, description="units in stock (at `store_id` if given)")
    store_id: Optional[str] = Field(None, min_length=1, max_length=200)
    price: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    margin: Optional[float] = Field(None, ge=-1, le=1, allow_inf_nan=False, description="share of the price, e.g. 0.3")
    category: Optional[str] = Field(None, min_length=1, max_length=200)
    title: Optional[str] = Field(None, max_length=500)


class ItemsRequest(BaseModel):
    items: list[ItemUpdate] = Field(..., min_length=1, max_length=10_000)


class ItemsResponse(BaseModel):
    accepted: int
    store_stock_rows: int
    catalogue_version: int


@dataclass
class Changes:
    version: int
    items: list[dict] = field(default_factory=list)  # item_id, category, price, margin, stock, title, attrs
    store_stock: list[tuple[str, str, float]] = field(default_factory=list)  # (store_id, item_id, stock)


class Catalogue:
    """Live catalogue rows in SQLite (WAL, a connection per thread); one write transaction per upsert."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path or default_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS catalogue_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
                       "version INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO catalogue_version VALUES (1, 0)")
            db.execute("CREATE TABLE IF NOT EXISTS catalogue_items (item_id TEXT PRIMARY KEY, category TEXT, "
                       "price REAL, margin REAL, stock REAL, title TEXT, attrs TEXT, version INTEGER NOT NULL, "
                       "updated REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS catalogue_items_version ON catalogue_items (version)")
            db.execute("CREATE TABLE IF NOT EXISTS catalogue_store_stock (store_id TEXT NOT NULL, item_id TEXT NOT NULL, "
                       "stock REAL NOT NULL, version INTEGER NOT NULL, updated REAL NOT NULL, "
                       "PRIMARY KEY (store_id, item_id))")
            db.execute("CREATE INDEX IF NOT EXISTS catalogue_store_stock_version ON catalogue_store_stock (version)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def upsert(self, items: list[ItemUpdate]) -> ItemsResponse:
        """Store the rows in one transaction under a new catalogue version."""
        now = time.time()
        with self._db() as db:
            db.execute("UPDATE catalogue_version SET version = version + 1 WHERE id = 1")
            version = db.execute("SELECT version FROM catalogue_version WHERE id = 1").fetchone()[0]
            rows, stock_rows = [], []
            for it in items:
                extra = {k: v for k, v in (it.model_extra or {}).items() if v is not None}
                global_stock = it.stock if it.store_id is None else None
                rows.append((it.item_id, it.category, it.price, it.margin, global_stock, it.title,
                             json.dumps(extra, default=str) if extra else None, version, now))
                if it.store_id is not None and it.stock is not None:
                    stock_rows.append((it.store_id, it.item_id, it.stock, version, now))
            db.executemany(
                "INSERT INTO catalogue_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE SET "
                "category = coalesce(excluded.category, category), price = coalesce(excluded.price, price), "
                "margin = coalesce(excluded.margin, margin), stock = coalesce(excluded.stock, stock), "
                "title = coalesce(excluded.title, title), attrs = coalesce(excluded.attrs, attrs), "
                "version = excluded.version, updated = excluded.updated", rows)
            db.executemany("INSERT INTO catalogue_store_stock VALUES (?, ?, ?, ?, ?) ON CONFLICT (store_id, item_id) "
                           "DO UPDATE SET stock = excluded.stock, version = excluded.version, updated = excluded.updated",
                           stock_rows)
        return ItemsResponse(accepted=len(rows), store_stock_rows=len(stock_rows), catalogue_version=version)

    def version(self) -> int:
        return self._db().execute("SELECT version FROM catalogue_version WHERE id = 1").fetchone()[0]

    def changes(self, since: int) -> Changes:
        """Rows changed after catalogue version `since` (0: everything), read in one snapshot."""
        db = self._db()
        with db:
            db.execute("BEGIN")  # one read transaction: the version and the rows agree
            version = db.execute("SELECT version FROM catalogue_version WHERE id = 1").fetchone()[0]
            cur = db.execute("SELECT item_id, category, price, margin, stock, title, attrs FROM catalogue_items "
                             "WHERE version > ? ORDER BY version, item_id", (since,))
            cols = [d[0] for d in cur.description]
            items = [dict(zip(cols, r)) for r in cur.fetchall()]
            stock = db.execute("SELECT store_id, item_id, stock FROM catalogue_store_stock WHERE version > ? "
                               "ORDER BY version", (since,)).fetchall()
        return Changes(version, items, [(str(s), str(i), float(v)) for s, i, v in stock])


_shared: dict[Path, Catalogue] = {}
_shared_lock = threading.Lock()


def shared(path: Path | None = None) -> Catalogue:
    """One Catalogue per file and process (runtimes of every version share it)."""
    path = Path(path or default_path())
    with _shared_lock:
        if path not in _shared:
            _shared[path] = Catalogue(path)
        return _shared[path]


class LiveOverlay:
    """Keeps one recommender runtime's catalogue (`rt.rec`, `rt.margin`, `rt.store_stock`) in step with the live one."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.seen = 0
        self._lock = threading.Lock()

    def sync(self, rt) -> None:
        if self.catalogue.version() == self.seen:
            return
        with self._lock:
            changes = self.catalogue.changes(self.seen)
            if changes.version != self.seen:
                apply(rt, changes)
                self.seen = changes.version


def apply(rt, changes: Changes) -> None:
    """Overwrite what the rows set; items the version does not know join it as cold items."""
    from omnidecide.models.recommender.extend import with_items

    rec = rt.rec
    new = [r for r in changes.items if r["item_id"] not in rec.item_index]
    if new:
        rec = with_items(rec, [r["item_id"] for r in new], [r["category"] for r in new], [r["price"] for r in new],
                         [r["stock"] for r in new], [r["title"] for r in new])
        rt.margin = np.concatenate([rt.margin, [np.nan if r["margin"] is None else r["margin"] for r in new]])
    cats = {str(c): k for k, c in enumerate(rec.categories)}
    for r in changes.items:
        j = rec.item_index[r["item_id"]]
        if r["stock"] is not None:
            rec.stock[j] = r["stock"]
        if r["margin"] is not None:
            rt.margin[j] = r["margin"]
        if r["price"] is not None:
            if rec.price is None:
                rec.price = np.full(len(rec.item_ids), np.nan)
            rec.price[j] = r["price"]
        if r["title"] is not None:
            if rec.titles is None or rec.titles.dtype != object:  # object: a longer title is not cut
                rec.titles = np.array([""] * len(rec.item_ids) if rec.titles is None else rec.titles, dtype=object)
            rec.titles[j] = r["title"]
        if r["category"] is not None and r["category"] in cats:  # a known category; a new one needs a retrain
            rec.item_cat[j] = cats[r["category"]]
    for store, item, stock in changes.store_stock:
        rt.store_stock.setdefault(store, {})[item] = stock
    rt.rec = rec
