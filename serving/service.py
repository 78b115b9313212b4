"""The HTTP service: one BentoML service serving the promoted (else latest) version of each model.

Thin on purpose: every endpoint hands a typed pydantic request to a runtime (serving/<model>.py) that was
loaded once in `__init__`. A model missing from the store makes its endpoints answer 503 with the command
that trains it; bad input answers 400 naming the field and the reason. Nothing here computes features.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

import bentoml
from bentoml.exceptions import InvalidArgument, ServiceUnavailable

from models.errors import InputError
from serving.allocator import AllocatorRuntime, PlanRequest, PlanResponse
from serving.churn import ChurnRequest, ChurnResponse, ChurnService
from serving.recommender import (RecommenderRuntime, RecommendRequest, RecommendResponse, SimilarRequest,
                                 SimilarResponse)
from training import registry

log = logging.getLogger(__name__)
T = TypeVar("T")


def _load(name: str, factory: Callable[[], T]) -> tuple[T | None, str | None]:
    """(runtime, None) or (None, why it is not served): a missing model must not take the other endpoints down."""
    try:
        return factory(), None
    except InputError as e:
        log.warning("%s not served: %s", name, e)
        return None, str(e)


def _call(runtime: Any, why: str | None, fn: Callable[[Any], T]) -> T:
    if runtime is None:
        raise ServiceUnavailable(why or "model not loaded")
    try:
        return fn(runtime)
    except InputError as e:
        raise InvalidArgument(str(e)) from e


@bentoml.service(name="omnidecide", traffic={"timeout": 30})
class OmniDecide:
    def __init__(self) -> None:
        self.recommender, self._why_rec = _load("recommender", RecommenderRuntime)
        self.churn, self._why_churn = _load("churn", ChurnService)
        self.allocator, self._why_alloc = _load("allocator", AllocatorRuntime)

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Top-K items for a user on a page view (recent session events welcome), with a reason per item."""
        return _call(self.recommender, self._why_rec, lambda r: r.recommend(request))

    @bentoml.api(route="/similar_items")
    def similar_items(self, request: SimilarRequest) -> SimilarResponse:
        """Items close to a given item in the recommender's embedding space (in stock only)."""
        return _call(self.recommender, self._why_rec, lambda r: r.similar(request))

    @bentoml.api(route="/predict_churn")
    def predict_churn(self, request: ChurnRequest) -> ChurnResponse:
        """Churn probability, risk tier, RFM segment, expected spend and reason for customers from their events."""
        return _call(self.churn, self._why_churn, lambda r: r.score(request))

    @bentoml.api(route="/allocate")
    def allocate(self, request: PlanRequest) -> PlanResponse:
        """Budget plan per channel and period under reserve, bounds and ROI floors; re-plans from actuals."""
        return _call(self.allocator, self._why_alloc, lambda r: r.plan(request)[0])

    @bentoml.api(route="/models")
    def models(self) -> dict[str, Any]:
        """Which version each endpoint serves, or why it serves none."""
        served = {"recommender": (self.recommender, self._why_rec), "churn": (self.churn, self._why_churn),
                  "allocator": (self.allocator, self._why_alloc)}
        return {name: {"tag": getattr(rt, "tag", None), "error": why, "stages": registry.stages(name)}
                for name, (rt, why) in served.items()}
