"""The HTTP service: one BentoML service serving the promoted (else latest) version of each model.

Thin on purpose: every endpoint hands a typed pydantic request to a runtime (serving/<model>.py) that was
loaded once in `__init__`; `serving.routing` picks production or a canary per request and follows promotions
and rollbacks without a restart. A model missing from the store, or a version that does not load, makes only its
own endpoints answer 503 with the reason and the command that fixes it (degraded, shown by /readyz and /models);
bad input answers 400 naming the field and the reason; any other failure of a model call is logged with the failing
version's tag and answers 500. Limits, the one error body and the checks before parsing live in serving/limits.py
and serving/errors.py. Every decision-log line carries the model call's `ms`, the serving
health that `omnidecide report` and the monitor read per version. Nothing here computes features.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Callable, TypeVar

import anyio
import bentoml
from starlette.responses import Response

from omnidecide.serving import accept, admin, auth, catalogue, churn_by_id, keepalive, metrics, watchdog
from omnidecide.serving.errors import BAD_INPUT, ApiError, Guard, answers, bad_input
from omnidecide.serving.limits import NoBody
from omnidecide.models.allocator.constraints import HTTP_FIELDS
from omnidecide.serving.allocator import AllocatorRuntime, PlanRequest, PlanResponse
from omnidecide.serving.audit import DecisionLog
from omnidecide.serving.bidder import BidRequest, BidResponse, Bidder
from omnidecide.serving.console.app import app as console_app
from omnidecide.serving.churn import ChurnRequest, ChurnResponse, ChurnService
from omnidecide.serving.recommender import (RecommenderRuntime, RecommendRequest, RecommendResponse, SimilarRequest,
                                 SimilarResponse)
from omnidecide.serving import retention, timeouts
from omnidecide.serving.online_store import OnlineStore
from omnidecide.serving import scores
from omnidecide.serving.routing import Versions, declared_models
from omnidecide.store import history, registry
from omnidecide.store import scores as stored_scores
from omnidecide.serving.schemas import EventsRequest, EventsResponse, ForgetRequest, ForgetResponse

T = TypeVar("T")
ADMIN_FIELDS = set(admin.AdminCanaryRequest.model_fields)
INGEST_THREADS = 16  # concurrent /events batches that can share one validation pass and one commit


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _call(versions: Versions, key: str, fn: Callable[[Any], T], log: DecisionLog | None = None,
          endpoint: str = "") -> tuple[T, float]:
    """Run `fn` on the version that serves `key`, timed (ms): 503 (ApiError) when the model is not served, bad input
    passes through (400 by `answers`); anything else is logged with the failing version's tag, then re-raised."""
    runtime = versions.pick(key)
    if runtime is None:
        raise ApiError(503, "model_unavailable", versions.error or f"{versions.name} not loaded")
    start, tag = time.perf_counter(), getattr(runtime, "tag", None)
    try:
        out = fn(runtime)
    except BAD_INPUT:
        metrics.model_call(endpoint, tag, "bad_input", time.perf_counter() - start)
        raise
    except Exception as e:
        metrics.model_call(endpoint, tag, "error", time.perf_counter() - start)
        if log is not None:
            log.error(endpoint, tag, e, _ms(start))
        raise
    metrics.model_call(endpoint, tag, "ok", time.perf_counter() - start)
    return out, _ms(start)


