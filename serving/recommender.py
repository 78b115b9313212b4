"""Recommender runtime: load one stored version, answer top-K per user (with fresh session events), similar items.

Plain class plus pydantic request/response models, so the BentoML service, the CLI and tests share one code path.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from omnidecide.models.errors import InputError
from omnidecide.models.recommender import rules
from omnidecide.models.schema import EVENT_TYPES
from omnidecide.serving.limits import Id, MaybeId, RequestModel, Timestamp, limited
from omnidecide.store import loader


class RecentEvent(RequestModel):
    """A fresh event of this session; an unknown event type or an unparsable timestamp is a 400, not a silent skip."""

    item_id: Id
    event: Literal[EVENT_TYPES] = "view"  # type: ignore[valid-type]
    timestamp: Optional[Timestamp] = None


class RecommendRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "user_id": "u0000001", "k": 10, "channel": "douyin",
        "recent_events": [{"item_id": "i00001", "event": "cart", "timestamp": "2026-06-01T10:00:00+08:00"}]}})

    user_id: Id
    k: int = Field(20, ge=1, le=500)
    recent_events: list[RecentEvent] = Field(default_factory=list,
                                             **limited("recent_events", "fresh events of this session (inductive)"))
    store_id: Optional[MaybeId] = None
    channel: Optional[MaybeId] = None
    exclude: list[Id] = Field(default_factory=list, **limited("exclude", "item ids never to recommend"))
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="MMR lambda: 0 = pure relevance")
    personalized: bool = Field(True, description="false: the user switched personalisation off; no history is used")
    attributes: dict[str, str] = Field(default_factory=dict, max_length=20, description="users.csv-style attributes of the customer "
                                       "(member_level, age_band, gender, city): a new customer gets their segment's "
                                       "popular items")
    segment: Optional[str] = Field(None, max_length=200, description="one segment as column=value, e.g. member_level=gold")

    def segments(self) -> dict[str, str]:
        """`attributes` plus `segment`, as column -> value."""
        out = {str(c): str(v) for c, v in self.attributes.items() if v is not None and str(v)}
        if self.segment and "=" in self.segment:
            c, v = self.segment.split("=", 1)
            out[c.strip()] = v.strip()
        elif self.segment:
            raise InputError(f"segment {self.segment!r}: expected column=value, e.g. member_level=gold")
        return out


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    score: float
    reason: str
    source: str


class RecommendResponse(BaseModel):
    user_id: str
    model: str
    fallback: bool
    items: list[RecommendedItem]
    ignored_recent_items: list[str] = Field(default_factory=list,
                                            description="recent_events items the model's catalogue does not hold")


class SimilarRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra={"example": {"item_id": "i00001", "k": 5}})

    item_id: Id
    k: int = Field(10, ge=1, le=500)
    store_id: Optional[MaybeId] = None


class SimilarResponse(BaseModel):
    item_id: str
    model: str
    items: list[RecommendedItem]
    note: Optional[str] = Field(None, description="why `items` is empty, e.g. a new item nobody has chosen yet and no "
                                "other item of its category: nothing is known to be like it")


@dataclass
class Ranked:
    """One `/recommend` answer as the model's rows; `response()` and `json()` are the same body (RecommendResponse)."""

    user_id: str
    model: str
    rows: list[rules.Row]
    ignored: list[str]

    @property
    def fallback(self) -> bool:
        return any(r.source == "fallback" for r in self.rows)

    def items(self) -> list[dict]:
        return [{"rank": n + 1, "item_id": r.item_id, "score": r.score if math.isfinite(r.score) else None,
                 "reason": r.reason, "source": r.source} for n, r in enumerate(self.rows)]

    def response(self) -> RecommendResponse:
        # built from typed rows: construct, not validate (validation was ~5% of a request at 20 items)
        return RecommendResponse(user_id=self.user_id, model=self.model, fallback=self.fallback,
                                 items=[RecommendedItem.model_construct(**i) for i in self.items()],
                                 ignored_recent_items=self.ignored)

    def json(self) -> bytes:
        """The RecommendResponse body, written from plain dicts (a pydantic object per item and BentoML's
        serialisation of them were ~5% of a request's CPU at 20 items); as pydantic does, a score that is not finite
        is null. ASCII with escapes, so an id holding a lone surrogate is still valid JSON."""
        return json.dumps({"user_id": self.user_id, "model": self.model, "fallback": self.fallback,
                           "items": self.items(), "ignored_recent_items": self.ignored}).encode()


