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
from serving.churn import ChurnRequest, ChurnResponse, ChurnService
from serving.recommender import (RecommenderRuntime, RecommendRequest, RecommendResponse, SimilarRequest,
                                 SimilarResponse)
from serving.routing import Versions

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

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Top-K items for a user on a page view (recent session events welcome), with a reason per item."""
        return _call(self.recommender, request.user_id, lambda r: r.recommend(request))

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
