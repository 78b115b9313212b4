"""The live catalogue: stock, prices, margins and new items as they change, without retraining.

`POST /items` upserts items (every field but `item_id` optional; a field left out keeps its value; `store_id` makes
`stock` that store's). Updates are stored where the online store lives (tables of their own in the deployment's
database, made by migration 3 of `store.db`, behind `Catalogue`, so every worker and replica sees them) under a
rising catalogue version. Each serving runtime starts from the catalogue snapshot inside its model version and
applies the live changes newer than the last it saw before answering (`LiveOverlay.sync`: one indexed read per
request when nothing changed). An item the version does not know joins its catalogue as a cold item, scored by
content: its category (models/recommender/extend.py).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.serving.limits import ID_PATTERN, Id, Money, Note, RequestModel, limited
from omnidecide.store import db as database

log = logging.getLogger(__name__)

KNOWN = ("item_id", "store_id", "stock", "price", "margin", "category", "title")


class ItemUpdate(BaseModel):
    """One catalogue row; other attributes (brand, ...) are kept as given."""

    model_config = ConfigDict(extra="allow")
    item_id: Id  # no control characters: numpy's string arrays drop a trailing NUL, and the id would be lost
    stock: Optional[float] = Field(None, ge=0, allow_inf_nan=False, description="units in stock (at `store_id` if given)")
    store_id: Optional[Id] = None
    price: Optional[Money] = None
    margin: Optional[float] = Field(None, ge=-1, le=1, allow_inf_nan=False, description="share of the price, e.g. 0.3")
    category: Optional[Id] = None
    title: Optional[Note] = None


class ItemsRequest(RequestModel):
    """Only `items`: an unknown field beside it is refused (a row keeps other attributes, see ItemUpdate)."""

    items: list[ItemUpdate] = Field(..., min_length=1, **limited("items", "catalogue rows"))


class ItemsResponse(BaseModel):
    accepted: int
    store_stock_rows: int
    catalogue_version: int


@dataclass
class Changes:
    version: int
    items: list[dict] = field(default_factory=list)  # item_id, category, price, margin, stock, title, attrs
    store_stock: list[tuple[str, str, float]] = field(default_factory=list)  # (store_id, item_id, stock)


UPSERT_ITEM = (
    "INSERT INTO catalogue_items (item_id, category, price, margin, stock, title, attrs, version, updated) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE SET "
    "category = coalesce(excluded.category, catalogue_items.category), "
    "price = coalesce(excluded.price, catalogue_items.price), margin = coalesce(excluded.margin, catalogue_items.margin), "
    "stock = coalesce(excluded.stock, catalogue_items.stock), title = coalesce(excluded.title, catalogue_items.title), "
    "attrs = coalesce(excluded.attrs, catalogue_items.attrs), version = excluded.version, updated = excluded.updated")
UPSERT_STOCK = (
    "INSERT INTO catalogue_store_stock (store_id, item_id, stock, version, updated) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (store_id, item_id) DO UPDATE SET stock = excluded.stock, version = excluded.version, "
    "updated = excluded.updated")


class Catalogue:
    """Live catalogue rows in the deployment's database (`store.db`: PostgreSQL when OMNIDECIDE_DATABASE_URL says so,
    else SQLite beside the model store), so every worker and replica reads the same catalogue. One transaction per
    upsert, under the database's write lock, so catalogue versions never interleave."""

    def __init__(self, db: database.Database | None = None) -> None:
        self.db = db or database.connect()  # its tables: migration 3 of store/db.py

    def upsert(self, items: list[ItemUpdate]) -> ItemsResponse:
        """Store the rows in one transaction under a new catalogue version."""
        now = time.time()
        rows, stock_rows = [], []
        for it in items:
            extra = {k: v for k, v in (it.model_extra or {}).items() if v is not None}
            global_stock = it.stock if it.store_id is None else None
            rows.append([it.item_id, it.category, it.price, it.margin, global_stock, it.title,
                         json.dumps(extra, default=str) if extra else None, 0, now])
            if it.store_id is not None and it.stock is not None:
                stock_rows.append([it.store_id, it.item_id, it.stock, 0, now])
        with self.db.transaction(lock=True):
            self.db.execute("UPDATE catalogue_version SET version = version + 1 WHERE id = 1")
            version = int(self.db.query("SELECT version FROM catalogue_version WHERE id = 1")[0][0])
            for r in rows:
                r[7] = version
            for r in stock_rows:
                r[3] = version
            self.db.executemany(UPSERT_ITEM, rows)
            if stock_rows:
                self.db.executemany(UPSERT_STOCK, stock_rows)
        return ItemsResponse(accepted=len(rows), store_stock_rows=len(stock_rows), catalogue_version=version)

    def version(self) -> int:
        return int(self.db.query("SELECT version FROM catalogue_version WHERE id = 1")[0][0])

    def changes(self, since: int) -> Changes:
        """Rows changed after catalogue version `since` (0: everything), read in one transaction."""
        cols = ["item_id", "category", "price", "margin", "stock", "title", "attrs"]
        with self.db.transaction():
            version = int(self.db.query("SELECT version FROM catalogue_version WHERE id = 1")[0][0])
            items = [dict(zip(cols, r)) for r in self.db.query(
                f"SELECT {', '.join(cols)} FROM catalogue_items WHERE version > ? AND version <= ? "
                "ORDER BY version, item_id", (since, version))]
            stock = self.db.query("SELECT store_id, item_id, stock FROM catalogue_store_stock WHERE version > ? AND "
                                  "version <= ? ORDER BY version", (since, version))
        return Changes(version, items, [(str(s), str(i), float(v)) for s, i, v in stock])


_shared: dict[tuple[int, str], Catalogue] = {}
_shared_lock = threading.Lock()


def shared() -> Catalogue:
    """One Catalogue per database and process (runtimes of every version share it)."""
    db = database.connect()
    with _shared_lock:
        if (os.getpid(), db.url) not in _shared:
            _shared[(os.getpid(), db.url)] = Catalogue(db)
        return _shared[(os.getpid(), db.url)]


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
    bad = [r["item_id"] for r in changes.items if not re.match(ID_PATTERN, r["item_id"])]
    if bad:  # stored before ids were checked: skipped, or they would stop every runtime from starting
        log.warning("live catalogue: %d rows with an unusable item id skipped (first: %r)", len(bad), bad[0])
        changes = Changes(changes.version, [r for r in changes.items if re.match(ID_PATTERN, r["item_id"])],
                          changes.store_stock)
    new = [r for r in changes.items if r["item_id"] not in rec.item_index]
    if new:
        rec = with_items(rec, [r["item_id"] for r in new], [r["category"] for r in new], [r["price"] for r in new],
                         [r["stock"] for r in new], [r["title"] for r in new])
        rt.margin = np.concatenate([rt.margin, [np.nan if r["margin"] is None else r["margin"] for r in new]])
    cats = {str(c): k for k, c in enumerate(rec.categories)}
    old_cat = rec.item_cat
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
            if rec.item_cat[j] != cats[r["category"]]:
                if rec.item_cat is old_cat:  # a new array, once per update, not an edit in place: what is derived
                    rec.item_cat = old_cat.copy()  # per catalogue state (retrieval.py) is kept while it is the same
                rec.item_cat[j] = cats[r["category"]]
    for store, item, stock in changes.store_stock:
        rt.store_stock.setdefault(store, {})[item] = stock
    rt.rec = rec