class RecommenderRuntime:
    """Loads `tag` (default: promoted, else latest) with the catalogue snapshot inside the version (stock, prices,
    margins, per-store stock), then follows the live catalogue (`POST /items`) before each answer."""

    def __init__(self, tag: str | None = None, *, live: bool = True, arrays: dict | None = None) -> None:
        """`arrays`: the version's arrays already in shared memory (a Ray worker of a batch job, serving/batch.py)."""
        from omnidecide.serving.catalogue import LiveOverlay, shared
        from omnidecide.store import registry, snapshot

        v = loader.load("recommender", tag, arrays=arrays)
        self.tag, self.metadata, self.rec = v.tag, v.metadata, v.model
        items, store_stock = snapshot.read(registry.path("recommender", v.tag))
        self.margin = np.full(len(self.rec.item_ids), np.nan)  # share of the price per item (NaN: unknown)
        if items is not None:
            it = items.drop_duplicates("item_id").set_index("item_id").reindex(pd.Index(self.rec.item_ids))
            if "stock" in it.columns:
                known = it["stock"].astype(float)
                self.rec.stock = np.where(known.notna(), known.to_numpy(), self.rec.stock)
            if "margin" in it.columns:
                self.margin = it["margin"].astype(float).to_numpy()
        self.store_stock: dict[str, dict[str, float]] = {}
        if store_stock is not None:
            for s, g in store_stock.groupby("store_id"):
                self.store_stock[str(s)] = dict(zip(g["item_id"].astype(str), g["stock"].astype(float)))
        self.live = LiveOverlay(shared()) if live else None
        self.sync()

    def sync(self) -> None:
        """Apply live catalogue changes not applied yet (cheap when there are none)."""
        if self.live is not None:
            self.live.sync(self)

    def recommend(self, req: RecommendRequest, now: float | None = None,
                  stored: Sequence[tuple[str, str, float]] = ()) -> RecommendResponse:
        """`stored`: the user's item events from the online store (`OnlineStore.recent_items`), merged with the
        request's."""
        return self.rank(req, now, stored).response()

    def rank(self, req: RecommendRequest, now: float | None = None,
             stored: Sequence[tuple[str, str, float]] = ()) -> "Ranked":
        """What `recommend` answers, as the model's rows: the HTTP endpoint writes them as JSON itself (`Ranked.json`)
        instead of building a pydantic object per item first."""
        self.sync()
        recent = events_frame(stored, req.recent_events)
        ignored = sorted(set(recent["item_id"]) - self.rec.item_index.keys()) if recent is not None else []
        stock = self.store_stock.get(str(req.store_id)) if req.store_id else None
        rows = rules.recommend(self.rec, req.user_id, req.k, recent=recent, channel=req.channel, store_id=req.store_id,
                               store_stock=stock, exclude=req.exclude, diversity=req.diversity, now=now,
                               personalized=req.personalized, segment=req.segments())
        return Ranked(req.user_id, self.tag, rows, ignored)

    def similar(self, req: SimilarRequest) -> SimilarResponse:
        self.sync()
        if req.item_id not in self.rec.item_index:
            raise InputError(f"item_id {req.item_id!r} is not in the catalogue of {self.tag}")
        stock = self.store_stock.get(str(req.store_id)) if req.store_id else None
        rows = rules.similar_items(self.rec, req.item_id, req.k, stock)
        return SimilarResponse(item_id=req.item_id, model=self.tag, items=[
            RecommendedItem(rank=n + 1, item_id=r.item_id, score=r.score, reason=r.reason, source=r.source)
            for n, r in enumerate(rows)], note=None if rows else rules.nothing_similar(self.rec, req.item_id))

    def personalized(self, user_id: str, requested: bool = True) -> bool:
        """May this user's history be used? Not when they opted out in users.csv or in the request."""
        return requested and user_id not in self.rec.no_consent

    def purchase_probability(self, user_id: str, item_ids: list[str], channel: str | None = None,
                             personalized: bool = True, stored: Sequence[tuple[str, str, float]] = ()) -> list[float]:
        """Calibrated P(purchase) per (user, item, channel) from the second stage; NaN when no second stage.
        `stored`: the user's online-store events. Without consent the user is scored as an anonymous visitor."""
        if self.rec.ranker is None:
            return [float("nan")] * len(item_ids)
        if not self.personalized(user_id, personalized):
            return self.rec.ranker.probability(self.rec, "\0anonymous", item_ids, channel)
        return self.rec.ranker.probability(self.rec, user_id, item_ids, channel, events_frame(stored))


def events_frame(stored: Sequence[tuple[str, str, float]], fresh: Sequence[RecentEvent] = ()) -> pd.DataFrame | None:
    """The model's `recent` frame (item_id, event, timestamp as naive UTC): the online store's item events, newest
    first, then the request's own; None when neither has any, so most requests build no DataFrame at all."""
    parts = []
    if stored:
        items, events, ts = zip(*stored)
        parts.append(pd.DataFrame({"item_id": list(items), "event": list(events),
                                   "timestamp": pd.to_datetime(np.asarray(ts, dtype=float), unit="s")}))
    if fresh:
        own = pd.DataFrame([e.model_dump() for e in fresh])
        own["timestamp"] = pd.to_datetime(own["timestamp"], utc=True).dt.tz_localize(None)
        parts.append(own)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