@bentoml.service(name="omnidecide", traffic={"timeout": 30})
@bentoml.asgi_app(console_app, path="/ui")  # the web console (serving/console)
class OmniDecide:
    """Every model behind one HTTP service; each answered request leaves a line in the decision log."""

    def __init__(self) -> None:
        auth.refuse_open_public()  # before loading anything: no keys on a public address is a refusal to start
        self.recommender = Versions("recommender", RecommenderRuntime)
        self.churn = Versions("churn", ChurnService)
        self.allocator = Versions("allocator", AllocatorRuntime)
        self.store = OnlineStore()
        self.catalogue = catalogue.shared()
        self.log = DecisionLog()
        retention.start(self.store, self.log)
        self._ingest_threads: anyio.CapacityLimiter | None = None  # see `events`
        self._bidders: dict[str, Bidder] = {}  # by recommender tag: production and canary each have one
        watchdog.exit_with_parent()  # under `omnidecide serve`: a killed parent never leaves this worker behind
        if auth.bound_host() is not None:  # a server worker (not in-process): share new connections with the others
            accept.one_connection_per_wakeup()
        # Everything loaded so far lives as long as the process: move it out of the collector's sight, so that a
        # full (generation-2) collection no longer walks the loaded models and libraries on some request (one
        # ~200 ms pause every few hundred requests; see BENCHMARKS "Service").
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    @answers(set(RecommendRequest.model_fields))
    async def recommend(self, **fields: Any) -> RecommendResponse:
        """Top-K items for a user on a page view, with a reason per item; the user's events from `/events` and the
        request's `recent_events` both steer it. The body is a RecommendResponse, written as JSON straight from the
        model's rows (serving.recommender.Ranked).

        Async on purpose, the model call made on the worker's event loop: a plain endpoint is handed to
        BentoML's one worker thread and back (a thread wake-up, a loop wake-up, and the two threads taking the GIL
        from each other while requests overlap), ~0.5-0.8 of the ~7 CPU ms a request cost on 2 workers
        (docs/BENCHMARKS.md). The call is CPU-bound (a few ms of numpy, faiss and LightGBM, one indexed read of the
        online store), and a worker is one core: the thread bought no concurrency, only the hand-offs. What can take
        seconds stays off the loop: the once-a-second stages check, which loads a newly promoted version."""
        request = RecommendRequest.model_construct(**fields)  # validated by BentoML against input_spec
        if self.recommender.due():
            await anyio.to_thread.run_sync(self.recommender.refresh)
        stored = self.store.recent_items(request.user_id)
        ranked, ms = _call(self.recommender, request.user_id, lambda r: r.rank(request, stored=stored),
                           self.log, "recommend")
        self.log.write("recommend", ranked.model, request.user_id, {
            "fallback": ranked.fallback, "channel": request.channel, "store_id": request.store_id,
            "personalized": request.personalized, "items": [[r.item_id, r.reason] for r in ranked.rows]}, ms=ms)
        return Response(ranked.json(), media_type="application/json")  # type: ignore[return-value]

    @bentoml.api(route="/events", input_spec=EventsRequest)
    @answers(set(EventsRequest.model_fields))
    async def events(self, **fields: Any) -> EventsResponse:
        """Storefront events as they happen; committed before the answer, used by the user's next `/recommend`.

        Async on purpose: BentoML runs a plain endpoint on one thread per worker, so concurrent batches would queue
        before the online store's group commit and each pay a validation pass and a commit alone. Here they wait on
        threads of their own (`INGEST_THREADS`) and meet in the group commit; the answer still follows the commit."""
        request = EventsRequest.model_construct(**fields)  # validated by BentoML against input_spec
        if self._ingest_threads is None:  # made on the worker's event loop
            self._ingest_threads = anyio.CapacityLimiter(INGEST_THREADS)
        return await anyio.to_thread.run_sync(self._ingest, request, limiter=self._ingest_threads)

    def _ingest(self, request: EventsRequest) -> EventsResponse:
        start = time.perf_counter()
        accepted = self.store.append([e.model_dump() for e in request.events], request.idempotency_key)
        self.log.write("events", None, None, {"accepted": accepted}, ms=_ms(start))
        return EventsResponse(accepted=accepted)

    @bentoml.api(route="/forget_user", input_spec=ForgetRequest)
    @answers(set(ForgetRequest.model_fields))
    def forget_user(self, **fields: Any) -> ForgetResponse:
        """Deletion entry point: removes the user's events (online store) and decision-log lines; the service caches
        nothing per user. The deletion itself is logged under the keyed hash."""
        request = ForgetRequest.model_construct(**fields)  # validated by BentoML against input_spec
        start = time.perf_counter()
        # first (after this process's queued lines, which the answer counts): versions' training rows are no longer
        # used, and every process's decision-log writer drops the lines about this user it still holds (serving/audit.py)
        self.log.flush()
        history.mark_forgotten(self.log.key(request.user_id), self.store.db)
        deleted = self.store.forget(request.user_id)
        lines = self.log.forget(request.user_id)
        gone_scores = stored_scores.forget(request.user_id, self.store.db)
        self.log.write("forget_user", None, None, {"forgotten": self.log.key(request.user_id),
                                                   "deleted_events": deleted, "deleted_log_lines": lines,
                                                   "deleted_scores": gone_scores},
                       ms=_ms(start))
        return ForgetResponse(user_id=request.user_id, deleted_events=deleted, deleted_log_lines=lines,
                              deleted_scores=gone_scores)

    @bentoml.api(route="/bid", input_spec=BidRequest)
    @answers(set(BidRequest.model_fields))
    def bid(self, **fields: Any) -> BidResponse:
        """Per candidate item: calibrated purchase probability, impression value and bid multiplier for one user on
        one ad channel (the user's churn figures, when given, add a retention credit)."""
        request = BidRequest.model_construct(**fields)  # validated by BentoML against input_spec
        request, churn_source = scores.for_bid(request, self.store.db)
        stored = self.store.recent_items(request.user_id)
        resp, ms = _call(self.recommender, request.user_id, lambda r: self._bidder(r).bid(request, stored),
                         self.log, "bid")
        resp.churn_source = churn_source
        self.log.write("bid", resp.model, request.user_id, {
            "channel": request.channel, "personalized": resp.personalized, "reference_value": resp.reference_value,
            "churn_source": churn_source, "out_of_stock": resp.out_of_stock_items,
            "bids": [[c.item_id, round(c.purchase_probability, 6), round(c.bid_multiplier, 4)] for c in resp.candidates]},
            ms=ms)
        return resp

    def _bidder(self, runtime: RecommenderRuntime) -> Bidder:
        if runtime.tag not in self._bidders:
            if len(self._bidders) > 4:  # versions come and go with promotions; keep the map small
                self._bidders.clear()
            self._bidders[runtime.tag] = Bidder(runtime)
        return self._bidders[runtime.tag]

    @bentoml.api(route="/similar_items", input_spec=SimilarRequest)
    @answers(set(SimilarRequest.model_fields))
    def similar_items(self, **fields: Any) -> SimilarResponse:
        """Items close to a given item in the recommender's embedding space (in stock only)."""
        request = SimilarRequest.model_construct(**fields)  # validated by BentoML against input_spec
        resp, ms = _call(self.recommender, request.item_id, lambda r: r.similar(request), self.log, "similar_items")
        self.log.write("similar_items", resp.model, request.item_id, {"items": [i.item_id for i in resp.items]},
                       ms=ms)
        return resp

    @bentoml.api(route="/predict_churn", input_spec=ChurnRequest)
    @answers(set(ChurnRequest.model_fields))
    def predict_churn(self, **fields: Any) -> ChurnResponse:
        """Churn probability, risk tier, RFM segment, expected spend and reason for customers from their events, or
        by id (`user_ids`: a fresh stored score, else scored from the events the service holds; serving/churn_by_id.py)."""
        request = ChurnRequest.model_construct(**fields)  # validated by BentoML against input_spec
        if request.user_ids is not None:
            resp, ms = _call(self.churn, request.user_ids[0],
                             lambda r: churn_by_id.score_ids(r, request, self.store, self.log.key), self.log,
                             "predict_churn")
        else:
            resp, ms = _call(self.churn, request.events[0].user_id if request.events else "",
                             lambda r: r.score(request), self.log, "predict_churn")
        rows = [(c.user_id, {"as_of": c.as_of, "churn_probability": c.churn_probability, "risk_tier": c.risk_tier,
                             "reason": c.reason, "source": c.source, "score_model": c.model}) for c in resp.customers]
        rows += [(u, {"as_of": resp.as_of, "source": "unknown"}) for u in resp.unknown]
        self.log.write_many("predict_churn", resp.model, rows or [(None, {"as_of": resp.as_of, "customers": 0})], ms=ms)
        return resp

    @bentoml.api(route="/allocate", input_spec=PlanRequest)
    @answers(set(PlanRequest.model_fields))
    def allocate(self, **fields: Any) -> PlanResponse:
        """Budget plan per channel and period under reserve, bounds and ROI floors; re-plans from actuals."""
        request = PlanRequest.model_construct(**fields)  # validated by BentoML against input_spec
        resp, ms = _call(self.allocator, request.model_dump_json(), lambda r: r.plan(request, names=HTTP_FIELDS)[0],
                         self.log, "allocate")
        self.log.write("allocate", resp.model, None, {
            "request": request.model_dump(exclude={"actuals_csv"}), "actual_periods": resp.actual_periods,
            "expected_incremental_revenue": resp.expected_incremental_revenue,
            "spend": {c: v.spend for c, v in resp.per_channel.items()}}, ms=ms)
        return resp

    @bentoml.api(route="/customer_scores", input_spec=scores.ScoresRequest)
    @answers(set(scores.ScoresRequest.model_fields))
    def customer_scores(self, **fields: Any) -> scores.ScoresResponse:
        """Stored churn scores by customer id (published by `omnidecide predict churn --publish`), each with its
        model version, as-of date and age; ids with no stored score are listed as unknown."""
        request = scores.ScoresRequest.model_construct(**fields)  # validated by BentoML against input_spec
        start = time.perf_counter()
        resp = scores.lookup(request.user_ids, self.store.db)
        self.log.write_many("customer_scores", None, [(s.user_id, {"score_model": s.model, "as_of": s.as_of})
                                                      for s in resp.scores] or [(None, {"found": 0})], ms=_ms(start))
        return resp

    @bentoml.api(route="/models", input_spec=NoBody)
    def models(self) -> dict[str, Any]:
        """Which version each endpoint serves (and any canary with its share), or why it serves none."""
        return {v.name: v.describe() for v in (self.recommender, self.churn, self.allocator)}

    def readiness(self) -> dict[str, Any]:
        """GET /readyz: `ready`, or `degraded` naming the models not served (their endpoints answer 503)."""
        # not self.models(): outside a request BentoML routes an API method through HTTP, which needs a key
        models = {v.name: v.describe() for v in (self.recommender, self.churn, self.allocator)}
        degraded = [name for name, m in models.items() if m["degraded"]]
        return {"status": "degraded" if degraded else "ready", "degraded": degraded, "models": models}

    @bentoml.api(route="/items", input_spec=catalogue.ItemsRequest)
    @answers(set(catalogue.ItemsRequest.model_fields))
    def items(self, items: list[catalogue.ItemUpdate]) -> catalogue.ItemsResponse:
        """Upsert catalogue rows (stock, per-store stock, price, margin, category, new items); the next
        `/recommend`, `/similar_items` and `/bid` on every worker honour them."""
        start = time.perf_counter()
        resp = self.catalogue.upsert(items)
        self.log.write("items", None, None, {"accepted": resp.accepted, "store_stock_rows": resp.store_stock_rows,
                                             "catalogue_version": resp.catalogue_version}, ms=_ms(start))
        return resp

    @bentoml.api(route="/noop")
    def noop(self) -> dict[str, Any]:
        """Does nothing: what BentoML (and the key check) cost per request, the floor bench/service.py compares with.
        Kept a bare `@bentoml.api` (no request model), as issue H's target defines it and as its figures were taken."""
        return {}

    @bentoml.api(route="/admin/promote", input_spec=admin.AdminPromoteRequest)
    def admin_promote(self, ctx: bentoml.Context, **fields: Any) -> dict[str, Any]:
        """Serve `version` (name:version or the version alone) of `model`; the replaced one is kept for rollback."""
        r = admin.AdminPromoteRequest.model_construct(**fields)  # validated by BentoML against input_spec
        return _admin(ctx, lambda key: admin.promote(r.model, r.version, key, r.reason))

    @bentoml.api(route="/admin/rollback", input_spec=admin.AdminRollbackRequest)
    def admin_rollback(self, ctx: bentoml.Context, **fields: Any) -> dict[str, Any]:
        """Serve the previously promoted version of `model` again."""
        r = admin.AdminRollbackRequest.model_construct(**fields)
        return _admin(ctx, lambda key: admin.rollback(r.model, key, r.reason))

    @bentoml.api(route="/admin/canary", input_spec=admin.AdminCanaryRequest)
    def admin_canary(self, ctx: bentoml.Context, **fields: Any) -> dict[str, Any]:
        """Send `share` (0..1] of `model`'s traffic to `version`; share 0 ends the canary."""
        r = admin.AdminCanaryRequest.model_construct(**fields)
        return _admin(ctx, lambda key: admin.canary(r.model, r.version, r.share, key, r.reason))


