"""The HTTP service: one BentoML service serving the promoted (else latest) version of each model.

Thin on purpose: every endpoint hands a typed pydantic request to a runtime (serving/<model>.py) that was
loaded once in `__init__`; `serving.routing` picks production or a canary per request and follows promotions
and rollbacks without a restart. A model missing from the store makes its endpoints answer 503 with the command
that trains it; bad input answers 400 naming the field and the reason. Nothing here computes features.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import bentoml
from bentoml.exceptions import InvalidArgument, ServiceUnavailable

from models.errors import InputError
from serving.allocator import AllocatorRuntime, PlanRequest, PlanResponse
from serving.bidder import BidRequest, BidResponse, Bidder
from serving.churn import ChurnRequest, ChurnResponse, ChurnService
from serving.recommender import (RecommenderRuntime, RecommendRequest, RecommendResponse, SimilarRequest,
                                 SimilarResponse)
from serving.online_store import OnlineStore
from serving.routing import Versions
from serving.schemas import EventsRequest, EventsResponse, ForgetRequest, ForgetResponse

T = TypeVar("T")


def _call(versions: Versions, key: str, fn: Callable[[Any], T]) -> T:
    """Run `fn` on the version that serves `key`: 503 when the model is not in the store, 400 on bad input."""
    runtime = versions.pick(key)
    if runtime is None:
        raise ServiceUnavailable(versions.error or f"{versions.name} not loaded")
    try:
        return fn(runtime)
    except InputError as e:
        raise InvalidArgument(str(e)) from e


@bentoml.service(name="omnidecide", traffic={"timeout": 30})
class OmniDecide:
    def __init__(self) -> None:
        self.recommender = Versions("recommender", RecommenderRuntime)
        self.churn = Versions("churn", ChurnService)
        self.allocator = Versions("allocator", AllocatorRuntime)
        self.store = OnlineStore()
        self._bidders: dict[str, Bidder] = {}  # by recommender tag: production and canary each have one

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Top-K items for a user on a page view, with a reason per item; the user's events from `/events` and the
        request's `recent_events` both steer it."""
        stored = self.store.recent(request.user_id)
        return _call(self.recommender, request.user_id, lambda r: r.recommend(request, stored=stored))

    @bentoml.api(route="/events")
    def events(self, request: EventsRequest) -> EventsResponse:
        """Storefront events as they happen; committed before the answer, used by the user's next `/recommend`."""
        try:
            return EventsResponse(accepted=self.store.append([e.model_dump() for e in request.events]))
        except InputError as e:
            raise InvalidArgument(str(e)) from e

    @bentoml.api(route="/forget_user")
    def forget_user(self, request: ForgetRequest) -> ForgetResponse:
        """Deletion entry point: removes every event of the user held by the online store."""
        return ForgetResponse(user_id=request.user_id, deleted_events=self.store.forget(request.user_id))

    @bentoml.api(route="/bid")
    def bid(self, request: BidRequest) -> BidResponse:
        """Per candidate item: calibrated purchase probability, impression value and bid multiplier for one user on
        one ad channel (the user's churn figures, when given, add a retention credit)."""
        stored = self.store.recent(request.user_id)
        return _call(self.recommender, request.user_id, lambda r: self._bidder(r).bid(request, stored))

    def _bidder(self, runtime: RecommenderRuntime) -> Bidder:
        if runtime.tag not in self._bidders:
            if len(self._bidders) > 4:  # versions come and go with promotions; keep the map small
                self._bidders.clear()
            self._bidders[runtime.tag] = Bidder(runtime)
        return self._bidders[runtime.tag]

    @bentoml.api(route="/similar_items")
    def similar_items(self, request: SimilarRequest) -> SimilarResponse:
        """Items close to a given item in the recommender's embedding space (in stock only)."""
        return _call(self.recommender, request.item_id, lambda r: r.similar(request))

    @bentoml.api(route="/predict_churn")
    def predict_churn(self, request: ChurnRequest) -> ChurnResponse:
        """Churn probability, risk tier, RFM segment, expected spend and reason for customers from their events."""
        return _call(self.churn, request.events[0].user_id, lambda r: r.score(request))

    @bentoml.api(route="/allocate")
    def allocate(self, request: PlanRequest) -> PlanResponse:
        """Budget plan per channel and period under reserve, bounds and ROI floors; re-plans from actuals."""
        return _call(self.allocator, request.model_dump_json(), lambda r: r.plan(request)[0])

    @bentoml.api(route="/models")
    def models(self) -> dict[str, Any]:
        """Which version each endpoint serves (and any canary with its share), or why it serves none."""
        return {v.name: v.describe() for v in (self.recommender, self.churn, self.allocator)}