def _admin(ctx: bentoml.Context, act: Callable[[str], T]) -> T | Any:
    """Run an admin act in the name of the request's key (checked again here: the act is logged under it). Errors
    answer the service's error body; the status goes through `ctx`, which BentoML applies to any answer."""
    try:
        try:
            key = auth.authorize(ctx.request.headers.get("authorization"), "admin")
        except auth.AuthError as e:
            raise ApiError(e.status, e.body()["error"], e.message) from e
        return act(key)
    except (ApiError, *BAD_INPUT) as e:
        error = e if isinstance(e, ApiError) else bad_input(e, ADMIN_FIELDS)
        error.message = registry.without_home(error.message)
        ctx.response.status_code = error.status
        return error.response()


OmniDecide.models.extend(declared_models())
timeouts.install()  # BentoML's request timeout, minus its per-request leak (serving/timeouts.py)
OmniDecide.add_asgi_middleware(metrics.MetricsMiddleware)  # outermost: refused requests are counted too
OmniDecide.add_asgi_middleware(auth.KeyMiddleware)  # before Guard reads a body: no key, no work
OmniDecide.add_asgi_middleware(Guard)
OmniDecide.add_asgi_middleware(keepalive.RecycleConnections)  # each request to a free worker (serving/keepalive.py)
